#include "daemon/config.h"

#include "birdsong/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ctype.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define F(field) offsetof(bsd_config, field)
#define S(field) sizeof(((bsd_config *)0)->field)

/* The one table. Ranges are inclusive. */
const bsd_directive bsd_directives[] = {
    {"model", BSD_CFG_STRING, F(model), S(model), "models/demo.bsm", 0, 0,
     "model file (.bsm) to serve; reloaded on SIGHUP"},
    {"device", BSD_CFG_STRING, F(device), S(device), "", 0, 0,
     "capture device: empty for the default, a device index, (part of) its name, or its ALSA card id; looked up at every reopen; see --list-devices"},
    {"input", BSD_CFG_STRING, F(input), S(input), "", 0, 0,
     "read this audio file instead of a device (demos, replaying field recordings, tests)"},
    {"input_loop", BSD_CFG_BOOL, F(input_loop), 0, "false", 0, 1,
     "restart the input file at its end (true/false)"},
    {"input_speed", BSD_CFG_DOUBLE, F(input_speed), 0, "1", 0.1, 100,
     "pace of the input file, times real time"},
    {"ring_seconds", BSD_CFG_DOUBLE, F(ring_seconds), 0, "12", 10, 600,
     "length of the sample ring between capture and worker, seconds (at least 10)"},
    {"device_stall_seconds", BSD_CFG_DOUBLE, F(device_stall_seconds), 0, "3", 0.5, 60,
     "a device that delivers no samples for this long is closed and reopened"},
    {"reopen_max_seconds", BSD_CFG_DOUBLE, F(reopen_max_seconds), 0, "30", 0.1, 3600,
     "longest wait between attempts to reopen a failed source (backoff doubles from 0.25 s, each wait x a random 0.5-1)"},
    {"source_timeout", BSD_CFG_DOUBLE, F(source_timeout), 0, "10", 0.2, 3600,
     "a network source that delivers no audio for this long is dead (whatever its connection says) and is reopened"},
    {"rtsp_transport", BSD_CFG_STRING, F(rtsp_transport), S(rtsp_transport), "tcp", 0, 0,
     "how an rtsp:// source's audio arrives: tcp (interleaved in the RTSP connection: no loss, passes NAT and firewalls) or udp (RTP datagrams: less delay, may lose packets)"},
    {"hop_seconds", BSD_CFG_DOUBLE, F(hop_seconds), 0, "0.5", 0.05, 60,
     "the analysis window advances by this much; the window length comes from the model"},
    {"history_seconds", BSD_CFG_DOUBLE, F(history_seconds), 0, "3600", 1, 604800,
     "results kept for GET /api/v1/predictions, seconds of audio"},
    {"inference_threads", BSD_CFG_INT, F(inference_threads), 0, "1", 1, 64,
     "OpenBLAS threads for the network"},
    {"max_lag_seconds", BSD_CFG_DOUBLE, F(max_lag_seconds), 0, "3", 0.1, 600,
     "health turns 503 when the worker is further than this behind the capture"},
    {"debug_pause_worker_seconds", BSD_CFG_DOUBLE, F(debug_pause_worker_seconds), 0, "0", 0, 3600,
     "testing only: the worker stalls this long before reading the ring (shows overruns; starves the watchdog)"},
    {"debug_dump_path", BSD_CFG_STRING, F(debug_dump_path), S(debug_dump_path), "", 0, 0,
     "testing only: write the first 200 windows (start, samples, log-mel dB) to this file"},
    {"listen", BSD_CFG_STRING, F(listen), S(listen), "127.0.0.1:8080", 0, 0,
     "HTTP address:port ([v6]:port for IPv6)"},
    {"http_threads", BSD_CFG_INT, F(http_threads), 0, "2", 1, 64,
     "HTTP server threads"},
    {"http_connection_limit", BSD_CFG_INT, F(http_connection_limit), 0, "512", 1, 65536,
     "most simultaneous HTTP connections"},
    {"http_timeout_seconds", BSD_CFG_INT, F(http_timeout_seconds), 0, "30", 1, 3600,
     "an idle HTTP connection is closed after this many seconds"},
    {"http_per_ip_connection_limit", BSD_CFG_INT, F(http_per_ip_connection_limit), 0, "64", 0, 65536,
     "most simultaneous HTTP connections from one IP address (0: no limit besides http_connection_limit)"},
    /* request policy (daemon/auth.c) */
    {"auth_token", BSD_CFG_STRING, F(auth_token), S(auth_token), "", 0, 0,
     "bearer token (at least 16 characters) required for every non-GET request; empty: no token, and POST /api/v1/reload does not exist"},
    {"auth_token_file", BSD_CFG_STRING, F(auth_token_file), S(auth_token_file), "", 0, 0,
     "read the bearer token from this file's first line instead (it must not be readable by group or others; with systemd, LoadCredential=)"},
    {"auth_read", BSD_CFG_BOOL, F(auth_read), 0, "false", 0, 1,
     "GET requests need the bearer token too (true/false)"},
    {"cors_origins", BSD_CFG_STRING, F(cors_origins), S(cors_origins), "", 0, 0,
     "comma-separated origins (e.g. 'https://station.example.org') whose pages may read the API cross-origin; empty: none"},
    {"log_level", BSD_CFG_STRING, F(log_level), S(log_level), "info", 0, 0,
     "error, warn, info or debug"},
    /* station (daemon/station.c): detections, their store, clips and streams */
    {"state_dir", BSD_CFG_STRING, F(state_dir), S(state_dir), "", 0, 0,
     "directory for detections.db and clips/ (created if missing); empty: $STATE_DIRECTORY from systemd's StateDirectory=, else nothing is stored"},
    {"min_confidence", BSD_CFG_DOUBLE, F(min_confidence), 0, "0", 0, 1,
     "global floor: a species detects at max(model threshold, min_confidence) unless species_thresholds names it"},
    {"species_thresholds", BSD_CFG_STRING, F(species_thresholds), S(species_thresholds), "", 0, 0,
     "per-species thresholds overriding the model's and min_confidence, e.g. 'Parus_major:0.8, Sitta_europaea:0.6'"},
    {"include_species", BSD_CFG_STRING, F(include_species), S(include_species), "", 0, 0,
     "comma-separated labels: only these species detect (empty: all)"},
    {"exclude_species", BSD_CFG_STRING, F(exclude_species), S(exclude_species), "", 0, 0,
     "comma-separated labels that never detect"},
    {"suppress_seconds", BSD_CFG_DOUBLE, F(suppress_seconds), 0, "0", 0, 86400,
     "a detection starting less than this long after the end of the last one of the same species is dropped"},
    {"species_suppress_seconds", BSD_CFG_STRING, F(species_suppress_seconds), S(species_suppress_seconds), "", 0, 0,
     "per-species suppress_seconds, e.g. 'Parus_major:30'"},
    {"max_event_seconds", BSD_CFG_DOUBLE, F(max_event_seconds), 0, "60", 0, 3600,
     "consecutive windows of a species merge into one detection of at most this length (0: no limit)"},
    {"retention_days", BSD_CFG_DOUBLE, F(retention_days), 0, "0", 0, 36500,
     "detections older than this are deleted (0: kept forever)"},
    {"retention_rows", BSD_CFG_INT, F(retention_rows), 0, "1000000", 0, 2000000000,
     "at most this many detections are kept, the oldest deleted first (0: no limit)"},
    {"clips", BSD_CFG_BOOL, F(clips), 0, "false", 0, 1,
     "save each detection's audio, cut from its own source, as FLAC under state_dir/clips (true/false)"},
    {"privacy", BSD_CFG_STRING, F(privacy), S(privacy), "auto", 0, 0,
     "privacy filter: auto (on when the model has a 'human' filter class), on or off. When on, no audio within privacy_margin of a window with human voice is ever written, and detections overlapping it follow privacy_action"},
    {"privacy_action", BSD_CFG_STRING, F(privacy_action), S(privacy_action), "drop", 0, 0,
     "drop: detections overlapping human voice are not emitted; keep: they are, without a clip"},
    {"privacy_margin", BSD_CFG_DOUBLE, F(privacy_margin), 0, "2", 0, 5,
     "seconds protected before and after each window with human voice"},
    {"privacy_threshold", BSD_CFG_DOUBLE, F(privacy_threshold), 0, "0.5", 0.01, 1,
     "a window is filtered when its human probability is at or above this (not the model's max-F1 threshold for human: a missed voice leaks audio, a false alarm only costs a bird detection)"},
    {"species_calendar", BSD_CFG_STRING, F(species_calendar), S(species_calendar), "", 0, 0,
     "CSV file 'species,first_day,last_day' (days of the year 1-366, local time; first > last wraps the new year): outside its window a species gets probabilities but no detection; unlisted species are not restricted; empty: no calendar"},
    {"clip_pre_roll", BSD_CFG_DOUBLE, F(clip_pre_roll), 0, "1", 0, 60,
     "seconds of audio saved before a detection"},
    {"clip_post_roll", BSD_CFG_DOUBLE, F(clip_post_roll), 0, "1", 0, 60,
     "seconds of audio saved after a detection"},
    {"clips_max_mb", BSD_CFG_DOUBLE, F(clips_max_mb), 0, "500", 0.01, 10000000,
     "the clips of every source (with the spectrograms cached beside them) together stay under this many MiB; the oldest are deleted first"},
    {"clips_min_free_percent", BSD_CFG_DOUBLE, F(clips_min_free_percent), 0, "10", 0, 99,
     "keep at least this much of the clips' file system free: delete the oldest clips, else skip"},
    {"stream_max_clients", BSD_CFG_INT, F(stream_max_clients), 0, "8", 1, 1024,
     "most simultaneous GET /api/v1/stream clients (more get 503)"},
    {"stream_history", BSD_CFG_INT, F(stream_history), 0, "2048", 16, 1000000,
     "events kept for Last-Event-ID resume; a client further behind is dropped"},
    {"stream_heartbeat_seconds", BSD_CFG_DOUBLE, F(stream_heartbeat_seconds), 0, "15", 0.1, 3600,
     "an idle stream gets a comment line this often"},
    {"mqtt", BSD_CFG_BOOL, F(mqtt), 0, "false", 0, 1,
     "publish each detection as JSON to an MQTT broker (true/false)"},
    {"mqtt_host", BSD_CFG_STRING, F(mqtt_host), S(mqtt_host), "localhost", 0, 0,
     "MQTT broker host"},
    {"mqtt_port", BSD_CFG_INT, F(mqtt_port), 0, "1883", 1, 65535,
     "MQTT broker port"},
    {"mqtt_topic", BSD_CFG_STRING, F(mqtt_topic), S(mqtt_topic), "birdsong/detections", 0, 0,
     "topic the detections are published to"},
    {"mqtt_client_id", BSD_CFG_STRING, F(mqtt_client_id), S(mqtt_client_id), "", 0, 0,
     "MQTT client id (empty: birdsongd-<pid>)"},
    {"mqtt_username", BSD_CFG_STRING, F(mqtt_username), S(mqtt_username), "", 0, 0,
     "MQTT user name (empty: anonymous)"},
    {"mqtt_password", BSD_CFG_STRING, F(mqtt_password), S(mqtt_password), "", 0, 0,
     "MQTT password"},
    {"mqtt_qos", BSD_CFG_INT, F(mqtt_qos), 0, "1", 0, 2,
     "MQTT quality of service: 0, 1 or 2"},
    {"mqtt_queue", BSD_CFG_INT, F(mqtt_queue), 0, "256", 1, 100000,
     "detections kept while the broker is unreachable; the oldest are dropped beyond"},
    /* what station owners look at and wire up: sound level, exports, notifications */
    {"level_alarm_seconds", BSD_CFG_DOUBLE, F(level_alarm_seconds), 0, "60", 0, 86400,
     "health turns 503 when the input has been digital silence (every sample 0) or clipping for this long (0: never)"},
    {"audio_history_seconds", BSD_CFG_DOUBLE, F(audio_history_seconds), 0, "120", 0, 3600,
     "with clips off, this much recent audio is kept in memory to draw detection spectrograms from (0: none)"},
    {"mqtt_homeassistant", BSD_CFG_BOOL, F(mqtt_homeassistant), 0, "false", 0, 1,
     "with mqtt on, publish Home Assistant discovery configs: a sensor per species, health and sound level (true/false)"},
    {"mqtt_homeassistant_prefix", BSD_CFG_STRING, F(mqtt_homeassistant_prefix), S(mqtt_homeassistant_prefix), "homeassistant", 0, 0,
     "Home Assistant's discovery prefix"},
    {"mqtt_homeassistant_node", BSD_CFG_STRING, F(mqtt_homeassistant_node), S(mqtt_homeassistant_node), "birdsong", 0, 0,
     "names this station's device and topics in Home Assistant ([a-zA-Z0-9_-]; one per station on a broker)"},
    {"public_url", BSD_CFG_STRING, F(public_url), S(public_url), "", 0, 0,
     "the station's address as others reach it, for links in webhooks, e.g. 'http://station.local:8080' (empty: http://<listen>)"},
    {"webhook_url", BSD_CFG_STRING, F(webhook_url), S(webhook_url), "", 0, 0,
     "space-separated http(s) URLs each new detection is POSTed to as JSON (at most 8; empty: no webhooks)"},
    {"webhook_token", BSD_CFG_STRING, F(webhook_token), S(webhook_token), "", 0, 0,
     "sent as 'Authorization: Bearer <token>' with each webhook (empty: no header)"},
    {"webhook_secret", BSD_CFG_STRING, F(webhook_secret), S(webhook_secret), "", 0, 0,
     "key of the 'X-Birdsong-Signature: sha256=<HMAC-SHA256 of the body>' header (empty: unsigned)"},
    {"webhook_queue", BSD_CFG_INT, F(webhook_queue), 0, "256", 1, 100000,
     "detections waiting per webhook URL; more are dropped and counted"},
    {"webhook_timeout_seconds", BSD_CFG_DOUBLE, F(webhook_timeout_seconds), 0, "10", 0.1, 300,
     "a webhook POST not answered within this is a failure"},
    {"webhook_retries", BSD_CFG_INT, F(webhook_retries), 0, "8", 0, 1000,
     "a failed webhook POST is retried this many times (after 0.5 s, doubling), then given up"},
    {"webhook_retry_max_seconds", BSD_CFG_DOUBLE, F(webhook_retry_max_seconds), 0, "60", 0.1, 3600,
     "longest wait between webhook retries"},
};
const size_t bsd_n_directives = sizeof bsd_directives / sizeof bsd_directives[0];

