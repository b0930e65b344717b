/* The training loop. See train.h. */
#include "trainer/train.h"
#include "trainer/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "birdsong/nn.h"
#include "trainer/calibrate.h"
#include "trainer/metrics.h"
#include "trainer/split.h"

volatile sig_atomic_t ts_stop_requested = 0;

ts_train_options ts_train_defaults(void) {
    ts_train_options o = {
        .arch = "convnet1", .epochs = 30, .batch_size = 32, .patience = 6, .lr = 1e-3f, .cosine = 0,
        .weight_decay = 0.0f, .class_weights = 0, .seed = 1, .augment = 1, .mix_prob = 0.5f, .mix_labelled = 0.0f,
        .snr_min = 0.0f, .snr_max = 20.0f, .shift_frames = 8, .gain_db = 6.0f, .time_mask = 6, .freq_mask = 12,
        .bg_repeat = 1, .synthetic_negatives = 0, .ema = 0.0f, .quiet = 0,
    };
    return o;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void ts_windows_build(ts_windows *w, ts_dataset *ds, const ts_file_features *f, int n_mels, int n_frames) {
    memset(w, 0, sizeof *w);
    w->n_mels = n_mels;
    w->n_frames = n_frames;
    w->C = ds->n_labels;
    int total = 0;
    for (int i = 0; i < ds->n_items; i++)
        if (f[i].ok && f[i].set.n_mels == n_mels && f[i].set.n_frames == n_frames) total += (int)f[i].set.n_segments;
    int C = w->C;
    w->x = xcalloc((size_t)total, sizeof *w->x);
    w->item = xcalloc((size_t)total, sizeof(int));
    w->group = xcalloc((size_t)total, sizeof(int));
    w->start = xcalloc((size_t)total, sizeof(double));
    w->y = xcalloc((size_t)total * C, 1);
    w->yf = xcalloc((size_t)total * C, sizeof(float));
    w->background = xcalloc((size_t)total, 1);
    w->next = xcalloc((size_t)total, sizeof(int));
    w->prev = xcalloc((size_t)total, sizeof(int));
    w->next_offset = xcalloc((size_t)total, sizeof(int));
    for (int i = 0; i < total; i++) w->next[i] = w->prev[i] = -1;
    int *gid = xcalloc((size_t)ds->n_items, sizeof(int));
    for (int i = 0; i < ds->n_items; i++) {
        gid[i] = -1;
        for (int j = 0; j < i; j++)
            if (gid[j] >= 0 && strcmp(ds->items[j].group, ds->items[i].group) == 0) { gid[i] = gid[j]; break; }
        if (gid[i] < 0) gid[i] = w->n_groups++;
    }
    int k = 0;
    for (int i = 0; i < ds->n_items; i++) {
        if (!f[i].ok) {
            ts_dataset_skip(ds, ds->items[i].path, f[i].error ? f[i].error : "could not be decoded");
            continue;
        }
        if (f[i].set.n_mels != n_mels || f[i].set.n_frames != n_frames) {
            ts_dataset_skip(ds, ds->items[i].path, "features have another shape than the model's input");
            continue;
        }
        if (f[i].set.n_segments == 0) {
            char why[200];
            snprintf(why, sizeof why, "too short for one window (%.3f s)", f[i].set.duration_seconds);
            ts_dataset_skip(ds, ds->items[i].path, why);
            continue;
        }
        size_t per = (size_t)n_mels * n_frames;
        for (size_t s = 0; s < f[i].set.n_segments; s++, k++) {
            w->x[k] = f[i].set.data + s * per;
            w->item[k] = i;
            w->group[k] = gid[i];
            w->start[k] = f[i].set.start_seconds[s];
            w->background[k] = (uint8_t)ds->items[i].background;
            for (int c = 0; c < C; c++) {
                w->y[(size_t)k * C + c] = ds->targets[(size_t)i * C + c];
                w->yf[(size_t)k * C + c] = ds->targets[(size_t)i * C + c];
            }
        }
    }
    w->n = k;
    free(gid);
}

void ts_windows_free(ts_windows *w) {
    free(w->x);
    free(w->item);
    free(w->group);
    free(w->start);
    free(w->y);
    free(w->yf);
    free(w->background);
    free(w->next);
    free(w->prev);
    free(w->next_offset);
    memset(w, 0, sizeof *w);
}

void ts_windows_link(ts_windows *w, double frames_per_second) {
    for (int k = 0; k < w->n; k++) w->next[k] = w->prev[k] = -1;
    for (int k = 0; k + 1 < w->n; k++) {
        if (w->item[k + 1] != w->item[k]) continue;
        long d = lround((w->start[k + 1] - w->start[k]) * frames_per_second);
        if (d < 1 || d > w->n_frames) continue; /* a gap: the frames between are not there */
        w->next[k] = k + 1;
        w->prev[k + 1] = k;
        w->next_offset[k] = (int)d;
    }
}

/* out [M, T] = x shifted by s frames: out[t] is the frame at t - s, taken before x's start from
 * nb's frame t - s + d, past its end from nb's frame t - s - d (nb: the window d frames before
 * or after x), or circularly from x itself when nb is NULL. */
static void shift_frames(const float *x, const float *nb, int d, int M, int T, int s, float *out) {
    for (int m = 0; m < M; m++) {
        const float *row = x + (size_t)m * T, *nrow = nb ? nb + (size_t)m * T : NULL;
        float *o = out + (size_t)m * T;
        for (int t = 0; t < T; t++) {
            int p = t - s;
            if (p >= 0 && p < T) o[t] = row[p];
            else if (nrow) o[t] = nrow[p < 0 ? p + d : p - d];
            else o[t] = row[(p % T + T) % T];
        }
    }
}

void ts_window_shifted(const ts_windows *w, int k, int s, float *out) {
    const float *nb = NULL;
    int d = 0;
    if (s > 0 && w->prev && w->prev[k] >= 0 && w->next_offset[w->prev[k]] >= s) {
        nb = w->x[w->prev[k]];
        d = w->next_offset[w->prev[k]];
    } else if (s < 0 && w->next && w->next[k] >= 0 && w->next_offset[k] >= -s) {
        nb = w->x[w->next[k]];
        d = w->next_offset[k];
    }
    shift_frames(w->x[k], nb, d, w->n_mels, w->n_frames, s, out);
}

void ts_shift_bands(float *x, int M, int T, int f, float *tmp) {
    memcpy(tmp, x, sizeof(float) * (size_t)M * T);
    for (int m = 0; m < M; m++) {
        int from = m - f < 0 ? 0 : m - f >= M ? M - 1 : m - f;
        memcpy(x + (size_t)m * T, tmp + (size_t)from * T, sizeof(float) * T);
    }
}

double ts_bce_from_probs(const float *probs, const uint8_t *y, int n, int C) {
    double s = 0.0;
    size_t N = (size_t)n * C;
    for (size_t i = 0; i < N; i++) {
        double p = probs[i];
        if (p < 1e-7) p = 1e-7;
        if (p > 1 - 1e-7) p = 1 - 1e-7;
        s -= y[i] ? log(p) : log(1 - p);
    }
    return N ? s / N : NAN;
}

static double bce_logits(const float *z, const float *y, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = z[i];
        s += (v > 0 ? v : 0) - v * y[i] + log1p(exp(-fabs(v)));
    }
    return s;
}

