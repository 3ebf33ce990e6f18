/* jamstream LV2 instrument: the helper thread (never the audio thread).
 *
 * It finds or starts the `jamstream serve` daemon, attaches with the current
 * config, maps the shared block and publishes it to run(), relays the daemon's
 * log lines, logs when the daemon's worker is ready, and frees
 * old mappings once run() has moved past them.
 */
#include "jamstream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192
#define SPAWN_GAP_NS (30 * 1000000000LL)      /* at most one daemon start per 30 s */
#define FAST_RETRY_NS (5 * 1000000000LL)      /* after a start: retry every 250 ms this long */
#define REFUSED_RETRY_NS (10 * 1000000000LL)  /* after {"ok":false}: retry this often */
#define START_DELAY_NS (1000000000LL)         /* wait this long for activate() (a host restores state first) */


void js_log(Plugin *s, LV2_URID level, const char *fmt, ...) {
    char msg[LOG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!s->log || s->host_log_unsafe) {
        fprintf(stderr, "jamstream: %s\n", msg);
        return;
    }
    if (!s->schedule) { /* a host without a worker thread: print from here (jalv has one) */
        s->log->printf(s->log->handle, level, "jamstream: %s\n", msg);
        return;
    }
    pthread_mutex_lock(&s->log_lock);
    uint32_t w = s->log_w;
    if (w - __atomic_load_n(&s->log_r, __ATOMIC_ACQUIRE) < LOG_SLOTS) {
        LogLine *line = &s->log_q[w % LOG_SLOTS];
        line->level = level;
        snprintf(line->text, sizeof line->text, "%s", msg);
        __atomic_store_n(&s->log_w, w + 1, __ATOMIC_RELEASE);
    } else {
        s->log_dropped++;
    }
    pthread_mutex_unlock(&s->log_lock);
}

void js_log_flush(Plugin *s) {
    uint32_t w = __atomic_load_n(&s->log_w, __ATOMIC_ACQUIRE);
    for (uint32_t r = s->log_r; r != w; r++) {
        const LogLine *line = &s->log_q[r % LOG_SLOTS];
        s->log->printf(s->log->handle, line->level, "jamstream: %s\n", line->text);
        __atomic_store_n(&s->log_r, r + 1, __ATOMIC_RELEASE);
    }
}

void js_wake(Plugin *s) {
    uint64_t one = 1;
    if (s->wake_fd >= 0) {
        ssize_t r = write(s->wake_fd, &one, sizeof one);
        (void)r;
    }
}

static bool quitting(Plugin *s) { return LD(&s->quit) != 0; }

/* ------------------------------------------------------------------ JSON bits */

static void json_escape(char *dst, size_t cap, const char *src) {
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)src; *c && o + 7 < cap; c++) {
        if (*c == '"' || *c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*c;
        } else if (*c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", *c);
        } else {
            dst[o++] = (char)*c;
        }
    }
    dst[o] = '\0';
}

/* The value after "key": in a flat one-line object, or NULL. */
static const char *json_value(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (const char *p = strstr(line, pat); p; p = strstr(p + 1, pat)) {
        const char *q = p + strlen(pat);
        while (*q == ' ' || *q == '\t') q++;
        if (*q != ':') continue;
        q++;
        while (*q == ' ' || *q == '\t') q++;
        return q;
    }
    return NULL;
}

static bool json_string(const char *line, const char *key, char *dst, size_t cap) {
    const char *q = json_value(line, key);
    if (!q || *q != '"') return false;
    size_t o = 0;
    for (q++; *q && *q != '"'; q++) {
        char c = *q;
        if (c == '\\' && q[1]) {
            q++;
            switch (*q) {
            case 'n': c = ' '; break; /* one log line stays one line */
            case 't': c = ' '; break;
            case 'r': c = ' '; break;
            case 'u':
                c = '?';
                for (int k = 0; k < 4 && q[1]; k++) q++;
                break;
            default: c = *q;
            }
        }
        if (o + 1 < cap) dst[o++] = c;
    }
    dst[o] = '\0';
    return true;
}