const bsd_directive *bsd_config_find(const char *name) {
    for (size_t i = 0; i < bsd_n_directives; i++)
        if (strcmp(bsd_directives[i].name, name) == 0) return &bsd_directives[i];
    return NULL;
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

int bsd_config_set(bsd_config *cfg, const char *name, const char *value, bs_error *err) {
    const bsd_directive *d = bsd_config_find(name);
    if (!d) return bs_error_set(err, "directive '%s': unknown directive (see birdsongd --help-config)", name);
    char *field = (char *)cfg + d->offset;
    char *end = NULL;
    switch (d->type) {
    case BSD_CFG_STRING:
        if (strcmp(name, "rtsp_transport") == 0 && strcmp(value, "tcp") != 0 && strcmp(value, "udp") != 0)
            return bs_error_set(err, "directive '%s': expected tcp or udp, found '%.64s'", name, value);
        if (strlen(value) >= d->size)
            return bs_error_set(err, "directive '%s': expected at most %zu characters, found %zu",
                                name, d->size - 1, strlen(value));
        if (strcmp(name, "log_level") == 0) {
            bs_log_level lv;
            if (bs_log_level_parse(value, &lv) != 0)
                return bs_error_set(err, "directive '%s': expected error, warn, info or debug, found '%s'",
                                    name, value);
        }
        if (strcmp(name, "listen") == 0) {
            char host[64];
            int port;
            bs_error e2;
            if (bsd_parse_listen(value, host, sizeof host, &port, &e2) != 0)
                return bs_error_set(err, "directive '%s': %s", name, e2.msg);
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case BSD_CFG_INT: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno)
            return bs_error_set(err, "directive '%s': expected an integer, found '%s'", name, value);
        if (v < (long)d->min || v > (long)d->max)
            return bs_error_set(err, "directive '%s': expected an integer in [%g, %g], found %ld", name,
                                d->min, d->max, v);
        *(int *)field = (int)v;
        return 0;
    }
    case BSD_CFG_DOUBLE: {
        errno = 0;
        double v = strtod(value, &end);
        if (*value == '\0' || *end != '\0' || errno || !isfinite(v))
            return bs_error_set(err, "directive '%s': expected a number, found '%s'", name, value);
        if (v < d->min || v > d->max)
            return bs_error_set(err, "directive '%s': expected a number in [%g, %g], found %g", name,
                                d->min, d->max, v);
        *(double *)field = v;
        return 0;
    }
    case BSD_CFG_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0)
            return bs_error_set(err, "directive '%s': expected true or false, found '%s'", name, value);
        *(int *)field = b;
        return 0;
    }
    }
    return bs_error_set(err, "directive '%s': internal error, unknown type", name);
}

