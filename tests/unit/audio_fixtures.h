/* Test helpers: write small generated audio files with libsndfile into a private temp dir.
 * (Generated signals only: no recordings are copied into the repository.) */
#ifndef BIRDSONG_TESTS_AUDIO_FIXTURES_H
#define BIRDSONG_TESTS_AUDIO_FIXTURES_H

#include <criterion/criterion.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh directory per test process; removed by fx_cleanup. */
static char fx_dir[256];

static __attribute__((unused)) const char *fx_path(const char *name) {
    static char buf[4][512];
    static int k;
    if (!fx_dir[0]) {
        snprintf(fx_dir, sizeof fx_dir, "/tmp/bs-test-XXXXXX");
        cr_assert_not_null(mkdtemp(fx_dir));
    }
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fx_dir, name);
    return buf[k];
}

static __attribute__((unused)) void fx_cleanup(void) {
    if (!fx_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fx_dir);
    fx_dir[0] = 0;
}

/* Writes frames x channels interleaved floats with the given libsndfile format. */
static __attribute__((unused)) const char *fx_write(const char *name, int format, int sr, int ch, const float *x,
                            long frames) {
    const char *p = fx_path(name);
    SF_INFO info = {0};
    info.samplerate = sr;
    info.channels = ch;
    info.format = format;
    cr_assert(sf_format_check(&info), "bad fixture format for %s", name);
    SNDFILE *f = sf_open(p, SFM_WRITE, &info);
    cr_assert_not_null(f, "cannot write fixture %s: %s", p, sf_strerror(NULL));
    if (frames > 0) cr_assert_eq(sf_writef_float(f, x, frames), frames);
    sf_close(f);
    return p;
}

/* A sine of freq Hz and amplitude amp, n frames, same on every channel. */
static __attribute__((unused)) float *fx_sine(double freq, double amp, int sr, int ch, long n) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * (size_t)ch * sizeof *x);
    for (long i = 0; i < n; i++)
        for (int c = 0; c < ch; c++)
            x[i * ch + c] = (float)(amp * sin(2.0 * M_PI * freq * (double)i / sr));
    return x;
}

static __attribute__((unused)) const char *fx_write_sine(const char *name, int format, int sr, int ch, double seconds,
                                 double freq) {
    long n = lround(seconds * sr);
    float *x = fx_sine(freq, 0.5, sr, ch, n);
    const char *p = fx_write(name, format, sr, ch, x, n);
    free(x);
    return p;
}

static __attribute__((unused)) const char *fx_write_bytes(const char *name, const void *data, size_t n) {
    const char *p = fx_path(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    if (n) cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

#endif