int ts_predict(bs_model *model, const ts_windows *w, const int *idx, int n, float *probs, bs_error *err) {
    size_t per = (size_t)w->n_mels * w->n_frames;
    float *buf = xcalloc(per, sizeof(float));
    int C = bs_model_n_outputs(model);
    for (int i = 0; i < n; i++) {
        memcpy(buf, w->x[idx[i]], per * sizeof(float));
        bs_model_normalize(model, buf);
        if (bs_model_predict(model, buf, probs + (size_t)i * C) != 0) {
            free(buf);
            return bs_error_set(err, "window %d: the network gave a non-finite output", idx[i]);
        }
    }
    free(buf);
    return 0;
}

/* ---- active windows ---- */

static double hz_to_mel(double f) {
    /* slaney: linear below 1 kHz, logarithmic above (REFERENCES.md section 1) */
    return f < 1000.0 ? 3.0 * f / 200.0 : 15.0 + log(f / 1000.0) / (log(6.4) / 27.0);
}

void ts_window_activity(const ts_windows *w, const bs_feature_config *cfg, float *score) {
    int M = w->n_mels, T = w->n_frames;
    double lo = hz_to_mel(cfg->fmin), hi = hz_to_mel(cfg->fmax);
    int m0 = M, m1 = -1;
    for (int m = 0; m < M; m++) {
        double centre = lo + (hi - lo) * (m + 1) / (M + 1);
        if (centre >= hz_to_mel(1000.0) && centre <= hz_to_mel(10000.0)) {
            if (m < m0) m0 = m;
            m1 = m;
        }
    }
    if (m1 < m0) { m0 = 0; m1 = M - 1; }
    for (int i = 0; i < w->n; i++) {
        double s = 0.0;
        for (int m = m0; m <= m1; m++)
            for (int t = 0; t < T; t++) s += w->x[i][(size_t)m * T + t];
        score[i] = (float)(s / ((double)(m1 - m0 + 1) * T));
    }
}