void bsd_config_defaults(bsd_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < bsd_n_directives; i++) {
        bs_error err;
        if (bsd_config_set(cfg, bsd_directives[i].name, bsd_directives[i].def, &err) != 0) {
            /* A bad default is a programming error caught by the unit tests. */
            fprintf(stderr, "birdsongd: bad built-in default: %s\n", err.msg);
            abort();
        }
    }
}

struct load_ctx {
    bsd_config *cfg;
    int line;          /* lines seen, counted by the reader below */
    int err_line;
    bs_error err;
    int failed;
};

/* "[source NAME]": the source (created at its first directive), or NULL with err. */
static bsd_source_def *section_source(bsd_config *cfg, const char *section, bs_error *err) {
    if (strncmp(section, "source", 6) != 0 || (section[6] != ' ' && section[6] != '\t')) return NULL;
    const char *name = section + 7;
    while (*name == ' ' || *name == '\t') name++;
    for (int i = 0; i < cfg->n_sources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0) return &cfg->sources[i];
    if (bsd_config_add_source(cfg, name, NULL, err) != 0) return NULL;
    return &cfg->sources[cfg->n_sources - 1];
}

/* One directive of a [source NAME] section. */
static int source_directive(bsd_config *cfg, bsd_source_def *s, const char *name, const char *value, bs_error *err) {
    if (strcmp(name, "input") == 0) {
        bsd_source_kind k;
        char target[BSD_PATH_MAX];
        bs_error e2;
        if (bsd_source_parse_spec(value, &k, target, sizeof target, &e2) != 0)
            return bs_error_set(err, "source '%s': input: %s", s->name, e2.msg);
        snprintf(s->spec, sizeof s->spec, "%s", value);
        return 0;
    }
    if (!bsd_config_per_source(name))
        return bs_error_set(err, "source '%s': directive '%s' cannot be set per source (see birdsongd(8), SOURCES)",
                            s->name, name);
    if (s->n_set >= BSD_SOURCE_OVERRIDES || strlen(name) >= sizeof s->set_name[0] || strlen(value) >= sizeof s->set_value[0])
        return bs_error_set(err, "source '%s': directive '%s': too many overrides or too long a value", s->name, name);
    bsd_config *probe = malloc(sizeof *probe); /* the value must parse like the top-level one */
    if (!probe) return bs_error_set(err, "out of memory");
    *probe = *cfg;
    bs_error e2;
    int rc = bsd_config_set(probe, name, value, &e2);
    free(probe);
    if (rc != 0) return bs_error_set(err, "source '%s': %s", s->name, e2.msg);
    snprintf(s->set_name[s->n_set], sizeof s->set_name[0], "%s", name);
    snprintf(s->set_value[s->n_set], sizeof s->set_value[0], "%s", value);
    s->n_set++;
    return 0;
}

