/* The training loop. See train.h. */
#include "trainer/train.h"
#include "trainer/synth.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "birdsong/log.h"
#include "birdsong/nn.h"
#include "trainer/calibrate.h"
#include "trainer/checkpoint.h"
#include "trainer/dist.h"
#include "trainer/metrics.h"
#include "trainer/replicas.h"
#include "trainer/split.h"
#include "trainer/xalloc.h"

volatile sig_atomic_t ts_stop_requested = 0;

ts_train_options ts_train_defaults(void) {
    ts_train_options o = {
        .arch = "convnet1", .epochs = 30, .batch_size = 32, .patience = 6, .lr = 1e-3f, .cosine = 0,
        .weight_decay = 0.0f, .class_weights = 0, .seed = 1, .augment = 1, .mix_prob = 0.5f, .mix_labelled = 0.0f,
        .snr_min = 0.0f, .snr_max = 20.0f, .shift_frames = 8, .gain_db = 6.0f, .time_mask = 6, .freq_mask = 12,
        .bg_repeat = 1, .synthetic_negatives = 0, .ema = 0.0f, .quiet = 0, .replicas = 1,
    };
    return o;
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
    w->x = ts_xcalloc((size_t)total, sizeof *w->x);
    w->item = ts_xcalloc((size_t)total, sizeof(int));
    w->group = ts_xcalloc((size_t)total, sizeof(int));
    w->start = ts_xcalloc((size_t)total, sizeof(double));
    w->y = ts_xcalloc((size_t)total * C, 1);
    w->yf = ts_xcalloc((size_t)total * C, sizeof(float));
    w->background = ts_xcalloc((size_t)total, 1);
    w->next = ts_xcalloc((size_t)total, sizeof(int));
    w->prev = ts_xcalloc((size_t)total, sizeof(int));
    w->next_offset = ts_xcalloc((size_t)total, sizeof(int));
    for (int i = 0; i < total; i++) w->next[i] = w->prev[i] = -1;
    int *gid = ts_xcalloc((size_t)ds->n_items, sizeof(int));
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
    float *buf = ts_xcalloc(per, sizeof(float));
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

typedef struct active_key {
    int group, pos;
    float score;
} active_key;

/* by recording, then band energy descending, then position: the rank order ts_keep_active keeps */
static int active_cmp(const void *pa, const void *pb) {
    const active_key *a = pa, *b = pb;
    if (a->group != b->group) return a->group < b->group ? -1 : 1;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

int ts_keep_active(const ts_windows *w, const float *score, double fraction, int *idx, int n) {
    if (fraction >= 1.0 || n <= 0) return n;
    /* rank every labelled window within its recording first, then compact: the ranks are taken
     * over idx as given, not over a list already partly compacted */
    active_key *key = ts_xmalloc(sizeof(active_key) * (size_t)n);
    uint8_t *keep = ts_xmalloc((size_t)n);
    int nk = 0;
    for (int a = 0; a < n; a++) {
        keep[a] = w->background[idx[a]] != 0;
        if (!keep[a]) key[nk++] = (active_key){.group = w->group[idx[a]], .pos = a, .score = score[idx[a]]};
    }
    qsort(key, (size_t)nk, sizeof *key, active_cmp);
    for (int s = 0; s < nk;) {
        int e = s;
        while (e < nk && key[e].group == key[s].group) e++;
        int k = (int)ceil(fraction * (e - s));
        if (k < 1) k = 1;
        for (int r = 0; r < k; r++) keep[key[s + r].pos] = 1;
        s = e;
    }
    int k = 0;
    for (int a = 0; a < n; a++)
        if (keep[a]) idx[k++] = idx[a];
    free(key);
    free(keep);
    return k;
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
            float mx = -1e30f, amin = a->cfg->amin, floor_db = bs_feature_floor_db(a->cfg);
            /* back to dB on the window's scale (its dB reference, features.h): ref 1 as ever;
             * a fixed reference: its silence floor; ref = max: the mix's own loudest cell 0 dB */
            const int ref_max = a->cfg->db_ref == BS_DB_REF_MAX;
            const int ref_one = ref_max || bs_feature_db_offset(a->cfg) == 0.0;
            for (size_t i = 0; i < N; i++) {
                float p = px[i] + g * pn[i];
                x[i] = ref_one ? 10.0f * log10f(p > amin ? p : amin) : fmaxf(10.0f * log10f(p), floor_db);
                if (x[i] > mx) mx = x[i];
            }
            if (ref_max) {
                for (size_t i = 0; i < N; i++) x[i] -= mx;
                mx = 0.0f;
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
    float *audio = ts_xcalloc((size_t)ns, sizeof(float));
    float *out = ts_xcalloc((size_t)n * M * T, sizeof(float));
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

/* Inference with the training net over idx: probs [n, C] and the summed BCE on logits. Under
 * MPI each rank computes every K-th batch and the ranks exchange the results: each value is
 * computed by one rank and the others add zeros, and the loss is summed window by window in
 * order afterwards, so every rank gets the bits one process would. */
static double net_eval(bs_net *net, const bs_feature_config *cfg, const ts_windows *w,
                       const int *idx, int n, const float *mean, const float *std, float *xb,
                       float *probs) {
    int B = bs_net_max_batch(net), C = w->C, K = ts_dist_size(), rank = ts_dist_rank();
    size_t per = (size_t)w->n_mels * w->n_frames;
    double *wl = K > 1 ? ts_xcalloc((size_t)n + 1, sizeof(double)) : NULL, loss = 0.0;
    if (K > 1) memset(probs, 0, (size_t)n * C * sizeof(float));
    for (int s = 0; s < n; s += B) {
        if (K > 1 && (s / B) % K != rank) continue;
        int b = n - s < B ? n - s : B;
        for (int i = 0; i < b; i++) {
            memcpy(xb + i * per, w->x[idx[s + i]], per * sizeof(float));
            bs_features_normalize(cfg, xb + i * per, mean, std);
        }
        const float *z = bs_net_forward(net, xb, b, 0);
        for (int i = 0; i < b; i++) {
            double l = bce_logits(z + (size_t)i * C, w->yf + (size_t)idx[s + i] * C, (size_t)C);
            if (wl) wl[s + i] = l;
            else loss += l;
        }
        bs_net_activate(net, b, probs + (size_t)s * C);
    }
    if (K > 1) {
        ts_dist_sum_float(probs, (size_t)n * C);
        for (int s = 0; s < n; s += 1 << 20) ts_dist_sum_double(wl + s, n - s < (1 << 20) ? n - s : 1 << 20);
        for (int i = 0; i < n; i++) loss += wl[i];
        free(wl);
    }
    return loss;
}

/* ---- one training run: the state, its phases, one cleanup path ---- */

typedef struct run {
    const ts_windows *w;
    const int *train_idx, *val_idx;
    int n_train, n_val;
    const bs_feature_config *cfg;
    const ts_train_options *o;
    float *mean, *std;          /* [n_mels] z-score from the training windows */
    bs_model *model;            /* owns net */
    bs_net *net;
    bs_adam *adam;
    ts_replicas *par;
    size_t snap_n;
    float *snap;                /* the best weights so far (parameters + batchnorm buffers) */
    float *ema, *cur;           /* --ema: the average, and the raw weights set aside */
    long step;                  /* --ema steps */
    int n_syn;
    const float *syn;           /* synthetic negatives: order entry -1 - j is window j */
    float *own_syn;
    int n_order;
    int *order;                 /* the epoch order, shuffled in place every epoch */
    int *noise, n_noise;        /* background windows of the training part */
    float *pos_weight;          /* [C] or NULL */
    float *xb, *yb, *vprobs;    /* batch inputs and targets, validation probabilities */
    uint8_t *vy;
    aug_ctx ag;
    ts_rng order_rng;
    int since_best;
    int epoch, batch;           /* where the loop starts (0, 0 unless resumed) */
    double loss_sum;            /* of a resumed epoch so far */
    long seen;
    char *settings;             /* what a checkpoint must match */
    float *frozen;              /* --freeze-features: every tensor before the last dense layer,
                                   put back after each step (the replicas' weighted mean of the
                                   running statistics would move them by a rounding) */
    double t_start;             /* for the time left of the run */
    int epochs_timed;
    double epoch_seconds;
} run;

static void run_free(run *r) {
    free(r->mean);
    free(r->std);
    ts_replicas_free(r->par);
    bs_adam_free(r->adam);
    bs_model_free(r->model);
    free(r->snap);
    free(r->ema);
    free(r->cur);
    free(r->own_syn);
    free(r->order);
    free(r->noise);
    free(r->pos_weight);
    free(r->xb);
    free(r->yb);
    free(r->vprobs);
    free(r->vy);
    free(r->ag.pow_x);
    free(r->ag.pow_n);
    free(r->ag.shift_buf);
    free(r->settings);
    free(r->frozen);
    memset(r, 0, sizeof *r);
}

/* the z-score statistics of the training windows (--init-from: the model's, which its
 * network was trained with) */
static int run_norm(run *r, bs_error *err) {
    int M = r->w->n_mels, T = r->w->n_frames;
    if (r->o->init_from) {
        if (bs_model_n_mels(r->o->init_from) != M || bs_model_n_frames(r->o->init_from) != T)
            return bs_error_set(err, "--init-from: the model takes %dx%d windows, the data gives %dx%d",
                                bs_model_n_mels(r->o->init_from), bs_model_n_frames(r->o->init_from), M, T);
        r->mean = ts_xcalloc((size_t)M, sizeof(float));
        r->std = ts_xcalloc((size_t)M, sizeof(float));
        memcpy(r->mean, bs_model_norm_mean(r->o->init_from), sizeof(float) * (size_t)M);
        memcpy(r->std, bs_model_norm_std(r->o->init_from), sizeof(float) * (size_t)M);
        return 0;
    }
    bs_norm_stats st;
    if (bs_norm_stats_init(&st, M, err) != 0) return -1;
    float floor_db = bs_feature_floor_db(r->cfg);
    for (int i = 0; i < r->n_train; i++) bs_norm_stats_update(&st, r->w->x[r->train_idx[i]], T, floor_db);
    r->mean = ts_xcalloc((size_t)M, sizeof(float));
    r->std = ts_xcalloc((size_t)M, sizeof(float));
    int rc = bs_norm_stats_finalize(&st, r->mean, r->std, err);
    bs_norm_stats_free(&st);
    if (rc != 0) return -1;
    float fl = r->cfg->norm_std_floor;
    for (int m = 0; m < M; m++)
        if (!(r->std[m] > fl)) r->std[m] = fl > 0 ? fl : 1e-3f;
    return 0;
}

/* --folds trainings run side by side and all read the --init-from model: bs_net_tensor marks
 * its Winograd weights stale (a write), so they take turns */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

/* --init-from: the model's layer list with a sigmoid output (a softmax or linear head becomes
 * per-species sigmoids), the layers before the last dense frozen with --freeze-features, and
 * where each data label is among its outputs (out_of[c]). */
static int init_layers(const ts_train_options *o, char *const *labels, int C, bs_layer_spec *layers, int *out_of,
                       bs_error *err) {
    bs_net *src = bs_model_net(o->init_from);
    int n = bs_net_n_layers(src);
    memcpy(layers, bs_net_layers(src), sizeof(bs_layer_spec) * (size_t)n);
    if (layers[n - 2].kind != BS_LAYER_DENSE)
        return bs_error_set(err, "--init-from: the layer before the output is %s; a dense layer is needed to train "
                            "per-species sigmoids", bs_layer_kind_name(layers[n - 2].kind));
    layers[n - 1].kind = BS_LAYER_SIGMOID;
    for (int i = 0; i < n; i++) layers[i].frozen = o->freeze_features && i < n - 2;
    if (bs_model_n_outputs(o->init_from) != C)
        return bs_error_set(err, "--init-from: the model has %d outputs, the data %d species",
                            bs_model_n_outputs(o->init_from), C);
    for (int c = 0; c < C; c++) {
        out_of[c] = -1;
        for (int k = 0; k < C; k++)
            if (strcmp(labels[c], bs_model_label(o->init_from, k)) == 0) out_of[c] = k;
        if (out_of[c] < 0)
            return bs_error_set(err, "--init-from: species '%s' of the data is not among the model's labels", labels[c]);
    }
    return n;
}

/* Every tensor of the --init-from model into the new one; the last dense layer's rows (and
 * biases) in the data's label order. */
static void init_weights(const ts_train_options *o, bs_net *dst, const int *out_of, int C) {
    bs_net *src = bs_model_net(o->init_from);
    int nt = bs_net_n_tensors(dst);
    for (int t = 0; t < nt; t++) {
        bs_tensor_info a, b;
        bs_net_tensor(src, t, &a);
        bs_net_tensor(dst, t, &b);
        if (t < nt - 2) {
            memcpy(b.data, a.data, sizeof(float) * a.size);
            continue;
        }
        size_t row = a.size / (size_t)C; /* dense weight (C, in) or bias (C) */
        for (int c = 0; c < C; c++) memcpy(b.data + (size_t)c * row, a.data + (size_t)out_of[c] * row, sizeof(float) * row);
    }
    bs_net_params_changed(dst);
}

/* --freeze-features: copy the frozen tensors out (save) or back */
static void frozen_io(run *r, int save) {
    size_t off = 0;
    for (int t = 0; t < bs_net_n_tensors(r->net) - 2; t++) {
        bs_tensor_info ti;
        bs_net_tensor(r->net, t, &ti);
        if (save) memcpy(r->frozen + off, ti.data, sizeof(float) * ti.size);
        else memcpy(ti.data, r->frozen + off, sizeof(float) * ti.size);
        off += ti.size;
    }
}

/* the model, its net, Adam, the replicas and the weight snapshots */
static int run_model(run *r, char *const *labels, bs_error *err) {
    const ts_train_options *o = r->o;
    int M = r->w->n_mels, T = r->w->n_frames;
    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    int *out_of = ts_xcalloc((size_t)r->w->C, sizeof(int));
    pthread_mutex_lock(&init_lock);
    int n_layers = o->init_from ? init_layers(o, labels, r->w->C, layers, out_of, err)
                                : bs_nn_arch_layers(o->arch, layers, BS_NN_MAX_LAYERS);
    pthread_mutex_unlock(&init_lock);
    if (n_layers < 0) {
        free(out_of);
        if (o->init_from) return -1;
        return bs_error_set(err, "--arch %s: unknown architecture (expected one of %s)", o->arch, bs_nn_arch_names());
    }
    r->model = bs_model_create_layers(layers, n_layers, M, T, (const char *const *)labels, r->w->C, o->batch_size,
                                      o->seed, err);
    if (r->model && o->init_from) {
        pthread_mutex_lock(&init_lock);
        init_weights(o, bs_model_net(r->model), out_of, r->w->C);
        pthread_mutex_unlock(&init_lock);
    }
    free(out_of);
    if (!r->model) return -1;
    if (bs_model_set_arch(r->model, o->init_from ? bs_model_arch(o->init_from) : o->arch, err) != 0 || bs_model_set_normalization(r->model, r->mean, r->std, M, err) != 0 ||
        bs_model_set_feature_config(r->model, r->cfg, err) != 0)
        return -1;
    r->net = bs_model_net(r->model);
    if (o->freeze_features) {
        r->frozen = ts_xcalloc(snapshot_size(r->net) + 1, sizeof(float));
        frozen_io(r, 1);
    }
    bs_adam_config ac = bs_adam_defaults();
    ac.lr = o->lr;
    ac.weight_decay = o->weight_decay;
    r->adam = ts_xcheck(bs_adam_create(bs_net_n_params(r->net), &ac));
    r->par = ts_replicas_create(r->net, o->replicas > 0 ? o->replicas : 1, err);
    if (!r->par) return -1;
    ts_replicas_set_first_index(r->par, ts_dist_rank() * ts_replicas_n(r->par));
    r->snap_n = snapshot_size(r->net);
    r->snap = ts_xcalloc(r->snap_n, sizeof(float));
    snapshot_io(r->net, r->snap, 1);
    /* --ema: the average (ema) is what is validated, kept as best and written; the raw
     * weights (cur) are set aside while it is validated and go on training. */
    if (o->ema > 0.0f) {
        r->ema = ts_xcalloc(r->snap_n, sizeof(float));
        r->cur = ts_xcalloc(r->snap_n, sizeof(float));
        memcpy(r->ema, r->snap, r->snap_n * sizeof(float));
    }
    return 0;
}

/* the epoch order (training windows, background ones repeated, then the synthetic ones),
 * class weights, batch buffers and augmentation state */
static int run_data(run *r, bs_error *err) {
    const ts_train_options *o = r->o;
    const ts_windows *w = r->w;
    int C = w->C, M = w->n_mels, T = w->n_frames;
    size_t per = (size_t)M * T;
    r->n_syn = o->synthetic_negatives > 0 ? o->synthetic_negatives : 0;
    r->syn = o->synthetic;
    if (r->n_syn > 0 && !r->syn &&
        !(r->syn = r->own_syn = ts_synthetic_windows(r->cfg, r->n_syn, o->seed, M, T, o->quiet, o->tag, err)))
        return -1;
    int reps = o->bg_repeat > 1 ? o->bg_repeat : 1;
    r->n_order = r->n_syn;
    for (int i = 0; i < r->n_train; i++) r->n_order += w->background[r->train_idx[i]] ? reps : 1;
    r->order = ts_xcalloc((size_t)r->n_order, sizeof(int));
    for (int j = 0; j < r->n_syn; j++) r->order[r->n_order - r->n_syn + j] = -1 - j;
    r->noise = ts_xcalloc((size_t)r->n_train, sizeof(int));
    for (int i = 0, k = 0; i < r->n_train; i++) {
        int ti = r->train_idx[i], n = w->background[ti] ? reps : 1;
        for (int j = 0; j < n; j++) r->order[k++] = ti;
        if (w->background[ti]) r->noise[r->n_noise++] = ti;
    }
    if (o->class_weights) {
        r->pos_weight = ts_xcalloc((size_t)C, sizeof(float));
        double total = 0.0;
        long *pos = ts_xcalloc((size_t)C, sizeof(long));
        for (int i = 0; i < r->n_train; i++)
            for (int c = 0; c < C; c++) pos[c] += w->y[(size_t)r->train_idx[i] * C + c];
        int used = 0;
        for (int c = 0; c < C; c++)
            if (pos[c]) {
                total += pos[c];
                used++;
            }
        for (int c = 0; c < C; c++) {
            double pw = pos[c] ? (total / used) / pos[c] : 1.0;
            r->pos_weight[c] = (float)(pw < 0.25 ? 0.25 : pw > 4.0 ? 4.0 : pw);
        }
        free(pos);
    }
    int B = o->batch_size;
    r->xb = ts_xcalloc((size_t)B * per, sizeof(float));
    r->yb = ts_xcalloc((size_t)B * C, sizeof(float));
    r->vprobs = ts_xcalloc((size_t)r->n_val * C, sizeof(float));
    r->vy = ts_xcalloc((size_t)r->n_val * C, 1);
    for (int i = 0; i < r->n_val; i++) memcpy(r->vy + (size_t)i * C, w->y + (size_t)r->val_idx[i] * C, (size_t)C);
    r->ag = (aug_ctx){.o = o, .cfg = r->cfg, .w = w, .noise = r->noise, .n_noise = r->n_noise, .pool = r->train_idx,
                      .n_pool = r->n_train, .rng = {o->seed * 7919 + 17}, .pow_x = ts_xcalloc(per, sizeof(float)),
                      .pow_n = ts_xcalloc(per, sizeof(float)), .shift_buf = ts_xcalloc(per, sizeof(float))};
    r->order_rng = (ts_rng){o->seed ^ 0x5bd1e995ull};
    return 0;
}

/* ---- checkpoints ---- */

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

__attribute__((format(printf, 3, 4))) static void sb_kv(strbuf *b, const char *key, const char *fmt, ...) {
    char val[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    size_t need = strlen(key) + strlen(val) + 3;
    if (b->len + need > b->cap) {
        b->cap = (b->len + need) * 2;
        b->s = ts_xrealloc(b->s, b->cap);
    }
    b->len += (size_t)sprintf(b->s + b->len, "%s=%s\n", key, val);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

/* windows idx: their count, indices, labels, background flags and 32 values spread over each */
static uint64_t windows_hash(const ts_windows *w, const int *idx, int n) {
    uint64_t h = fnv(0xcbf29ce484222325ull, &n, sizeof n);
    size_t per = (size_t)w->n_mels * w->n_frames, stride = per / 32 ? per / 32 : 1;
    for (int i = 0; i < n; i++) {
        int k = idx[i];
        h = fnv(h, &k, sizeof k);
        h = fnv(h, w->yf + (size_t)k * w->C, (size_t)w->C * sizeof(float));
        h = fnv(h, &w->background[k], 1);
        for (size_t j = 0; j < per; j += stride) h = fnv(h, &w->x[k][j], sizeof(float));
    }
    return h;
}

/* The settings a checkpoint must match, named as the options that set them. A new option
 * that changes the result adds one line here. */
static void run_settings(run *r) {
    const ts_train_options *o = r->o;
    strbuf b = {0};
    sb_kv(&b, "--arch", "%s", o->arch);
    sb_kv(&b, "--epochs", "%d", o->epochs);
    sb_kv(&b, "--batch-size", "%d", o->batch_size);
    sb_kv(&b, "--patience", "%d", o->patience);
    sb_kv(&b, "--lr", "%.9g", o->lr);
    sb_kv(&b, "--lr-schedule", "%s", o->cosine ? "cosine" : "constant");
    sb_kv(&b, "--weight-decay", "%.9g", o->weight_decay);
    sb_kv(&b, "--class-weights", "%s", o->class_weights ? "balanced" : "none");
    sb_kv(&b, "--seed", "%llu", (unsigned long long)o->seed);
    sb_kv(&b, "augmentation", "%s", o->augment ? "on" : "off (--no-augment)");
    sb_kv(&b, "--mix-prob", "%.9g", o->mix_prob);
    sb_kv(&b, "--mix-labelled", "%.9g", o->mix_labelled);
    sb_kv(&b, "--snr-range", "%.9g,%.9g", o->snr_min, o->snr_max);
    sb_kv(&b, "--time-shift", "%d", o->shift_frames);
    sb_kv(&b, "--gain-db", "%.9g", o->gain_db);
    sb_kv(&b, "--freq-shift", "%d", o->freq_shift);
    sb_kv(&b, "time and frequency masks", "%d,%d", o->time_mask, o->freq_mask);
    sb_kv(&b, "--background-repeat", "%d", o->bg_repeat);
    sb_kv(&b, "--synthetic-negatives", "%d", o->synthetic_negatives);
    sb_kv(&b, "--ema", "%.9g", o->ema);
    for (const char *p = o->settings_extra; p && *p;) {
        const char *eq = strchr(p, '='), *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        if (eq && eq < eol) {
            char key[96];
            snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
            sb_kv(&b, key, "%.*s", (int)(eol - eq - 1), eq + 1);
        }
        p = *eol ? eol + 1 : eol;
    }
    sb_kv(&b, "data-parallel replicas (--threads)", "%d", ts_replicas_n(r->par));
    sb_kv(&b, "MPI ranks", "%d", ts_dist_size());
    json_t *fj = bs_feature_config_to_json(r->cfg);
    char *fs = fj ? json_dumps(fj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    sb_kv(&b, "feature settings", "%s", fs ? fs : "?");
    free(fs);
    json_decref(fj);
    sb_kv(&b, "training windows", "%d (hash %016llx)", r->n_train,
          (unsigned long long)windows_hash(r->w, r->train_idx, r->n_train));
    sb_kv(&b, "validation windows", "%d (hash %016llx)", r->n_val,
          (unsigned long long)windows_hash(r->w, r->val_idx, r->n_val));
    r->settings = b.s;
}

static int run_save(run *r, const ts_train_result *res, int epoch, int batch, double loss_sum, long seen,
                    bs_error *err) {
    if (ts_dist_rank() != 0) return 0; /* under MPI rank 0 writes; every rank reads on --resume */
    float *weights = ts_xcalloc(r->snap_n, sizeof(float));
    snapshot_io(r->net, weights, 1);
    ts_checkpoint c = {.settings = r->settings, .epoch = epoch, .batch = batch, .step = r->step,
                       .loss_sum = loss_sum, .seen = seen, .since_best = r->since_best,
                       .best_epoch = res->best_epoch, .best_val_loss = res->best_val_loss,
                       .order_rng = r->order_rng.s, .aug_rng = r->ag.rng.s, .n_hist = res->n_hist,
                       .hist = res->hist, .n_order = r->n_order, .order = r->order,
                       .adam_t = bs_adam_t(r->adam), .n_params = bs_net_n_params(r->net),
                       .adam_m = bs_adam_m(r->adam), .adam_v = bs_adam_v(r->adam), .n_snap = r->snap_n,
                       .weights = weights, .best = r->snap, .ema = r->ema};
    int rc = ts_checkpoint_write(r->o->checkpoint, &c, err);
    free(weights);
    return rc;
}

/* --resume: the state of the checkpoint, after checking it belongs to this run */
static int run_resume(run *r, ts_train_result *res, bs_error *err) {
    ts_checkpoint c;
    const char *path = r->o->checkpoint;
    size_t np = bs_net_n_params(r->net);
    if (ts_checkpoint_read(path, &c, r->n_order, np, r->snap_n, r->ema != NULL, err) != 0) return -1;
    if (ts_checkpoint_compare(path, c.settings, r->settings, err) != 0) {
        ts_checkpoint_free(&c);
        return -1;
    }
    int n_batches = r->n_order / r->o->batch_size + (r->n_order % r->o->batch_size >= 2);
    int bad = c.epoch > r->o->epochs || c.batch >= n_batches || c.n_hist > r->o->epochs;
    for (int i = 0; i < r->n_order && !bad; i++)
        bad = c.order[i] >= r->w->n || c.order[i] < -r->n_syn;
    if (bad) {
        ts_checkpoint_free(&c);
        return bs_error_set(err, "checkpoint %s: its position or epoch order does not fit this run", path);
    }
    r->epoch = c.epoch;
    r->batch = c.batch;
    r->loss_sum = c.loss_sum;
    r->seen = c.seen;
    r->step = c.step;
    r->since_best = c.since_best;
    res->best_epoch = c.best_epoch;
    res->best_val_loss = c.best_val_loss;
    res->n_hist = c.n_hist;
    memcpy(res->hist, c.hist, (size_t)c.n_hist * sizeof *c.hist);
    r->order_rng.s = c.order_rng;
    r->ag.rng.s = c.aug_rng;
    memcpy(r->order, c.order, (size_t)r->n_order * sizeof(int));
    bs_adam_set_t(r->adam, c.adam_t);
    memcpy(bs_adam_m(r->adam), c.adam_m, np * sizeof(float));
    memcpy(bs_adam_v(r->adam), c.adam_v, np * sizeof(float));
    snapshot_io(r->net, c.weights, 0);
    memcpy(r->snap, c.best, r->snap_n * sizeof(float));
    if (r->ema) memcpy(r->ema, c.ema, r->snap_n * sizeof(float));
    ts_checkpoint_free(&c);
    if (!r->o->quiet)
        bs_log_info("%s%sresumed from %s at epoch %d, batch %d", r->o->tag ? r->o->tag : "", r->o->tag ? ": " : "",
                    path, r->epoch + 1, r->batch);
    return 0;
}

/* ---- progress ---- */

/* done of total batches, `el` seconds since the epoch (or its resumed part, from batch
 * `first`) began */
static void progress_line(const run *r, int epoch, int first, int done, int total, double loss, double sps,
                          double el) {
    const ts_train_options *o = r->o;
    if (o->quiet || o->no_bar || !isatty(STDERR_FILENO)) return;
    double per_batch = el / (done - first), eta = per_batch * (total - done);
    /* the run: this epoch's rest, then the epochs left at the mean time of those finished
     * (or this one's projected length) */
    double per_epoch = r->epochs_timed ? r->epoch_seconds / r->epochs_timed : per_batch * total;
    double run_left = eta + per_epoch * (o->epochs - epoch);
    int width = 20, fill = total ? done * width / total : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%s%sepoch %d/%d [%s] %d/%d  loss %.4f  %.1f samples/s  left: epoch %.0fs, run %.0fs \033[K",
            o->tag ? o->tag : "", o->tag ? ": " : "", epoch, o->epochs, bar, done, total, loss, sps, eta, run_left);
    fflush(stderr);
}

static void log_json_epoch(const run *r, const ts_epoch_log *h, int best) {
    FILE *f = r->o->log_json;
    if (!f) return;
    json_t *e = ts_epoch_log_json(h);
    if (r->o->log_fold > 0) json_object_set_new(e, "fold", json_integer(r->o->log_fold));
    else json_object_set_new(e, "model", json_string("final"));
    json_object_set_new(e, "epochs", json_integer(r->o->epochs));
    json_object_set_new(e, "best", json_boolean(best));
    char *s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (s) {
        flockfile(f); /* trainings side by side share the file: whole lines */
        fprintf(f, "%s\n", s);
        fflush(f);
        funlockfile(f);
        free(s);
    }
}

/* ---- the epochs ---- */

enum { RUN_NEXT, RUN_STOP, RUN_CHECKPOINTED };

/* Whether to stop: ts_stop_requested, agreed by every MPI rank (each calls this at the same
 * points, so that all stop at the same batch: mpirun forwards SIGTERM to every rank, but not
 * at the same instant). */
static int stop_agreed(void) {
    if (ts_dist_size() < 2) return ts_stop_requested != 0;
    double f = ts_stop_requested ? 1.0 : 0.0;
    ts_dist_sum_double(&f, 1);
    return f > 0.0;
}

static float run_step(run *r, int b) { return ts_replicas_step_all(r->par, r->xb, r->yb, r->pos_weight, b); }

/* Every rank takes rank 0's weights and statistics (they are equal already: the same sums
 * reach every rank; this keeps a reduction that rounded differently from drifting). */
static void run_sync(run *r) {
    if (ts_dist_size() < 2) return;
    bs_tensor_info t;
    for (int k = 0; k < bs_net_n_tensors(r->net); k++)
        if (bs_net_tensor(r->net, k, &t) == 0) ts_dist_bcast_float(t.data, t.size);
    if (r->ema) ts_dist_bcast_float(r->ema, r->snap_n);
}

/* One epoch from batch r->batch (0 unless resumed): train, validate, keep the best. */
static int run_epoch(run *r, ts_train_result *res, int e, bs_error *err) {
    const ts_train_options *o = r->o;
    const ts_windows *w = r->w;
    int C = w->C, B = o->batch_size;
    size_t per = (size_t)w->n_mels * w->n_frames;
    double lr = o->cosine ? o->lr * 0.5 * (1.0 + cos(M_PI * e / o->epochs)) : o->lr;
    bs_adam_set_lr(r->adam, (float)lr);
    int first = r->batch;
    double loss_sum = r->loss_sum;
    long seen = r->seen;
    r->batch = 0;
    r->loss_sum = 0.0;
    r->seen = 0;
    if (first == 0) ts_shuffle_int(&r->order_rng, r->order, r->n_order);
    double t_epoch = now_s(), t_net = 0.0;
    long seen_here = 0;
    int n_batches = r->n_order / B + (r->n_order % B >= 2), bi;
    for (bi = first; bi < n_batches && !stop_agreed(); bi++) {
        int s = bi * B, b = r->n_order - s < B ? r->n_order - s : B;
        for (int i = 0; i < b; i++) {
            int wi = r->order[s + i];
            float *x = r->xb + (size_t)i * per;
            if (wi >= 0) {
                memcpy(x, w->x[wi], per * sizeof(float));
                memcpy(r->yb + (size_t)i * C, w->yf + (size_t)wi * C, (size_t)C * sizeof(float));
            } else {
                memcpy(x, r->syn + (size_t)(-1 - wi) * per, per * sizeof(float));
                memset(r->yb + (size_t)i * C, 0, (size_t)C * sizeof(float));
            }
            if (o->augment) augment_db(&r->ag, wi, x, r->yb + (size_t)i * C);
            bs_features_normalize(r->cfg, x, r->mean, r->std);
            if (o->augment) spec_masks(&r->ag, x);
        }
        double t0 = now_s();
        /* dropout masks seeded per batch: a run resumed at any batch draws the same */
        ts_replicas_set_dropout_seed(r->par, o->seed + 1000003ull * (uint64_t)(e + 1) + 0xD1B54A32D192ED03ull * (uint64_t)bi);
        float loss = run_step(r, b);
        ts_replicas_adam_step(r->par, r->adam);
        if (r->frozen) frozen_io(r, 0);
        if (r->ema) snapshot_ema(r->net, r->ema, ts_ema_decay(o->ema, ++r->step));
        t_net += now_s() - t0;
        loss_sum += (double)loss * b;
        seen += b;
        seen_here += b;
        double el = now_s() - t_epoch;
        progress_line(r, e + 1, first, bi + 1, n_batches, loss_sum / seen, seen_here / el, el);
    }
    if (!o->quiet && !o->no_bar && isatty(STDERR_FILENO)) fprintf(stderr, "\r\033[K");
    if (bi < n_batches && o->checkpoint) { /* stopped inside the epoch: save where */
        if (run_save(r, res, e, bi, loss_sum, seen, err) != 0) return -1;
        return RUN_CHECKPOINTED;
    }
    run_sync(r);
    double tv = now_s();
    if (r->ema) {
        snapshot_io(r->net, r->cur, 1);
        snapshot_io(r->net, r->ema, 0);
    }
    double vloss = net_eval(r->net, r->cfg, w, r->val_idx, r->n_val, r->mean, r->std, r->xb, r->vprobs) /
                   ((double)r->n_val * C);
    t_net += now_s() - tv;
    double el = now_s() - t_epoch;
    ts_epoch_log *h = &res->hist[res->n_hist++];
    h->epoch = e + 1;
    h->lr = lr;
    h->train_loss = seen ? loss_sum / seen : NAN;
    h->val_loss = vloss;
    h->val_acc = ts_top1_accuracy(r->vprobs, r->vy, r->n_val, C);
    h->seconds = el;
    h->samples_per_s = seen_here / el;
    h->outside_fraction = el > 0 ? (el - t_net) / el : 0;
    r->epoch_seconds += el;
    r->epochs_timed++;
    int better = isfinite(vloss) && vloss < res->best_val_loss;
    if (better) {
        res->best_val_loss = vloss;
        res->best_epoch = e + 1;
        snapshot_io(r->net, r->snap, 1);
        r->since_best = 0;
    } else {
        r->since_best++;
    }
    if (r->ema) snapshot_io(r->net, r->cur, 0);
    const char *tag = o->tag ? o->tag : "", *sep = o->tag ? ": " : "";
    if (!o->quiet)
        bs_log_info("%s%sepoch %d/%d  lr %.2e  train loss %.4f  val loss %.4f  val acc %.3f  %.0f samples/s  "
                    "%.1f s (%.1f%% outside the network)%s",
                    tag, sep, e + 1, o->epochs, lr, h->train_loss, vloss, h->val_acc, h->samples_per_s, el,
                    100.0 * h->outside_fraction, better ? "  *best" : "");
    log_json_epoch(r, h, better);
    if (o->checkpoint && run_save(r, res, e + 1, 0, 0.0, 0, err) != 0) return -1;
    if (stop_agreed()) {
        if (o->checkpoint) return RUN_CHECKPOINTED;
        res->interrupted = 1;
        bs_log_warn("%s%sinterrupted: keeping the best weights so far (epoch %d)", tag, sep, res->best_epoch);
        return RUN_STOP;
    }
    if (o->patience > 0 && r->since_best >= o->patience) {
        if (!o->quiet) bs_log_info("%s%searly stop: no better validation loss for %d epochs", tag, sep, o->patience);
        return RUN_STOP;
    }
    return RUN_NEXT;
}

/* the best weights, and per-species thresholds at the best F1 on the validation windows */
static int run_finish(run *r, bs_error *err) {
    int C = r->w->C;
    snapshot_io(r->net, r->snap, 0);
    net_eval(r->net, r->cfg, r->w, r->val_idx, r->n_val, r->mean, r->std, r->xb, r->vprobs);
    float *thr = ts_xcalloc((size_t)C, sizeof(float));
    ts_pick_thresholds(r->vprobs, r->vy, r->n_val, C, thr);
    int rc = bs_model_set_thresholds(r->model, thr, err);
    free(thr);
    return rc;
}

int ts_train_run(const ts_windows *w, const int *train_idx, int n_train, const int *val_idx, int n_val,
                 char *const *labels, const bs_feature_config *cfg, const ts_train_options *o,
                 ts_train_result *res, bs_error *err) {
    memset(res, 0, sizeof *res);
    if (n_train < 2) return bs_error_set(err, "the training part holds %d windows; expected at least 2", n_train);
    if (n_val < 1) return bs_error_set(err, "the validation part holds no window; expected at least 1");
    if (o->batch_size < 2) return bs_error_set(err, "--batch-size %d: expected at least 2", o->batch_size);
    if (o->resume && !o->checkpoint) return bs_error_set(err, "--resume needs --checkpoint-dir");
    run r = {.w = w, .train_idx = train_idx, .n_train = n_train, .val_idx = val_idx, .n_val = n_val, .cfg = cfg,
             .o = o, .t_start = now_s()};
    res->hist = ts_xcalloc((size_t)o->epochs + 1, sizeof(ts_epoch_log));
    res->best_val_loss = INFINITY;
    int rc = run_norm(&r, err);
    if (rc == 0) rc = run_model(&r, labels, err);
    if (rc == 0) rc = run_data(&r, err);
    if (rc == 0 && o->checkpoint) run_settings(&r);
    if (rc == 0 && o->resume) rc = run_resume(&r, res, err);
    int status = RUN_NEXT;
    if (rc == 0 && o->patience > 0 && res->n_hist > 0 && r.since_best >= o->patience) status = RUN_STOP;
    for (int e = r.epoch; rc == 0 && status == RUN_NEXT && e < o->epochs; e++) {
        status = run_epoch(&r, res, e, err);
        if (status < 0) rc = -1;
    }
    if (rc == 0 && status == RUN_CHECKPOINTED) {
        res->interrupted = res->checkpointed = 1;
        bs_log_warn("%s%sinterrupted: checkpoint written to %s (continue with --resume)", o->tag ? o->tag : "",
                    o->tag ? ": " : "", o->checkpoint);
    } else if (rc == 0) {
        rc = run_finish(&r, err);
        if (rc == 0) {
            res->model = r.model;
            r.model = NULL;
            r.net = NULL;
        }
    }
    run_free(&r);
    if (rc != 0) {
        free(res->hist);
        memset(res, 0, sizeof *res);
    }
    return rc;
}

void ts_train_result_free(ts_train_result *r) {
    if (r->model) bs_model_free(r->model);
    free(r->hist);
    memset(r, 0, sizeof *r);
}