int ts_keep_active(const ts_windows *w, const float *score, double fraction, int *idx, int n) {
    if (fraction >= 1.0) return n;
    int k = 0;
    for (int a = 0; a < n; a++) {
        int i = idx[a];
        if (w->background[i]) { idx[k++] = i; continue; }
        /* rank of window i among the windows of its recording (by band energy, descending) */
        int rank = 0, total = 0;
        for (int b = 0; b < n; b++) {
            int j = idx[b];
            if (w->group[j] != w->group[i]) continue;
            total++;
            if (score[j] > score[i] || (score[j] == score[i] && j < i)) rank++;
        }
        int keep = (int)ceil(fraction * total);
        if (keep < 1) keep = 1;
        if (rank < keep) idx[k++] = i;
    }
    return k;
}

/* ---- architectures ---- */

/* convnet-lite-gp: convnet-lite's convolutions, then a max over the whole remaining time axis
 * (and pairs of frequency rows) instead of flattening every position into the dense layer. A
 * call anywhere in the window counts the same, the dense layer shrinks from 5120 to 512
 * inputs, and weakly labelled windows (the call at any time) are what the pooling expects. */
static const bs_layer_spec convnet_lite_gp[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 16, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 32, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 64, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 64, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 5}, /* (16, 5) -> (8, 1) for 128 x 44 inputs */
    {.kind = BS_LAYER_FLATTEN}, {.kind = BS_LAYER_DROPOUT, .rate = 0.3f}, {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};

/* convnet-gp-wide: the same shape with twice the filters (32-64-128-128). */
static const bs_layer_spec convnet_gp_wide[] = {
    {.kind = BS_LAYER_CONV2D, .filters = 32, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 64, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 128, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 2},
    {.kind = BS_LAYER_CONV2D, .filters = 128, .kh = 3, .kw = 3}, {.kind = BS_LAYER_RELU}, {.kind = BS_LAYER_BATCHNORM},
    {.kind = BS_LAYER_MAXPOOL, .kh = 2, .kw = 5},
    {.kind = BS_LAYER_FLATTEN}, {.kind = BS_LAYER_DROPOUT, .rate = 0.3f}, {.kind = BS_LAYER_DENSE, .units = 0},
    {.kind = BS_LAYER_SIGMOID},
};

int ts_arch_layers(const char *arch, bs_layer_spec *out, int max) {
    if (arch && strcmp(arch, "convnet-gp-wide") == 0) {
        int n = (int)(sizeof convnet_gp_wide / sizeof convnet_gp_wide[0]);
        if (n > max) return -1;
        memcpy(out, convnet_gp_wide, sizeof convnet_gp_wide);
        return n;
    }
    if (arch && strcmp(arch, "convnet-lite-gp") == 0) {
        int n = (int)(sizeof convnet_lite_gp / sizeof convnet_lite_gp[0]);
        if (n > max) return -1;
        memcpy(out, convnet_lite_gp, sizeof convnet_lite_gp);
        return n;
    }
    return bs_nn_arch_layers(arch, out, max);
}

const char *ts_arch_names(void) {
    static char names[256];
    if (!names[0]) snprintf(names, sizeof names, "%s, convnet-lite-gp, convnet-gp-wide", bs_nn_arch_names());
    return names;
}

/* ---- augmentation ---- */

typedef struct aug_ctx {
    const ts_train_options *o;
    const bs_feature_config *cfg;
    const ts_windows *w;
    const int *noise;  /* background windows of the training part */
    int n_noise;
    const int *pool;   /* every training window (partners of labelled mixes) */
    int n_pool;
    ts_rng rng;
    float *pow_x, *pow_n; /* n_mels * n_frames */
    float *shift_buf;  /* n_mels * n_frames */
} aug_ctx;