static int on_directive(void *user, const char *section, const char *name, const char *value) {
    struct load_ctx *c = user;
    if (c->failed) return 0;
    if (section && section[0]) {
        bsd_source_def *src = section_source(c->cfg, section, &c->err);
        if (src) {
            if (source_directive(c->cfg, src, name, value, &c->err) == 0) return 1;
            c->failed = 1;
            c->err_line = c->line;
            return 0;
        }
        if (strncmp(section, "source", 6) == 0 && (section[6] == ' ' || section[6] == '\t' || section[6] == '\0')) {
            if (section[6] == '\0') bs_error_set(&c->err, "section [source]: expected [source NAME]");
            c->failed = 1;
            c->err_line = c->line;
            return 0;
        }
        bs_error_set(&c->err, "directive '%s': found in section [%s]; directives belong at the top of the file, before any section",
                     name, section);
        c->failed = 1;
        c->err_line = c->line;
        return 0;
    }
    if (bsd_config_set(c->cfg, name, value, &c->err) != 0) {
        c->failed = 1;
        c->err_line = c->line;
        return 0;
    }
    return 1;
}

/* inih's reader hook: counts lines so that the handler knows where it is. */
struct line_reader {
    FILE *f;
    struct load_ctx *ctx;
};

static char *read_line(char *str, int num, void *stream) {
    struct line_reader *r = stream;
    char *s = fgets(str, num, r->f);
    if (s) r->ctx->line++;
    return s;
}