static bool json_int(const char *line, const char *key, long long *v) {
    const char *q = json_value(line, key);
    if (!q) return false;
    char *end;
    errno = 0;
    long long x = strtoll(q, &end, 10);
    if (end == q || errno) return false;
    *v = x;
    return true;
}

/* ------------------------------------------------------------ the connection */

typedef struct Conn {
    int fd;
    char buf[LINE_MAX_BYTES];
    size_t len;
} Conn;

static void conn_close(Conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->len = 0;
}

/* Reads what is there; returns -1 at EOF/error, else 0. */
static int conn_read(Conn *c) {
    if (c->len >= sizeof c->buf - 1) c->len = 0; /* a line too long to be ours: drop it */
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, MSG_DONTWAIT);
    if (r == 0) return -1;
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    c->len += (size_t)r;
    return 0;
}

/* Pops one complete line into out; false when none is buffered. */
static bool conn_line(Conn *c, char *out, size_t cap) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl) return false;
    size_t n = (size_t)(nl - c->buf);
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(out, c->buf, k);
    out[k] = '\0';
    memmove(c->buf, nl + 1, c->len - n - 1);
    c->len -= n + 1;
    return true;
}

static bool log_line(Plugin *s, const char *line) {
    char text[LINE_MAX_BYTES], level[32] = "note";
    if (!json_string(line, "log", text, sizeof text)) return false;
    json_string(line, "level", level, sizeof level);
    js_log(s, !strcmp(level, "error") ? s->u.log_Error : s->u.log_Note, "%s", text);
    return true;
}

static void socket_path(Plugin *s) {
    const char *env = getenv("JAMSTREAM_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (env && *env) snprintf(s->socket_path, sizeof s->socket_path, "%s", env);
    else if (xdg && *xdg) snprintf(s->socket_path, sizeof s->socket_path, "%s/jamstream/serve.sock", xdg);
    else snprintf(s->socket_path, sizeof s->socket_path, "/tmp/jamstream-%u/serve.sock", (unsigned)getuid());
}

static int try_connect(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------- starting the daemon */

/* JAMSTREAM_BIN, else bin= of jamstream.conf in the bundle, else jamstream. */
static void daemon_bin(Plugin *s, char *bin, size_t cap) {
    const char *env = getenv("JAMSTREAM_BIN");
    if (env && *env) {
        snprintf(bin, cap, "%s", env);
        return;
    }
    snprintf(bin, cap, "jamstream");
    char conf[PATH_MAX + 32];
    size_t bl = strlen(s->bundle);
    snprintf(conf, sizeof conf, "%s%sjamstream.conf", s->bundle, (bl && s->bundle[bl - 1] == '/') ? "" : "/");
    FILE *f = fopen(conf, "re");
    if (!f) return;
    char line[PATH_MAX + 16];
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "bin=", 4) != 0) continue;
        p += 4;
        p[strcspn(p, "\r\n")] = '\0';
        if (*p) snprintf(bin, cap, "%s", p);
        break;
    }
    fclose(f);
}

/* The executable for bin (PATH searched here: the child after fork only execs). */
static bool resolve_exe(const char *bin, char *exe, size_t cap) {
    if (strchr(bin, '/')) {
        snprintf(exe, cap, "%s", bin);
        return true;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        int w = snprintf(exe, cap, "%.*s/%s", (int)(n ? n : 1), n ? path : ".", bin);
        if (w > 0 && (size_t)w < cap && access(exe, X_OK) == 0) return true;
        path += n;
        if (*path == ':') path++;
    }
    return false;
}

typedef struct SpawnMsg {
    char tag; /* 'P': the daemon's pid, 'E': exec failed with errno */
    int value;
} SpawnMsg;