/* x: one dB window (modified in place), the copy of window wi (< 0: a synthetic one); y: its C
 * targets (a labelled mix adds the other's). */
static void augment_db(aug_ctx *a, int wi, float *x, float *y) {
    const ts_train_options *o = a->o;
    int M = a->w->n_mels, T = a->w->n_frames;
    if (o->shift_frames > 0) {
        int S = o->shift_frames < T - 1 ? o->shift_frames : T - 1;
        int s = (int)ts_rng_below(&a->rng, (uint32_t)(2 * S + 1)) - S;
        if (s != 0) {
            /* a synthetic window (wi < 0) has no neighbours: it wraps */
            if (wi >= 0) ts_window_shifted(a->w, wi, s, a->shift_buf);
            else shift_frames(x, NULL, 0, M, T, s, a->shift_buf);
            memcpy(x, a->shift_buf, sizeof(float) * (size_t)M * T);
        }
    }
    if (o->freq_shift > 0) {
        int F = o->freq_shift < M - 1 ? o->freq_shift : M - 1;
        int f = (int)ts_rng_below(&a->rng, (uint32_t)(2 * F + 1)) - F;
        if (f != 0) ts_shift_bands(x, M, T, f, a->shift_buf);
    }
    if (o->gain_db > 0) {
        float g = (float)((2.0 * ts_rng_uniform(&a->rng) - 1.0) * o->gain_db);
        for (size_t i = 0; i < (size_t)M * T; i++) x[i] += g;
    }
    int labelled_mix = a->n_pool > 0 && o->mix_labelled > 0 && ts_rng_uniform(&a->rng) < o->mix_labelled;
    if (labelled_mix || (a->n_noise > 0 && ts_rng_uniform(&a->rng) < o->mix_prob)) {
        int src = labelled_mix ? a->pool[ts_rng_below(&a->rng, (uint32_t)a->n_pool)]
                               : a->noise[ts_rng_below(&a->rng, (uint32_t)a->n_noise)];
        const float *nz = a->w->x[src];
        if (labelled_mix)
            for (int c = 0; c < a->w->C; c++) y[c] = fmaxf(y[c], a->w->yf[(size_t)src * a->w->C + c]);
        size_t N = (size_t)M * T;
        const float k = 0.23025851f; /* ln(10) / 10: dB -> power */
        float *px = a->pow_x, *pn = a->pow_n;
        double sx = 0.0, sn = 0.0;
        for (size_t i = 0; i < N; i++) {
            px[i] = expf(k * x[i]);
            pn[i] = expf(k * nz[i]);
            sx += px[i];
            sn += pn[i];
        }
        if (sn > 0.0 && sx > 0.0) {
            /* a labelled partner must stay audible: SNR within +-6 dB */
            double lo = labelled_mix ? -6.0 : o->snr_min, hi = labelled_mix ? 6.0 : o->snr_max;
            double snr = lo + (hi - lo) * ts_rng_uniform(&a->rng);
            float g = (float)(sx / (sn * pow(10.0, snr / 10.0)));
            float mx = -1e30f, amin = a->cfg->amin;
            for (size_t i = 0; i < N; i++) {
                float p = px[i] + g * pn[i];
                x[i] = 10.0f * log10f(p > amin ? p : amin);
                if (x[i] > mx) mx = x[i];
            }
            if (a->cfg->top_db > 0)
                for (size_t i = 0; i < N; i++)
                    if (x[i] < mx - a->cfg->top_db) x[i] = mx - a->cfg->top_db;
        }
    }
}

static void spec_masks(aug_ctx *a, float *x) {
    int M = a->w->n_mels, T = a->w->n_frames;
    if (a->o->time_mask > 0) {
        int wdt = (int)ts_rng_below(&a->rng, (uint32_t)a->o->time_mask + 1);
        int t0 = (int)ts_rng_below(&a->rng, (uint32_t)(T - wdt + 1));
        for (int m = 0; m < M; m++)
            for (int t = t0; t < t0 + wdt; t++) x[(size_t)m * T + t] = 0.0f;
    }
    if (a->o->freq_mask > 0) {
        int h = (int)ts_rng_below(&a->rng, (uint32_t)a->o->freq_mask + 1);
        int m0 = (int)ts_rng_below(&a->rng, (uint32_t)(M - h + 1));
        memset(x + (size_t)m0 * T, 0, sizeof(float) * (size_t)h * T);
    }
}

