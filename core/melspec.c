/* Log-mel dB of one window, exactly librosa 0.10's melspectrogram + power_to_db
 * (REFERENCES.md §1), with FFTW3 single precision.
 *
 * Per extractor: one complex FFT plan of n_fft/2 points (fixed by built-in wisdom for n_fft
 * 2048, else FFTW_ESTIMATE: never measured, so the same plan and the same rounding in the
 * trainer and the daemon), the periodic Hann window, the split's twiddles, the sparse
 * filterbank (each mel row stores only its nonzero bin range) and the scratch arrays.
 * Compute allocates nothing. Speed notes and measurements: docs/features.md section 4. */
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

/* AVX2 and AVX-512 builds of the computation next to the baseline one, chosen at run time
 * (GCC on x86-64; not under the sanitizers, and BS_NO_TARGET_CLONES turns them off to check
 * that all give the same bits). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(BS_NO_TARGET_CLONES)
#define BS_MELSPEC_AVX2 1
#else
#define BS_MELSPEC_AVX2 0
#endif

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

/* The part of mel row m in one block of 16 bins: its weights j0 .. j0 + n - 1, on the
 * block's bins k0 .. k0 + n - 1 (the row starts in this block when j0 is 0, ends in it when
 * j0 + n is its length). */
typedef struct {
    int m, j0, k0, n;
} mel_seg;

struct bs_melspec {
    bs_feature_config cfg;
    float db_off;      /* bs_feature_db_offset of cfg: subtracted from every dB (0 at ref 1) */
    int n_fft, hop, n_freqs, n_mels, n_frames, seg;
    void *arena;       /* fftwf_malloc'd block holding the seven arrays below (arena_layout) */
    float *window;     /* n_fft, periodic Hann */
    float *fft_in;     /* n_fft: a windowed frame = n_fft/2 complex */
    fftwf_complex *fft_out; /* n_fft/2: its complex FFT */
    float *tw_c, *tw_s; /* n_fft/2 each: cos, sin of pi k / (n_fft/2), the split's twiddles */
    float *twp_c, *twp_s; /* the same for the AVX2 split's blocks k = 1 + 8i .. 8 + 8i, each
                           * in its lane order k + (0 1 4 5 2 3 6 7) */
    int *mel_start;    /* n_mels: first nonzero bin of each row */
    int *mel_len;      /* n_mels: number of nonzero bins */
    float *mel_w;      /* concatenated nonzero weights x 1/4 (see the split), row after row */
    int *mel_off;      /* n_mels: offset of each row in mel_w */
    float *pow_all;    /* n_grp * 16 rows x pstride: every frame's power spectrum (row t =
                        * frame t), zero tails and zero rows past n_frames */
    size_t pstride;    /* n_freqs rounded up to 16 floats */
    int n_grp;         /* groups of 16 frames: ceil(n_frames / 16) */
    int n_kblk;        /* blocks of 16 bins the mel rows reach (last nonzero bin / 16 + 1) */
    mel_seg *mseg;     /* each row's part in each block of 16 bins, block after block, in
                        * row order within a block */
    int *kblk_seg;     /* n_kblk + 1: the first segment of each block */
    float *tile;       /* 16 bins x 48 frames: one block of powers transposed (bin-major) */
    float *carry;      /* n_mels x 48: the sums of rows that go on into the next block */
    fftwf_plan plan;
    int plan_from_wisdom; /* 1: the fixed plan below, 0: FFTW_ESTIMATE */
    bs_simd_level simd;   /* the body compute runs: melspec_compute_avx2 or _avx512, or the
                           * baseline one */
};

/* Slaney mel scale (librosa htk=False). */
static double hz_to_mel(double f) {
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) / logstep;
    return f / f_sp;
}
double bs_mel_from_hz(double hz) { return hz_to_mel(hz); }

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

/* The per-frame arrays in one block, each at a fixed offset modulo 4096 bytes, so that the
 * layout does not depend on what malloc returns: a load whose address matches a pending
 * store's in the low 12 bits waits for it ("4K aliasing"), and each loop's load streams
 * start 1-2 KB away from its store stream:
 *   fft_in 0, window 2048 (window loop);  fft_out 2048 (FFT);
 *   tw_c and twp_c 1024, tw_s and twp_s 3072 (split, which stores into pow_all). */
static int arena_layout(bs_melspec *ms) {
    const size_t nf = (size_t)ms->n_fft, half = nf / 2;
    struct {
        size_t floats, offset;
    } a[7] = {{nf, 0},      {nf, 2048},   {nf, 2048},  {half, 1024},
              {half, 3072}, {half, 1024}, {half, 3072}};
    size_t at[7], end = 0;
    for (int i = 0; i < 7; i++) { /* next byte position >= end that is = offset (mod 4096) */
        const size_t pos = end + ((a[i].offset + 4096 - end % 4096) % 4096);
        at[i] = pos;
        end = pos + a[i].floats * sizeof(float);
    }
    char *raw = fftwf_malloc(end + 4096);
    if (!raw) return -1;
    ms->arena = raw;
    char *base = raw + (4096 - (uintptr_t)raw % 4096) % 4096;
    ms->fft_in = (float *)(base + at[0]);
    ms->window = (float *)(base + at[1]);
    ms->fft_out = (fftwf_complex *)(base + at[2]);
    ms->tw_c = (float *)(base + at[3]);
    ms->tw_s = (float *)(base + at[4]);
    ms->twp_c = (float *)(base + at[5]);
    ms->twp_s = (float *)(base + at[6]);
    return 0;
}

