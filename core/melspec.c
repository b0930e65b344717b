/* Log-mel dB of one window, exactly librosa 0.10's melspectrogram + power_to_db
 * (REFERENCES.md §1), with FFTW3 single precision.
 *
 * Per extractor: one r2c plan (fixed by built-in wisdom for n_fft 2048, else FFTW_ESTIMATE:
 * never measured, so the same plan and the same rounding in the trainer and the daemon), the
 * periodic Hann window,
 * the sparse filterbank (each mel row stores only its nonzero bin range) and a power-spectrum
 * scratch. Compute allocates nothing. */
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

/* FFTW's planner (plan creation and destruction) is not thread-safe; execution is. */
static pthread_mutex_t g_fftw_planner_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_wisdom_imported; /* under the lock */

/* The real n_fft-point FFT is done as one complex FFT of n_fft/2 points (even samples as real
 * parts, odd samples as imaginary parts: the windowed frame as it lies in memory) followed by
 * the split into the real spectrum, fused with the power (melspec_compute_impl). FFTW's own
 * r2c of 2048 points takes 2.2 us here (its best plan uses scalar and SSE2 codelets for the
 * real-to-complex part), its complex 1024-point FFT 0.8 us with AVX codelets.
 *
 * A fixed plan for that complex 1024-point FFT (64 x 16, FFTW's AVX codelets), as
 * FFTW_PATIENT found it on an AVX2 machine. Measuring at start-up would cost 0.2-0.8 s and,
 * worse, could pick a different plan in each process (the trainer and the daemon would then
 * round differently). This wisdom fixes the plan; where it does not apply (no AVX, another
 * FFTW build, another n_fft) the planner falls back to FFTW_ESTIMATE, also deterministic. */
static const char k_fftw_wisdom[] =
    "(fftw-3.3.10 fftwf_wisdom #x9e7d4dee #xdb14fed1 #x34bf76a4 #xeb6e8fdf\n"
    "  (fftwf_codelet_t2fv_64_avx 0 #x11048 #x11048 #x0 #xc6ca45ce #xf08c5f4a #x61a53ade "
    "#xe5e374c8)\n"
    "  (fftwf_codelet_n2fv_16_avx 0 #x11048 #x11048 #x0 #xf246dd1d #x433be1dd #x669fbc87 "
    "#xe433ec82)\n"
    ")\n";

struct bs_melspec {
    bs_feature_config cfg;
    int n_fft, hop, n_freqs, n_mels, n_frames, seg;
    float *window;     /* n_fft, periodic Hann */
    float *fft_in;     /* n_fft: the windowed frame = n_fft/2 complex (fftwf_malloc) */
    fftwf_complex *fft_out; /* n_fft/2: its complex FFT (fftwf_malloc) */
    float *zr, *zi;    /* n_fft/2 each: fft_out de-interleaved (the split reads it backwards) */
    float *tw_c, *tw_s; /* n_fft/2 each: cos, sin of pi k / (n_fft/2), the split's twiddles */
    float *power;      /* n_freqs + 8: one frame's power spectrum, zero tail */
    int *mel_start;    /* n_mels: first nonzero bin of each row */
    int *mel_len;      /* n_mels: number of nonzero bins */
    int *mel_len8;     /* n_mels: mel_len rounded up to a multiple of 8 */
    float *mel_w;      /* concatenated nonzero weights x 1/4 (see the split), row after row,
                        * each zero-padded to 8 */
    int *mel_off;      /* n_mels: offset of each row in mel_w */
    float db_floor;    /* 10 log10(amin) */
    fftwf_plan plan;
    int plan_from_wisdom; /* 1: the fixed plan below, 0: FFTW_ESTIMATE */
};

/* Slaney mel scale (librosa htk=False). */
static double hz_to_mel(double f) {
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) / logstep;
    return f / f_sp;
}
static double mel_to_hz(double m) {
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (m >= min_log_mel) return min_log_hz * exp(logstep * (m - min_log_mel));
    return f_sp * m;
}