/* ---- weights snapshot (parameters and batchnorm buffers) ---- */

static size_t snapshot_size(bs_net *net) {
    size_t s = 0;
    bs_tensor_info t;
    for (int i = 0; i < bs_net_n_tensors(net); i++)
        if (bs_net_tensor(net, i, &t) == 0) s += t.size;
    return s;
}

static void snapshot_io(bs_net *net, float *snap, int save) {
    size_t off = 0;
    bs_tensor_info t;
    for (int i = 0; i < bs_net_n_tensors(net); i++) {
        if (bs_net_tensor(net, i, &t) != 0) continue;
        if (save) memcpy(snap + off, t.data, t.size * sizeof(float));
        else memcpy(t.data, snap + off, t.size * sizeof(float));
        off += t.size;
    }
}

/* n synthetic non-bird windows [n, M, T], log-mel dB with the training feature settings. */
float *ts_synthetic_windows(const bs_feature_config *cfg, int n, uint64_t seed, int M, int T, int quiet,
                            const char *tag, bs_error *err) {
    double t0 = now_s();
    bs_melspec *ms = bs_melspec_create(cfg, err);
    if (!ms) return NULL;
    if (cfg->n_mels != M || bs_feature_n_frames(cfg) != T) {
        bs_melspec_free(ms);
        bs_error_set(err, "synthetic negatives: the feature settings give %d x %d windows, the data %d x %d",
                     cfg->n_mels, bs_feature_n_frames(cfg), M, T);
        return NULL;
    }
    int ns = bs_feature_segment_samples(cfg);
    float *audio = xcalloc((size_t)ns, sizeof(float));
    float *out = xcalloc((size_t)n * M * T, sizeof(float));
    /* the seed is hashed first: a state of seed * increment would make seed s + 1's stream
     * seed s's shifted by one draw */
    ts_rng h = {seed ^ 0x2545f4914f6cdd1dull};
    ts_rng rng = {ts_rng_next(&h)};
    for (int j = 0; j < n && !ts_stop_requested; j++) {
        ts_synth_negative(&rng, j % TS_SYNTH_KINDS, audio, ns, cfg->sample_rate);
        bs_melspec_compute(ms, audio, out + (size_t)j * M * T);
    }
    free(audio);
    bs_melspec_free(ms);
    if (!quiet)
        bs_log_info("%s%ssynthetic negatives: %d windows (chorus, noise, rain and hum in turn) in %.1f s",
                    tag ? tag : "", tag ? ": " : "", n, now_s() - t0);
    return out;
}

/* snap = d * snap + (1 - d) * weights, over the same layout as snapshot_io. */
static void snapshot_ema(bs_net *net, float *snap, float d) {
    size_t off = 0;
    bs_tensor_info t;
    for (int i = 0; i < bs_net_n_tensors(net); i++) {
        if (bs_net_tensor(net, i, &t) != 0) continue;
        const float *x = t.data;
        float *a = snap + off;
        for (size_t j = 0; j < t.size; j++) a[j] = d * a[j] + (1.0f - d) * x[j];
        off += t.size;
    }
}

/* Decay of the moving average at step `step` (1, 2, ...): min(decay, (1 + step) / (10 + step)),
 * so the first steps do not keep the random initialisation (TensorFlow's num_updates rule). */
float ts_ema_decay(float decay, long step) {
    float warm = (float)(1.0 + (double)step) / (float)(10.0 + (double)step);
    return warm < decay ? warm : decay;
}

/* Inference with the training net over idx: probs [n, C] and the summed BCE on logits. */
static double net_eval(bs_net *net, const bs_feature_config *cfg, const ts_windows *w,
                       const int *idx, int n, const float *mean, const float *std, float *xb,
                       float *probs) {
    int B = bs_net_max_batch(net), C = w->C;
    size_t per = (size_t)w->n_mels * w->n_frames;
    double loss = 0.0;
    for (int s = 0; s < n; s += B) {
        int b = n - s < B ? n - s : B;
        for (int i = 0; i < b; i++) {
            memcpy(xb + i * per, w->x[idx[s + i]], per * sizeof(float));
            bs_features_normalize(cfg, xb + i * per, mean, std);
        }
        const float *z = bs_net_forward(net, xb, b, 0);
        for (int i = 0; i < b; i++) loss += bce_logits(z + (size_t)i * C, w->yf + (size_t)idx[s + i] * C, (size_t)C);
        bs_net_activate(net, b, probs + (size_t)s * C);
    }
    return loss;
}

