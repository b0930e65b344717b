/* birdsongd network sources: one stream (rtsp, rtsp over TCP, http(s) Icecast/MP3/AAC/Opus/
 * FLAC, rtmp, udp, ...) opened with libavformat, decoded with libavcodec and turned into mono
 * float at the stream's own rate with libswresample, written into the source's ring with
 * the same timing marks as a capture device (the worker resamples to the model's rate as
 * for any source). The capture supervisor (daemon/capture.c) runs it and reopens it.
 *
 * Watchdog: libavformat's interrupt callback ends any blocking open or read when the stop
 * flag is set or when no audio arrived for `timeout` seconds (no samples means dead,
 * whatever the socket says: a half-open TCP connection, a camera that stopped sending). */
#ifndef BIRDSONGD_NETSOURCE_H
#define BIRDSONGD_NETSOURCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "birdsong/ring.h"

typedef struct bsd_netsource_io {
    bs_ring *ring;
    const _Atomic int *stop;             /* set: return at once */
    _Atomic uint64_t *frames;            /* += frames written */
    _Atomic int64_t *last_frames_mono_ns; /* CLOCK_MONOTONIC of the last samples */
    double timeout;                      /* seconds without audio before giving up */
    const char *rtsp_transport;          /* rtsp://: "tcp" or "udp" (NULL: tcp) */
    /* called once the stream is open and its first audio decoded: its rate and a short
     * description ("mp3, 44100 Hz, 2 ch"); on the supervisor's thread */
    void (*on_open)(void *user, double rate, const char *desc);
    void *user;
} bsd_netsource_io;

/* Reads url until it fails, ends, goes silent for io->timeout or io->stop is set. Returns 0
 * on stop, else -1 with why (one sentence naming the URL without its password): a live
 * stream that ends is a failure too, to be reopened. */
int bsd_netsource_run(const char *url, const bsd_netsource_io *io, char *why, size_t why_size);

/* 1 when FFmpeg's libraries could be loaded (on first use, dlopen), else 0 with why naming
 * the missing library and its Debian package. */
int bsd_netsource_available(char *why, size_t why_size);

/* url with any "user:password@" replaced by "user:***@" (for logs and the API). */
void bsd_netsource_redact(const char *url, char *out, size_t size);

#endif
