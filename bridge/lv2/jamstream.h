/* jamstream LV2 instrument: what the audio side (jamstream.c) and the helper
 * thread (helper.c) share.
 *
 * The music comes from the `jamstream serve` daemon through one shared-memory
 * block per attachment (layout 1, the same as bridge/live/ring.py).  The helper
 * thread owns the socket and the mappings; run() only reads the published Block.
 */
#ifndef JAMSTREAM_LV2_H
#define JAMSTREAM_LV2_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lv2/atom/atom.h>
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#define JS_URI "urn:jamstream:lv2:instrument"
#define JS_PRESET_URI "urn:jamstream:lv2:preset"
#define JS_MODE_URI "urn:jamstream:lv2:mode"
#define JS_SEED_URI "urn:jamstream:lv2:seed"
#define JS_ADAPTER_URI "urn:jamstream:lv2:adapter"
/* The latency the plugin reports and (live) plays the ring behind the host by, unless
 * JAMSTREAM_LATENCY_MS says otherwise. Fixed from instantiate and not part of the state: a
 * host reads it before the daemon has measured anything, and Ardour 7.3 exported silence
 * from a session whose restored state changed it after instantiate (measured). */
#define DEFAULT_LATENCY_MS 300
#define MAX_LATENCY_MS 5000

/* ctl slots (int64), as in bridge/live/ring.py.  Plugin (run) writes: */
enum {
    CTL_PERIODS = 0,
    CTL_PLAY_FRAME = 1,
    CTL_ROLLING = 2,
    CTL_TARGET_FRAME = 3,
    CTL_TARGET_SEQ = 4,
    CTL_STARTS = 5,
    CTL_UNDERRUNS = 6,
    CTL_STARVED_PERIODS = 7,
    CTL_MIDI_W = 9,
    CTL_MIDI_OVERFLOW = 10,
    CTL_TP_SEQ = 11,
    CTL_RATE = 14,
    CTL_PERIOD = 15,
    CTL_LOCATES = 16,
    CTL_CB_MAX_US = 17,
    CTL_CB_SLOW = 18,
    CTL_FREEWHEEL = 29,
    CTL_HOST_LATENCY = 35, /* the latency L run() plays behind the host (every cycle) */
    CTL_FREEWHEEL_TIMEOUTS = 36,
    CTL_FREEWHEEL_READY = 37, /* the worker writes: the TARGET_SEQ it has begun an export stream for */
    /* the daemon's worker writes: */
    CTL_VALID_START = 20,
    CTL_VALID_END = 21,
    CTL_MODE = 22,
    CTL_WORKER_READY = 25,
    CTL_MIDI_R = 26,
    CTL_STREAM = 27,
    CTL_LOOKAHEAD_FRAMES = 28,
    CTL_QUIT = 30,
    N_CTL = 40,
};

/* tp slots (double) */
enum {
    TP_STATE = 0,
    TP_FRAME,
    TP_JACK_TIME,
    TP_BBT,
    TP_BAR,
    TP_BEAT,
    TP_TICK,
    TP_TPB,
    TP_BPB,
    TP_BEAT_TYPE,
    TP_BPM,
    TP_RATE,
    N_TP = 16,
};

#define MIDI_BYTES 16
#define N_MACROS 8
#define LOG_SLOTS 32   /* log lines waiting for the host's worker thread */
#define LOG_BYTES 480

/* A log line for the host. Lines queue here and the host's own worker thread prints them
 * (run() schedules it), so a host whose log is not safe to call from a thread it does not
 * know still gets them on its own. Not in Ardour: its LV2 log writes one global stream
 * (PBD's error/info), from whatever thread calls it, and while exporting its worker runs
 * in the process thread - lines printed there corrupted its heap (measured, 7.3: exports
 * aborted in free() in ~PortExportChannel, 1 in 9; from our own thread 2 in 6; 1 in ~100
 * without). There the lines go to stderr, which is Ardour's terminal: see `host_log_unsafe`. */
typedef struct LogLine {
    LV2_URID level;
    char text[LOG_BYTES];
} LogLine;

/* One attachment's mapped block.  Created and freed by the helper thread only;
 * run() reads it between the helper's publish and run's acknowledgement. */