/* A [source NAME] section without `input =` is found when the file has been read. */
static int check_sources_have_input(const bsd_config *cfg, bs_error *err) {
    for (int i = 0; i < cfg->n_sources; i++)
        if (!cfg->sources[i].spec[0])
            return bs_error_set(err, "source '%s': no 'input =' (a file, device:NAME or a URL)", cfg->sources[i].name);
    return 0;
}

int bsd_config_load(bsd_config *cfg, const char *path, bs_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return bs_error_set(err, "%s: cannot open the config file: %s", path, strerror(errno));
    struct load_ctx c = {.cfg = cfg};
    struct line_reader r = {.f = f, .ctx = &c};
    int rc = ini_parse_stream(read_line, &r, on_directive, &c);
    fclose(f);
    if (rc == 0) {
        bs_error e2;
        if (check_sources_have_input(cfg, &e2) != 0) return bs_error_set(err, "%s: %s", path, e2.msg);
        return 0;
    }
    if (rc < 0) return bs_error_set(err, "%s: cannot read the config file (out of memory)", path);
    if (c.failed && c.err_line == rc) return bs_error_set(err, "%s:%d: %s", path, rc, c.err.msg);
    return bs_error_set(err, "%s:%d: syntax error: expected 'name = value', a [section], a comment or a blank line",
                        path, rc);
}

