/* jamstream LV2 instrument: the descriptor, run() (the audio thread) and state.
 *
 * run() plays the daemon's time-addressed ring at the audio playhead
 * p = host song frame - latency, and posts the host's transport, MIDI and macro
 * knobs into the same block, like the JACK callback of bridge/live does.  It
 * allocates nothing, takes no lock and makes no syscall, except in freewheel
 * (export) where it waits for the generator to cover the cycle.
 */
#include "jamstream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lv2/atom/util.h>
#include <lv2/buf-size/buf-size.h>
#include <lv2/midi/midi.h>
#include <lv2/options/options.h>
#include <lv2/state/state.h>
#include <lv2/time/time.h>

#define FADE 240.0
#define FREEWHEEL_WAIT_NS 10000000000LL /* the longest an export waits for a generator showing no life */
#define FREEWHEEL_LOAD_WAIT_NS 120000000000LL /* ... while the worker still loads its models */
#define TICKS_PER_BEAT 1920.0
/* Ardour's own extensions (midnam#update, bankpatch#notify): how the plugin knows its host */
#define ARDOUR_FEATURE_PREFIX "http://ardour.org/lv2/"

enum { P_CONTROL = 0, P_OUT_L = 1, P_OUT_R = 2, P_LATENCY = 3, P_FREEWHEEL = 4, P_MACRO1 = 5 };


static void ctl_add(Block *b, int slot, int64_t d) { ST(&b->ctl[slot], b->ctl[slot] + d); }

/* -------------------------------------------------------------- instantiate */

static void env_default(char *dst, size_t cap, const char *env, const char *fallback) {
    const char *v = getenv(env);
    snprintf(dst, cap, "%s", (v && *v) ? v : fallback);
}

static int32_t int_option(const Plugin *s, const LV2_Options_Option *o) {
    if (o->type == s->u.atom_Int && o->size >= sizeof(int32_t)) return *(const int32_t *)o->value;
    if (o->type == s->u.atom_Long && o->size >= sizeof(int64_t)) return (int32_t) * (const int64_t *)o->value;
    return 0;
}

static void map_urids(Plugin *s) {
    LV2_URID_Map *m = s->map;
    Urids *u = &s->u;
#define M(uri) m->map(m->handle, uri)
    u->atom_Object = M(LV2_ATOM__Object);
    u->atom_Blank = M(LV2_ATOM__Blank);
    u->atom_String = M(LV2_ATOM__String);
    u->atom_Int = M(LV2_ATOM__Int);
    u->atom_Long = M(LV2_ATOM__Long);
    u->atom_Float = M(LV2_ATOM__Float);
    u->atom_Double = M(LV2_ATOM__Double);
    u->atom_Bool = M(LV2_ATOM__Bool);
    u->midi_Event = M(LV2_MIDI__MidiEvent);
    u->time_Position = M(LV2_TIME__Position);
    u->time_frame = M(LV2_TIME__frame);
    u->time_speed = M(LV2_TIME__speed);
    u->time_bar = M(LV2_TIME__bar);
    u->time_barBeat = M(LV2_TIME__barBeat);
    u->time_beatsPerMinute = M(LV2_TIME__beatsPerMinute);
    u->time_beatsPerBar = M(LV2_TIME__beatsPerBar);
    u->time_beatUnit = M(LV2_TIME__beatUnit);
    u->log_Note = M(LV2_LOG__Note);
    u->log_Error = M(LV2_LOG__Error);
    u->log_Warning = M(LV2_LOG__Warning);
    u->bufsz_nominal = M(LV2_BUF_SIZE__nominalBlockLength);
    u->bufsz_max = M(LV2_BUF_SIZE__maxBlockLength);
    u->js_preset = M(JS_PRESET_URI);
    u->js_mode = M(JS_MODE_URI);
    u->js_seed = M(JS_SEED_URI);
    u->js_adapter = M(JS_ADAPTER_URI);
#undef M
}

