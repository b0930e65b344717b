/* birdsong: audio decoding (libsndfile) and streaming resampling (soxr).
 *
 * Decode: any file libsndfile reads (WAV, FLAC, OGG, AIFF...; 8/16/24/32-bit integer or
 * float; any channel count) becomes mono float32 (mean of the channels) at the file's own
 * rate. Files that are unreadable, empty (no frames) or hold NaN/Inf samples are refused
 * with an error naming the file.
 *
 * Resample: a streaming soxr object (high quality, SOXR_HQ, float32 mono) for the daemon's
 * live input and the trainer's files alike. When in_rate == out_rate it is an exact copy, so
 * 22050 Hz files reach the mel front end bit for bit.
 *
 * Thread-safety: every function here is re-entrant; a bs_resampler is used by one thread. */
#ifndef BIRDSONG_AUDIO_H
#define BIRDSONG_AUDIO_H

#include <stddef.h>

#include "birdsong/error.h"

/* Mono float audio. samples: n_samples values in about [-1, 1] (floats beyond are kept). */
typedef struct bs_audio {
    float *samples;
    size_t n_samples;
    int sample_rate;   /* Hz, the file's own rate */
    int channels;      /* channel count of the source before the down-mix */
} bs_audio;

/* Reads the whole file into out (which the caller frees with bs_audio_free).
 * Returns 0, or -1 with err = "<path>: <problem>" (not found, not an audio file, truncated,
 * no samples, NaN/Inf at frame N, implausible rate...). out is zeroed on failure. */
int bs_audio_read(const char *path, bs_audio *out, bs_error *err);

/* Same as bs_audio_read for an in-memory file image; `name` is used in messages only.
 * (Used by the decode fuzzer and by tests; data is not modified or retained.) */
int bs_audio_read_memory(const void *data, size_t size, const char *name, bs_audio *out,
                         bs_error *err);

void bs_audio_free(bs_audio *a);

/* ---- streaming resampler --------------------------------------------------------------- */

typedef struct bs_resampler bs_resampler;

/* in_rate, out_rate in Hz, each in [1000, 768000]. Returns NULL with err on bad rates or
 * when soxr cannot be created. */
bs_resampler *bs_resampler_create(double in_rate, double out_rate, bs_error *err);
void bs_resampler_free(bs_resampler *r);

/* Upper bound of the samples that one push of n_in input samples (or a flush) can write:
 * size `out` with it and every push consumes all of its input. */
size_t bs_resampler_output_bound(const bs_resampler *r, size_t n_in);

/* Pushes n_in samples and writes the output that became available into out (capacity
 * out_cap). Returns the number of samples written (may be 0 while the filter fills), or
 * -1 with err when out_cap < bs_resampler_output_bound(r, n_in) or soxr fails.
 * Allocates nothing itself (soxr keeps its own buffers from creation / first use). */
long bs_resampler_push(bs_resampler *r, const float *in, size_t n_in, float *out,
                       size_t out_cap, bs_error *err);

/* End of stream: writes what is still held in the filter (up to out_cap, call again while it
 * returns > 0). After the flush, bs_resampler_reset() starts a new stream. */
long bs_resampler_flush(bs_resampler *r, float *out, size_t out_cap, bs_error *err);

/* Forgets all state (a new stream, e.g. after an audio overrun). */
void bs_resampler_reset(bs_resampler *r);

double bs_resampler_in_rate(const bs_resampler *r);
double bs_resampler_out_rate(const bs_resampler *r);

/* Whole-buffer convenience: resamples in (n_in samples at in_rate) to *out (malloc'd, the
 * caller frees it) with *n_out samples, about round(n_in * out_rate / in_rate); the filter
 * delay is compensated so that output sample k is at time k / out_rate. Returns 0 or -1. */
int bs_resample_all(const float *in, size_t n_in, double in_rate, double out_rate, float **out,
                    size_t *n_out, bs_error *err);

#endif
