/* birdsongd audio in: a PortAudio input stream (callback mode, float32 mono), a file or a
 * network stream (daemon/netsource.h), each feeding its source's sample ring. A supervisor
 * thread per source opens it, watches it (stream errors, no samples for
 * device_stall_seconds, or source_timeout for a network stream) and closes and reopens it
 * with backoff (0.25 s doubling to reopen_max_seconds, each wait scaled by a random factor
 * in [0.5, 1)), logging one line per change of state or error, not per attempt; the daemon
 * never exits on a source error.
 *
 * The PortAudio callback only copies into the ring (bs_ring_write, wait-free) and updates
 * atomic counters: it never blocks, allocates or logs. */
#ifndef BIRDSONGD_CAPTURE_H
#define BIRDSONGD_CAPTURE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "birdsong/error.h"
#include "birdsong/ring.h"
#include "daemon/config.h"
#include "daemon/health.h"

typedef struct bsd_capture bsd_capture;

/* Starts the supervisor for cfg->input (kind file or URL, as bsd_config_source parsed it) or
 * cfg->device (kind device). preferred_rate: the model's rate, used for a device when it
 * supports it. cfg and ring must outlive the capture. */
bsd_capture *bsd_capture_start(const bsd_config *cfg, bsd_source_kind kind, bs_ring *ring,
                               double preferred_rate, bs_error *err);
/* Stops the source (the ring keeps what was captured) and joins the thread. Returns -1 when
 * the thread is stuck in the audio driver and was left behind (do not free the ring then). */
int bsd_capture_stop(bsd_capture *c);
void bsd_capture_free(bsd_capture *c);

typedef enum bsd_capture_state {
    BSD_CAP_STARTING, BSD_CAP_RUNNING, BSD_CAP_REOPENING, BSD_CAP_ENDED, BSD_CAP_STOPPED
} bsd_capture_state;
/* "starting", "running", "reopening", "ended", "stopped". */
const char *bsd_capture_state_name(bsd_capture_state s);

/* The source, its state and its counters, copied under the capture's lock. */
typedef struct bsd_capture_stats {
    int is_file, is_url;
    char requested[BSD_PATH_MAX];  /* input file, device name, or "(default)" */
    char device[256];              /* the device opened ("" before the first open) */
    bsd_capture_state state;
    double sample_rate;            /* of the open source, 0 before */
    uint64_t frames_captured, samples_in_ring_total, overruns, dropped_samples, device_overflows;
    uint64_t opens, failures;
    double seconds_since_last_sample;
    size_t ring_capacity_samples;
    double ring_capacity_seconds, ring_fill_seconds;
    char last_error[512];          /* "" when none */
    double next_attempt_in_seconds; /* while reopening, else -1 */
} bsd_capture_stats;

bsd_capture_stats bsd_capture_get_stats(bsd_capture *c);
/* Adds a reason when capture is not delivering and returns -1; 0 when ok. */
int bsd_capture_health(bsd_capture *c, bsd_health *h);

/* The rate a source will most likely run at, for sizing the ring: the file's rate, or the
 * configured device's default rate (PortAudio initialised). 0 when unknown. */
double bsd_input_rate(const char *path);
double bsd_device_rate(const char *device);

/* Prints PortAudio's input devices (index, whether default, channels, default rate, the
 * ALSA card id of hardware devices, name and host API), then how to name one. */
int bsd_list_devices(FILE *out);
/* The ALSA card number in a PortAudio ALSA device name ("USB Audio: - (hw:2,0)"), or -1. */
int bsd_alsa_card_of_name(const char *name);

/* Silences ALSA/JACK probing noise and initialises PortAudio (once per process). */
int bsd_audio_init(bs_error *err);
void bsd_audio_shutdown(void);

#endif