/* Double fork + setsid + exec of `<bin> serve --socket <path>`; returns the pid or -1. */
static pid_t spawn_daemon(Plugin *s) {
    char bin[PATH_MAX], exe[PATH_MAX], dir[sizeof s->socket_path], logpath[sizeof s->socket_path + 16];
    daemon_bin(s, bin, sizeof bin);
    if (!resolve_exe(bin, exe, sizeof exe)) {
        js_log(s, s->u.log_Error, "cannot start the generator daemon: %s: not found on PATH", bin);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s", s->socket_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    mkdir(dir, 0700);
    snprintf(logpath, sizeof logpath, "%s/serve.log", dir);
    char *argv[] = {bin, "serve", "--socket", s->socket_path, NULL};

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        js_log(s, s->u.log_Error, "cannot start the generator daemon: pipe: %s", strerror(errno));
        return -1;
    }
    pid_t c = fork();
    if (c < 0) {
        js_log(s, s->u.log_Error, "cannot start the generator daemon: fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (c == 0) { /* the first child: a new session, then the daemon, then gone */
        setsid();
        pid_t g = fork();
        if (g != 0) {
            SpawnMsg m = {g > 0 ? 'P' : 'E', g > 0 ? (int)g : errno};
            ssize_t w = write(pfd[1], &m, sizeof m);
            (void)w;
            _exit(0);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* the helper thread blocks all signals; the daemon must not */
        const int dfl[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGQUIT};
        for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++) signal(dfl[i], SIG_DFL);
        int in = open("/dev/null", O_RDONLY);
        int out = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (out < 0) out = open("/dev/null", O_WRONLY);
        if (in >= 0) dup2(in, 0);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        for (int fd = 3; fd < 1024; fd++) /* the host's descriptors (audio, sockets) stay with the host */
            if (fd != pfd[1]) close(fd);
        execv(exe, argv);
        SpawnMsg m = {'E', errno};
        ssize_t w = write(pfd[1], &m, sizeof m);
        (void)w;
        _exit(127);
    }
    close(pfd[1]);
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
    }
    pid_t pid = -1;
    int err = 0;
    struct pollfd pf = {pfd[0], POLLIN, 0};
    int64_t deadline = mono_ns() + 5000000000LL;
    for (;;) { /* 'P' from the first child, then EOF (exec'd: CLOEXEC) or 'E' */
        int64_t left = (deadline - mono_ns()) / 1000000;
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) break;
        SpawnMsg m;
        ssize_t r = read(pfd[0], &m, sizeof m);
        if (r != (ssize_t)sizeof m) break;
        if (m.tag == 'P') pid = m.value;
        else err = m.value ? m.value : EIO;
    }
    close(pfd[0]);
    if (err) {
        js_log(s, s->u.log_Error, "cannot start the generator daemon: %s: %s", exe, strerror(err));
        return -1;
    }
    js_log(s, s->u.log_Note, "started the generator daemon (%s)", bin);
    return pid > 0 ? pid : 0;
}

/* ---------------------------------------------------------------- the blocks */

static void block_free(Block *b) {
    if (!b) return;
    if (b->base) munmap(b->base, b->size);
    free(b);
}

static bool pow2(long long v) { return v > 0 && (v & (v - 1)) == 0 && v <= (1LL << 30); }