/* Dense (n_mels, n_freqs) float64 filterbank as librosa.filters.mel(norm="slaney"). */
static double *filterbank_f64(const bs_feature_config *c) {
    const int n_mels = c->n_mels, n_freqs = bs_feature_n_freqs(c);
    double *W = calloc((size_t)n_mels * (size_t)n_freqs, sizeof *W);
    double *mel_f = malloc((size_t)(n_mels + 2) * sizeof *mel_f);
    if (!W || !mel_f) {
        free(W);
        free(mel_f);
        return NULL;
    }
    /* n_mels + 2 points evenly spaced in mel (np.linspace), back to Hz. */
    const double mmin = hz_to_mel(c->fmin), mmax = hz_to_mel(c->fmax);
    const int np = n_mels + 2;
    for (int i = 0; i < np; i++) {
        double m = np == 1 ? mmin : mmin + (mmax - mmin) * (double)i / (double)(np - 1);
        if (i == np - 1) m = mmax; /* linspace includes the end point exactly */
        mel_f[i] = mel_to_hz(m);
    }
    for (int i = 0; i < n_mels; i++) {
        const double lo = mel_f[i], ce = mel_f[i + 1], hi = mel_f[i + 2];
        const double d0 = ce - lo, d1 = hi - ce;
        const double enorm = 2.0 / (hi - lo);
        for (int k = 0; k < n_freqs; k++) {
            const double fk = (double)k * c->sample_rate / c->n_fft;
            const double lower = (fk - lo) / d0; /* librosa: -ramps[i] / fdiff[i] */
            const double upper = (hi - fk) / d1; /* ramps[i+2] / fdiff[i+1] */
            double w = lower < upper ? lower : upper;
            if (w < 0.0 || !(w == w)) w = 0.0;
            W[(size_t)i * n_freqs + k] = w * enorm;
        }
    }
    free(mel_f);
    return W;
}

