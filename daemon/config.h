/* birdsongd configuration: ONE table of directives (daemon/config.c) drives the defaults,
 * the INI file (inih), the command-line overrides, --check-config and the documentation
 * (`birdsongd --help-config`). A new directive is a new struct field plus a table row. */
#ifndef BIRDSONGD_CONFIG_H
#define BIRDSONGD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "birdsong/error.h"

#define BSD_PATH_MAX 1024
#define BSD_HISTORY_MAX_WINDOWS 1000000 /* results kept at most (memory bound) */

/* Sources: `[source NAME]` sections and --source NAME=SPEC. A source's section holds
 * `input = SPEC` and overrides of the per-source directives (bsd_config_per_source). */
#define BSD_MAX_SOURCES 8
#define BSD_SOURCE_NAME_MAX 32         /* [A-Za-z0-9_-], 1 to 31 characters */
#define BSD_SOURCE_OVERRIDES 8
#define BSD_DEFAULT_SOURCE "default"   /* the source of the top-level input/device */

typedef struct bsd_source_def {
    char name[BSD_SOURCE_NAME_MAX];
    char spec[BSD_PATH_MAX];           /* SPEC as written ("" until `input =` is seen) */
    int n_set;
    char set_name[BSD_SOURCE_OVERRIDES][32];
    char set_value[BSD_SOURCE_OVERRIDES][256];
} bsd_source_def;

typedef enum bsd_source_kind { BSD_SRC_FILE, BSD_SRC_DEVICE, BSD_SRC_URL } bsd_source_kind;

/* SPEC: `device` (the default capture device), `device:NAME` (an index or part of a device
 * name), `file:PATH` or a path (an audio file), `SCHEME://...` (a network stream: rtsp,
 * rtsps, http, https, rtmp, rtmps, udp, rtp, srt, tcp). target receives the device name,
 * the path or the URL. 0, or -1 with err naming the problem (empty, control characters,
 * unknown scheme, no host, too long). */
int bsd_source_parse_spec(const char *spec, bsd_source_kind *kind, char *target, size_t target_size,
                          bs_error *err);
/* "file", "device", "url". */
const char *bsd_source_kind_name(bsd_source_kind k);

typedef struct bsd_config {
    /* audio in */
    char device[256];              /* "" = default capture device; else name or index */
    char input[BSD_PATH_MAX];      /* file source instead of a device ("" = device) */
    int input_loop;                /* restart the file at its end */
    double input_speed;            /* file source pace, x real time */
    double ring_seconds;           /* sample ring length (>= 10 s) */
    double device_stall_seconds;   /* no samples for this long: the device is reopened */
    double reopen_max_seconds;     /* backoff cap between reopen attempts */
    double source_timeout;         /* a network stream without audio this long is dead */
    char rtsp_transport[4];        /* tcp or udp: how an rtsp:// source's RTP arrives */
    /* worker */
    char model[BSD_PATH_MAX];      /* .bsm model file */
    double hop_seconds;            /* window hop */
    double history_seconds;        /* results kept for /predictions */
    int inference_threads;         /* OpenBLAS threads */
    double max_lag_seconds;        /* worker this far behind real time: unhealthy */
    double debug_pause_worker_seconds; /* test knob: worker sleeps this long at start */
    char debug_dump_path[BSD_PATH_MAX]; /* test knob: the first windows' samples+features */
    /* HTTP */
    char listen[128];              /* address:port */
    int http_threads;              /* libmicrohttpd thread pool */
    int http_connection_limit;
    int http_timeout_seconds;      /* idle keep-alive connections are closed after this */
    int http_per_ip_connection_limit; /* most connections from one address (0 = no limit) */
    /* request policy (daemon/auth.c) */
    char auth_token[256];          /* bearer token ("" = none; then no write routes exist) */
    char auth_token_file[BSD_PATH_MAX]; /* token from this file (mode 0600/0400), overrides auth_token */
    int auth_read;                 /* reads need the token too */
    char cors_origins[1024];       /* origins allowed cross-origin reads, comma-separated */
    /* process */
    char log_level[16];
    /* station: detections, store, clips, streams (daemon/station.c) */
    char state_dir[BSD_PATH_MAX];  /* detections.db and clips/ ("" = $STATE_DIRECTORY, else not stored) */
    double min_confidence;         /* floor for the model's per-species thresholds */
    char species_thresholds[4096]; /* "Label:0.8, Other:0.6" overrides */
    char include_species[4096];    /* only these detect ("" = all) */
    char exclude_species[4096];    /* these never detect */
    double suppress_seconds;       /* a repeat of a species within this time is dropped */
    char species_suppress_seconds[4096]; /* "Label:30, ..." per species */
    double max_event_seconds;      /* a longer run of windows is split */
    double retention_days;         /* 0 = keep forever */
    int retention_rows;            /* 0 = no limit */
    int clips;                     /* save FLAC clips of detections */
    char privacy[8];               /* issue 16: auto, on or off (daemon/privacy.h) */
    char privacy_action[8];        /* drop or keep */
    double privacy_margin;         /* seconds protected either side of a human window */
    double privacy_threshold;      /* human probability at or above which a window is filtered */
    char species_calendar[BSD_PATH_MAX]; /* issue 16: CSV species,first_day,last_day ("" = none) */
    double clip_pre_roll, clip_post_roll;
    double clips_max_mb, clips_min_free_percent;
    int stream_max_clients;
    int stream_history;
    double stream_heartbeat_seconds;
    int mqtt;                      /* publish detections to an MQTT broker */
    char mqtt_host[256];
    int mqtt_port;
    char mqtt_topic[256];
    char mqtt_client_id[128];
    char mqtt_username[128];
    char mqtt_password[256];
    int mqtt_qos;
    int mqtt_queue;
    /* what station owners look at and wire up (#20) */
    double level_alarm_seconds;    /* digital silence / clipping this long: unhealthy (0 = never) */
    double audio_history_seconds;  /* audio kept in memory for spectrograms when clips are off */
    int mqtt_homeassistant;        /* Home Assistant MQTT discovery (needs mqtt) */
    char mqtt_homeassistant_prefix[64];
    char mqtt_homeassistant_node[48];
    char public_url[512];          /* the API's base URL in links sent out ("" = http://<listen>) */
    char webhook_url[2048];        /* space-separated URLs each new detection is POSTed to */
    char webhook_token[256];       /* bearer token sent with each POST ("" = none) */
    char webhook_secret[256];      /* HMAC-SHA256 key of X-Birdsong-Signature ("" = unsigned) */
    int webhook_queue;             /* detections waiting per URL; beyond: dropped, counted */
    double webhook_timeout_seconds;
    int webhook_retries;
    double webhook_retry_max_seconds;
    /* sources beyond the top-level input/device ([source NAME] sections, --source); not
     * directives of the table */
    int n_sources;
    bsd_source_def sources[BSD_MAX_SOURCES];
} bsd_config;