/* ---- sources ------------------------------------------------------------------------------ */

/* What a [source NAME] section may override: how its audio is read and cut into windows. */
static const char *const per_source[] = {
    "input_loop", "input_speed", "ring_seconds", "device_stall_seconds", "reopen_max_seconds", "source_timeout",
    "rtsp_transport", "hop_seconds", "history_seconds", "max_lag_seconds", "debug_dump_path",
    /* and how its detections are decided */
    "min_confidence", "species_thresholds", "include_species", "exclude_species", "suppress_seconds",
    "species_suppress_seconds", "max_event_seconds", NULL,
};

int bsd_config_per_source(const char *name) {
    for (int i = 0; per_source[i]; i++)
        if (strcmp(per_source[i], name) == 0) return 1;
    return 0;
}

const char *bsd_source_kind_name(bsd_source_kind k) {
    return k == BSD_SRC_FILE ? "file" : k == BSD_SRC_DEVICE ? "device" : "url";
}

static const char *const url_schemes[] = {"rtsp", "rtsps", "http", "https", "rtmp", "rtmps",
                                          "udp", "rtp", "srt", "tcp", NULL};

int bsd_source_parse_spec(const char *spec, bsd_source_kind *kind, char *target, size_t target_size,
                          bs_error *err) {
    size_t n = strlen(spec);
    if (n == 0) return bs_error_set(err, "empty source: expected a file, device, device:NAME or a URL");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)spec[i] < 0x20 || spec[i] == 0x7f)
            return bs_error_set(err, "control character at byte %zu of the source", i);
    if (n >= target_size) return bs_error_set(err, "source longer than %zu characters", target_size - 1);
    const char *body = spec;
    if (strcmp(spec, "device") == 0 || strncmp(spec, "device:", 7) == 0) {
        *kind = BSD_SRC_DEVICE;
        body = spec[6] ? spec + 7 : "";
    } else if (strncmp(spec, "file:", 5) == 0) {
        *kind = BSD_SRC_FILE;
        body = spec + 5;
        if (!*body) return bs_error_set(err, "'file:' without a path");
    } else {
        size_t k = 0; /* RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
        if ((spec[0] >= 'a' && spec[0] <= 'z') || (spec[0] >= 'A' && spec[0] <= 'Z'))
            while (spec[k] && (isalnum((unsigned char)spec[k]) || spec[k] == '+' || spec[k] == '-' || spec[k] == '.')) k++;
        if (k > 0 && strncmp(spec + k, "://", 3) == 0) {
            int known = 0;
            for (int i = 0; url_schemes[i] && !known; i++)
                known = strlen(url_schemes[i]) == k && strncasecmp(spec, url_schemes[i], k) == 0;
            if (!known)
                return bs_error_set(err, "unknown URL scheme '%.*s' (expected rtsp, rtsps, http, https, rtmp, rtmps, udp, rtp, srt or tcp)",
                                    (int)(k > 16 ? 16 : k), spec);
            const char *host = spec + k + 3;
            if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
                return bs_error_set(err, "URL '%s' has no host", spec);
            for (const char *p = spec; *p; p++)
                if (*p == ' ') return bs_error_set(err, "URL '%s' contains a space (write it as %%20)", spec);
            *kind = BSD_SRC_URL;
        } else {
            *kind = BSD_SRC_FILE;
        }
    }
    memcpy(target, body, strlen(body) + 1);
    return 0;
}

int bsd_config_add_source(bsd_config *cfg, const char *name, const char *spec, bs_error *err) {
    size_t n = strlen(name);
    if (n == 0 || n >= BSD_SOURCE_NAME_MAX)
        return bs_error_set(err, "source name '%s': expected 1 to %d characters", name, BSD_SOURCE_NAME_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_' && name[i] != '-')
            return bs_error_set(err, "source name '%s': expected letters, digits, '_' or '-'", name);
    if (strcmp(name, BSD_DEFAULT_SOURCE) == 0)
        return bs_error_set(err, "source name '%s' is the top-level input/device's; choose another", name);
    for (int i = 0; i < cfg->n_sources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0) return bs_error_set(err, "source '%s' is defined twice", name);
    if (cfg->n_sources >= BSD_MAX_SOURCES) return bs_error_set(err, "source '%s': at most %d sources", name, BSD_MAX_SOURCES);
    bsd_source_def *s = &cfg->sources[cfg->n_sources];
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, n + 1);
    if (spec) {
        bsd_source_kind k;
        char target[BSD_PATH_MAX];
        bs_error e2;
        if (bsd_source_parse_spec(spec, &k, target, sizeof target, &e2) != 0)
            return bs_error_set(err, "source '%s': %s", name, e2.msg);
        snprintf(s->spec, sizeof s->spec, "%s", spec);
    }
    cfg->n_sources++;
    return 0;
}

/* 1 when the top-level input/device is a source: always without [source] sections. */
static int has_default_source(const bsd_config *cfg) {
    return cfg->n_sources == 0 || cfg->input[0] || cfg->device[0];
}

int bsd_config_n_sources(const bsd_config *cfg) { return has_default_source(cfg) + cfg->n_sources; }

int bsd_config_source(const bsd_config *cfg, int i, char name[BSD_SOURCE_NAME_MAX], bsd_source_kind *kind,
                      bsd_config *out, bs_error *err) {
    int dflt = has_default_source(cfg);
    if (i < 0 || i >= dflt + cfg->n_sources) return bs_error_set(err, "no source %d", i);
    if (out != cfg) *out = *cfg;
    out->n_sources = 0;
    if (dflt && i == 0) {
        snprintf(name, BSD_SOURCE_NAME_MAX, "%s", BSD_DEFAULT_SOURCE);
        *kind = BSD_SRC_DEVICE;
        if (!cfg->input[0]) return 0;
        char target[BSD_PATH_MAX]; /* input may be a URL too (or file:PATH) */
        if (bsd_source_parse_spec(cfg->input, kind, target, sizeof target, err) != 0) return -1;
        if (*kind == BSD_SRC_DEVICE) *kind = BSD_SRC_FILE; /* "input = device" is a file named so */
        else snprintf(out->input, sizeof out->input, "%s", target);
        return 0;
    }
    const bsd_source_def *s = &cfg->sources[i - dflt];
    snprintf(name, BSD_SOURCE_NAME_MAX, "%s", s->name);
    for (int k = 0; k < s->n_set; k++)
        if (bsd_config_set(out, s->set_name[k], s->set_value[k], err) != 0) return -1;
    char target[BSD_PATH_MAX];
    if (bsd_source_parse_spec(s->spec, kind, target, sizeof target, err) != 0) return -1;
    out->input[0] = out->device[0] = '\0';
    if (*kind == BSD_SRC_DEVICE) {
        size_t n = strlen(target);
        if (n >= sizeof out->device) return bs_error_set(err, "source '%s': device name too long", s->name);
        memcpy(out->device, target, n + 1);
    } else {
        snprintf(out->input, sizeof out->input, "%s", target);
    }
    return 0;
}

int bsd_parse_listen(const char *text, char *host, size_t host_size, int *port, bs_error *err) {
    const char *colon;
    const char *h0 = text;
    size_t hlen;
    int v6 = 0;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb[1] != ':') return bs_error_set(err, "expected [IPv6]:port, found '%s'", text);
        h0 = text + 1;
        hlen = (size_t)(rb - h0);
        colon = rb + 1;
        v6 = 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return bs_error_set(err, "expected address:port, found '%s'", text);
        hlen = (size_t)(colon - text);
    }
    if (hlen == 0 || hlen >= host_size) return bs_error_set(err, "expected an IP address before ':', found '%s'", text);
    memcpy(host, h0, hlen);
    host[hlen] = '\0';
    unsigned char buf[16];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, buf) != 1)
        return bs_error_set(err, "expected a numeric IP%s address, found '%s'", v6 ? "v6" : "v4", host);
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 1 || p > 65535)
        return bs_error_set(err, "expected a port in [1, 65535], found '%s'", colon + 1);
    *port = (int)p;
    return 0;
}

