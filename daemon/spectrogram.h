/* birdsongd: detection spectrograms as PNG (libpng), and the short audio history they are
 * drawn from when clips are off.
 *
 * The picture: a log-mel spectrogram (128 Slaney mel bands, dB over an 80 dB range, the
 * core's bs_melspec) in the viridis colour map, BSD_SPECTROGRAM_WIDTH x
 * BSD_SPECTROGRAM_HEIGHT pixels (RGB, 8 bits): the plot in a frame, frequency ticks and
 * labels in kHz on the left, time ticks and labels in seconds from the start of the audio
 * below, on a dark background. */
#ifndef BIRDSONG_DAEMON_SPECTROGRAM_H
#define BIRDSONG_DAEMON_SPECTROGRAM_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>

#include "birdsong/error.h"

#define BSD_SPECTROGRAM_WIDTH 672
#define BSD_SPECTROGRAM_HEIGHT 312
/* the plot inside the picture */
#define BSD_SPECTROGRAM_PLOT_X 60
#define BSD_SPECTROGRAM_PLOT_Y 22
#define BSD_SPECTROGRAM_PLOT_W 600
#define BSD_SPECTROGRAM_PLOT_H 256

/* n samples at rate sr (n >= 1) as PNG bytes (malloc'd: *png, *len). 0, or -1 with err. */
int bsd_spectrogram_png(const float *x, size_t n, int sr, unsigned char **png, size_t *len, bs_error *err);

/* The viridis colour of v in [0, 1] (clamped). */
void bsd_viridis(double v, unsigned char rgb[3]);

/* The last `seconds` of the audio the worker analyses (a ring, preallocated), with the
 * capture time of its last sample. Fed on the worker thread (allocates nothing), read by
 * the HTTP threads under its lock. A jump in the capture clock (a gap) empties it.
 * Held as 16-bit PCM, the precision of the clips (FLAC, 16 bit): half the memory of
 * floats (120 s at 22050 Hz: 5.3 MB, not 10.6); samples beyond full scale are clipped. */
typedef struct bsd_audio_history {
    pthread_mutex_t lock;
    int16_t *buf;
    size_t cap;        /* samples */
    size_t fill;       /* samples held (<= cap) */
    size_t pos;        /* next write */
    int rate;
    double t_end;      /* unix seconds just after the last sample */
} bsd_audio_history;

int bsd_audio_history_init(bsd_audio_history *h, int rate, double seconds);
void bsd_audio_history_free(bsd_audio_history *h);
void bsd_audio_history_feed(bsd_audio_history *h, const float *x, size_t n, double t_end);
/* The audio between unix times t0 and t1 (malloc'd, *n samples, back in [-1, 1]), or -1
 * when the history does not hold all of it. */
int bsd_audio_history_copy(bsd_audio_history *h, double t0, double t1, float **out, size_t *n);

#endif
