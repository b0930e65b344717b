/* birdsongd: live capture -> per-species probabilities over a JSON HTTP API.
 *
 * Threads: PortAudio's callback (or the file reader), the capture supervisor, the worker,
 * libmicrohttpd's pool, and this main thread, which handles signals (handlers only set
 * flags), SIGHUP model reloads and the systemd notifications (READY, STATUS, WATCHDOG fed
 * by the worker's progress). */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "birdsong/log.h"
#include "birdsong/nn.h"
#include "birdsong/switches.h"
#include "daemon/app.h"
#include "daemon/auth.h"
#include "daemon/capture.h"
#include "daemon/config.h"
#include "daemon/http.h"
#include "daemon/netsource.h"
#include "daemon/station.h"
#include "daemon/worker.h"

/* How birdsongd ends: one exit status per kind of outcome (birdsongd(8), EXIT STATUS). */
enum bsd_exit {
    BSD_EXIT_OK = 0,      /* stopped by a signal, or an informational option (--help, --version...) */
    BSD_EXIT_RUNTIME = 1, /* a resource failed: audio system, memory, the listen address */
    BSD_EXIT_CONFIG = 2,  /* usage, configuration or model: fix the input and start again */
};

/* Every fatal error is reported here, the one way: an error line on stderr (the journal's
 * error priority under systemd). Returns code, for `return fail(...)`. */
__attribute__((format(printf, 2, 3))) static int fail(enum bsd_exit code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bs_log_error("birdsongd: %s", msg);
    return code;
}

static volatile sig_atomic_t g_stop, g_reload;

static void on_stop(int sig) { g_stop = sig; }
static void on_hup(int sig) { g_reload = 1; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: birdsongd [options]\n"
            "\n"
            "Live bird-sound classifier: captures audio, runs the model every hop and serves\n"
            "per-species probabilities over HTTP (see birdsongd(8) and docs/api.md).\n"
            "\n"
            "  -c, --config FILE       read directives from FILE (INI; see etc/birdsongd.conf)\n"
            "  -m, --model FILE        model file (.bsm)                      [model]\n"
            "  -l, --listen ADDR:PORT  HTTP address                           [listen]\n"
            "  -d, --device DEV        capture device: index or name          [device]\n"
            "  -i, --input FILE        read an audio file instead of a device [input]\n"
            "      --input-loop        restart the file at its end            [input_loop]\n"
            "      --input-speed X     file pace, times real time             [input_speed]\n"
            "      --source NAME=SPEC  one more source (repeatable): a file, device[:NAME]\n"
            "                          (see birdsongd(8), SOURCES)            [[source NAME]]\n"
            "      --log-level LEVEL   error, warn, info, debug               [log_level]\n"
            "      --state-dir DIR     detections.db and clips/ go here       [state_dir]\n"
            "  -s, --set NAME=VALUE    set any directive (see --help-config)\n"
            "      --list-devices      list capture devices and exit\n"
            "      --check-config      validate the configuration and the model, then exit\n"
            "      --help-config       print every directive with its default and exit\n"
            "  -V, --version           print the version and exit\n"
            "  -h, --help              this text\n"
            "\n"
            "Flags override the config file. Exit status: 0 ok, 1 runtime failure, 2 bad\n"
            "configuration or model. Signals: TERM/INT stop, HUP reloads the model.\n");
}

/* ---- phase 1: the command line ----------------------------------------------------------- */

struct override {
    const char *name;
    const char *value;
};

typedef struct options {
    const char *config_path;      /* NULL: built-in defaults */
    struct override ov[128];      /* directives set by flags, applied over the file in order */
    int n_ov;
    char *copies[128];            /* the --set NAME=VALUE strings ov points into */
    int n_copies;
    const char *sources[BSD_MAX_SOURCES]; /* --source NAME=SPEC, in order */
    int n_sources;
    int list, check;
} options;

static void options_free(options *o) {
    for (int i = 0; i < o->n_copies; i++) free(o->copies[i]);
    o->n_copies = 0;
}

