#include "daemon/capture.h"

/* Messages quote paths and device names into fixed buffers; truncating them is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <alsa/asoundlib.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <portaudio.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "birdsong/log.h"
#include "daemon/app.h"
#include "daemon/netsource.h"

static const char *const state_names[] = {"starting", "running", "reopening", "ended", "stopped"};

const char *bsd_capture_state_name(bsd_capture_state s) { return state_names[s]; }

struct bsd_capture {
    const bsd_config *cfg;
    bs_ring *ring;
    double preferred_rate;
    int is_file, is_url;
    uint64_t jitter_state;             /* xorshift64 for the backoff's jitter */
    pthread_t thread;
    int thread_started, leaked;
    _Atomic int stop;
    /* written by the callback / file reader */
    _Atomic uint64_t frames;           /* frames delivered by the source */
    _Atomic int64_t last_frames_mono_ns;
    _Atomic uint64_t device_overflows; /* PortAudio reported input overflow */
    /* written by the supervisor under lock */
    pthread_mutex_t lock;
    bsd_capture_state state;
    char device_name[256];
    char last_error[512];
    double rate;
    uint64_t opens, failures;
    double next_attempt_mono;
    /* PortAudio */
    PaStream *stream;
    double cb_rate;
};

static void set_state(bsd_capture *c, bsd_capture_state s, const char *error) {
    pthread_mutex_lock(&c->lock);
    c->state = s;
    if (error) snprintf(c->last_error, sizeof c->last_error, "%s", error);
    pthread_mutex_unlock(&c->lock);
}