/* Maps the daemon's block from the attach reply; NULL (logged) on a bad reply. */
static Block *block_map(Plugin *s, const char *reply) {
    char shm[256];
    long long size = 0, cap = 0, slots = 0, live = 0, layout = 0;
    if (!json_string(reply, "shm", shm + 1, sizeof shm - 1) || !json_int(reply, "size", &size) ||
        !json_int(reply, "capacity", &cap) || !json_int(reply, "midi_slots", &slots) ||
        !json_int(reply, "live_capacity", &live)) {
        js_log(s, s->u.log_Error, "the generator daemon's attach reply lacks a field: %.200s", reply);
        return NULL;
    }
    if (json_int(reply, "layout", &layout) && layout != 1) {
        js_log(s, s->u.log_Error, "the generator daemon speaks block layout %lld, this plugin layout 1", layout);
        return NULL;
    }
    if (!pow2(cap) || !pow2(slots) || !pow2(live)) {
        js_log(s, s->u.log_Error, "the generator daemon's block sizes are not powers of two: %.200s", reply);
        return NULL;
    }
    size_t need = 448 + 36 * (size_t)slots + 8 * (size_t)cap + 8 * (size_t)live;
    if (size < 0 || (size_t)size < need) {
        js_log(s, s->u.log_Error, "the generator daemon's block is %lld bytes, layout 1 needs %zu", size, need);
        return NULL;
    }
    shm[0] = '/';
    int fd = shm_open(shm, O_RDWR, 0);
    if (fd < 0) {
        js_log(s, s->u.log_Error, "cannot open the shared block %s: %s", shm, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)need) {
        js_log(s, s->u.log_Error, "the shared block %s is smaller than it should be", shm);
        close(fd);
        return NULL;
    }
    void *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        js_log(s, s->u.log_Error, "cannot map the shared block %s: %s", shm, strerror(errno));
        return NULL;
    }
    Block *b = calloc(1, sizeof *b);
    if (!b) {
        munmap(base, (size_t)size);
        return NULL;
    }
    uint8_t *m = base;
    const size_t S = (size_t)slots, C = (size_t)cap;
    b->serial = s->next_serial++;
    b->base = base;
    b->size = (size_t)size;
    b->S = (uint32_t)S;
    b->C = (uint32_t)C;
    b->LC = (uint32_t)live;
    b->ctl = (int64_t *)m;
    b->tp = (double *)(m + 320);
    b->midi_time = (int64_t *)(m + 448);
    b->midi_song = (int64_t *)(m + 448 + 8 * S);
    b->midi_len = (int32_t *)(m + 448 + 16 * S);
    b->midi_data = m + 448 + 20 * S;
    b->audio[0] = (float *)(m + 448 + 36 * S);
    b->audio[1] = b->audio[0] + C;
    return b;
}

/* Hands nb (or NULL: silence) to run(); the old block waits for run's acknowledgement. */
static void publish(Plugin *s, Block *nb) {
    Block *old = s->cur;
    s->cur = nb;
    ST(&s->pub, nb);
    uint64_t g = __atomic_add_fetch(&s->pub_gen, 1, __ATOMIC_RELEASE);
    if (old) {
        old->retire_gen = g;
        old->next = s->retired;
        s->retired = old;
    }
}

/* What the helper does every wake-up, whatever it is waiting for. */
static void housekeeping(Plugin *s) {
    uint64_t ack = LD(&s->ack_gen);
    for (Block **pp = &s->retired; *pp;) {
        Block *b = *pp;
        if (ack >= b->retire_gen) {
            *pp = b->next;
            block_free(b);
        } else {
            pp = &b->next;
        }
    }
    Block *b = s->cur;
    if (b && !b->ready_logged && LD(&b->ctl[CTL_WORKER_READY]) == 1) {
        b->ready_logged = 1;
        js_log(s, s->u.log_Note, "ready: latency %d frames", (int)s->latency);
    }
    if (__atomic_exchange_n(&s->fw_timeout, 0, __ATOMIC_ACQ_REL))
        js_log(s, s->u.log_Error,
               "export: the generator showed no progress for 10 s; not waiting again until it catches up");
}

/* Sleeps up to ms (less on a wake-up), then does the housekeeping. */
static void helper_wait(Plugin *s, int ms) {
    struct pollfd pf = {s->wake_fd, POLLIN, 0};
    if (poll(&pf, 1, ms) > 0) {
        uint64_t v;
        ssize_t r = read(s->wake_fd, &v, sizeof v);
        (void)r;
    }
    housekeeping(s);
}