/* -1 to go on, else the exit status (an informational option, or a usage error). */
static int parse_options(int argc, char **argv, options *o) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},  {"model", required_argument, 0, 'm'},
        {"listen", required_argument, 0, 'l'},  {"device", required_argument, 0, 'd'},
        {"input", required_argument, 0, 'i'},   {"input-loop", no_argument, 0, 1},
        {"input-speed", required_argument, 0, 2}, {"log-level", required_argument, 0, 3},
        {"set", required_argument, 0, 's'},     {"list-devices", no_argument, 0, 4},
        {"check-config", no_argument, 0, 5},    {"help-config", no_argument, 0, 6},
        {"state-dir", required_argument, 0, 7}, {"source", required_argument, 0, 8},
        {"version", no_argument, 0, 'V'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:m:l:d:i:s:Vh", opts, NULL)) != -1) {
        if (o->n_ov >= 120) return fail(BSD_EXIT_CONFIG, "too many options");
        switch (c) {
        case 'c': o->config_path = optarg; break;
        case 'm': o->ov[o->n_ov++] = (struct override){"model", optarg}; break;
        case 'l': o->ov[o->n_ov++] = (struct override){"listen", optarg}; break;
        case 'd': o->ov[o->n_ov++] = (struct override){"device", optarg}; break;
        case 'i': o->ov[o->n_ov++] = (struct override){"input", optarg}; break;
        case 1: o->ov[o->n_ov++] = (struct override){"input_loop", "true"}; break;
        case 2: o->ov[o->n_ov++] = (struct override){"input_speed", optarg}; break;
        case 3: o->ov[o->n_ov++] = (struct override){"log_level", optarg}; break;
        case 7: o->ov[o->n_ov++] = (struct override){"state_dir", optarg}; break;
        case 8:
            if (o->n_sources >= BSD_MAX_SOURCES) return fail(BSD_EXIT_CONFIG, "--source: at most %d sources", BSD_MAX_SOURCES);
            o->sources[o->n_sources++] = optarg;
            break;
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) return fail(BSD_EXIT_CONFIG, "--set: expected NAME=VALUE, found '%s'", optarg);
            char *copy = strdup(optarg);
            if (!copy) return fail(BSD_EXIT_RUNTIME, "out of memory");
            copy[eq - optarg] = '\0';
            o->copies[o->n_copies++] = copy;
            o->ov[o->n_ov++] = (struct override){copy, copy + (eq - optarg) + 1};
            break;
        }
        case 4: o->list = 1; break;
        case 5: o->check = 1; break;
        case 6: bsd_config_print_reference(stdout); return BSD_EXIT_OK;
        case 'V': printf("birdsongd %s\n", BIRDSONG_VERSION); return BSD_EXIT_OK;
        case 'h': usage(stdout); return BSD_EXIT_OK;
        default: usage(stderr); return BSD_EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        int rc = fail(BSD_EXIT_CONFIG, "unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return rc;
    }
    return -1;
}

/* Handlers before any thread starts: a signal during start-up is a request, not a crash
 * (the serving loop sees the flags). */
