/* Unit tests of the spectrogram picture and the audio history (daemon/spectrogram.c); the
 * PNG is decoded and checked in Python by tests/integration/test_station.py too. */
#include <criterion/criterion.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "daemon/spectrogram.h"

/* The anchors of matplotlib's viridis and a point between two of them. */
Test(spectrogram, viridis_anchors) {
    unsigned char c[3];
    bsd_viridis(0, c);
    cr_assert(c[0] == 0x44 && c[1] == 0x01 && c[2] == 0x54);
    bsd_viridis(1, c);
    cr_assert(c[0] == 0xfd && c[1] == 0xe7 && c[2] == 0x25);
    bsd_viridis(0.5, c);
    cr_assert(c[0] == 0x21 && c[1] == 0x91 && c[2] == 0x8c);
    bsd_viridis(0.05, c); /* halfway between 0x440154 and 0x482475 */
    cr_assert(c[0] == 0x46 && c[1] == 0x13 && c[2] == 0x65, "%02x%02x%02x", c[0], c[1], c[2]);
    bsd_viridis(NAN, c);
    cr_assert(c[0] == 0x44);
}

/* A 3 kHz tone: decoded with libpng, the brightest plot row is where the 3 kHz mel band is
 * drawn, and the picture has the promised size. */
Test(spectrogram, a_tone_is_drawn_at_its_frequency) {
    enum { SR = 22050, N = 2 * SR };
    float *x = malloc(N * sizeof *x);
    for (int i = 0; i < N; i++) x[i] = 0.5f * (float)sin(2 * M_PI * 3000.0 * i / SR);
    unsigned char *png;
    size_t len;
    bs_error err;
    cr_assert_eq(bsd_spectrogram_png(x, N, SR, &png, &len, &err), 0, "%s", err.msg);
    free(x);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_memory(&im, png, len));
    cr_assert_eq(im.width, BSD_SPECTROGRAM_WIDTH);
    cr_assert_eq(im.height, BSD_SPECTROGRAM_HEIGHT);
    im.format = PNG_FORMAT_RGB;
    unsigned char *rgb = malloc(PNG_IMAGE_SIZE(im));
    cr_assert(png_image_finish_read(&im, NULL, rgb, 0, NULL));
    free(png);
    /* the brightest row (sum of green, viridis' brightness) in the middle column */
    int xm = BSD_SPECTROGRAM_PLOT_X + BSD_SPECTROGRAM_PLOT_W / 2, best = -1, best_g = -1;
    for (int y = BSD_SPECTROGRAM_PLOT_Y; y < BSD_SPECTROGRAM_PLOT_Y + BSD_SPECTROGRAM_PLOT_H; y++) {
        int g = rgb[((size_t)y * BSD_SPECTROGRAM_WIDTH + (size_t)xm) * 3 + 1];
        if (g > best_g) best_g = g, best = y;
    }
    double m0 = bs_mel_from_hz(0), m1 = bs_mel_from_hz(SR / 2.0);
    double band = (bs_mel_from_hz(3000) - m0) / (m1 - m0) * 129 - 1;
    int want = BSD_SPECTROGRAM_PLOT_Y + BSD_SPECTROGRAM_PLOT_H - 1 - (int)lround((band + 0.5) * 2);
    cr_assert(abs(best - want) <= 3, "brightest row %d, the 3 kHz band at %d", best, want);
    free(rgb);
}

Test(spectrogram, history_gives_back_what_it_holds_and_forgets_across_a_gap) {
    bsd_audio_history h;
    cr_assert_eq(bsd_audio_history_init(&h, 1000, 2.0), 0);
    float x[500];
    for (int b = 0; b < 6; b++) { /* 3 s of a ramp, 0.5 s blocks ending at 100.5, 101, ... */
        for (int i = 0; i < 500; i++) x[i] = (float)(b * 500 + i) / 4096.0f - 0.5f;
        bsd_audio_history_feed(&h, x, 500, 100.0 + 0.5 * (b + 1));
    }
    float *o;
    size_t n;
    cr_assert_eq(bsd_audio_history_copy(&h, 101.5, 102.5, &o, &n), 0);
    cr_assert_eq(n, 1000u);
    for (size_t i = 0; i < n; i++) /* 16-bit PCM: within half a step of what was fed */
        cr_assert_float_eq(o[i], (float)(1500 + i) / 4096.0f - 0.5f, 0.5f / 32767 + 1e-7f, "sample %zu", i);
    free(o);
    cr_assert_eq(bsd_audio_history_copy(&h, 100.5, 101.5, &o, &n), -1, "older than the history");
    cr_assert_eq(bsd_audio_history_copy(&h, 102.5, 103.5, &o, &n), -1, "not heard yet");
    bsd_audio_history_feed(&h, x, 500, 110.0); /* a gap */
    cr_assert_eq(bsd_audio_history_copy(&h, 102.0, 103.0, &o, &n), -1);
    cr_assert_eq(bsd_audio_history_copy(&h, 109.5, 110.0, &o, &n), 0);
    free(o);
    bsd_audio_history_free(&h);
}

Test(spectrogram, history_clips_beyond_full_scale_and_holds_no_nan) {
    bsd_audio_history h;
    cr_assert_eq(bsd_audio_history_init(&h, 1000, 1.0), 0);
    float x[4] = {1.5f, -2.0f, NAN, 0.25f};
    bsd_audio_history_feed(&h, x, 4, 50.004);
    float *o;
    size_t n;
    cr_assert_eq(bsd_audio_history_copy(&h, 50.0, 50.004, &o, &n), 0);
    cr_assert_eq(n, 4u);
    cr_assert_float_eq(o[0], 1.0f, 1e-7f);
    cr_assert_float_eq(o[1], -1.0f, 1e-7f);
    cr_assert_float_eq(o[2], 0.0f, 0);
    cr_assert_float_eq(o[3], 0.25f, 0.5f / 32767);
    free(o);
    bsd_audio_history_free(&h);
}