float *bs_mel_filterbank(const bs_feature_config *cfg, bs_error *err) {
    if (bs_feature_config_validate(cfg, err)) return NULL;
    const size_t n = (size_t)cfg->n_mels * (size_t)bs_feature_n_freqs(cfg);
    double *W = filterbank_f64(cfg);
    float *out = malloc(n * sizeof *out);
    if (!W || !out) {
        free(W);
        free(out);
        bs_error_set(err, "mel filterbank: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) out[i] = (float)W[i];
    free(W);
    return out;
}

void bs_melspec_free(bs_melspec *ms) {
    if (!ms) return;
    if (ms->plan) {
        pthread_mutex_lock(&g_fftw_planner_lock);
        fftwf_destroy_plan(ms->plan);
        pthread_mutex_unlock(&g_fftw_planner_lock);
    }
    fftwf_free(ms->fft_in);
    fftwf_free(ms->fft_out);
    free(ms->zr);
    free(ms->zi);
    free(ms->tw_c);
    free(ms->tw_s);
    free(ms->window);
    fftwf_free(ms->power);
    free(ms->mel_len8);
    free(ms->mel_start);
    free(ms->mel_len);
    free(ms->mel_off);
    free(ms->mel_w);
    free(ms);
}

bs_melspec *bs_melspec_create(const bs_feature_config *cfg, bs_error *err) {
    if (bs_feature_config_validate(cfg, err)) return NULL;
    bs_melspec *ms = calloc(1, sizeof *ms);
    if (!ms) goto oom;
    ms->cfg = *cfg;
    ms->n_fft = cfg->n_fft;
    ms->hop = cfg->hop_length;
    ms->n_freqs = bs_feature_n_freqs(cfg);
    ms->n_mels = cfg->n_mels;
    ms->n_frames = bs_feature_n_frames(cfg);
    ms->seg = bs_feature_segment_samples(cfg);
    ms->db_floor = 10.0f * log10f(cfg->amin);

    ms->window = malloc((size_t)ms->n_fft * sizeof *ms->window);
    ms->fft_in = fftwf_malloc((size_t)ms->n_fft * sizeof *ms->fft_in);
    ms->fft_out = fftwf_malloc((size_t)(ms->n_fft / 2) * sizeof *ms->fft_out);
    const size_t half = (size_t)(ms->n_fft / 2);
    ms->zr = malloc(half * sizeof *ms->zr);
    ms->zi = malloc(half * sizeof *ms->zi);
    ms->tw_c = malloc(half * sizeof *ms->tw_c);
    ms->tw_s = malloc(half * sizeof *ms->tw_s);
    ms->power = fftwf_malloc(((size_t)ms->n_freqs + 8) * sizeof *ms->power);
    ms->mel_len8 = malloc((size_t)ms->n_mels * sizeof *ms->mel_len8);
    ms->mel_start = malloc((size_t)ms->n_mels * sizeof *ms->mel_start);
    ms->mel_len = malloc((size_t)ms->n_mels * sizeof *ms->mel_len);
    ms->mel_off = malloc((size_t)ms->n_mels * sizeof *ms->mel_off);
    if (!ms->window || !ms->zr || !ms->zi || !ms->tw_c || !ms->tw_s || !ms->power || !ms->mel_len8 || !ms->fft_in || !ms->fft_out ||
        !ms->mel_start || !ms->mel_len || !ms->mel_off)
        goto oom;

    /* Periodic Hann (scipy get_window('hann', N, fftbins=True)), in double. */
    for (int n = 0; n < ms->n_fft; n++)
        ms->window[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)n / (double)ms->n_fft));
    for (int k = 0; k < ms->n_fft / 2; k++) {
        const double a = M_PI * (double)k / (double)(ms->n_fft / 2);
        ms->tw_c[k] = (float)cos(a);
        ms->tw_s[k] = (float)sin(a);
    }

    /* Sparse filterbank: float64 rows cast to float32 (as librosa stores them), then only
     * the range between the first and last nonzero float32 weight is kept. */
    double *W = filterbank_f64(cfg);
    if (!W) goto oom;
    size_t total = 0;
    for (int m = 0; m < ms->n_mels; m++) {
        const double *row = W + (size_t)m * ms->n_freqs;
        int a = 0, b = ms->n_freqs - 1;
        while (a < ms->n_freqs && (float)row[a] == 0.0f) a++;
        while (b >= a && (float)row[b] == 0.0f) b--;
        ms->mel_start[m] = a < ms->n_freqs ? a : 0;
        ms->mel_len[m] = a < ms->n_freqs ? b - a + 1 : 0; /* an empty filter is all zero */
        ms->mel_len8[m] = (ms->mel_len[m] + 7) / 8 * 8;
        ms->mel_off[m] = (int)total;
        total += (size_t)ms->mel_len8[m];
    }
    ms->mel_w = calloc(total ? total : 1, sizeof *ms->mel_w);
    if (!ms->mel_w) {
        free(W);
        goto oom;
    }
    for (int m = 0; m < ms->n_mels; m++)
        for (int j = 0; j < ms->mel_len[m]; j++)
            ms->mel_w[ms->mel_off[m] + j] = /* x 0.25 is exact: see the split */
                0.25f * (float)W[(size_t)m * ms->n_freqs + (size_t)(ms->mel_start[m] + j)];
    free(W);

    memset(ms->power, 0, ((size_t)ms->n_freqs + 8) * sizeof *ms->power);
    pthread_mutex_lock(&g_fftw_planner_lock);
    if (!g_wisdom_imported) {
        g_wisdom_imported = 1;
        (void)fftwf_import_wisdom_from_string(k_fftw_wisdom); /* 0 where it does not apply */
    }
    fftwf_complex *zin = (fftwf_complex *)ms->fft_in;
    ms->plan = fftwf_plan_dft_1d(ms->n_fft / 2, zin, ms->fft_out, FFTW_FORWARD,
                                 FFTW_MEASURE | FFTW_WISDOM_ONLY);
    ms->plan_from_wisdom = ms->plan != NULL;
    if (!ms->plan)
        ms->plan = fftwf_plan_dft_1d(ms->n_fft / 2, zin, ms->fft_out, FFTW_FORWARD, FFTW_ESTIMATE);
    pthread_mutex_unlock(&g_fftw_planner_lock);
    if (!ms->plan) {
        bs_melspec_free(ms);
        bs_error_set(err, "melspec: FFTW could not plan a complex transform of size %d",
                     cfg->n_fft / 2);
        return NULL;
    }
    return ms;
oom:
    bs_melspec_free(ms);
    bs_error_set(err, "melspec: out of memory for n_fft %d, %d mels", cfg->n_fft, cfg->n_mels);
    return NULL;
}