static void install_signals(void) {
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- phase 2: configuration and model ------------------------------------------------------- */

/* Checks the input file is readable audio (for --check-config and start-up). */
static int check_input(const char *path, bs_error *err) {
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return bs_error_set(err, "directive 'input': %s: %s", path, sf_strerror(NULL));
    sf_close(sf);
    return 0;
}

static void reload_model(bsd_app *app) {
    bs_error err;
    bs_log_info("SIGHUP: reloading the model from %s", app->cfg.model);
    bsd_model *m = bsd_model_open(app->cfg.model, &err);
    if (!m) {
        bs_log_error("reload refused, still serving the previous model: %s", err.msg);
        bsd_worker_note_reload(app->worker, app->cfg.model, err.msg);
        sd_notifyf(0, "STATUS=model reload failed: %s", err.msg);
        return;
    }
    if (bsd_station_check_model(&app->cfg, m, &err) != 0) { /* detection settings must fit its labels */
        bs_log_error("reload refused, still serving the previous model: %s", err.msg);
        bsd_worker_note_reload(app->worker, app->cfg.model, err.msg);
        sd_notifyf(0, "STATUS=model reload failed: %s", err.msg);
        bsd_model_close(m);
        return;
    }
    bsd_worker_replace_model(app->worker, m);
    bsd_worker_note_reload(app->worker, app->cfg.model, NULL);
}

/* The file, then the flags over it, then every check (the request policy's included) and
 * the model. BSD_EXIT_OK with *model, or BSD_EXIT_CONFIG (reported). */
static int load_config(bsd_app *app, const options *o, bsd_model **model) {
    bs_error err;
    bsd_config_defaults(&app->cfg);
    if (o->config_path) {
        snprintf(app->config_path, sizeof app->config_path, "%s", o->config_path);
        if (bsd_config_load(&app->cfg, o->config_path, &err) != 0) return fail(BSD_EXIT_CONFIG, "%s", err.msg);
    }
    for (int i = 0; i < o->n_ov; i++)
        if (bsd_config_set(&app->cfg, o->ov[i].name, o->ov[i].value, &err) != 0)
            return fail(BSD_EXIT_CONFIG, "command line: %s", err.msg);
    for (int i = 0; i < o->n_sources; i++) {
        char name[BSD_SOURCE_NAME_MAX];
        const char *eq = strchr(o->sources[i], '=');
        size_t n = eq ? (size_t)(eq - o->sources[i]) : 0;
        if (!eq || n == 0 || n >= sizeof name)
            return fail(BSD_EXIT_CONFIG, "--source: expected NAME=SPEC, found '%s'", o->sources[i]);
        memcpy(name, o->sources[i], n);
        name[n] = '\0';
        if (bsd_config_add_source(&app->cfg, name, eq + 1, &err) != 0)
            return fail(BSD_EXIT_CONFIG, "--source: %s", err.msg);
    }
    bs_log_level lv = BS_LOG_INFO;
    bs_log_level_parse(app->cfg.log_level, &lv);
    bs_log_set_level(lv);
    if (bsd_config_validate(&app->cfg, &err) != 0 || bsd_auth_check_config(&app->cfg, &err) != 0)
        return fail(BSD_EXIT_CONFIG, "%s", err.msg);
    app->n_sources = bsd_config_n_sources(&app->cfg);
    for (int i = 0; i < app->n_sources; i++) {
        bsd_source *s = &app->sources[i];
        if (bsd_config_source(&app->cfg, i, s->name, &s->kind, &s->cfg, &err) != 0)
            return fail(BSD_EXIT_CONFIG, "%s", err.msg);
        if (s->kind == BSD_SRC_FILE && check_input(s->cfg.input, &err) != 0)
            return fail(BSD_EXIT_CONFIG, app->n_sources > 1 ? "source '%s': %s" : "%.0s%s", s->name, err.msg);
    }
    bs_nn_set_threads(app->cfg.inference_threads);
    *model = bsd_model_open(app->cfg.model, &err);
    if (!*model) return fail(BSD_EXIT_CONFIG, "directive 'model': %s", err.msg);
    return BSD_EXIT_OK;
}

/* --check-config: the detection settings against the model's labels too. Takes the model. */
static int check_config(const bsd_app *app, const options *o, bsd_model *model) {
    bs_error err;
    int bad = bsd_station_check_model(&app->cfg, model, &err) != 0;
    if (!bad)
        printf("birdsongd: configuration %s is valid; model %s serves %d species at %d Hz\n",
               o->config_path ? o->config_path : "(built-in defaults)", app->cfg.model,
               bs_model_n_outputs(model->model), model->features.sample_rate);
    bsd_model_close(model);
    return bad ? fail(BSD_EXIT_CONFIG, "%s", err.msg) : BSD_EXIT_OK;
}

/* ---- phase 3: start, serve, stop ---------------------------------------------------------- */

/* Ring, results, worker, station, capture, HTTP, in that order (each needs the one before).
 * BSD_EXIT_OK with *http, else the failure (reported; what started is stopped). Takes the
 * model. */
static int start(bsd_app *app, bsd_model *model, bsd_http **http) {
    bs_error err;
    mallopt(M_ARENA_MAX, 2); /* a few threads allocate small JSON buffers: 2 arenas are plenty */
    app->started_ns = bsd_realtime_ns();
    app->started_mono = bsd_mono_seconds();
    double model_rate = model->features.sample_rate;
    int devices = 0;
    for (int i = 0; i < app->n_sources; i++) devices += app->sources[i].kind == BSD_SRC_DEVICE;
    if (devices && bsd_audio_init(&err) != 0) {
        bsd_model_close(model);
        return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
    }
    app->worker = bsd_worker_create(&app->cfg, model, &err);
    if (!app->worker) return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
    for (int i = 0; i < app->n_sources; i++) {
        bsd_source *s = &app->sources[i];
        /* The ring holds ring_seconds at the rate the source runs at: the file's rate, or for
         * a device the higher of the model rate and the device's default rate (48 kHz when
         * the device is not there yet). Sized once: a device that later reopens faster gets
         * fewer seconds, which the capture logs and /status shows (ring.capacity_seconds). */
        double ring_rate = s->kind == BSD_SRC_FILE     ? bsd_input_rate(s->cfg.input)
                           : s->kind == BSD_SRC_DEVICE ? bsd_device_rate(s->cfg.device)
                                                       : 0; /* a stream's rate is known once it plays */
        if (ring_rate <= 0) ring_rate = 48000;
        if (ring_rate < model_rate) ring_rate = model_rate;
        s->ring = bs_ring_create((size_t)ceil(s->cfg.ring_seconds * ring_rate));
        s->results = bsd_results_create((size_t)ceil(s->cfg.history_seconds / s->cfg.hop_seconds));
        if (!s->ring || !s->results) {
            bsd_worker_free(app->worker);
            return fail(BSD_EXIT_RUNTIME, "source '%s': out of memory for the sample ring or the history", s->name);
        }
        bsd_results_set_source(s->results, s->name); /* every prediction names its source */
        if (bsd_worker_add_source(app->worker, s->name, &s->cfg, s->ring, s->results, &err) < 0) {
            bsd_worker_free(app->worker);
            return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
        }
    }
    app->ring = app->sources[0].ring;
    app->results = app->sources[0].results;
    /* detections, store, clips, streams: hooks go in before the worker runs */
    if (!bsd_station_start(app, &err)) {
        bsd_worker_free(app->worker);
        return fail(BSD_EXIT_CONFIG, "%s", err.msg);
    }
    if (bsd_worker_start(app->worker, &err) != 0) return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
    for (int i = 0; i < app->n_sources; i++) {
        bsd_source *s = &app->sources[i];
        s->capture = bsd_capture_start(&s->cfg, s->kind, s->ring, model_rate, &err);
        if (!s->capture) return fail(BSD_EXIT_RUNTIME, "source '%s': %s", s->name, err.msg);
        if (app->n_sources > 1) {
            char shown[BSD_PATH_MAX];
            bsd_netsource_redact(s->kind == BSD_SRC_DEVICE ? (s->cfg.device[0] ? s->cfg.device : "(default)") : s->cfg.input,
                                 shown, sizeof shown);
            bs_log_info("source '%s': %s %s", s->name, bsd_source_kind_name(s->kind), shown);
        }
    }
    app->capture = app->sources[0].capture;
    *http = bsd_http_start(app, &err);
    if (!*http) {
        for (int i = 0; i < app->n_sources; i++) bsd_capture_free(app->sources[i].capture);
        bsd_worker_free(app->worker);
        return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
    }
    bs_log_info("birdsongd %s: listening on http://%s/api/v1/ (model %s, %d source%s, hop %.2f s, history %zu results)",
                BIRDSONG_VERSION, app->cfg.listen, app->cfg.model, app->n_sources, app->n_sources > 1 ? "s" : "",
                app->sources[0].cfg.hop_seconds, bsd_results_capacity(app->results));
    sd_notifyf(0, "READY=1\nSTATUS=listening on %s", app->cfg.listen);
    return BSD_EXIT_OK;
}

/* Until a stop signal: reloads on SIGHUP, feeds the watchdog while the worker makes
 * progress, and refreshes the systemd STATUS line every 5 s. */
static void serve(bsd_app *app) {
    uint64_t wd_usec = 0;
    int watchdog = sd_watchdog_enabled(0, &wd_usec) > 0;
    double wd_period = watchdog ? (double)wd_usec / 1e6 / 2 : 0;
    double next_wd = 0, next_status = 0;
    uint64_t last_beat = 0;
    while (!g_stop) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (g_reload) {
            g_reload = 0;
            reload_model(app);
        }
        double now = bsd_mono_seconds();
        if (watchdog && now >= next_wd) {
            uint64_t beat = bsd_worker_heartbeat(app->worker);
            if (beat != last_beat) sd_notify(0, "WATCHDOG=1"); /* a stuck worker starves it */
            else bs_log_warn("worker made no progress for %.1f s; not feeding the watchdog", wd_period);
            last_beat = beat;
            next_wd = now + wd_period;
        }
        if (now >= next_status) {
            bsd_worker_stats wk = bsd_worker_get_stats(app->worker, 0);
            bsd_capture_stats cap = bsd_capture_get_stats(app->capture);
            sd_notifyf(0, "STATUS=%s; %llu windows; lag %.2f s; %llu samples dropped",
                       bsd_capture_state_name(cap.state), (unsigned long long)wk.windows, wk.lag_seconds,
                       (unsigned long long)cap.dropped_samples);
            next_status = now + 5;
        }
    }
}

