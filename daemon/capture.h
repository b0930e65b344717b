/* birdsongd audio in: a PortAudio input stream (callback mode, float32 mono) or a file
 * source, both feeding the one sample ring. A supervisor thread opens the source, watches
 * it (stream errors, no samples for device_stall_seconds) and closes and reopens it with
 * backoff (0.25 s doubling to reopen_max_seconds); the daemon never exits on a device error.
 *
 * The PortAudio callback only copies into the ring (bs_ring_write, wait-free) and updates
 * atomic counters: it never blocks, allocates or logs. */
#ifndef BIRDSONGD_CAPTURE_H
#define BIRDSONGD_CAPTURE_H

#include <jansson.h>
#include <stdio.h>

#include "birdsong/error.h"
#include "birdsong/ring.h"
#include "daemon/config.h"

typedef struct bsd_capture bsd_capture;

/* Starts the supervisor for cfg->input (file) or cfg->device. preferred_rate: the model's
 * rate, used for a device when it supports it. cfg and ring must outlive the capture. */
bsd_capture *bsd_capture_start(const bsd_config *cfg, bs_ring *ring, double preferred_rate,
                               bs_error *err);
/* Stops the source (the ring keeps what was captured) and joins the thread. Returns -1 when
 * the thread is stuck in the audio driver and was left behind (do not free the ring then). */
int bsd_capture_stop(bsd_capture *c);
void bsd_capture_free(bsd_capture *c);

/* New JSON object describing the source, its state and its counters. */
json_t *bsd_capture_status_json(bsd_capture *c);
/* Appends reasons (strings) to `reasons` when capture is not delivering; returns 0 when ok. */
int bsd_capture_health(bsd_capture *c, json_t *reasons);
/* 1 once a file source without loop has delivered all of its samples. */
int bsd_capture_ended(bsd_capture *c);

/* The rate a source will most likely run at, for sizing the ring: the file's rate, or the
 * configured device's default rate (PortAudio initialised). 0 when unknown. */
double bsd_input_rate(const char *path);
double bsd_device_rate(const char *device);

/* Prints PortAudio's input devices (index, name, host API, channels, default rate). */
int bsd_list_devices(FILE *out);

/* Silences ALSA/JACK probing noise and initialises PortAudio (once per process). */
int bsd_audio_init(bs_error *err);
void bsd_audio_shutdown(void);

#endif