int bsd_config_validate(const bsd_config *cfg, bs_error *err) {
    if (cfg->model[0] == '\0') return bs_error_set(err, "directive 'model': a model file is required");
    if (check_sources_have_input(cfg, err) != 0) return -1;
    int n = bsd_config_n_sources(cfg);
    bsd_config *sc = malloc(sizeof *sc);
    if (!sc) return bs_error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        char name[BSD_SOURCE_NAME_MAX];
        bsd_source_kind kind;
        if (bsd_config_source(cfg, i, name, &kind, sc, err) != 0) break;
        double windows = sc->history_seconds / sc->hop_seconds;
        if (windows > BSD_HISTORY_MAX_WINDOWS) {
            bs_error_set(err, "%s%s%sdirective 'history_seconds': %g s at hop_seconds %g is %.0f windows; at most %d are kept (lower history_seconds or raise hop_seconds)",
                         n > 1 ? "source '" : "", n > 1 ? name : "", n > 1 ? "': " : "",
                         sc->history_seconds, sc->hop_seconds, windows, BSD_HISTORY_MAX_WINDOWS);
            break;
        }
        if (i == n - 1) {
            free(sc);
            return 0;
        }
    }
    free(sc);
    return -1;
}

void bsd_config_print_reference(FILE *f) {
    for (size_t i = 0; i < bsd_n_directives; i++) {
        const bsd_directive *d = &bsd_directives[i];
        fprintf(f, "# %s\n", d->help);
        if (d->type == BSD_CFG_INT || d->type == BSD_CFG_DOUBLE) fprintf(f, "# range: %g to %g\n", d->min, d->max);
        fprintf(f, "%s = %s\n\n", d->name, d->def);
    }
}