static void default_config(Config *c) {
    env_default(c->preset, sizeof c->preset, "JAMSTREAM_PRESET", "techno-dub");
    env_default(c->mode, sizeof c->mode, "JAMSTREAM_MODE", "model");
    c->adapter[0] = '\0';
    const char *seed = getenv("JAMSTREAM_SEED");
    c->seed = (seed && *seed) ? (int32_t)strtol(seed, NULL, 10) : 0;
}

/* JAMSTREAM_LATENCY_MS (else DEFAULT_LATENCY_MS, within 0..MAX_LATENCY_MS) in frames. */
static int32_t latency_frames(double rate) {
    const char *v = getenv("JAMSTREAM_LATENCY_MS");
    long ms = (v && *v) ? strtol(v, NULL, 10) : DEFAULT_LATENCY_MS;
    ms = ms < 0 ? 0 : ms > MAX_LATENCY_MS ? MAX_LATENCY_MS : ms;
    return (int32_t)llround(ms * rate / 1000.0);
}

static LV2_Handle instantiate(const LV2_Descriptor *d, double rate, const char *bundle,
                              const LV2_Feature *const *features) {
    (void)d;
    Plugin *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    const LV2_Options_Option *opts = NULL;
    for (int i = 0; features && features[i]; i++) {
        if (!strcmp(features[i]->URI, LV2_URID__map)) s->map = features[i]->data;
        else if (!strcmp(features[i]->URI, LV2_LOG__log)) s->log = features[i]->data;
        else if (!strcmp(features[i]->URI, LV2_OPTIONS__options)) opts = features[i]->data;
        else if (!strcmp(features[i]->URI, LV2_WORKER__schedule)) s->schedule = features[i]->data;
        /* only Ardour (and Mixbus, its sibling) passes features in its own namespace */
        if (!strncmp(features[i]->URI, ARDOUR_FEATURE_PREFIX, strlen(ARDOUR_FEATURE_PREFIX))) s->host_log_unsafe = true;
    }
    if (!s->map) {
        fprintf(stderr, "jamstream: the host has no urid:map; cannot run\n");
        free(s);
        return NULL;
    }
    map_urids(s);
    s->rate = rate;
    snprintf(s->bundle, sizeof s->bundle, "%s", bundle ? bundle : "");

    int32_t nominal = 0, max = 0;
    for (const LV2_Options_Option *o = opts; o && o->key; o++) {
        if (o->key == s->u.bufsz_nominal) nominal = int_option(s, o);
        else if (o->key == s->u.bufsz_max) max = int_option(s, o);
    }
    s->nominal_block = nominal > 0 ? nominal : max > 0 ? max : 256;

    default_config(&s->cfg);
    s->latency = latency_frames(rate);
    s->bpb = 4.0;
    s->beat_unit = 4.0;
    s->next_serial = 1;
    s->wake_fd = -1;
    pthread_mutex_init(&s->cfg_lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    if (js_helper_start(s) != 0) {
        js_log(s, s->u.log_Error, "cannot start the helper thread: %s", strerror(errno));
        pthread_mutex_destroy(&s->cfg_lock);
        pthread_mutex_destroy(&s->log_lock);
        free(s);
        return NULL;
    }
    return s;
}

static void connect_port(LV2_Handle h, uint32_t port, void *data) {
    Plugin *s = h;
    switch (port) {
    case P_CONTROL: s->control = data; break;
    case P_OUT_L: s->out[0] = data; break;
    case P_OUT_R: s->out[1] = data; break;
    case P_LATENCY: s->latency_port = data; break;
    case P_FREEWHEEL: s->freewheel_port = data; break;
    default:
        if (port >= P_MACRO1 && port < P_MACRO1 + N_MACROS) s->macro_port[port - P_MACRO1] = data;
    }
}

static void activate(LV2_Handle h) {
    Plugin *s = h;
    ST(&s->activated, 1);
    js_wake(s);
}

static void cleanup(LV2_Handle h) {
    Plugin *s = h;
    js_helper_stop(s); /* joins the thread, unmaps every block */
    pthread_mutex_destroy(&s->cfg_lock);
    pthread_mutex_destroy(&s->log_lock);
    free(s);
}

/* --------------------------------------------------------------------- run */

static bool atom_number(const Plugin *s, const LV2_Atom *a, double *v) {
    if (!a) return false;
    const void *body = a + 1;
    if (a->type == s->u.atom_Long && a->size >= 8) *v = (double)*(const int64_t *)body;
    else if (a->type == s->u.atom_Int && a->size >= 4) *v = *(const int32_t *)body;
    else if (a->type == s->u.atom_Float && a->size >= 4) *v = *(const float *)body;
    else if (a->type == s->u.atom_Double && a->size >= 8) *v = *(const double *)body;
    else if (a->type == s->u.atom_Bool && a->size >= 4) *v = *(const int32_t *)body;
    else return false;
    return true;
}

/* A time:Position at cycle offset `off`: the new anchor, and the frame at sample 0. */
static void position(Plugin *s, const LV2_Atom_Object *obj, int64_t off) {
    const LV2_Atom *frame = NULL, *speed = NULL, *bar = NULL, *bar_beat = NULL, *bpm = NULL, *bpb = NULL,
                   *unit = NULL;
    lv2_atom_object_get(obj, s->u.time_frame, &frame, s->u.time_speed, &speed, s->u.time_bar, &bar,
                        s->u.time_barBeat, &bar_beat, s->u.time_beatsPerMinute, &bpm, s->u.time_beatsPerBar, &bpb,
                        s->u.time_beatUnit, &unit, 0);
    double v;
    int64_t f = s->rolling ? s->base + off : s->base; /* where the old state put this offset */
    if (atom_number(s, frame, &v)) f = (int64_t)llround(v);
    if (atom_number(s, speed, &v)) s->rolling = v != 0.0;
    s->base = s->rolling ? f - off : f;
    s->anchor_frame = f;
    if (atom_number(s, bpm, &v) && v > 0) s->bpm = v;
    if (atom_number(s, bpb, &v) && v > 0) s->bpb = v;
    if (atom_number(s, unit, &v) && v > 0) s->beat_unit = v;
    if (atom_number(s, bar, &v)) s->bar = v;
    if (atom_number(s, bar_beat, &v)) {
        s->bar_beat = v;
        s->bbt_valid = s->bpm > 0;
    } else {
        s->bbt_valid = false; /* an anchor without BBT: the old BBT does not describe its frame */
    }
}

static void post_midi(Block *b, int64_t time, int64_t song, const uint8_t *data, uint32_t size) {
    int64_t w = b->ctl[CTL_MIDI_W];
    int64_t r = LD(&b->ctl[CTL_MIDI_R]);
    if (w - r >= (int64_t)b->S) {
        ctl_add(b, CTL_MIDI_OVERFLOW, 1);
        return;
    }
    uint32_t j = (uint32_t)w & (b->S - 1);
    b->midi_time[j] = time;
    b->midi_song[j] = song;
    b->midi_len[j] = (int32_t)size;
    memcpy(b->midi_data + (size_t)j * MIDI_BYTES, data, size < MIDI_BYTES ? size : MIDI_BYTES);
    ST(&b->ctl[CTL_MIDI_W], w + 1);
}

static void post_macros(Plugin *s, Block *b, int64_t song) {
    for (int k = 0; k < N_MACROS; k++) {
        float x = s->macro_port[k] ? *s->macro_port[k] : 0.0f;
        x = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; /* NaN ends up 0: the comparisons are false */
        if (!(x >= 0.0f)) x = 0.0f;
        int32_t v = (int32_t)(x * 16383.0f + 0.5f);
        if (s->macro_primed && v != s->macro_last[k]) {
            const uint8_t msg[4] = {0xF4, (uint8_t)k, (uint8_t)(v >> 7), (uint8_t)(v & 127)};
            post_midi(b, s->counter, song, msg, sizeof msg);
        }
        s->macro_last[k] = v;
    }
    s->macro_primed = true;
}

static void post_transport(Plugin *s, Block *b) {
    double *tp = b->tp;
    int64_t seq = b->ctl[CTL_TP_SEQ];
    __atomic_store_n(&b->ctl[CTL_TP_SEQ], seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    tp[TP_STATE] = s->rolling ? 1.0 : 0.0;
    tp[TP_FRAME] = (double)s->anchor_frame;
    tp[TP_JACK_TIME] = (double)s->counter;
    tp[TP_RATE] = s->rate;
    if (s->bbt_valid) {
        double beat = floor(s->bar_beat);
        tp[TP_BBT] = 1.0;
        tp[TP_BAR] = s->bar + 1.0;
        tp[TP_BEAT] = beat + 1.0;
        tp[TP_TICK] = (s->bar_beat - beat) * TICKS_PER_BEAT;
        tp[TP_TPB] = TICKS_PER_BEAT;
        tp[TP_BPB] = s->bpb;
        tp[TP_BEAT_TYPE] = s->beat_unit;
        tp[TP_BPM] = s->bpm;
    } else {
        tp[TP_BBT] = 0.0;
    }
    ST(&b->ctl[CTL_TP_SEQ], seq + 2);
}

/* Freewheel: wait until the ring covers [p, p+n) and FADE frames more; returns the ns waited.  The
 * margin matters: the gain curve fades towards VALID_END (ahead of an underrun), so a generator that
 * is only just ahead would put dips into an export.  A slow generator is waited for as long as it
 * shows signs of life (its readiness, the stream it began, its ring's end moving); 10 s without any
 * (120 s while it still loads its models), or 120 s in all, gives up: a dead daemon cannot hang it.
 * Counting from the cycle's first wait instead cut an export short whose daemon loaded its models
 * cold (8.4 s) and then took 4 s for its first piece: silence (measured, a fresh machine). */
static int64_t freewheel_wait(Plugin *s, Block *b, int64_t p, uint32_t n) {
    const int64_t t0 = mono_ns();
    int64_t alive_at = t0, seen_ve = 0, seen_ready = 0, seen_fw = 0;
    for (;;) {
        /* The worker has handled the latest start/locate as an export (FREEWHEEL_READY names
         * its TARGET_SEQ: a stream begun there with the export's pacing and seed), and the
         * ring holds this cycle and the fade after it. Before the stream's first frame the
         * cycle is silence - the same silence in every export. */
        const int64_t ve = LD(&b->ctl[CTL_VALID_END]);
        const int64_t ready = LD(&b->ctl[CTL_WORKER_READY]);
        const int64_t fw_ready = LD(&b->ctl[CTL_FREEWHEEL_READY]);
        const bool handled = fw_ready == b->ctl[CTL_TARGET_SEQ];
        if (handled && p + (int64_t)n + (int64_t)FADE <= ve) {
            s->fw_gave_up = false;
            return mono_ns() - t0;
        }
        if (s->fw_gave_up) return mono_ns() - t0; /* given up on this stream: play what there is */
        const int64_t now = mono_ns();
        if (ve != seen_ve || ready != seen_ready || fw_ready != seen_fw) { /* alive_at starts at t0 */
            seen_ve = ve, seen_ready = ready, seen_fw = fw_ready;
            alive_at = now;
        }
        const int64_t limit = ready ? FREEWHEEL_WAIT_NS : FREEWHEEL_LOAD_WAIT_NS;
        if (now - alive_at >= limit || now - t0 >= FREEWHEEL_LOAD_WAIT_NS) { /* no cycle waits longer */
            ctl_add(b, CTL_FREEWHEEL_TIMEOUTS, 1);
            s->fw_gave_up = true;
            ST(&s->fw_timeout, 1);
            return now - t0;
        }
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

static void play(Plugin *s, Block *b, int64_t p, uint32_t n) {
    float *l = s->out[0], *r = s->out[1];
    int64_t vs = LD(&b->ctl[CTL_VALID_START]), ve = LD(&b->ctl[CTL_VALID_END]);
    bool rolling = s->rolling;
    if (!rolling && s->level <= 0.0f) {
        memset(l, 0, n * sizeof *l);
        memset(r, 0, n * sizeof *r);
        return;
    }
    const float *a0 = b->audio[0], *a1 = b->audio[1];
    const int64_t mask = (int64_t)b->C - 1;
    const double lv = s->level, room = (double)(ve - p) / FADE;
    const bool short_end = p + (int64_t)n > ve;
    double g = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (rolling) {
            g = fmin(lv + (i + 1) / FADE, room - i / FADE);
        } else {
            g = lv - (i + 1) / FADE;
            if (short_end) g = fmin(g, room - i / FADE);
        }
        if (p + (int64_t)i < vs) g = 0.0;
        g = g < 0.0 ? 0.0 : g > 1.0 ? 1.0 : g;
        int64_t j = (p + (int64_t)i) & mask;
        l[i] = a0[j] * (float)g;
        r[i] = a1[j] * (float)g;
    }
    if (n) s->level = (float)g;
    if (rolling) {
        if (p < vs || p + (int64_t)n > ve) {
            ctl_add(b, CTL_STARVED_PERIODS, 1);
            if (s->played && !s->starving) ctl_add(b, CTL_UNDERRUNS, 1);
            s->starving = true;
        } else {
            s->starving = false;
            s->played = true;
        }
    }
}

/* Freewheel while rolling with no block (an export that began before the daemon attached): wait
 * for one, at most 10 s, and only once until one comes.  Returns the ns waited. */
static int64_t freewheel_wait_attach(Plugin *s) {
    const int64_t t0 = mono_ns();
    while (!LD(&s->pub)) {
        if (mono_ns() - t0 >= FREEWHEEL_WAIT_NS) {
            s->fw_gave_up_attach = true;
            ST(&s->fw_timeout, 1);
            break;
        }
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return mono_ns() - t0;
}

static void run(LV2_Handle h, uint32_t n) {
    Plugin *s = h;
    const int64_t t0 = mono_ns();
    const bool fw = s->freewheel_port && *s->freewheel_port > 0.5f;
    int64_t waited = 0;
    const uint32_t lines = __atomic_load_n(&s->log_w, __ATOMIC_ACQUIRE);
    if (s->schedule && lines != s->log_scheduled) { /* log lines queued: the host's worker prints them */
        s->log_scheduled = lines;
        s->schedule->schedule_work(s->schedule->handle, sizeof lines, &lines);
    }
    if (fw && s->rolling && !s->fw_gave_up_attach && !LD(&s->pub)) waited = freewheel_wait_attach(s);
    const uint64_t gen = LD(&s->pub_gen);
    Block *b = LD(&s->pub);
    ST(&s->ack_gen, gen);
    if (b) s->fw_gave_up_attach = false;

    const uint64_t serial = b ? b->serial : 0;
    const bool fresh = serial != s->run_serial && b;
    if (serial != s->run_serial) { /* a new attachment (or none): its ring starts from nothing */
        s->run_serial = serial;
        s->level = 0.0f;
        s->played = s->starving = false;
        s->macro_primed = false;
        s->fw_gave_up = false;
    }

    /* 1. the host's events: positions first in time order, MIDI stamped as of then */
    if (s->control) {
        LV2_ATOM_SEQUENCE_FOREACH(s->control, ev) {
            int64_t off = ev->time.frames;
            off = off < 0 ? 0 : off > (int64_t)n ? (int64_t)n : off;
            if (ev->body.type == s->u.atom_Object || ev->body.type == s->u.atom_Blank) {
                const LV2_Atom_Object *obj = (const LV2_Atom_Object *)&ev->body;
                if (obj->body.otype == s->u.time_Position) position(s, obj, off);
            } else if (ev->body.type == s->u.midi_Event && b) {
                post_midi(b, s->counter + off, s->rolling ? s->base + off : s->base,
                          (const uint8_t *)LV2_ATOM_BODY_CONST(&ev->body), ev->body.size);
            }
        }
    }

    /* 2.-3. the host frame at sample 0, the latency, the playhead */
    const int64_t f = s->base;
    const int32_t lat = s->latency;
    if (s->latency_port) *s->latency_port = (float)lat;
    /* Live, the ring plays `lat` behind the host (a compensating host hears it on its frames
     * and sends automation that early). An export needs no lookahead - the plugin waits for
     * the generator - and Ardour 7.3's export does not compensate an instrument's latency
     * (measured: every beat `lat` late), so in freewheel the ring plays at the host's frame. */
    const int64_t shift = fw ? 0 : lat;
    const int64_t p = f - shift;

    if (!b) {
        if (s->out[0]) memset(s->out[0], 0, n * sizeof(float));
        if (s->out[1]) memset(s->out[1], 0, n * sizeof(float));
        s->have_prev = false;
    } else {
        /* 4. where the playhead is, and its jumps */
        ctl_add(b, CTL_PERIODS, 1);
        ST(&b->ctl[CTL_RATE], (int64_t)llround(s->rate));
        ST(&b->ctl[CTL_PERIOD], (int64_t)n);
        ST(&b->ctl[CTL_FREEWHEEL], fw ? 1 : 0);
        ST(&b->ctl[CTL_HOST_LATENCY], shift);
        /* exporting, the playhead the worker paces by is the end of what this cycle needs: its
         * pieces are due exactly when the plugin would wait for them (no lookahead) */
        ST(&b->ctl[CTL_PLAY_FRAME], fw && s->rolling ? p + (int64_t)n + (int64_t)FADE : p);
        ST(&b->ctl[CTL_ROLLING], s->rolling ? 1 : 0);
        bool target = fresh;
        if (!fresh && s->have_prev && p != s->p_exp) {
            ctl_add(b, CTL_LOCATES, 1);
            s->played = false;
            target = true;
        }
        if (s->rolling && !s->prev_rolling) {
            ctl_add(b, CTL_STARTS, 1);
            s->played = false;
        }
        if (target) {
            ST(&b->ctl[CTL_TARGET_FRAME], p);
            ctl_add(b, CTL_TARGET_SEQ, 1);
        }
        post_macros(s, b, f);
        /* 5. the transport, under the seqlock */
        post_transport(s, b);
        /* 7. export: wait for the generator */
        if (fw && s->rolling) waited += freewheel_wait(s, b, p, n);
        /* 6. the ring out */
        if (s->out[0] && s->out[1]) play(s, b, p, n);
        s->have_prev = true;
        s->p_exp = s->rolling ? p + n : p;

        /* 8. how long this took (the freewheel wait is not the plugin's cost) */
        int64_t us = (mono_ns() - t0 - waited) / 1000;
        if (us > b->ctl[CTL_CB_MAX_US]) ST(&b->ctl[CTL_CB_MAX_US], us);
        if ((double)us * 2.0 * s->rate > (double)n * 1e6) ctl_add(b, CTL_CB_SLOW, 1);
    }

    s->prev_rolling = s->rolling;
    s->counter += n;
    if (s->rolling) s->base += n;
}

/* ------------------------------------------------------------------- state */

static LV2_State_Status save(LV2_Handle h, LV2_State_Store_Function store, LV2_State_Handle sh, uint32_t flags,
                             const LV2_Feature *const *features) {
    (void)flags;
    (void)features;
    Plugin *s = h;
    Config c = js_config(s);
    const uint32_t fl = LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE;
    LV2_State_Status st = store(sh, s->u.js_preset, c.preset, strlen(c.preset) + 1, s->u.atom_String, fl);
    if (st == LV2_STATE_SUCCESS) st = store(sh, s->u.js_mode, c.mode, strlen(c.mode) + 1, s->u.atom_String, fl);
    if (st == LV2_STATE_SUCCESS) st = store(sh, s->u.js_seed, &c.seed, sizeof c.seed, s->u.atom_Int, fl);
    if (st == LV2_STATE_SUCCESS)
        st = store(sh, s->u.js_adapter, c.adapter, strlen(c.adapter) + 1, s->u.atom_String, fl);

    return st;
}

static bool restore_string(const Plugin *s, LV2_State_Retrieve_Function retrieve, LV2_State_Handle sh, LV2_URID key,
                           char *dst, size_t cap) {
    size_t size = 0;
    uint32_t type = 0, flags = 0;
    const char *v = retrieve(sh, key, &size, &type, &flags);
    if (!v || type != s->u.atom_String) return false;
    size_t len = strnlen(v, size);
    if (len >= cap) len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
    return true;
}

static LV2_State_Status restore(LV2_Handle h, LV2_State_Retrieve_Function retrieve, LV2_State_Handle sh,
                                uint32_t flags, const LV2_Feature *const *features) {
    (void)flags;
    (void)features;
    Plugin *s = h;
    Config c = js_config(s);
    restore_string(s, retrieve, sh, s->u.js_preset, c.preset, sizeof c.preset);
    restore_string(s, retrieve, sh, s->u.js_mode, c.mode, sizeof c.mode);
    restore_string(s, retrieve, sh, s->u.js_adapter, c.adapter, sizeof c.adapter);
    size_t size = 0;
    uint32_t type = 0, fl = 0;
    const void *v = retrieve(sh, s->u.js_seed, &size, &type, &fl);
    if (v && type == s->u.atom_Int && size >= sizeof(int32_t)) c.seed = *(const int32_t *)v;
    else if (v && type == s->u.atom_Long && size >= sizeof(int64_t)) c.seed = (int32_t) * (const int64_t *)v;

    pthread_mutex_lock(&s->cfg_lock);
    bool changed = strcmp(c.preset, s->cfg.preset) || strcmp(c.mode, s->cfg.mode) ||
                   strcmp(c.adapter, s->cfg.adapter) || c.seed != s->cfg.seed;
    s->cfg = c;
    pthread_mutex_unlock(&s->cfg_lock);
    if (changed) {
        __atomic_add_fetch(&s->cfg_seq, 1, __ATOMIC_RELEASE);
        js_wake(s); /* the helper re-attaches with the new config */
    }
    return LV2_STATE_SUCCESS;
}

/* The host's worker thread: print the log lines the helper queued. */
static LV2_Worker_Status work(LV2_Handle h, LV2_Worker_Respond_Function respond, LV2_Worker_Respond_Handle rh,
                              uint32_t size, const void *data) {
    (void)respond;
    (void)rh;
    (void)size;
    (void)data;
    js_log_flush(h);
    return LV2_WORKER_SUCCESS;
}

static LV2_Worker_Status work_response(LV2_Handle h, uint32_t size, const void *body) {
    (void)h;
    (void)size;
    (void)body;
    return LV2_WORKER_SUCCESS;
}

static const void *extension_data(const char *uri) {
    static const LV2_State_Interface state = {save, restore};
    static const LV2_Worker_Interface worker = {work, work_response, NULL};
    if (!strcmp(uri, LV2_STATE__interface)) return &state;
    if (!strcmp(uri, LV2_WORKER__interface)) return &worker;
    return NULL;
}

static const LV2_Descriptor descriptor = {
    JS_URI, instantiate, connect_port, activate, run, NULL, cleanup, extension_data,
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index) { return index == 0 ? &descriptor : NULL; }