void bs_melspec_free(bs_melspec *ms) {
    if (!ms) return;
    if (ms->plan) {
        pthread_mutex_lock(&g_fftw_planner_lock);
        fftwf_destroy_plan(ms->plan);
        pthread_mutex_unlock(&g_fftw_planner_lock);
    }
    fftwf_free(ms->arena);
    free(ms->mel_start);
    free(ms->mel_len);
    free(ms->mel_off);
    free(ms->mel_w);
    free(ms->pow_all);
    free(ms->mseg);
    free(ms->kblk_seg);
    free(ms->tile);
    free(ms->carry);
    free(ms);
}

static bs_melspec_options g_default_options = {.max_simd = BS_SIMD_AVX512};

void bs_melspec_set_default_options(const bs_melspec_options *opt) { g_default_options = *opt; }
bs_melspec_options bs_melspec_default_options(void) { return g_default_options; }

bs_melspec *bs_melspec_create(const bs_feature_config *cfg, bs_error *err) {
    return bs_melspec_create_with(cfg, NULL, err);
}

bs_melspec *bs_melspec_create_with(const bs_feature_config *cfg, const bs_melspec_options *opt, bs_error *err) {
    const bs_melspec_options o = opt ? *opt : g_default_options;
    (void)o; /* only the wide bodies look at it */
    if (bs_feature_config_validate(cfg, err)) return NULL;
    bs_melspec *ms = calloc(1, sizeof *ms);
    if (!ms) goto oom;
    ms->cfg = *cfg;
    ms->db_off = (float)bs_feature_db_offset(cfg);
    ms->n_fft = cfg->n_fft;
    ms->hop = cfg->hop_length;
    ms->n_freqs = bs_feature_n_freqs(cfg);
    ms->n_mels = cfg->n_mels;
    ms->n_frames = bs_feature_n_frames(cfg);
    ms->seg = bs_feature_segment_samples(cfg);

    ms->mel_start = malloc((size_t)ms->n_mels * sizeof *ms->mel_start);
    ms->mel_len = malloc((size_t)ms->n_mels * sizeof *ms->mel_len);
    ms->mel_off = malloc((size_t)ms->n_mels * sizeof *ms->mel_off);
    if (!ms->mel_start || !ms->mel_len || !ms->mel_off) goto oom;

    /* Sparse filterbank: float64 rows cast to float32 (as librosa stores them), then only
     * the range between the first and last nonzero float32 weight is kept. */
    double *W = filterbank_f64(cfg);
    if (!W) goto oom;
    size_t total = 0;
    int reach = 0; /* one past the last bin any row reads */
    for (int m = 0; m < ms->n_mels; m++) {
        const double *row = W + (size_t)m * ms->n_freqs;
        int a = 0, b = ms->n_freqs - 1;
        while (a < ms->n_freqs && (float)row[a] == 0.0f) a++;
        while (b >= a && (float)row[b] == 0.0f) b--;
        ms->mel_start[m] = a < ms->n_freqs ? a : 0;
        ms->mel_len[m] = a < ms->n_freqs ? b - a + 1 : 0; /* an empty filter is all zero */
        ms->mel_off[m] = (int)total;
        total += (size_t)ms->mel_len[m];
        if (ms->mel_start[m] + ms->mel_len[m] > reach) reach = ms->mel_start[m] + ms->mel_len[m];
    }
    ms->pstride = ((size_t)ms->n_freqs + 15) / 16 * 16;
    ms->n_grp = (ms->n_frames + 15) / 16;
    ms->n_kblk = (reach + 15) / 16; /* 16 n_kblk <= pstride */
    const size_t rows = 16 * (size_t)ms->n_grp;
    ms->mel_w = calloc(total ? total : 1, sizeof *ms->mel_w);
    ms->pow_all = aligned_alloc(64, rows * ms->pstride * sizeof *ms->pow_all);
    ms->tile = aligned_alloc(64, 16 * 48 * sizeof *ms->tile);
    ms->carry = aligned_alloc(64, (size_t)ms->n_mels * 48 * sizeof *ms->carry);
    ms->kblk_seg = calloc((size_t)ms->n_kblk + 1, sizeof *ms->kblk_seg);
    size_t n_seg = 0; /* the rows' parts in the blocks of 16 bins */
    for (int m = 0; m < ms->n_mels; m++)
        if (ms->mel_len[m] > 0)
            n_seg += (size_t)((ms->mel_start[m] + ms->mel_len[m] - 1) / 16 -
                              ms->mel_start[m] / 16 + 1);
    ms->mseg = malloc((n_seg + 1) * sizeof *ms->mseg);
    if (ms->pow_all) memset(ms->pow_all, 0, rows * ms->pstride * sizeof *ms->pow_all);
    if (!ms->mel_w || !ms->pow_all || !ms->tile || !ms->carry || !ms->kblk_seg || !ms->mseg ||
        arena_layout(ms)) {
        free(W);
        goto oom;
    }
    for (int m = 0; m < ms->n_mels; m++)
        for (int j = 0; j < ms->mel_len[m]; j++) /* x 0.25 is exact: see the split */
            ms->mel_w[ms->mel_off[m] + j] =
                0.25f * (float)W[(size_t)m * ms->n_freqs + (size_t)(ms->mel_start[m] + j)];
    n_seg = 0; /* block after block, rows in order within a block */
    for (int b = 0; b < ms->n_kblk; b++) {
        ms->kblk_seg[b] = (int)n_seg;
        for (int m = 0; m < ms->n_mels; m++) {
            const int a = ms->mel_start[m], e = a + ms->mel_len[m]; /* bins [a, e) */
            const int lo = a > 16 * b ? a : 16 * b, hi = e < 16 * b + 16 ? e : 16 * b + 16;
            if (ms->mel_len[m] == 0 || lo >= hi) continue;
            ms->mseg[n_seg++] = (mel_seg){.m = m, .j0 = lo - a, .k0 = lo - 16 * b, .n = hi - lo};
        }
    }
    ms->kblk_seg[ms->n_kblk] = (int)n_seg;
    free(W);

    /* Periodic Hann (scipy get_window('hann', N, fftbins=True)), in double. */
    for (int n = 0; n < ms->n_fft; n++)
        ms->window[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)n / (double)ms->n_fft));
    for (int k = 0; k < ms->n_fft / 2; k++) {
        const double a = M_PI * (double)k / (double)(ms->n_fft / 2);
        ms->tw_c[k] = (float)cos(a);
        ms->tw_s[k] = (float)sin(a);
    }
    static const int lane_k[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    for (int i = 0; 8 + 8 * i <= (ms->n_fft / 2 - 1) / 2; i++)
        for (int l = 0; l < 8; l++) {
            ms->twp_c[8 * i + l] = ms->tw_c[1 + 8 * i + lane_k[l]];
            ms->twp_s[8 * i + l] = ms->tw_s[1 + 8 * i + lane_k[l]];
        }
    pthread_mutex_lock(&g_fftw_planner_lock);
    if (!g_wisdom_imported) {
        g_wisdom_imported = 1;
        (void)fftwf_import_wisdom_from_string(k_fftw_wisdom); /* 0 where it does not apply */
    }
    fftwf_complex *zin = (fftwf_complex *)ms->fft_in;
    ms->plan = fftwf_plan_dft_1d(ms->n_fft / 2, zin, ms->fft_out, FFTW_FORWARD,
                                 FFTW_MEASURE | FFTW_WISDOM_ONLY);
    ms->plan_from_wisdom = ms->plan != NULL;
#if BS_MELSPEC_AVX2
    __builtin_cpu_init();
    ms->simd = BS_SIMD_BASELINE;
    if (o.max_simd >= BS_SIMD_AVX2 && __builtin_cpu_supports("avx2")) ms->simd = BS_SIMD_AVX2;
    if (o.max_simd >= BS_SIMD_AVX512 && ms->simd == BS_SIMD_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq"))
        ms->simd = BS_SIMD_AVX512;
#endif
    if (!ms->plan)
        ms->plan =
            fftwf_plan_dft_1d(ms->n_fft / 2, zin, ms->fft_out, FFTW_FORWARD, FFTW_ESTIMATE);
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

bs_simd_level bs_melspec_simd_level(const bs_melspec *ms) {
    return ms->simd;
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

/* GCC/Clang vector extensions. Element-wise IEEE operations and lane shuffles only, so every
 * lane rounds exactly as the scalar code does: the baseline (SSE2, 4 floats) and the AVX2
 * (8 floats) paths give the same bits. Unaligned loads and stores through memcpy (macros:
 * passing 32-byte vectors by value would change the ABI without AVX). */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
/* Audio prefetch: the samples new in frame t + PF_AHEAD, while frame t is split, into L2. */
#define PF_AHEAD 2
#define LOADV(v, p) memcpy(&(v), (p), sizeof(v))
#define STOREV(p, v) memcpy((p), &(v), sizeof(v))
#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* Lane-wise select through the bits (C has no ?: on vectors). */
#define SELECT4(mask, a, b) ((v4f)(((mask) & (v4i)(a)) | (~(mask) & (v4i)(b))))
#define SELECT8(mask, a, b) ((v8f)(((mask) & (v8i)(a)) | (~(mask) & (v8i)(b))))
#define SELECT16(mask, a, b) ((v16f)(((mask) & (v16i)(a)) | (~(mask) & (v16i)(b))))

/* The power spectrum of the real frame from the complex FFT of half its length.
 * Z = FFT_M(z), z[j] = x[2j] + i x[2j+1]. The real spectrum, times 2:
 * 2X[k] = s + W^k (-i d), 2X[M-k] = conj(s - W^k (-i d)), with s = Z[k] + conj Z[M-k],
 * d = Z[k] - conj Z[M-k], W = exp(-i pi / M). P[k] = |2X[k]|^2 = 4 |X[k]|^2, k = 0..M: the
 * mel weights carry the 1/4 (a power of two: the same bits as scaling P). Pairs (k, M-k)
 * four or eight at a time; the backward half is read and written through lane reversals
 * (GCC does not vectorize a backward read of interleaved complex on its own). On the way,
 * npf cache lines from pf are prefetched into L2, one per vector step (the next frames'
 * audio). */
#define SPLIT_BODY(V, ar, ai, br, bi, c, sn, p, q)                                          \
    const V sr = ar + br, si = ai - bi;  /* 2E */                                          \
    const V orr = ai + bi, oi = br - ar; /* 2O = -i d */                                   \
    const V tr = c * orr + sn * oi, ti = c * oi - sn * orr; /* W^k 2O, W^k = c - i sn */   \
    const V pr = sr + tr, pi = si + ti, qr = sr - tr, qi = si - ti;                        \
    const V p = pr * pr + pi * pi, q = qr * qr + qi * qi;

ALWAYS_INLINE void real_split_power(const float *restrict Z, const float *restrict tw_c,
                                    const float *restrict tw_s, const float *restrict twp_c,
                                    const float *restrict twp_s, float *restrict P, int M,
                                    const float *pf, int npf, const int wide) {
    int ipf = 0; /* lines of pf prefetched so far: one per vector step, the rest at the end */
    P[0] = (Z[0] + Z[1]) * (Z[0] + Z[1]);
    P[M] = (Z[0] - Z[1]) * (Z[0] - Z[1]);
    const int kmax = (M - 1) / 2; /* pairs k < M - k */
    int k = 1;
    if (wide == 2)
        /* AVX-512: 16 pairs in natural lane order; the two-source permutes de-interleave
         * with one shuffle per vector and read the backward half reversed. Then the same on
         * 8 lanes (AVX-512VL) for the rest. */
        for (; k + 15 <= kmax; k += 16) {
            if (ipf < npf) __builtin_prefetch(pf + 16 * ipf++, 0, 2);
            const int j0 = M - k - 15; /* lane o (k + o) pairs with M - k - o = j0 + 15 - o */
            v16f za, zb, ja, jb, c, sn;
            LOADV(za, Z + 2 * k);
            LOADV(zb, Z + 2 * k + 16);
            LOADV(ja, Z + 2 * j0);
            LOADV(jb, Z + 2 * j0 + 16);
            LOADV(c, tw_c + k);
            LOADV(sn, tw_s + k);
            const v16f ar = __builtin_shufflevector(za, zb, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
                                                    20, 22, 24, 26, 28, 30);
            const v16f ai = __builtin_shufflevector(za, zb, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19,
                                                    21, 23, 25, 27, 29, 31);
            const v16f br = __builtin_shufflevector(ja, jb, 30, 28, 26, 24, 22, 20, 18, 16, 14,
                                                    12, 10, 8, 6, 4, 2, 0);
            const v16f bi = __builtin_shufflevector(ja, jb, 31, 29, 27, 25, 23, 21, 19, 17, 15,
                                                    13, 11, 9, 7, 5, 3, 1);
            SPLIT_BODY(v16f, ar, ai, br, bi, c, sn, p, q)
            const v16f qj = __builtin_shufflevector(q, q, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                    5, 4, 3, 2, 1, 0);
            STOREV(P + k, p);
            STOREV(P + j0, qj);
        }
    if (wide == 2)
        for (; k + 7 <= kmax; k += 8) {
            if (ipf < npf) __builtin_prefetch(pf + 16 * ipf++, 0, 2);
            const int j0 = M - k - 7; /* lane o (k + o) pairs with M - k - o = j0 + 7 - o */
            v8f za, zb, ja, jb, c, sn;
            LOADV(za, Z + 2 * k);
            LOADV(zb, Z + 2 * k + 8);
            LOADV(ja, Z + 2 * j0);
            LOADV(jb, Z + 2 * j0 + 8);
            LOADV(c, tw_c + k);
            LOADV(sn, tw_s + k);
            const v8f ar = __builtin_shufflevector(za, zb, 0, 2, 4, 6, 8, 10, 12, 14);
            const v8f ai = __builtin_shufflevector(za, zb, 1, 3, 5, 7, 9, 11, 13, 15);
            const v8f br = __builtin_shufflevector(ja, jb, 14, 12, 10, 8, 6, 4, 2, 0);
            const v8f bi = __builtin_shufflevector(ja, jb, 15, 13, 11, 9, 7, 5, 3, 1);
            SPLIT_BODY(v8f, ar, ai, br, bi, c, sn, p, q)
            const v8f qj = __builtin_shufflevector(q, q, 7, 6, 5, 4, 3, 2, 1, 0);
            STOREV(P + k, p);
            STOREV(P + j0, qj);
        }
    if (wide == 1)
        /* Lanes in the order k + (0 1 4 5 2 3 6 7), the one AVX's in-lane shuffles give, so
         * that the de-interleaving costs one shuffle per vector; the backward half is read
         * with its 16-byte halves swapped (loads), the results put in order once. */
        for (; k + 7 <= kmax; k += 8) {
            if (ipf < npf) __builtin_prefetch(pf + 16 * ipf++, 0, 2);
            const int j0 = M - k - 7; /* lane with k + o pairs with M - k - o = j0 + 7 - o */
            v8f za, zb, c, sn;
            v4f j01, j23, j45, j67; /* complex j0 + 0,1  j0 + 2,3 ... */
            LOADV(za, Z + 2 * k);
            LOADV(zb, Z + 2 * k + 8);
            LOADV(j01, Z + 2 * j0);
            LOADV(j23, Z + 2 * j0 + 4);
            LOADV(j45, Z + 2 * j0 + 8);
            LOADV(j67, Z + 2 * j0 + 12);
            LOADV(c, twp_c + (k - 1));
            LOADV(sn, twp_s + (k - 1));
            const v8f s1 = __builtin_shufflevector(j67, j45, 0, 1, 2, 3, 4, 5, 6, 7);
            const v8f s2 = __builtin_shufflevector(j23, j01, 0, 1, 2, 3, 4, 5, 6, 7);
            const v8f ar = __builtin_shufflevector(za, zb, 0, 2, 8, 10, 4, 6, 12, 14);
            const v8f ai = __builtin_shufflevector(za, zb, 1, 3, 9, 11, 5, 7, 13, 15);
            const v8f br = __builtin_shufflevector(s1, s2, 2, 0, 10, 8, 6, 4, 14, 12);
            const v8f bi = __builtin_shufflevector(s1, s2, 3, 1, 11, 9, 7, 5, 15, 13);
            SPLIT_BODY(v8f, ar, ai, br, bi, c, sn, p, q)
            const v8f pk = __builtin_shufflevector(p, p, 0, 1, 4, 5, 2, 3, 6, 7);
            const v8f qj = __builtin_shufflevector(q, q, 7, 6, 3, 2, 5, 4, 1, 0);
            STOREV(P + k, pk);
            STOREV(P + j0, qj);
        }
    for (; k + 3 <= kmax; k += 4) {
        const int j0 = M - k - 3; /* lane l pairs k + l with M - k - l = j0 + 3 - l */
        v4f za, zb, ja, jb, c, sn;
        LOADV(za, Z + 2 * k);
        LOADV(zb, Z + 2 * k + 4);
        LOADV(ja, Z + 2 * j0);
        LOADV(jb, Z + 2 * j0 + 4);
        LOADV(c, tw_c + k);
        LOADV(sn, tw_s + k);
        const v4f ar = __builtin_shufflevector(za, zb, 0, 2, 4, 6);
        const v4f ai = __builtin_shufflevector(za, zb, 1, 3, 5, 7);
        const v4f br = __builtin_shufflevector(ja, jb, 6, 4, 2, 0);
        const v4f bi = __builtin_shufflevector(ja, jb, 7, 5, 3, 1);
        SPLIT_BODY(v4f, ar, ai, br, bi, c, sn, p, q)
        const v4f qrev = __builtin_shufflevector(q, q, 3, 2, 1, 0);
        STOREV(P + k, p);
        STOREV(P + j0, qrev);
    }
    for (; k <= kmax; k++) { /* the same operations, one pair at a time */
        const int j = M - k;
        const float ar = Z[2 * k], ai = Z[2 * k + 1], br = Z[2 * j], bi = Z[2 * j + 1];
        const float c = tw_c[k], sn = tw_s[k];
        SPLIT_BODY(float, ar, ai, br, bi, c, sn, p, q)
        P[k] = p;
        P[j] = q;
    }
    if (M % 2 == 0) { /* k = M/2: 2X = 2 conj Z[M/2] */
        const float r = 2.0f * Z[M], i = 2.0f * Z[M + 1];
        P[M / 2] = r * r + i * i;
    }
    for (; ipf < npf; ipf++) __builtin_prefetch(pf + 16 * ipf, 0, 2);
}

/* Transposes of the power rows into bin-major order, for the mel projection with frames in
 * lanes. An n x n block (rows ss floats apart) goes to dst (rows ds apart) in log2 n rounds:
 * round s swaps, in every 2s x 2s block, the two off-diagonal s x s blocks (element (i, c)
 * with bit s of i clear and bit s of c set trades places with (i + s, c - s)), one pair of
 * two-source shuffles per pair of rows. */
#define TR_SWAP(V, a, b, n) /* a, b = shuffles of (a, b) by the masks TR_LO_n, TR_HI_n */  \
    do {                                                                                  \
        const V x_ = (a), y_ = (b);                                                       \
        (a) = __builtin_shufflevector(x_, y_, TR_LO_##n);                                \
        (b) = __builtin_shufflevector(x_, y_, TR_HI_##n);                                \
    } while (0)
#define TR_LO_4_1 0, 4, 2, 6
#define TR_HI_4_1 1, 5, 3, 7
#define TR_LO_4_2 0, 1, 4, 5
#define TR_HI_4_2 2, 3, 6, 7
#define TR_LO_8_1 0, 8, 2, 10, 4, 12, 6, 14
#define TR_HI_8_1 1, 9, 3, 11, 5, 13, 7, 15
#define TR_LO_8_2 0, 1, 8, 9, 4, 5, 12, 13
#define TR_HI_8_2 2, 3, 10, 11, 6, 7, 14, 15
#define TR_LO_8_4 0, 1, 2, 3, 8, 9, 10, 11
#define TR_HI_8_4 4, 5, 6, 7, 12, 13, 14, 15
#define TR_LO_16_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define TR_HI_16_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define TR_LO_16_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define TR_HI_16_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define TR_LO_16_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define TR_HI_16_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define TR_LO_16_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define TR_HI_16_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31

/* n x n floats, n = 4, 8 or 16 (v4f, v8f, v16f), the rounds fully unrolled so that the rows
 * stay in registers (in plain loops GCC kept them in memory: 3x as long). */
#define TRANSPOSE_N(name, V, n, ROUNDS)                                                      \
    ALWAYS_INLINE void name(const float *restrict src, size_t ss, float *restrict dst,      \
                            size_t ds) {                                                    \
        V r[n];                                                                             \
        _Pragma("GCC unroll 16") for (int i = 0; i < n; i++) LOADV(r[i], src + i * ss);     \
        ROUNDS                                                                              \
        _Pragma("GCC unroll 16") for (int i = 0; i < n; i++) STOREV(dst + i * ds, r[i]);    \
    }
#define TR_ROUND(V, n, s)                                                                   \
    _Pragma("GCC unroll 16") for (int i = 0; i < n; i++) if (!(i & s))                      \
        TR_SWAP(V, r[i], r[i + s], n##_##s);
TRANSPOSE_N(transpose4, v4f, 4, TR_ROUND(v4f, 4, 1) TR_ROUND(v4f, 4, 2))
TRANSPOSE_N(transpose8, v8f, 8, TR_ROUND(v8f, 8, 1) TR_ROUND(v8f, 8, 2) TR_ROUND(v8f, 8, 4))
TRANSPOSE_N(transpose16, v16f, 16,
            TR_ROUND(v16f, 16, 1) TR_ROUND(v16f, 16, 2) TR_ROUND(v16f, 16, 4)
                TR_ROUND(v16f, 16, 8))

/* Bins 16 b .. 16 b + 15 of frames 16 g0 .. 16 (g0 + NG) - 1 (rows of pow_all) into the
 * tile, bin-major: frame 16 g + t in lane 16 g + t of the bin's row of 48. By 16 x 16 blocks
 * in the AVX-512 body, by 8 x 8 or 4 x 4 ones in the AVX2 and baseline bodies (their
 * registers hold 8 or 4 floats). */
ALWAYS_INLINE void tile_powers(const bs_melspec *ms, int g0, const int NG, int b,
                               const int wide) {
    const size_t ps = ms->pstride;
    for (int g = 0; g < NG; g++) {
        const float *restrict src = ms->pow_all + (size_t)(16 * (g0 + g)) * ps + 16 * (size_t)b;
        float *restrict dst = ms->tile + 16 * g;
        if (wide == 2)
            transpose16(src, ps, dst, 48);
        else if (wide == 1)
            for (int i = 0; i < 16; i += 8)
                for (int j = 0; j < 16; j += 8)
                    transpose8(src + i * ps + j, ps, dst + j * 48 + i, 48);
        else
            for (int i = 0; i < 16; i += 4)
                for (int j = 0; j < 16; j += 4)
                    transpose4(src + i * ps + j, ps, dst + j * 48 + i, 48);
    }
}

/* The mel rows of frames 16 g0 .. 16 (g0 + NG) - 1 (NG <= 3 groups of 16, in vectors of L =
 * 4, 8 or 16 lanes of type V), block of 16 bins after block: the block's powers are
 * transposed into the tile (in L1), then each row's part in the block is summed in bin
 * order, one frame per lane; a row that goes on into the next block leaves its sums in
 * carry. So every body makes each sum in the order of the plain scalar loop: the same bits.
 * No padding and no reductions: 2 loads (a weight broadcast and L frames' powers) per L
 * products. Into out (n_mels, n_frames); *mx keeps the lane-wise maximum (lanes past the
 * last frame hold 0). */
#define MEL_ROWS_T(name, V, L, SELECT)                                                       \
    ALWAYS_INLINE void name(const bs_melspec *ms, int g0, const int NG, float *restrict out, \
                            V *mx, const int wide) {                                         \
        const int NV = NG * 16 / L, n_frames = ms->n_frames;                                 \
        for (int b = 0; b < ms->n_kblk; b++) {                                               \
            tile_powers(ms, g0, NG, b, wide);                                                \
            for (int i = ms->kblk_seg[b]; i < ms->kblk_seg[b + 1]; i++) {                    \
                const mel_seg sg = ms->mseg[i];                                               \
                const float *restrict wm = ms->mel_w + ms->mel_off[sg.m] + sg.j0;            \
                const float *restrict p = ms->tile + 48 * sg.k0;                             \
                float *restrict cy = ms->carry + 48 * (size_t)sg.m;                          \
                V acc[12];                                                                   \
                for (int v = 0; v < NV; v++) {                                               \
                    acc[v] = (V){0};                                                         \
                    if (sg.j0 > 0) LOADV(acc[v], cy + L * v); /* goes on from a block */    \
                }                                                                            \
                for (int j = 0; j < sg.n; j++, p += 48)                                      \
                    for (int v = 0; v < NV; v++) {                                           \
                        V x;                                                                 \
                        LOADV(x, p + L * v);                                                 \
                        acc[v] += wm[j] * x;                                                 \
                    }                                                                        \
                for (int v = 0; v < NV; v++) {                                               \
                    if (sg.j0 + sg.n < ms->mel_len[sg.m]) { /* goes on into the next block */ \
                        STOREV(cy + L * v, acc[v]);                                          \
                        continue;                                                            \
                    }                                                                        \
                    *mx = SELECT(acc[v] > *mx, acc[v], *mx);                                 \
                    const int t0 = 16 * g0 + L * v;                                          \
                    const int nt = n_frames - t0 < L ? n_frames - t0 : L;                    \
                    float *o = out + (size_t)sg.m * n_frames + t0;                           \
                    if (nt == L)                                                             \
                        STOREV(o, acc[v]);                                                   \
                    else if (nt > 0)                                                         \
                        memcpy(o, &acc[v], (size_t)nt * sizeof(float));                      \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    /* The whole window, 48 frames at a time (48 / L independent sums per row), then the   \
     * 16 or 32 frames left; returns the largest mel power. */                             \
    ALWAYS_INLINE float name##_window(const bs_melspec *ms, float *restrict out,             \
                                      const int wide) {                                      \
        V mx = (V){0};                                                                       \
        int g0 = 0;                                                                          \
        for (; g0 + 3 <= ms->n_grp; g0 += 3) name(ms, g0, 3, out, &mx, wide);                \
        if (ms->n_grp - g0 == 2) name(ms, g0, 2, out, &mx, wide);                            \
        if (ms->n_grp - g0 == 1) name(ms, g0, 1, out, &mx, wide);                            \
        float smax = 0.0f;                                                                   \
        for (int l = 0; l < L; l++) smax = mx[l] > smax ? mx[l] : smax;                      \
        return smax;                                                                         \
    }
MEL_ROWS_T(mel_rows_t16, v16f, 16, SELECT16)
MEL_ROWS_T(mel_rows_t8, v8f, 8, SELECT8)
MEL_ROWS_T(mel_rows_t4, v4f, 4, SELECT4)

/* max(10 log10(max(x, amin)), lo) on L = 4, 8 or 16 lanes: log10_approx's operations, lane
 * by lane; name_array does x[0 .. n) in place, L at a time, and returns where it stopped. */
#define DB_LANES(name, V, VI, L, SELECT)                                                     \
    ALWAYS_INLINE void name(V *xp, float amin, float lo) {                                   \
        const V va = (V){0} + amin, vlo = (V){0} + lo;                                       \
        const V x = SELECT(*xp > va, *xp, va);                                               \
        const VI k = (VI){0} + 0x3f3504f3;                                                   \
        const VI v = (VI)x - k;                                                              \
        const VI e = v >> 23;                                                                \
        const V m = (V)((v & 0x007fffff) + k);                                               \
        const V s = (m - 1.0f) / (m + 1.0f), s2 = s * s;                                     \
        const V p =                                                                          \
            1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));     \
        const V ln = 2.0f * s * p + __builtin_convertvector(e, V) * 0.693147180559945f;      \
        const V d = 10.0f * (ln * 0.434294481903252f);                                       \
        *xp = SELECT(d > vlo, d, vlo);                                                       \
    }                                                                                        \
    ALWAYS_INLINE size_t name##_array(float *restrict x, size_t n, float amin, float lo) {   \
        size_t i = 0;                                                                        \
        for (; i + L <= n; i += L) {                                                         \
            V v;                                                                             \
            LOADV(v, x + i);                                                                 \
            name(&v, amin, lo);                                                              \
            STOREV(x + i, v);                                                                \
        }                                                                                    \
        return i;                                                                            \
    }
DB_LANES(db4, v4f, v4i, 4, SELECT4)
DB_LANES(db8, v8f, v8i, 8, SELECT8)
DB_LANES(db16, v16f, v16i, 16, SELECT16)

static inline float db1(float x, float amin, float lo) {
    const float d = 10.0f * log10_approx(x > amin ? x : amin);
    return d > lo ? d : lo;
}

/* Frame t of the segment, windowed, into in: centre=True with zero padding, frame t covers
 * segment[t*hop - n_fft/2, + n_fft). */
ALWAYS_INLINE void window_frame(const float *restrict segment, int seg, int t, int hop,
                                int n_fft, const float *restrict w, float *restrict in, const int wide) {
    const int half = n_fft / 2;
    const long start = (long)t * hop - half;
    if (wide == 2 && start >= 0 && start + n_fft <= seg && half % 16 == 0) {
        /* 16 lanes: half the instructions of the 8-lane loop below, which is bound by them
         * (and by its stores), not by arithmetic. The second half's window read reversed. */
        const float *restrict x = segment + start;
        for (int n = 0; n < half; n += 16) {
            v16f a, b;
            LOADV(a, w + n);
            LOADV(b, x + n);
            a *= b;
            STOREV(in + n, a);
        }
        for (int n = half; n < n_fft; n += 16) { /* w[n_fft - n - 15 .. n_fft - n] reversed */
            v16f a, b;
            LOADV(a, w + (n_fft - n - 15));
            LOADV(b, x + n);
            a = __builtin_shufflevector(a, a, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
            a *= b;
            STOREV(in + n, a);
        }
        return;
    }
    if (start >= 0 && start + n_fft <= seg) {
        const float *restrict x = segment + start;
        /* The periodic Hann is symmetric, w[n_fft - n] = w[n] (bit for bit: both are
         * 0.5 - 0.5 cos of angles that differ by 2 pi): read only its first half. */
        for (int n = 0; n < half; n++) in[n] = w[n] * x[n];
        for (int n = half; n < n_fft; n++) in[n] = w[n_fft - n] * x[n];
    } else {
        const int a = start < 0 ? (int)-start : 0;                      /* first real */
        const int b = start + n_fft > seg ? (int)(seg - start) : n_fft; /* one past last */
        for (int n = 0; n < a && n < n_fft; n++) in[n] = 0.0f;
        int n = a;
        if (wide) /* the first and last frames: 4 of 44 at the defaults, 3 % of the time
                   * when this loop was scalar */
            for (; n + 8 <= b; n += 8) {
                v8f u, v;
                LOADV(u, w + n);
                LOADV(v, segment + start + n);
                u *= v;
                STOREV(in + n, u);
            }
        for (; n < b; n++) in[n] = w[n] * segment[start + n];
        for (int n = (b > a ? b : a); n < n_fft; n++) in[n] = 0.0f;
    }
}

/* The whole computation, inlined into a baseline, an AVX2 and an AVX-512 function (wide 0,
 * 1, 2: 8- or 16-float vectors where GCC would not find them). All give bit-identical
 * results: vectorization here runs across independent elements and keeps every sum's order.
 *
 * Two phases. (1) Frame by frame: window, FFT, split into the frame's row of pow_all (44 rows,
 * ~180 KB, in L2); one frame at a time keeps its working set (audio, window, FFT input and
 * output, FFTW's and the split's twiddles, one power row: ~44 KB) inside the 48 KB L1.
 * (2) The mel projection with frames in lanes, 48 frames at a time, block of 16 bins after
 * block: the block's powers transposed into a tile in L1, then every mel row's part in the
 * block summed over its nonzero bins, straight into out (n_mels, n_frames); the dB in
 * place. */
ALWAYS_INLINE void melspec_body(bs_melspec *ms, const float *restrict segment,
                                float *restrict out, const int wide) {
    const int n_fft = ms->n_fft, hop = ms->hop, half = n_fft / 2;
    const int n_mels = ms->n_mels, n_frames = ms->n_frames, seg = ms->seg;
    const float *restrict w = ms->window;
    const float *restrict tw_c = ms->tw_c, *restrict tw_s = ms->tw_s;
    const int M = half; /* complex FFT length */
    const size_t ps = ms->pstride;
    float *restrict PA = ms->pow_all;
    /* Phase 1, frame by frame: window, FFT, split into the frame's row of pow_all. The
     * audio new in frame t + 2 is prefetched into L2 during frame t's split, one line per
     * vector step: a window's audio usually comes from far away (L3 or memory), the hardware
     * prefetcher does not follow a stream that advances by hop samples per frame with an FFT
     * in between, and 32 prefetches in a row stall on the line fill buffers. */
    for (int t = 0; t < n_frames; t++) {
        const long pa = (long)(t + PF_AHEAD - 1) * hop + half; /* new in frame t + PF_AHEAD */
        const long pe = pa + hop < seg ? pa + hop : seg;
        const int npf = pe > pa ? (int)((pe - pa + 15) / 16) : 0;
        window_frame(segment, seg, t, hop, n_fft, w, ms->fft_in, wide);
        fftwf_execute_dft(ms->plan, (fftwf_complex *)ms->fft_in, ms->fft_out);
        real_split_power((const float *)ms->fft_out, tw_c, tw_s, ms->twp_c, ms->twp_s,
                         PA + (size_t)t * ps, M, segment + (pa < seg ? pa : 0), npf, wide);
    }
    /* Phase 2: the mel projection, each row's sum over its bins in bin order, 48 frames at
     * a time (3, 6 or 12 independent vector sums per row), the largest mel power on the way
     * (max is exact: any order gives the same value). Rows with no nonzero weight are 0. */
    const size_t n = (size_t)n_mels * (size_t)n_frames;
    for (int m = 0; m < n_mels; m++)
        if (ms->mel_len[m] == 0) memset(out + (size_t)m * n_frames, 0, n_frames * sizeof *out);
    const float smax = wide == 2 ? mel_rows_t16_window(ms, out, wide)
                       : wide     ? mel_rows_t8_window(ms, out, wide)
                                  : mel_rows_t4_window(ms, out, wide); /* SSE2, NEON */

    /* power_to_db(ref, amin, top_db) over this window: 10 log10(max(amin, S)), then
     * max(D, max(D) - top_db); log is monotonic, so max(D) = 10 log10(max(amin, max S)); then
     * minus the reference's 10 log10(max(amin, ref)): the window's max D for ref = max, 0 for
     * ref 1 (nothing to do: the default stays bit for bit what it was). */
    const float amin = ms->cfg.amin;
    const float top = 10.0f * log10_approx(smax > amin ? smax : amin);
    const float lo = ms->cfg.top_db > 0.0f ? top - ms->cfg.top_db : -INFINITY;
    size_t i = wide == 2 ? db16_array(out, n, amin, lo)
               : wide     ? db8_array(out, n, amin, lo)
                          : db4_array(out, n, amin, lo);
    for (; i < n; i++) out[i] = db1(out[i], amin, lo);
    const float off = ms->cfg.db_ref == BS_DB_REF_MAX ? top : ms->db_off;
    if (off != 0.0f)
        for (i = 0; i < n; i++) out[i] -= off;
}

static void melspec_compute_base(bs_melspec *ms, const float *restrict segment,
                                 float *restrict out) {
    melspec_body(ms, segment, out, 0);
}

#if BS_MELSPEC_AVX2
__attribute__((target("avx2"))) static void melspec_compute_avx2(bs_melspec *ms,
                                                                  const float *restrict segment,
                                                                  float *restrict out) {
    melspec_body(ms, segment, out, 1);
}
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,prefer-vector-width=256"))) static void
melspec_compute_avx512(bs_melspec *ms, const float *restrict segment, float *restrict out) {
    melspec_body(ms, segment, out, 2);
}
#endif

void bs_melspec_compute(bs_melspec *ms, const float *segment, float *out) {
#if BS_MELSPEC_AVX2
    if (ms->simd == BS_SIMD_AVX512) {
        melspec_compute_avx512(ms, segment, out);
        return;
    }
    if (ms->simd == BS_SIMD_AVX2) {
        melspec_compute_avx2(ms, segment, out);
        return;
    }
#endif
    melspec_compute_base(ms, segment, out);
}