const bs_feature_config *bs_melspec_config(const bs_melspec *ms) { return &ms->cfg; }

const char *bs_melspec_fft_plan(const bs_melspec *ms) {
    return ms->plan_from_wisdom ? "built-in wisdom" : "FFTW_ESTIMATE";
}

/* log10(x) for normal x > 0, branch-free so that it vectorizes: x = m 2^e with m in
 * [sqrt(1/2), sqrt(2)) (found by subtracting the bits of sqrt(1/2)), ln m = 2 atanh(s),
 * s = (m - 1) / (m + 1), |s| <= 0.1716, series to s^9 (truncation below 3e-9, under float
 * rounding). Within about 1e-5 dB of log10f after the x10; the same operations in the same
 * order on every CPU (no FMA contraction under -std=c11). */
static inline float log10_approx(float x) {
    int32_t u;
    memcpy(&u, &x, sizeof u);
    const int32_t k = 0x3f3504f3; /* bits of sqrt(1/2) */
    const int32_t v = u - k;
    const int32_t e = v >> 23;    /* arithmetic shift: the exponent of x / sqrt(1/2) */
    const int32_t mb = (v & 0x007fffff) + k;
    float m;
    memcpy(&m, &mb, sizeof m);
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    const float p = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
    const float ln = 2.0f * s * p + (float)e * 0.693147180559945f;
    return ln * 0.434294481903252f;
}

/* The power spectrum of the real frame from the complex FFT of half its length.
 * Z = FFT_M(z), z[j] = x[2j] + i x[2j+1]. The real spectrum, times 2:
 * 2X[k] = s + W^k (-i d), 2X[M-k] = conj(s - W^k (-i d)), with s = Z[k] + conj Z[M-k],
 * d = Z[k] - conj Z[M-k], W = exp(-i pi / M). P[k] = |2X[k]|^2 = 4 |X[k]|^2, k = 0..M: the
 * mel weights carry the 1/4 (a power of two: the same bits as scaling P). A function of its
 * own so that restrict tells GCC the arrays are distinct (it vectorizes the loops). */
static inline void real_split_power(const float *restrict Z, float *restrict zr,
                                    float *restrict zi, const float *restrict tw_c,
                                    const float *restrict tw_s, float *restrict P, int M) {
    for (int k = 0; k < M; k++) { /* GCC vectorizes a backward read of split arrays only */
        zr[k] = Z[2 * k];
        zi[k] = Z[2 * k + 1];
    }
    P[0] = (zr[0] + zi[0]) * (zr[0] + zi[0]);
    P[M] = (zr[0] - zi[0]) * (zr[0] - zi[0]);
    const int kmax = (M - 1) / 2; /* pairs k < M - k */
    for (int k = 1; k <= kmax; k++) {
        const int j = M - k;
        const float ar = zr[k], ai = zi[k], br = zr[j], bi = zi[j];
        const float sr = ar + br, si = ai - bi;  /* 2E */
        const float orr = ai + bi, oi = br - ar; /* 2O = -i d */
        const float c = tw_c[k], sn = tw_s[k];   /* W^k = c - i sn */
        const float tr = c * orr + sn * oi, ti = c * oi - sn * orr;
        const float pr = sr + tr, pi = si + ti, qr = sr - tr, qi = si - ti;
        P[k] = pr * pr + pi * pi;
        P[j] = qr * qr + qi * qi;
    }
    if (M % 2 == 0) { /* k = M/2: 2X = 2 conj Z[M/2] */
        const float r = 2.0f * Z[M], i = 2.0f * Z[M + 1];
        P[M / 2] = r * r + i * i;
    }
}

