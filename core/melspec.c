/* Log-mel dB of one window, exactly librosa 0.10's melspectrogram + power_to_db
 * (REFERENCES.md §1), with FFTW3 single precision.
 *
 * Per extractor: one r2c plan (FFTW_ESTIMATE: deterministic, the same plan and so the same
 * rounding in the trainer and the daemon), the periodic Hann window, a centre-padded copy of
 * the window (zeros on both sides set once), the sparse filterbank (each mel row stores only
 * its nonzero bin range) and a power-spectrum scratch. Compute allocates nothing. */
#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

/* FFTW's planner (plan creation and destruction) is not thread-safe; execution is. */
static pthread_mutex_t g_fftw_planner_lock = PTHREAD_MUTEX_INITIALIZER;

struct bs_melspec {
    bs_feature_config cfg;
    int n_fft, hop, n_freqs, n_mels, n_frames, seg;
    float *window;     /* n_fft, periodic Hann */
    float *padded;     /* seg + n_fft: n_fft/2 zeros | window samples | n_fft/2 zeros */
    float *fft_in;     /* n_fft (fftwf_malloc) */
    fftwf_complex *fft_out; /* n_freqs (fftwf_malloc) */
    float *power;      /* n_freqs */
    int *mel_start;    /* n_mels: first nonzero bin of each row */
    int *mel_len;      /* n_mels: number of nonzero bins */
    float *mel_w;      /* concatenated nonzero weights, row after row */
    int *mel_off;      /* n_mels: offset of each row in mel_w */
    float db_floor;    /* 10 log10(amin) */
    fftwf_plan plan;
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
    free(ms->window);
    free(ms->padded);
    free(ms->power);
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
    ms->padded = calloc((size_t)ms->seg + (size_t)ms->n_fft, sizeof *ms->padded);
    ms->fft_in = fftwf_malloc((size_t)ms->n_fft * sizeof *ms->fft_in);
    ms->fft_out = fftwf_malloc((size_t)ms->n_freqs * sizeof *ms->fft_out);
    ms->power = malloc((size_t)ms->n_freqs * sizeof *ms->power);
    ms->mel_start = malloc((size_t)ms->n_mels * sizeof *ms->mel_start);
    ms->mel_len = malloc((size_t)ms->n_mels * sizeof *ms->mel_len);
    ms->mel_off = malloc((size_t)ms->n_mels * sizeof *ms->mel_off);
    if (!ms->window || !ms->padded || !ms->fft_in || !ms->fft_out || !ms->power ||
        !ms->mel_start || !ms->mel_len || !ms->mel_off)
        goto oom;

    /* Periodic Hann (scipy get_window('hann', N, fftbins=True)), in double. */
    for (int n = 0; n < ms->n_fft; n++)
        ms->window[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)n / (double)ms->n_fft));

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
        ms->mel_off[m] = (int)total;
        total += (size_t)ms->mel_len[m];
    }
    ms->mel_w = malloc((total ? total : 1) * sizeof *ms->mel_w);
    if (!ms->mel_w) {
        free(W);
        goto oom;
    }
    for (int m = 0; m < ms->n_mels; m++)
        for (int j = 0; j < ms->mel_len[m]; j++)
            ms->mel_w[ms->mel_off[m] + j] =
                (float)W[(size_t)m * ms->n_freqs + (size_t)(ms->mel_start[m] + j)];
    free(W);

    pthread_mutex_lock(&g_fftw_planner_lock);
    ms->plan = fftwf_plan_dft_r2c_1d(ms->n_fft, ms->fft_in, ms->fft_out, FFTW_ESTIMATE);
    pthread_mutex_unlock(&g_fftw_planner_lock);
    if (!ms->plan) {
        bs_melspec_free(ms);
        bs_error_set(err, "melspec: FFTW could not plan an r2c transform of size %d",
                     cfg->n_fft);
        return NULL;
    }
    return ms;
oom:
    bs_melspec_free(ms);
    bs_error_set(err, "melspec: out of memory for n_fft %d, %d mels", cfg->n_fft, cfg->n_mels);
    return NULL;
}

const bs_feature_config *bs_melspec_config(const bs_melspec *ms) { return &ms->cfg; }

void bs_melspec_compute(bs_melspec *ms, const float *segment, float *out) {
    const int n_fft = ms->n_fft, hop = ms->hop, n_freqs = ms->n_freqs;
    const int n_mels = ms->n_mels, n_frames = ms->n_frames;
    float *restrict in = ms->fft_in;
    const float *restrict w = ms->window;
    float *restrict P = ms->power;
    const fftwf_complex *restrict X = ms->fft_out;

    /* centre=True, pad_mode='constant': n_fft/2 zeros each side (set once at creation). */
    memcpy(ms->padded + n_fft / 2, segment, (size_t)ms->seg * sizeof *segment);

    for (int t = 0; t < n_frames; t++) {
        const float *restrict frame = ms->padded + (size_t)t * (size_t)hop;
        for (int n = 0; n < n_fft; n++) in[n] = w[n] * frame[n];
        fftwf_execute(ms->plan);
        for (int k = 0; k < n_freqs; k++) P[k] = X[k][0] * X[k][0] + X[k][1] * X[k][1];
        for (int m = 0; m < n_mels; m++) {
            const float *restrict wm = ms->mel_w + ms->mel_off[m];
            const float *restrict pm = P + ms->mel_start[m];
            const int len = ms->mel_len[m];
            float acc = 0.0f;
            for (int j = 0; j < len; j++) acc += wm[j] * pm[j];
            out[(size_t)m * n_frames + t] = acc;
        }
    }

    /* power_to_db(ref=1, amin, top_db) over this window. */
    const size_t n = (size_t)n_mels * (size_t)n_frames;
    const float amin = ms->cfg.amin;
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float s = out[i] > amin ? out[i] : amin;
        float d = 10.0f * log10f(s);
        out[i] = d;
        if (d > mx) mx = d;
    }
    if (ms->cfg.top_db > 0.0f) {
        const float lo = mx - ms->cfg.top_db;
        for (size_t i = 0; i < n; i++)
            if (out[i] < lo) out[i] = lo;
    }
}