typedef struct Block {
    uint64_t serial; /* unique per attachment, never 0 */
    void *base;
    size_t size;
    int64_t *ctl;
    double *tp;
    int64_t *midi_time;
    int64_t *midi_song;
    int32_t *midi_len;
    uint8_t *midi_data;
    float *audio[2];
    uint32_t S, C, LC;
    int ready_logged;    /* helper only: the "ready" line was logged for this attachment */
    uint64_t retire_gen; /* helper only: free once run acknowledged this generation */
    struct Block *next;  /* helper only: the retired list */
} Block;

typedef struct Config {
    char preset[256];
    char mode[32];
    char adapter[1024];
    int32_t seed;
} Config;

typedef struct Urids {
    LV2_URID atom_Object, atom_Blank, atom_String, atom_Int, atom_Long, atom_Float, atom_Double, atom_Bool;
    LV2_URID midi_Event;
    LV2_URID time_Position, time_frame, time_speed, time_bar, time_barBeat, time_beatsPerMinute, time_beatsPerBar,
        time_beatUnit;
    LV2_URID log_Note, log_Error, log_Warning;
    LV2_URID bufsz_nominal, bufsz_max;
    LV2_URID js_preset, js_mode, js_seed, js_adapter;
} Urids;

typedef struct Plugin {
    /* ports */
    const LV2_Atom_Sequence *control;
    float *out[2];
    float *latency_port;
    const float *freewheel_port;
    const float *macro_port[N_MACROS];

    /* set in instantiate, read-only afterwards */
    LV2_URID_Map *map;
    LV2_Log_Log *log;
    Urids u;
    double rate;
    int32_t nominal_block;
    int32_t latency; /* frames: what run() reports and (live) plays the ring behind the host by */
    char bundle[PATH_MAX];
    char socket_path[108];

    /* between the threads (atomics) */
    Block *pub;        /* the block run() plays, or NULL */
    uint64_t pub_gen;  /* bumped after every change of pub */
    uint64_t ack_gen;  /* the generation run() last read */
    int fw_timeout;    /* run -> helper: log the freewheel timeout */
    int activated;
    int quit;
    uint64_t cfg_seq;  /* bumped on every config change */
    pthread_mutex_t cfg_lock;
    Config cfg;        /* under cfg_lock */
    int wake_fd;       /* eventfd: wakes the helper (quit, config) */
    const LV2_Worker_Schedule *schedule; /* the host's worker, which prints our log lines */
    bool host_log_unsafe;                /* Ardour: log to stderr, never through the host */
    pthread_mutex_t log_lock;            /* producers of log lines (helper, host threads) */
    LogLine log_q[LOG_SLOTS];
    uint32_t log_w, log_r;               /* atomics: written / printed lines */
    uint32_t log_dropped;                /* lines lost to a full queue (host not running us) */
    pthread_t thread;
    bool thread_started;

    /* helper thread only */
    Block *cur;
    Block *retired;
    uint64_t next_serial;

    /* run() only */
    uint64_t run_serial;
    int64_t counter; /* frames processed since instantiate */
    int64_t base;    /* host song frame at sample 0 of the current cycle */
    bool rolling, prev_rolling;
    int64_t anchor_frame;
    bool bbt_valid;
    double bar, bar_beat, bpm, bpb, beat_unit;
    bool have_prev;
    int64_t p_exp;
    float level;
    bool played, starving;
    bool macro_primed;
    int32_t macro_last[N_MACROS];
    bool fw_gave_up;
    bool fw_gave_up_attach;
    uint32_t log_scheduled; /* the log_w run() last asked the worker to print up to */
} Plugin;

#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline int64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* vDSO: no syscall, fine on the audio thread */
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* A consistent copy of the config (the host's threads change it under cfg_lock). */
static inline Config js_config(Plugin *s) {
    pthread_mutex_lock(&s->cfg_lock);
    Config c = s->cfg;
    pthread_mutex_unlock(&s->cfg_lock);
    return c;
}

/* helper.c */
int js_helper_start(Plugin *s);
void js_helper_stop(Plugin *s);
void js_wake(Plugin *s);
void js_log(Plugin *s, LV2_URID level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void js_log_flush(Plugin *s); /* prints the queued lines: the host's worker thread only */

#endif