/* ------------------------------------------------------------------ the loop */

typedef struct Helper {
    Conn conn;
    bool ever_attached;
    bool waiting_logged;
    int64_t last_spawn; /* 0: never */
    pid_t spawned;
    int64_t down_since; /* when the current run of failed connects began; 0: none */
} Helper;

/* Whether the daemon we started still runs (a zombie nobody reaped does not). */
static bool alive(pid_t pid) {
    if (pid <= 0) return false;
    if (kill(pid, 0) != 0) return errno != ESRCH;
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return true;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

static bool may_spawn(Helper *h, int64_t now) {
    if (h->last_spawn && now - h->last_spawn < SPAWN_GAP_NS) return false;
    return !alive(h->spawned); /* one still loading its models gets all the time it needs */
}

/* Connects (starting the daemon if nobody listens); false when it should try again later. */
static bool connect_daemon(Plugin *s, Helper *h) {
    int fd = try_connect(s->socket_path);
    if (fd >= 0) {
        h->conn.fd = fd;
        h->conn.len = 0;
        h->down_since = 0;
        h->waiting_logged = false;
        return true;
    }
    int64_t now = mono_ns();
    if (!h->down_since) h->down_since = now;
    if ((errno == ENOENT || errno == ECONNREFUSED) && may_spawn(h, now)) {
        h->last_spawn = now;
        h->spawned = spawn_daemon(s);
    }
    bool fast = h->last_spawn && now - h->last_spawn < FAST_RETRY_NS;
    if (!fast && !h->waiting_logged) {
        js_log(s, s->u.log_Note, "waiting for the generator daemon at %s", s->socket_path);
        h->waiting_logged = true;
    }
    helper_wait(s, fast ? 250 : 1000);
    return false;
}

typedef enum { ATTACH_OK, ATTACH_RETRY, ATTACH_REFUSED, ATTACH_CHANGED } AttachResult;

/* Sends attach with the config of cfg_seq `seq` and waits for the answer. */
static AttachResult attach(Plugin *s, Helper *h, uint64_t *seq) {
    Config c;
    pthread_mutex_lock(&s->cfg_lock);
    c = s->cfg;
    *seq = LD(&s->cfg_seq);
    pthread_mutex_unlock(&s->cfg_lock);
    char preset[2 * sizeof c.preset], mode[2 * sizeof c.mode], adapter[2 * sizeof c.adapter];
    json_escape(preset, sizeof preset, c.preset);
    json_escape(mode, sizeof mode, c.mode);
    json_escape(adapter, sizeof adapter, c.adapter);
    char msg[LINE_MAX_BYTES];
    int len = snprintf(msg, sizeof msg,
                       "{\"op\":\"attach\",\"preset\":\"%s\",\"mode\":\"%s\",\"seed\":%d,\"adapter\":\"%s\","
                       "\"rate\":%lld,\"block\":%d,\"name\":\"jamstream\"}\n",
                       preset, mode, (int)c.seed, adapter, (long long)(s->rate + 0.5), (int)s->nominal_block);
    if (len <= 0 || len >= (int)sizeof msg || send(h->conn.fd, msg, (size_t)len, MSG_NOSIGNAL) != len) {
        js_log(s, s->u.log_Error, "cannot send attach to the generator daemon: %s", strerror(errno));
        return ATTACH_RETRY;
    }
    char line[LINE_MAX_BYTES];
    for (;;) { /* the daemon may load models before it answers: no deadline, but quit and config end it */
        while (conn_line(&h->conn, line, sizeof line)) {
            if (log_line(s, line)) continue;
            const char *ok = json_value(line, "ok");
            if (!ok) continue;
            if (!strncmp(ok, "true", 4)) {
                Block *b = block_map(s, line);
                if (!b) return ATTACH_REFUSED;
                publish(s, b);
                if (h->ever_attached) js_log(s, s->u.log_Note, "reattached (preset %s)", c.preset);
                else js_log(s, s->u.log_Note, "attached (preset %s, mode %s)", c.preset, c.mode);
                h->ever_attached = true;
                return ATTACH_OK;
            }
            char err[1024] = "no reason given";
            json_string(line, "error", err, sizeof err);
            js_log(s, s->u.log_Error, "%s", err);
            return ATTACH_REFUSED;
        }
        if (quitting(s)) return ATTACH_RETRY;
        if (LD(&s->cfg_seq) != *seq) return ATTACH_CHANGED;
        struct pollfd pf[2] = {{h->conn.fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
        poll(pf, 2, 100);
        if (pf[1].revents) helper_wait(s, 0);
        else housekeeping(s);
        if (pf[0].revents && conn_read(&h->conn) < 0) {
            js_log(s, s->u.log_Error, "the generator daemon closed the connection before answering");
            return ATTACH_RETRY;
        }
    }
}

/* Attached: relay log lines until EOF, a config change or quit. */
static void attached(Plugin *s, Helper *h, uint64_t seq) {
    char line[LINE_MAX_BYTES];
    while (conn_line(&h->conn, line, sizeof line)) log_line(s, line); /* sent with the reply */
    while (!quitting(s)) {
        if (LD(&s->cfg_seq) != seq) {
            publish(s, NULL); /* the new config's music comes from a new attachment */
            return;
        }
        struct pollfd pf[2] = {{h->conn.fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
        poll(pf, 2, 100);
        if (pf[1].revents) helper_wait(s, 0);
        else housekeeping(s);
        if (pf[0].revents) {
            int r = conn_read(&h->conn);
            while (conn_line(&h->conn, line, sizeof line)) log_line(s, line);
            if (r < 0) {
                js_log(s, s->u.log_Error, "generator daemon went away; silent until it returns");
                return; /* the mapping stays: run() fades out as an underrun */
            }
        }
    }
}

static void *helper_main(void *arg) {
    Plugin *s = arg;
    Helper h = {.conn = {.fd = -1}};
    int64_t start = mono_ns();
    while (!quitting(s) && !LD(&s->activated) && mono_ns() - start < START_DELAY_NS) helper_wait(s, 50);

    while (!quitting(s)) {
        if (!connect_daemon(s, &h)) continue;
        uint64_t seq = 0;
        AttachResult r = attach(s, &h, &seq);
        if (r == ATTACH_OK) attached(s, &h, seq);
        conn_close(&h.conn); /* closing detaches: the daemon frees the instance */
        if (r == ATTACH_RETRY) helper_wait(s, 1000);
        if (r == ATTACH_REFUSED) { /* retry when the config changes, or every 10 s */
            if (s->cur) publish(s, NULL);
            int64_t until = mono_ns() + REFUSED_RETRY_NS;
            while (!quitting(s) && LD(&s->cfg_seq) == seq && mono_ns() < until) helper_wait(s, 100);
        }
    }
    conn_close(&h.conn);
    return NULL;
}

int js_helper_start(Plugin *s) {
    socket_path(s);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the host's signals go to the host's threads */
    int e = pthread_create(&s->thread, NULL, helper_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        close(s->wake_fd);
        s->wake_fd = -1;
        errno = e;
        return -1;
    }
    s->thread_started = true;
    return 0;
}

void js_helper_stop(Plugin *s) {
    ST(&s->quit, 1);
    js_wake(s);
    if (s->thread_started) pthread_join(s->thread, NULL);
    s->thread_started = false;
    /* run() is not running any more (cleanup): every block can go */
    block_free(s->cur);
    s->cur = NULL;
    for (Block *b = s->retired, *next; b; b = next) {
        next = b->next;
        block_free(b);
    }
    s->retired = NULL;
    if (s->wake_fd >= 0) close(s->wake_fd);
    s->wake_fd = -1;
}