static void stop(bsd_app *app, bsd_http *http) {
    bs_log_info("signal %d: stopping", (int)g_stop);
    sd_notify(0, "STOPPING=1");
    int stuck = 0;
    for (int i = 0; i < app->n_sources; i++) stuck |= bsd_capture_stop(app->sources[i].capture) != 0; /* no more samples */
    bsd_worker_stop(app->worker);                      /* finishes the window in progress */
    bsd_station_stop_streams(app->station);            /* ends the SSE streams */
    bsd_http_stop(http);
    bsd_station_stop(app->station);                    /* closes open detections, commits the store */
    if (stuck) {
        bs_log_warn("stopped (the audio driver thread was left behind)");
        return;
    }
    int devices = 0;
    for (int i = 0; i < app->n_sources; i++) {
        bsd_capture_free(app->sources[i].capture);
        devices += app->sources[i].kind == BSD_SRC_DEVICE;
    }
    bsd_worker_free(app->worker);
    if (devices) bsd_audio_shutdown();
    for (int i = 0; i < app->n_sources; i++) {
        bsd_results_free(app->sources[i].results);
        bs_ring_free(app->sources[i].ring);
    }
    bs_log_info("stopped");
}

int main(int argc, char **argv) {
    bs_nn_blas_tune(argv); /* may re-exec with OPENBLAS_CORETYPE set (see nn.h) */
    bs_switches_from_env(); /* BIRDSONG_NO_AVX*, BIRDSONG_NN_WINOGRAD*: the library's options */
    static options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0 || o.list) { /* neither path reads the overrides */
        options_free(&o);
        if (rc >= 0) return rc;
    }
    install_signals();
    if (o.list) {
        bs_error err;
        if (bsd_audio_init(&err) != 0) return fail(BSD_EXIT_RUNTIME, "%s", err.msg);
        int n = bsd_list_devices(stdout);
        bsd_audio_shutdown();
        return n < 0 ? BSD_EXIT_RUNTIME : BSD_EXIT_OK;
    }
    static bsd_app app;
    bsd_model *model = NULL;
    rc = load_config(&app, &o, &model);
    options_free(&o); /* the values were copied into app.cfg */
    if (rc != BSD_EXIT_OK) return rc;
    if (o.check) return check_config(&app, &o, model);
    bsd_http *http = NULL;
    rc = start(&app, model, &http);
    if (rc != BSD_EXIT_OK) return rc;
    serve(&app);
    stop(&app, http);
    return BSD_EXIT_OK;
}