/* The whole computation in one function so that the compiler can make an AVX2 clone of it
 * next to the baseline one (picked at load time); both give bit-identical results, since
 * vectorization here runs across frames and keeps every sum's order. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(BS_NO_TARGET_CLONES)
__attribute__((target_clones("avx2", "default")))
#endif
static void melspec_compute_impl(bs_melspec *ms, const float *restrict segment,
                                 float *restrict out) {
    const int n_fft = ms->n_fft, hop = ms->hop, half = n_fft / 2;
    const int n_mels = ms->n_mels, n_frames = ms->n_frames, seg = ms->seg;
    float *restrict in = ms->fft_in;
    const float *restrict w = ms->window;
    float *restrict P = ms->power;    /* n_freqs + 8, the tail stays 0 */
    const float *restrict Z = (const float *)ms->fft_out; /* interleaved re, im */
    const float *restrict tw_c = ms->tw_c, *restrict tw_s = ms->tw_s;
    float *restrict zr = ms->zr, *restrict zi = ms->zi;
    const int M = half; /* complex FFT length */

    float smax = 0.0f; /* the largest mel power of the window */
    for (int t = 0; t < n_frames; t++) {
        /* centre=True, zero padding: frame t covers segment[t*hop - n_fft/2, + n_fft). */
        const long start = (long)t * hop - half;
        if (start >= 0 && start + n_fft <= seg) {
            const float *restrict x = segment + start;
            for (int n = 0; n < n_fft; n++) in[n] = w[n] * x[n];
        } else {
            const int a = start < 0 ? (int)-start : 0;                      /* first real */
            const int b = start + n_fft > seg ? (int)(seg - start) : n_fft; /* one past last */
            for (int n = 0; n < a && n < n_fft; n++) in[n] = 0.0f;
            for (int n = a; n < b; n++) in[n] = w[n] * segment[start + n];
            for (int n = (b > a ? b : a); n < n_fft; n++) in[n] = 0.0f;
        }
        fftwf_execute(ms->plan);
        real_split_power(Z, zr, zi, tw_c, tw_s, P, M);
        /* Mel rows: dot products in 8 fixed lanes (weights zero-padded to a multiple of 8,
         * P zero-padded past n_freqs), lanes summed in a fixed order: the same result with
         * SSE2 or AVX2. */
        for (int m = 0; m < n_mels; m++) {
            const float *restrict wm = ms->mel_w + ms->mel_off[m];
            const float *restrict pm = P + ms->mel_start[m];
            const int len8 = ms->mel_len8[m];
            float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int j = 0; j < len8; j += 8)
                for (int l = 0; l < 8; l++) a[l] += wm[j + l] * pm[j + l];
            const float v = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
            out[(size_t)m * n_frames + t] = v;
            smax = v > smax ? v : smax;
        }
    }

    /* power_to_db(ref=1, amin, top_db) over this window: 10 log10(max(amin, S)), then
     * max(D, max(D) - top_db); log is monotonic, so max(D) = 10 log10(max(amin, max S)). */
    const size_t n = (size_t)n_mels * (size_t)n_frames;
    const float amin = ms->cfg.amin;
    const float top = 10.0f * log10_approx(smax > amin ? smax : amin);
    const float lo = ms->cfg.top_db > 0.0f ? top - ms->cfg.top_db : -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const float s = out[i] > amin ? out[i] : amin;
        const float d = 10.0f * log10_approx(s);
        out[i] = d > lo ? d : lo;
    }
}

void bs_melspec_compute(bs_melspec *ms, const float *segment, float *out) {
    melspec_compute_impl(ms, segment, out);
}
