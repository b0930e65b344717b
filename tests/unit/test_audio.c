/* Decode (every sample format and channel count the issue lists, and every way a file can be
 * bad) and the streaming resampler. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/audio.h"
#include "tests/unit/audio_fixtures.h"

TestSuite(audio, .fini = fx_cleanup);
TestSuite(resampler);

/* Reads path and checks rate, length and that the content is the 0.5-amplitude sine. */
static void check_sine_file(const char *path, int sr, int ch, long n, double freq, double tol) {
    bs_audio a;
    bs_error err = {{0}};
    cr_assert_eq(bs_audio_read(path, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.sample_rate, sr);
    cr_assert_eq(a.channels, ch);
    cr_assert_eq(a.n_samples, (size_t)n);
    double maxerr = 0;
    for (long i = 0; i < n; i++) {
        double want = 0.5 * sin(2.0 * M_PI * freq * (double)i / sr);
        double e = fabs(a.samples[i] - want);
        if (e > maxerr) maxerr = e;
    }
    cr_assert_leq(maxerr, tol, "%s: max error %g > %g", path, maxerr, tol);
    bs_audio_free(&a);
}

Test(audio, wav16_mono) {
    const char *p = fx_write_sine("a.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1, 0.5, 440);
    check_sine_file(p, 22050, 1, 11025, 440, 1.0 / 32768 + 1e-6);
}

Test(audio, wav8_unsigned) {
    const char *p = fx_write_sine("a8.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 16000, 1, 0.3, 440);
    check_sine_file(p, 16000, 1, 4800, 440, 1.0 / 128 + 1e-6);
}

Test(audio, wav24) {
    const char *p = fx_write_sine("a24.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 48000, 1, 0.2, 1000);
    check_sine_file(p, 48000, 1, 9600, 1000, 1e-6);
}

Test(audio, wav32_int_and_float) {
    const char *p = fx_write_sine("a32.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_32, 22000, 1, 0.2, 300);
    check_sine_file(p, 22000, 1, 4400, 300, 1e-6);
    p = fx_write_sine("af.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1, 0.2, 300);
    check_sine_file(p, 22050, 1, 4410, 300, 1e-7);
}

Test(audio, flac_and_ogg) {
    const char *p = fx_write_sine("a.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, 0.4, 440);
    check_sine_file(p, 22050, 1, 8820, 440, 1.0 / 32768 + 1e-6);
    p = fx_write_sine("a.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, 0.4, 440);
    bs_audio a;
    bs_error err;
    cr_assert_eq(bs_audio_read(p, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.sample_rate, 22050);
    cr_assert_eq(a.n_samples, 8820); /* lossy: only the length and rate are exact */
    bs_audio_free(&a);
}

Test(audio, stereo_is_mean_of_channels) {
    const long n = 1000;
    float *x = malloc(2 * n * sizeof *x);
    for (long i = 0; i < n; i++) {
        x[2 * i] = 0.5f;
        x[2 * i + 1] = (i % 2) ? 0.25f : -0.25f;
    }
    const char *p = fx_write("st.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 16000, 2, x, n);
    free(x);
    bs_audio a;
    bs_error err;
    cr_assert_eq(bs_audio_read(p, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(a.channels, 2);
    cr_assert_eq(a.n_samples, (size_t)n);
    for (long i = 0; i < n; i++)
        cr_assert_float_eq(a.samples[i], (i % 2) ? 0.375f : 0.125f, 1e-7);
    bs_audio_free(&a);
}

Test(audio, six_channels) {
    const char *p = fx_write_sine("six.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 48000, 6, 0.1, 1000);
    check_sine_file(p, 48000, 6, 4800, 1000, 1.0 / 32768 + 1e-6);
}

static void expect_fail(const char *path, const char *needle) {
    bs_audio a;
    bs_error err = {{0}};
    a.samples = (float *)1; /* must be reset on failure */
    cr_assert_eq(bs_audio_read(path, &a, &err), -1, "%s should fail", path);
    cr_assert_null(a.samples);
    cr_assert_eq(a.n_samples, 0);
    cr_assert_not_null(strstr(err.msg, path), "message does not name the file: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, needle), "message lacks '%s': %s", needle, err.msg);
}

Test(audio, missing_file) { expect_fail("/nonexistent/dir/none.wav", "No such file"); }

Test(audio, directory) { expect_fail("/tmp", "is a directory"); }

Test(audio, empty_file_zero_bytes) { expect_fail(fx_write_bytes("empty.wav", "", 0), "empty file"); }

Test(audio, wav_with_no_frames) {
    const char *p = fx_write("noframes.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1, NULL, 0);
    expect_fail(p, "no audio samples");
}

Test(audio, text_file_named_wav) {
    const char *txt = "This is not audio at all, just some text that ends in .wav\n";
    expect_fail(fx_write_bytes("text.wav", txt, strlen(txt)), "cannot read");
}

Test(audio, truncated_flac) {
    const char *p = fx_write_sine("full.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, 2.0, 440);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    const char *t = fx_write_bytes("trunc.flac", buf, (size_t)size / 2);
    free(buf);
    bs_audio a;
    bs_error err = {{0}};
    cr_assert_eq(bs_audio_read(t, &a, &err), -1, "a half FLAC must be refused");
    cr_assert_not_null(strstr(err.msg, t), "%s", err.msg);
}

Test(audio, nan_and_inf_samples_refused) {
    float x[100] = {0};
    x[37] = NAN;
    const char *p = fx_write("nan.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1, x, 100);
    expect_fail(p, "NaN");
    bs_audio a;
    bs_error err;
    bs_audio_read(p, &a, &err);
    cr_assert_not_null(strstr(err.msg, "frame 37"), "%s", err.msg);
    x[37] = 0;
    x[60] = INFINITY;
    p = fx_write("inf.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1, x, 100);
    expect_fail(p, "Inf");
}

Test(audio, memory_reader_matches_file_reader) {
    const char *p = fx_write_sine("m.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 16000, 2, 0.3, 700);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    bs_audio a, b;
    bs_error err;
    cr_assert_eq(bs_audio_read(p, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(bs_audio_read_memory(buf, (size_t)size, "m.flac", &b, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_samples, b.n_samples);
    cr_assert_eq(memcmp(a.samples, b.samples, a.n_samples * sizeof(float)), 0);
    bs_audio_free(&b);
    cr_assert_eq(bs_audio_read_memory(buf, 10, "short", &b, &err), -1);
    cr_assert_not_null(strstr(err.msg, "short"));
    cr_assert_eq(bs_audio_read_memory(buf, 0, "zero", &b, &err), -1);
    free(buf);
    bs_audio_free(&a);
}

/* ---- resampler ---------------------------------------------------------------------------- */

Test(resampler, rejects_bad_rates) {
    bs_error err;
    cr_assert_null(bs_resampler_create(0, 22050, &err));
    cr_assert_not_null(strstr(err.msg, "input rate"));
    cr_assert_null(bs_resampler_create(48000, NAN, &err));
    cr_assert_not_null(strstr(err.msg, "output rate"));
    float *y;
    size_t ny;
    cr_assert_eq(bs_resample_all(NULL, 0, 1e9, 22050, &y, &ny, &err), -1);
}

Test(resampler, same_rate_is_exact_copy) {
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)sin(i * 0.1) * 0.3f;
    float *y;
    size_t ny;
    bs_error err;
    cr_assert_eq(bs_resample_all(x, 1000, 22050, 22050, &y, &ny, &err), 0, "%s", err.msg);
    cr_assert_eq(ny, 1000);
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    free(y);
}

/* Amplitude and frequency of a sine survive 48000 -> 22050 -> and 16000 -> 22050; the output
 * length is the input duration at the new rate; the phase shows no delay. */
static void check_sine_resample(double in_rate, double out_rate, double freq) {
    const size_t n = (size_t)in_rate; /* 1 s */
    float *x = fx_sine(freq, 0.5, (int)in_rate, 1, (long)n);
    float *y;
    size_t ny;
    bs_error err;
    cr_assert_eq(bs_resample_all(x, n, in_rate, out_rate, &y, &ny, &err), 0, "%s", err.msg);
    cr_assert_leq(labs((long)ny - lround(out_rate)), 1, "length %zu for %g Hz", ny, out_rate);
    double maxerr = 0;
    for (size_t i = 200; i + 200 < ny; i++) { /* away from the edges */
        double want = 0.5 * sin(2.0 * M_PI * freq * (double)i / out_rate);
        double e = fabs(y[i] - want);
        if (e > maxerr) maxerr = e;
    }
    cr_assert_leq(maxerr, 1e-3, "%g -> %g: max error %g", in_rate, out_rate, maxerr);
    free(x);
    free(y);
}

Test(resampler, sine_48k_to_22050) { check_sine_resample(48000, 22050, 1000); }
Test(resampler, sine_16k_to_22050) { check_sine_resample(16000, 22050, 3000); }
Test(resampler, sine_22000_to_22050) { check_sine_resample(22000, 22050, 5000); }

/* Streaming in random chunk sizes gives the same samples as one call, and every push
 * consumes all of its input within the advertised bound. */
Test(resampler, streaming_equals_whole_buffer) {
    const size_t n = 48000 * 3;
    float *x = fx_sine(1234.5, 0.4, 48000, 1, (long)n);
    float *whole;
    size_t nw;
    bs_error err;
    cr_assert_eq(bs_resample_all(x, n, 48000, 22050, &whole, &nw, &err), 0, "%s", err.msg);

    bs_resampler *r = bs_resampler_create(48000, 22050, &err);
    cr_assert_not_null(r, "%s", err.msg);
    float *out = malloc((nw + 100000) * sizeof *out);
    size_t no = 0, pos = 0;
    uint32_t seed = 12345;
    float *chunk_out = malloc(bs_resampler_output_bound(r, 5000) * sizeof *chunk_out);
    while (pos < n) {
        seed = seed * 1664525u + 1013904223u;
        size_t len = 1 + (seed >> 8) % 5000;
        if (len > n - pos) len = n - pos;
        size_t cap = bs_resampler_output_bound(r, len);
        long got = bs_resampler_push(r, x + pos, len, chunk_out, cap, &err);
        cr_assert_geq(got, 0, "%s", err.msg);
        memcpy(out + no, chunk_out, (size_t)got * sizeof *out);
        no += (size_t)got;
        pos += len;
    }
    long f;
    while ((f = bs_resampler_flush(r, out + no, 100000, &err)) > 0) no += (size_t)f;
    cr_assert_geq(f, 0, "%s", err.msg);
    cr_assert_eq(no, nw);
    for (size_t i = 0; i < nw; i++) cr_assert_float_eq(out[i], whole[i], 1e-6, "sample %zu", i);

    /* too small an output buffer is an error, not an overflow */
    cr_assert_eq(bs_resampler_push(r, x, 1000, chunk_out, 10, &err), -1);
    cr_assert_not_null(strstr(err.msg, "capacity"));

    /* after reset, a new stream gives the same start again */
    bs_resampler_reset(r);
    long g = bs_resampler_push(r, x, 4800, chunk_out, bs_resampler_output_bound(r, 4800), &err);
    cr_assert_geq(g, 0);
    for (long i = 0; i < g; i++) cr_assert_float_eq(chunk_out[i], whole[i], 1e-6);
    cr_assert_eq(bs_resampler_in_rate(r), 48000);
    cr_assert_eq(bs_resampler_out_rate(r), 22050);
    bs_resampler_free(r);
    free(chunk_out);
    free(out);
    free(whole);
    free(x);
}

/* Every push fits the advertised bound (it would fail otherwise), whatever the ratio and the
 * chunk size, and the whole stream has round(n_in * ratio) samples. */
Test(resampler, bound_holds_for_every_ratio_and_chunk) {
    const double rates[][2] = {{8000, 22050}, {96000, 22050}, {44100, 22050}, {22000, 22050},
                               {2000, 22050}, {192000, 8000}, {16000, 22050}};
    const size_t chunks[] = {1, 7, 441, 4096, 30000};
    float *in = malloc(30000 * sizeof *in);
    for (size_t i = 0; i < 30000; i++) in[i] = (float)sin((double)i * 0.01);
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        bs_error err;
        bs_resampler *rs = bs_resampler_create(rates[r][0], rates[r][1], &err);
        cr_assert_not_null(rs, "%s", err.msg);
        size_t total_in = 0, total_out = 0;
        const size_t cap = bs_resampler_output_bound(rs, 30000);
        float *out = malloc(cap * sizeof *out);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            size_t bound = bs_resampler_output_bound(rs, chunks[c]);
            cr_assert_leq(bound, cap);
            long got = bs_resampler_push(rs, in, chunks[c], out, bound, &err);
            cr_assert_geq(got, 0, "%g -> %g, chunk %zu: %s", rates[r][0], rates[r][1], chunks[c],
                          err.msg);
            total_in += chunks[c];
            total_out += (size_t)got;
        }
        long f;
        while ((f = bs_resampler_flush(rs, out, cap, &err)) > 0) total_out += (size_t)f;
        double expect = (double)total_in * rates[r][1] / rates[r][0];
        cr_assert_leq(fabs((double)total_out - expect), 1.0, "%g -> %g: %zu samples, expected %.1f",
                      rates[r][0], rates[r][1], total_out, expect);
        free(out);
        bs_resampler_free(rs);
    }
    free(in);
}