/* Sleeps up to `seconds`, waking early on stop. Returns 1 when stopping. */
static int nap(bsd_capture *c, double seconds) {
    double end = bsd_mono_seconds() + seconds;
    while (!atomic_load(&c->stop)) {
        double left = end - bsd_mono_seconds();
        if (left <= 0) return 0;
        if (left > 0.05) left = 0.05;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* ---- PortAudio ------------------------------------------------------------------------- */

static void alsa_quiet(const char *file, int line, const char *function, int err, const char *fmt, ...) {}

static int pa_ready;

/* JACK prints to stderr when PortAudio probes it; libjack comes in with PortAudio, so these
 * resolve at run time when it is present (weak: no link dependency). */
extern void jack_set_error_function(void (*fn)(const char *)) __attribute__((weak));
extern void jack_set_info_function(void (*fn)(const char *)) __attribute__((weak));
static void jack_quiet(const char *msg) {}

int bsd_audio_init(bs_error *err) {
    if (pa_ready) return 0;
    setenv("JACK_NO_START_SERVER", "1", 0);
    snd_lib_error_set_handler(alsa_quiet);
    if (jack_set_error_function) jack_set_error_function(jack_quiet);
    if (jack_set_info_function) jack_set_info_function(jack_quiet);
    PaError e = Pa_Initialize();
    if (e != paNoError) return bs_error_set(err, "PortAudio: cannot initialise: %s", Pa_GetErrorText(e));
    pa_ready = 1;
    return 0;
}

void bsd_audio_shutdown(void) {
    if (pa_ready) Pa_Terminate();
    pa_ready = 0;
}

static int alsa_card_id(int n, char *id, size_t size);

int bsd_list_devices(FILE *out) {
    int n = Pa_GetDeviceCount();
    if (n < 0) {
        fprintf(out, "PortAudio: %s\n", Pa_GetErrorText(n));
        return -1;
    }
    PaDeviceIndex def = Pa_GetDefaultInputDevice();
    int shown = 0;
    fprintf(out, "%-5s %-8s %-8s %-10s %-12s %s\n", "index", "default", "inputs", "rate", "card id", "name (host API)");
    for (int i = 0; i < n; i++) {
        const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
        if (!d || d->maxInputChannels < 1) continue;
        const PaHostApiInfo *api = Pa_GetHostApiInfo(d->hostApi);
        char id[64] = "-";
        int card = bsd_alsa_card_of_name(d->name);
        if (card >= 0 && alsa_card_id(card, id, sizeof id) != 0) snprintf(id, sizeof id, "-");
        fprintf(out, "%-5d %-8s %-8d %-10.0f %-12s %s (%s)\n", i, i == def ? "yes" : "", d->maxInputChannels,
                d->defaultSampleRate, id, d->name, api ? api->name : "?");
        shown++;
    }
    if (shown == 0) fprintf(out, "(no capture devices)\n");
    else
        fprintf(out, "device = takes the index, (part of) the name, or the card id (stable across reboots, unlike\n"
                     "the number in hw:N); the name or id is looked up again at every reopen.\n");
    return shown;
}

/* The callback: copy, count, return. */
static int pa_callback(const void *input, void *output, unsigned long frames,
                       const PaStreamCallbackTimeInfo *ti, PaStreamCallbackFlags flags, void *user) {
    bsd_capture *c = user;
    if (flags & paInputOverflow) atomic_fetch_add_explicit(&c->device_overflows, 1, memory_order_relaxed);
    if (input && frames > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        int64_t t0 = now - (int64_t)((double)frames / c->cb_rate * 1e9);
        bs_ring_write(c->ring, input, frames, t0, c->cb_rate);
        atomic_fetch_add_explicit(&c->frames, frames, memory_order_relaxed);
        atomic_store_explicit(&c->last_frames_mono_ns, bsd_mono_ns(), memory_order_relaxed);
    }
    return atomic_load_explicit(&c->stop, memory_order_relaxed) ? paComplete : paContinue;
}

/* The ALSA card number in a PortAudio ALSA device name ("USB Audio: - (hw:2,0)"), or -1. */
int bsd_alsa_card_of_name(const char *name) {
    const char *p = strstr(name, "(hw:");
    if (!p || !isdigit((unsigned char)p[4])) return -1;
    char *end;
    long card = strtol(p + 4, &end, 10);
    return (*end == ',' || *end == ')') && card < 1000 ? (int)card : -1;
}

/* The ALSA card id ("Device", "PCH": stable across reboots, unlike the number) of card
 * number n into id; 0, or -1 when the card does not exist. */
static int alsa_card_id(int n, char *id, size_t size) {
    char hw[32];
    snprintf(hw, sizeof hw, "hw:%d", n);
    snd_ctl_t *ctl;
    if (snd_ctl_open(&ctl, hw, 0) < 0) return -1;
    snd_ctl_card_info_t *info;
    snd_ctl_card_info_alloca(&info);
    int rc = snd_ctl_card_info(ctl, info);
    if (rc == 0) snprintf(id, size, "%s", snd_ctl_card_info_get_id(info));
    snd_ctl_close(ctl);
    return rc == 0 ? 0 : -1;
}

/* Finds the configured device: "" = default, digits = index, else exact then substring
 * (case-insensitive) match on the name among input devices, else an ALSA card id
 * ("Device", or "CARD=Device") naming the card of an input device. Called at every
 * (re)open, so a card that comes back under another number is found again. */
static PaDeviceIndex find_device(const char *want, char *why, size_t why_size) {
    int n = Pa_GetDeviceCount();
    if (n < 0) {
        snprintf(why, why_size, "PortAudio: %s", Pa_GetErrorText(n));
        return paNoDevice;
    }
    if (want[0] == '\0') {
        PaDeviceIndex d = Pa_GetDefaultInputDevice();
        if (d == paNoDevice) snprintf(why, why_size, "no default capture device");
        return d;
    }
    int digits = 1;
    for (const char *p = want; *p; p++)
        if (!isdigit((unsigned char)*p)) digits = 0;
    if (digits) {
        int i = atoi(want);
        const PaDeviceInfo *d = i < n ? Pa_GetDeviceInfo(i) : NULL;
        if (!d || d->maxInputChannels < 1) {
            snprintf(why, why_size, "device index %d: no such capture device (%d devices; see --list-devices)", i, n);
            return paNoDevice;
        }
        return i;
    }
    PaDeviceIndex partial = paNoDevice;
    for (int i = 0; i < n; i++) {
        const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
        if (!d || d->maxInputChannels < 1) continue;
        if (strcmp(d->name, want) == 0) return i;
        if (partial == paNoDevice && strcasestr(d->name, want)) partial = i;
    }
    const char *card_id = strncasecmp(want, "CARD=", 5) == 0 ? want + 5 : want;
    for (int i = 0; partial == paNoDevice && i < n; i++) {
        const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
        char id[64];
        int card = d && d->maxInputChannels > 0 ? bsd_alsa_card_of_name(d->name) : -1;
        if (card >= 0 && alsa_card_id(card, id, sizeof id) == 0 && strcasecmp(id, card_id) == 0) partial = i;
    }
    if (partial == paNoDevice)
        snprintf(why, why_size, "device '%s': no capture device has this name or ALSA card id (see --list-devices)", want);
    return partial;
}

/* PortAudio's error text, with the host API's own message for host errors. */
static const char *pa_error_text(PaError e, char *buf, size_t size) {
    if (e == paUnanticipatedHostError) {
        const PaHostErrorInfo *hi = Pa_GetLastHostErrorInfo();
        snprintf(buf, size, "%s (host error %ld%s%s)", Pa_GetErrorText(e), hi ? hi->errorCode : 0L,
                 hi && hi->errorText && hi->errorText[0] ? ": " : "", hi && hi->errorText ? hi->errorText : "");
    } else {
        snprintf(buf, size, "%s", Pa_GetErrorText(e));
    }
    return buf;
}

static int open_device(bsd_capture *c, char *why, size_t why_size) {
    char etext[200];
    PaDeviceIndex dev = find_device(c->cfg->device, why, why_size);
    if (dev == paNoDevice) return -1;
    const PaDeviceInfo *info = Pa_GetDeviceInfo(dev);
    PaStreamParameters in = {.device = dev, .channelCount = 1, .sampleFormat = paFloat32,
                             .suggestedLatency = info->defaultHighInputLatency,
                             .hostApiSpecificStreamInfo = NULL};
    double rate = c->preferred_rate;
    if (rate <= 0 || Pa_IsFormatSupported(&in, NULL, rate) != paFormatIsSupported) rate = info->defaultSampleRate;
    c->cb_rate = rate;
    PaError e = Pa_OpenStream(&c->stream, &in, NULL, rate, paFramesPerBufferUnspecified, paNoFlag,
                              pa_callback, c);
    if (e != paNoError) {
        snprintf(why, why_size, "device '%s': cannot open at %.0f Hz mono float: %s", info->name, rate,
                 pa_error_text(e, etext, sizeof etext));
        c->stream = NULL;
        return -1;
    }
    bs_ring_discontinuity(c->ring);
    atomic_store(&c->last_frames_mono_ns, bsd_mono_ns());
    e = Pa_StartStream(c->stream);
    if (e != paNoError) {
        snprintf(why, why_size, "device '%s': cannot start: %s", info->name, pa_error_text(e, etext, sizeof etext));
        Pa_CloseStream(c->stream);
        c->stream = NULL;
        return -1;
    }
    pthread_mutex_lock(&c->lock);
    snprintf(c->device_name, sizeof c->device_name, "%s", info->name);
    c->rate = rate;
    c->opens++;
    pthread_mutex_unlock(&c->lock);
    bs_log_info("capture: device '%s' (index %d) open at %.0f Hz%s", info->name, dev, rate,
                rate != c->preferred_rate ? ", resampled to the model rate by the worker" : "");
    double ring_s = (double)bs_ring_capacity(c->ring) / rate;
    if (ring_s < 10)
        bs_log_warn("capture: at %.0f Hz the sample ring holds only %.1f s (sized at start-up for a slower device); restart to resize it",
                    rate, ring_s);
    return 0;
}

double bsd_input_rate(const char *path) {
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return 0;
    sf_close(sf);
    return info.samplerate;
}

double bsd_device_rate(const char *device) {
    char why[256];
    PaDeviceIndex d = find_device(device, why, sizeof why);
    const PaDeviceInfo *info = d == paNoDevice ? NULL : Pa_GetDeviceInfo(d);
    return info ? info->defaultSampleRate : 0;
}

static void close_device(bsd_capture *c) {
    if (!c->stream) return;
    Pa_AbortStream(c->stream);
    Pa_CloseStream(c->stream);
    c->stream = NULL;
}

/* Runs while the stream is healthy; returns with a reason when it is not (or on stop). */
static void watch_device(bsd_capture *c, char *why, size_t why_size) {
    while (!nap(c, 0.1)) {
        PaError active = Pa_IsStreamActive(c->stream);
        if (active != 1) {
            snprintf(why, why_size, "device '%s': stream stopped: %s", c->device_name,
                     active < 0 ? Pa_GetErrorText(active) : "no longer active");
            return;
        }
        double idle = (double)(bsd_mono_ns() - atomic_load(&c->last_frames_mono_ns)) / 1e9;
        if (idle > c->cfg->device_stall_seconds) {
            snprintf(why, why_size, "device '%s': no samples for %.1f s", c->device_name, idle);
            return;
        }
    }
}

/* ---- file source ----------------------------------------------------------------------- */

/* Plays cfg->input into the ring at real-time pace x input_speed. Returns 0 at the end of a
 * non-looping file or on stop, -1 with why on an error. */
static int run_file(bsd_capture *c, char *why, size_t why_size) {
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(c->cfg->input, SFM_READ, &info);
    if (!sf) {
        snprintf(why, why_size, "input '%s': %s", c->cfg->input, sf_strerror(NULL));
        return -1;
    }
    if (info.channels < 1 || info.samplerate < 1000 || info.samplerate > 768000 || info.frames <= 0) {
        snprintf(why, why_size, "input '%s': expected audio with 1+ channels at 1000-768000 Hz and at least one frame, found %d channels at %d Hz, %lld frames",
                 c->cfg->input, info.channels, info.samplerate, (long long)info.frames);
        sf_close(sf);
        return -1;
    }
    enum { CHUNK = 512 };
    float *inter = malloc(sizeof(float) * CHUNK * (size_t)info.channels);
    float mono[CHUNK];
    if (!inter) {
        sf_close(sf);
        snprintf(why, why_size, "input '%s': out of memory", c->cfg->input);
        return -1;
    }
    double rate = info.samplerate, speed = c->cfg->input_speed;
    pthread_mutex_lock(&c->lock);
    snprintf(c->device_name, sizeof c->device_name, "%s", c->cfg->input);
    c->rate = rate;
    c->opens++;
    pthread_mutex_unlock(&c->lock);
    set_state(c, BSD_CAP_RUNNING, NULL);
    bs_log_info("capture: file '%s' (%d Hz, %d channel(s), %.1f s) at %gx real time%s", c->cfg->input,
                info.samplerate, info.channels, (double)info.frames / rate, speed,
                c->cfg->input_loop ? ", looping" : "");
    bs_ring_discontinuity(c->ring);
    double t0 = bsd_mono_seconds();
    int64_t t0_real = bsd_realtime_ns();
    uint64_t sent = 0;
    int rc = 0;
    while (!atomic_load(&c->stop)) {
        sf_count_t got = sf_readf_float(sf, inter, CHUNK);
        if (got <= 0) {
            if (sf_error(sf)) {
                snprintf(why, why_size, "input '%s': read error: %s", c->cfg->input, sf_strerror(sf));
                rc = -1;
                break;
            }
            if (!c->cfg->input_loop) break;
            if (sf_seek(sf, 0, SEEK_SET) < 0) {
                snprintf(why, why_size, "input '%s': cannot seek to the start to loop", c->cfg->input);
                rc = -1;
                break;
            }
            continue;
        }
        for (sf_count_t i = 0; i < got; i++) {
            float s = 0;
            for (int ch = 0; ch < info.channels; ch++) s += inter[i * info.channels + ch];
            mono[i] = info.channels == 1 ? s : s / (float)info.channels;
        }
        /* Pace: this chunk is due when the previous samples have "played". */
        double due = t0 + (double)sent / (rate * speed);
        double wait = due - bsd_mono_seconds();
        if (wait > 0 && nap(c, wait)) break;
        int64_t t_ns = t0_real + (int64_t)((double)sent / rate * 1e9);
        bs_ring_write(c->ring, mono, (size_t)got, t_ns, rate);
        sent += (uint64_t)got;
        atomic_fetch_add_explicit(&c->frames, (uint64_t)got, memory_order_relaxed);
        atomic_store_explicit(&c->last_frames_mono_ns, bsd_mono_ns(), memory_order_relaxed);
    }
    free(inter);
    sf_close(sf);
    return rc;
}

/* ---- network source -------------------------------------------------------------------- */

static void on_url_open(void *user, double rate, const char *desc) {
    bsd_capture *c = user;
    char shown[1024];
    bsd_netsource_redact(c->cfg->input, shown, sizeof shown);
    pthread_mutex_lock(&c->lock);
    snprintf(c->device_name, sizeof c->device_name, "%s", desc);
    c->rate = rate;
    c->opens++;
    pthread_mutex_unlock(&c->lock);
    set_state(c, BSD_CAP_RUNNING, NULL);
    bs_log_info("capture: stream %s running: %s", shown, desc);
}

/* Reads the stream until it fails or stops: 0 on stop, -1 with why. *opened: audio came. */
static int run_url(bsd_capture *c, int *opened, char *why, size_t why_size) {
    uint64_t before = c->opens;
    bsd_netsource_io io = {.ring = c->ring, .stop = &c->stop, .frames = &c->frames,
                           .last_frames_mono_ns = &c->last_frames_mono_ns, .timeout = c->cfg->source_timeout,
                           .rtsp_transport = c->cfg->rtsp_transport[0] ? c->cfg->rtsp_transport : NULL,
                           .on_open = on_url_open, .user = c};
    int rc = bsd_netsource_run(c->cfg->input, &io, why, why_size);
    pthread_mutex_lock(&c->lock);
    *opened = c->opens != before;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ---- supervisor ------------------------------------------------------------------------ */

/* The wait before the next attempt: backoff (doubling, capped by the caller) scaled by a
 * random factor in [0.5, 1), so that sources that failed together do not retry together. */
static double jittered(bsd_capture *c, double backoff) {
    uint64_t x = c->jitter_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c->jitter_state = x;
    return backoff * (0.5 + 0.5 * (double)(x >> 11) / 9007199254740992.0);
}

static void *supervisor(void *arg) {
    bsd_capture *c = arg;
    double backoff = 0.25;
    char why[512];
    while (!atomic_load(&c->stop)) {
        why[0] = '\0';
        if (c->is_url) {
            int opened = 0;
            if (run_url(c, &opened, why, sizeof why) == 0) break;
            if (opened) backoff = 0.25; /* it ran: start the backoff over */
        } else if (c->is_file) {
            if (run_file(c, why, sizeof why) == 0) {
                if (!atomic_load(&c->stop)) {
                    bs_log_info("capture: input '%s' ended after %llu frames", c->cfg->input,
                                (unsigned long long)atomic_load(&c->frames));
                    set_state(c, BSD_CAP_ENDED, NULL);
                    while (!nap(c, 1.0)) {}
                }
                break;
            }
        } else if (open_device(c, why, sizeof why) == 0) {
            set_state(c, BSD_CAP_RUNNING, NULL);
            backoff = 0.25;
            watch_device(c, why, sizeof why);
            close_device(c);
            if (atomic_load(&c->stop)) break;
        }
        double wait = jittered(c, backoff);
        pthread_mutex_lock(&c->lock);
        /* one log line per change of state or of error, not per retry */
        int changed = c->state != BSD_CAP_REOPENING || strcmp(c->last_error, why) != 0;
        c->failures++;
        c->state = BSD_CAP_REOPENING;
        snprintf(c->last_error, sizeof c->last_error, "%s", why);
        c->next_attempt_mono = bsd_mono_seconds() + wait;
        uint64_t failures = c->failures;
        pthread_mutex_unlock(&c->lock);
        if (changed)
            bs_log_warn("capture: %s; reopening with backoff (up to %.1f s between attempts)", why,
                        c->cfg->reopen_max_seconds);
        else
            bs_log_debug("capture: %s; attempt %llu, next in %.2f s", why, (unsigned long long)failures, wait);
        if (nap(c, wait)) break;
        backoff = backoff * 2 > c->cfg->reopen_max_seconds ? c->cfg->reopen_max_seconds : backoff * 2;
        if (!c->is_file && !c->is_url) {
            /* Refresh PortAudio's device list: a device may have come back under a new index. */
            Pa_Terminate();
            PaError e = Pa_Initialize();
            if (e != paNoError) bs_log_error("capture: PortAudio re-initialisation failed: %s", Pa_GetErrorText(e));
        }
    }
    set_state(c, BSD_CAP_STOPPED, NULL);
    return NULL;
}

bsd_capture *bsd_capture_start(const bsd_config *cfg, bsd_source_kind kind, bs_ring *ring,
                               double preferred_rate, bs_error *err) {
    bsd_capture *c = calloc(1, sizeof *c);
    if (!c) {
        bs_error_set(err, "capture: out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->ring = ring;
    c->preferred_rate = preferred_rate;
    c->is_url = kind == BSD_SRC_URL;
    c->is_file = kind == BSD_SRC_FILE;
    c->jitter_state = (uint64_t)bsd_mono_ns() ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
    if (!c->jitter_state) c->jitter_state = 1;
    c->state = BSD_CAP_STARTING;
    atomic_init(&c->stop, 0);
    atomic_init(&c->frames, 0);
    atomic_init(&c->last_frames_mono_ns, bsd_mono_ns());
    atomic_init(&c->device_overflows, 0);
    pthread_mutex_init(&c->lock, NULL);
    if (c->is_url) bsd_netsource_redact(cfg->input, c->device_name, sizeof c->device_name);
    else snprintf(c->device_name, sizeof c->device_name, "%s", c->is_file ? cfg->input : cfg->device);
    if (pthread_create(&c->thread, NULL, supervisor, c) != 0) {
        bs_error_set(err, "capture: cannot start the capture thread");
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    c->thread_started = 1;
    return c;
}

int bsd_capture_stop(bsd_capture *c) {
    if (!c || !c->thread_started) return c && c->leaked ? -1 : 0;
    atomic_store(&c->stop, 1);
    /* The supervisor notices within 50 ms. A driver stuck inside PortAudio (19.6 deadlocks
     * in Pa_StartStream when the device fails to start) must not block shutdown: wait 1 s,
     * then leave the thread behind (the process is exiting). */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    if (pthread_clockjoin_np(c->thread, NULL, CLOCK_MONOTONIC, &until) != 0) {
        bs_log_error("capture: the audio thread did not stop within 1 s (stuck in the audio driver); leaving it");
        pthread_detach(c->thread);
        c->leaked = 1;
    }
    c->thread_started = 0;
    return c->leaked ? -1 : 0;
}

void bsd_capture_free(bsd_capture *c) {
    if (!c) return;
    bsd_capture_stop(c);
    if (c->leaked) return; /* still referenced by the stuck thread */
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bsd_capture_stats bsd_capture_get_stats(bsd_capture *c) {
    bsd_capture_stats s = {0};
    s.seconds_since_last_sample = (double)(bsd_mono_ns() - atomic_load(&c->last_frames_mono_ns)) / 1e9;
    size_t cap = bs_ring_capacity(c->ring), fill = bs_ring_available(c->ring);
    pthread_mutex_lock(&c->lock);
    s.is_file = c->is_file;
    s.is_url = c->is_url;
    if (c->is_url) bsd_netsource_redact(c->cfg->input, s.requested, sizeof s.requested);
    else
        snprintf(s.requested, sizeof s.requested, "%s",
                 c->is_file ? c->cfg->input : (c->cfg->device[0] ? c->cfg->device : "(default)"));
    snprintf(s.device, sizeof s.device, "%s", c->device_name);
    s.state = c->state;
    s.sample_rate = c->rate;
    s.frames_captured = atomic_load(&c->frames);
    s.samples_in_ring_total = bs_ring_written(c->ring);
    s.overruns = bs_ring_overruns(c->ring);
    s.dropped_samples = bs_ring_dropped(c->ring);
    s.device_overflows = atomic_load(&c->device_overflows);
    s.opens = c->opens;
    s.failures = c->failures;
    s.ring_capacity_samples = cap;
    s.ring_capacity_seconds = c->rate > 0 ? (double)cap / c->rate : 0.0;
    s.ring_fill_seconds = c->rate > 0 ? (double)fill / c->rate : 0.0;
    snprintf(s.last_error, sizeof s.last_error, "%s", c->last_error);
    s.next_attempt_in_seconds = -1;
    if (c->state == BSD_CAP_REOPENING) {
        double in = c->next_attempt_mono - bsd_mono_seconds();
        s.next_attempt_in_seconds = in > 0 ? in : 0;
    }
    pthread_mutex_unlock(&c->lock);
    return s;
}

int bsd_capture_health(bsd_capture *c, bsd_health *h) {
    double idle = (double)(bsd_mono_ns() - atomic_load(&c->last_frames_mono_ns)) / 1e9;
    int bad = 0;
    pthread_mutex_lock(&c->lock);
    if (c->state == BSD_CAP_REOPENING) bad = bsd_health_add(h, "capture: source failed (%s), reopening", c->last_error);
    else if (c->state == BSD_CAP_ENDED) bad = bsd_health_add(h, "capture: input file ended");
    else if (c->state == BSD_CAP_STARTING) bad = bsd_health_add(h, "capture: starting");
    else if (c->state == BSD_CAP_STOPPED) bad = bsd_health_add(h, "capture: stopped");
    else if (idle > (c->is_url ? c->cfg->source_timeout / 2 : 1.0 + 1.0 / c->cfg->input_speed)) /* streams come in bursts */
        bad = bsd_health_add(h, "capture: no samples for %.1f s", idle);
    pthread_mutex_unlock(&c->lock);
    return bad;
}