static void progress_line(const ts_train_options *o, int epoch, int done, int total, double loss,
                          double sps, double eta) {
    if (o->quiet || o->no_bar || !isatty(STDERR_FILENO)) return;
    int width = 24, fill = total ? done * width / total : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\repoch %3d/%d [%s] %5d/%d  loss %.4f  %6.1f samples/s  ETA %3.0fs ", epoch, o->epochs, bar,
            done, total, loss, sps, eta);
    fflush(stderr);
}

int ts_train_run(const ts_windows *w, const int *train_idx, int n_train, const int *val_idx, int n_val,
                 char *const *labels, const bs_feature_config *cfg, const ts_train_options *o,
                 ts_train_result *res, bs_error *err) {
    memset(res, 0, sizeof *res);
    int C = w->C, M = w->n_mels, T = w->n_frames;
    size_t per = (size_t)M * T;
    if (n_train < 2) return bs_error_set(err, "the training part holds %d windows; expected at least 2", n_train);
    if (n_val < 1) return bs_error_set(err, "the validation part holds no window; expected at least 1");
    if (o->batch_size < 2) return bs_error_set(err, "--batch-size %d: expected at least 2", o->batch_size);

    /* normalization statistics: training windows only */
    bs_norm_stats st;
    if (bs_norm_stats_init(&st, M, err) != 0) return -1;
    float floor_db = 10.0f * log10f(cfg->amin);
    for (int i = 0; i < n_train; i++) bs_norm_stats_update(&st, w->x[train_idx[i]], T, floor_db);
    float *mean = xcalloc((size_t)M, sizeof(float)), *std = xcalloc((size_t)M, sizeof(float));
    int rc = bs_norm_stats_finalize(&st, mean, std, err);
    bs_norm_stats_free(&st);
    if (rc != 0) { free(mean); free(std); return -1; }
    for (int m = 0; m < M; m++)
        if (!(std[m] > cfg->norm_std_floor)) std[m] = cfg->norm_std_floor > 0 ? cfg->norm_std_floor : 1e-3f;

    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    int n_layers = ts_arch_layers(o->arch, layers, BS_NN_MAX_LAYERS);
    if (n_layers < 0) {
        free(mean);
        free(std);
        return bs_error_set(err, "--arch %s: unknown architecture (expected one of %s)", o->arch, ts_arch_names());
    }
    bs_model *model = bs_model_create_layers(layers, n_layers, M, T, (const char *const *)labels, C, o->batch_size,
                                             o->seed, err);
    if (!model) { free(mean); free(std); return -1; }
    if (bs_model_set_arch(model, o->arch, err) != 0 ||
        bs_model_set_normalization(model, mean, std, M, err) != 0 ||
        bs_model_set_feature_config(model, cfg, err) != 0) {
        free(mean);
        free(std);
        bs_model_free(model);
        return -1;
    }
    bs_net *net = bs_model_net(model);
    bs_adam_config ac = bs_adam_defaults();
    ac.lr = o->lr;
    ac.weight_decay = o->weight_decay;
    bs_adam *adam = bs_adam_create(bs_net_n_params(net), &ac);
    size_t snap_n = snapshot_size(net);
    float *snap = xcalloc(snap_n, sizeof(float));
    snapshot_io(net, snap, 1);
    /* --ema: the average (ema) is what is validated, kept as best and written; the raw
     * weights (cur) are set aside while it is validated and go on training. */
    float *ema = NULL, *cur = NULL;
    long step = 0;
    if (o->ema > 0.0f) {
        ema = xcalloc(snap_n, sizeof(float));
        cur = xcalloc(snap_n, sizeof(float));
        memcpy(ema, snap, snap_n * sizeof(float));
    }

    /* synthetic negatives: window j is order entry -1 - j */
    int n_syn = o->synthetic_negatives > 0 ? o->synthetic_negatives : 0;
    float *own_syn = NULL;
    const float *syn = o->synthetic;
    if (n_syn > 0 && !syn && !(syn = own_syn = ts_synthetic_windows(cfg, n_syn, o->seed, M, T, o->quiet, o->tag, err))) {
        free(ema);
        free(cur);
        free(snap);
        bs_adam_free(adam);
        bs_model_free(model);
        free(mean);
        free(std);
        return -1;
    }

    /* epoch order: training windows, background ones repeated, then the synthetic ones */
    int reps = o->bg_repeat > 1 ? o->bg_repeat : 1;
    int n_order = n_syn;
    for (int i = 0; i < n_train; i++) n_order += w->background[train_idx[i]] ? reps : 1;
    int *order = xcalloc((size_t)n_order, sizeof(int));
    for (int j = 0; j < n_syn; j++) order[n_order - n_syn + j] = -1 - j;
    int *noise = xcalloc((size_t)n_train, sizeof(int));
    int n_noise = 0, k = 0;
    for (int i = 0; i < n_train; i++) {
        int r = w->background[train_idx[i]] ? reps : 1;
        for (int j = 0; j < r; j++) order[k++] = train_idx[i];
        if (w->background[train_idx[i]]) noise[n_noise++] = train_idx[i];
    }

    float *pos_weight = NULL;
    if (o->class_weights) {
        pos_weight = xcalloc((size_t)C, sizeof(float));
        double total = 0.0;
        long *pos = xcalloc((size_t)C, sizeof(long));
        for (int i = 0; i < n_train; i++)
            for (int c = 0; c < C; c++) pos[c] += w->y[(size_t)train_idx[i] * C + c];
        int used = 0;
        for (int c = 0; c < C; c++) if (pos[c]) { total += pos[c]; used++; }
        for (int c = 0; c < C; c++) {
            double pw = pos[c] ? (total / used) / pos[c] : 1.0;
            pos_weight[c] = (float)(pw < 0.25 ? 0.25 : pw > 4.0 ? 4.0 : pw);
        }
        free(pos);
    }

    int B = o->batch_size;
    float *xb = xcalloc((size_t)B * per, sizeof(float));
    float *yb = xcalloc((size_t)B * C, sizeof(float));
    float *vprobs = xcalloc((size_t)n_val * C, sizeof(float));
    uint8_t *vy = xcalloc((size_t)n_val * C, 1);
    for (int i = 0; i < n_val; i++) memcpy(vy + (size_t)i * C, w->y + (size_t)val_idx[i] * C, (size_t)C);
    aug_ctx ag = {.o = o, .cfg = cfg, .w = w, .noise = noise, .n_noise = n_noise, .pool = train_idx, .n_pool = n_train, .rng = {o->seed * 7919 + 17},
                  .pow_x = xcalloc(per, sizeof(float)),
                  .pow_n = xcalloc(per, sizeof(float)), .shift_buf = xcalloc(per, sizeof(float))};
    ts_rng order_rng = {o->seed ^ 0x5bd1e995ull};
    res->hist = xcalloc((size_t)o->epochs + 1, sizeof(ts_epoch_log));
    res->best_val_loss = INFINITY;
    int since_best = 0;

    for (int e = 0; e < o->epochs; e++) {
        double lr = o->cosine ? o->lr * 0.5 * (1.0 + cos(M_PI * e / o->epochs)) : o->lr;
        bs_adam_set_lr(adam, (float)lr);
        bs_net_set_dropout_seed(net, o->seed + 1000003ull * (uint64_t)(e + 1));
        ts_shuffle_int(&order_rng, order, n_order);
        double t_epoch = now_s(), t_net = 0.0, loss_sum = 0.0;
        long seen = 0;
        int n_batches = n_order / B + (n_order % B >= 2);
        for (int bi = 0; bi < n_batches && !ts_stop_requested; bi++) {
            int s = bi * B, b = n_order - s < B ? n_order - s : B;
            for (int i = 0; i < b; i++) {
                int wi = order[s + i];
                float *x = xb + (size_t)i * per;
                if (wi >= 0) {
                    memcpy(x, w->x[wi], per * sizeof(float));
                    memcpy(yb + (size_t)i * C, w->yf + (size_t)wi * C, (size_t)C * sizeof(float));
                } else {
                    memcpy(x, syn + (size_t)(-1 - wi) * per, per * sizeof(float));
                    memset(yb + (size_t)i * C, 0, (size_t)C * sizeof(float));
                }
                if (o->augment) augment_db(&ag, wi, x, yb + (size_t)i * C);
                bs_features_normalize(cfg, x, mean, std);
                if (o->augment) spec_masks(&ag, x);
            }
            double t0 = now_s();
            bs_net_forward(net, xb, b, 1);
            float loss = bs_net_loss(net, yb, pos_weight, b);
            bs_net_backward(net, b);
            bs_adam_step(adam, bs_net_params(net), bs_net_grads(net));
            if (ema) snapshot_ema(net, ema, ts_ema_decay(o->ema, ++step));
            t_net += now_s() - t0;
            loss_sum += (double)loss * b;
            seen += b;
            double el = now_s() - t_epoch;
            progress_line(o, e + 1, bi + 1, n_batches, loss_sum / seen, seen / el,
                          el / (bi + 1) * (n_batches - bi - 1));
        }
        double tv = now_s();
        if (ema) {
            snapshot_io(net, cur, 1);
            snapshot_io(net, ema, 0);
        }
        double vloss = net_eval(net, cfg, w, val_idx, n_val, mean, std, xb, vprobs) / ((double)n_val * C);
        t_net += now_s() - tv;
        double el = now_s() - t_epoch;
        if (!o->quiet && !o->no_bar && isatty(STDERR_FILENO)) fprintf(stderr, "\r\033[K");
        ts_epoch_log *h = &res->hist[res->n_hist++];
        h->epoch = e + 1;
        h->lr = lr;
        h->train_loss = seen ? loss_sum / seen : NAN;
        h->val_loss = vloss;
        h->val_acc = ts_top1_accuracy(vprobs, vy, n_val, C);
        h->seconds = el;
        h->samples_per_s = seen / el;
        h->outside_fraction = el > 0 ? (el - t_net) / el : 0;
        int better = isfinite(vloss) && vloss < res->best_val_loss;
        if (better) {
            res->best_val_loss = vloss;
            res->best_epoch = e + 1;
            snapshot_io(net, snap, 1);
            since_best = 0;
        } else {
            since_best++;
        }
        if (ema) snapshot_io(net, cur, 0);
        if (!o->quiet)
            bs_log_info("%s%sepoch %d/%d  lr %.2e  train loss %.4f  val loss %.4f  val acc %.3f  %.0f samples/s  "
                        "%.1f s (%.1f%% outside the network)%s",
                        o->tag ? o->tag : "", o->tag ? ": " : "", e + 1, o->epochs, lr, h->train_loss, vloss, h->val_acc, h->samples_per_s, el,
                        100.0 * h->outside_fraction, better ? "  *best" : "");
        if (ts_stop_requested) {
            res->interrupted = 1;
            bs_log_warn("%s%sinterrupted: keeping the best weights so far (epoch %d)", o->tag ? o->tag : "",
                        o->tag ? ": " : "", res->best_epoch);
            break;
        }
        if (o->patience > 0 && since_best >= o->patience) {
            if (!o->quiet)
                bs_log_info("%s%searly stop: no better validation loss for %d epochs", o->tag ? o->tag : "",
                            o->tag ? ": " : "", o->patience);
            break;
        }
    }
    snapshot_io(net, snap, 0);

    /* thresholds: max F1 on the validation windows, with the best weights */
    net_eval(net, cfg, w, val_idx, n_val, mean, std, xb, vprobs);
    float *thr = xcalloc((size_t)C, sizeof(float));
    ts_pick_thresholds(vprobs, vy, n_val, C, thr);
    rc = bs_model_set_thresholds(model, thr, err);
    free(thr);
    free(ag.pow_x);
    free(ag.pow_n);
    free(ag.shift_buf);
    free(xb);
    free(yb);
    free(vprobs);
    free(vy);
    free(order);
    free(noise);
    free(pos_weight);
    free(snap);
    free(own_syn);
    free(ema);
    free(cur);
    free(mean);
    free(std);
    bs_adam_free(adam);
    if (rc != 0) {
        bs_model_free(model);
        free(res->hist);
        memset(res, 0, sizeof *res);
        return -1;
    }
    res->model = model;
    return 0;
}

void ts_train_result_free(ts_train_result *r) {
    if (r->model) bs_model_free(r->model);
    free(r->hist);
    memset(r, 0, sizeof *r);
}