typedef enum bsd_config_type { BSD_CFG_STRING, BSD_CFG_INT, BSD_CFG_DOUBLE, BSD_CFG_BOOL } bsd_config_type;

typedef struct bsd_directive {
    const char *name;
    bsd_config_type type;
    size_t offset;        /* into bsd_config */
    size_t size;          /* string capacity */
    const char *def;      /* default, as it would be written in the file */
    double min, max;      /* range for INT and DOUBLE */
    const char *help;
} bsd_directive;

extern const bsd_directive bsd_directives[];
extern const size_t bsd_n_directives;

const bsd_directive *bsd_config_find(const char *name);

/* Every directive at its default. */
void bsd_config_defaults(bsd_config *cfg);

/* Sets one directive from its text form. Returns 0, or -1 with err naming the directive,
 * what was expected and what was found (unknown names included). */
int bsd_config_set(bsd_config *cfg, const char *name, const char *value, bs_error *err);

/* Reads an INI file (directives at top level, `name = value`, `#` or `;` comments) over cfg.
 * Returns 0, or -1 with err = "<file>:<line>: directive '<name>': <problem>". */
int bsd_config_load(bsd_config *cfg, const char *path, bs_error *err);

/* Cross-directive checks (e.g. a model is required, listen parses). 0 or -1 with err. The
 * request policy's directives (auth_*, cors_origins) are checked by bsd_auth_check_config
 * (daemon/auth.h), which main calls next. */
int bsd_config_validate(const bsd_config *cfg, bs_error *err);

/* Adds the source NAME=SPEC (--source). 0, or -1 with err (bad name, duplicate, bad SPEC,
 * too many). */
int bsd_config_add_source(bsd_config *cfg, const char *name, const char *spec, bs_error *err);

/* 1 when the directive may be set in a [source NAME] section. */
int bsd_config_per_source(const char *name);

/* The sources the daemon runs, in order: the top-level input/device as source "default"
 * first when no [source] is defined or when input or device is set, then the [source]
 * sections and --source options in the order given. */
int bsd_config_n_sources(const bsd_config *cfg);
/* Source i's name, its kind and target, and its configuration: cfg with the source's
 * overrides applied and input/device set from its SPEC (out->n_sources = 0). 0 or -1 with
 * err. */
int bsd_config_source(const bsd_config *cfg, int i, char name[BSD_SOURCE_NAME_MAX], bsd_source_kind *kind,
                      bsd_config *out, bs_error *err);

/* Splits "host:port" or "[v6]:port". 0 or -1 with err. */
int bsd_parse_listen(const char *text, char *host, size_t host_size, int *port, bs_error *err);

/* Writes every directive with its help and default, as a config file would hold it. */
void bsd_config_print_reference(FILE *f);

#endif
