/* Metric functions. See metrics.h. */
#include "trainer/metrics.h"
#include "trainer/xalloc.h"
#include "trainer/json.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *row, int C) {
    int b = 0;
    for (int c = 1; c < C; c++)
        if (row[c] > row[b]) b = c;
    return b;
}

static int n_pos(const uint8_t *t, int C) {
    int k = 0;
    for (int c = 0; c < C; c++) k += t[c] != 0;
    return k;
}

double ts_top1_accuracy(const float *probs, const uint8_t *targets, int n, int C) {
    long total = 0, ok = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *t = targets + (size_t)i * C;
        if (!n_pos(t, C)) continue;
        total++;
        ok += t[argmax(probs + (size_t)i * C, C)] != 0;
    }
    return total ? (double)ok / (double)total : NAN;
}

void ts_group_mean(const float *probs, const uint8_t *targets, const int *group_of, int n, int C,
                   int n_groups, float *out_probs, uint8_t *out_targets) {
    double *acc = ts_xcalloc((size_t)n_groups * C + 1, sizeof(double));
    long *cnt = ts_xcalloc((size_t)n_groups + 1, sizeof(long));
    memset(out_targets, 0, (size_t)n_groups * C);
    for (int i = 0; i < n; i++) {
        int g = group_of[i];
        cnt[g]++;
        for (int c = 0; c < C; c++) {
            acc[(size_t)g * C + c] += probs[(size_t)i * C + c];
            out_targets[(size_t)g * C + c] |= targets[(size_t)i * C + c];
        }
    }
    for (int g = 0; g < n_groups; g++)
        for (int c = 0; c < C; c++)
            out_probs[(size_t)g * C + c] = cnt[g] ? (float)(acc[(size_t)g * C + c] / cnt[g]) : 0.0f;
    free(acc);
    free(cnt);
}

/* rows of column c sorted by score descending */
typedef struct scored { float s; uint8_t y; } scored;

static int cmp_desc(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x < y) - (x > y);
}

static scored *sorted_column(const float *probs, const uint8_t *targets, int n, int C, int c, long *P) {
    scored *v = ts_xmalloc(sizeof *v * (size_t)(n + 1));
    *P = 0;
    for (int i = 0; i < n; i++) {
        v[i].s = probs[(size_t)i * C + c];
        v[i].y = targets[(size_t)i * C + c] != 0;
        *P += v[i].y;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
    return v;
}

double ts_average_precision(const float *probs, const uint8_t *targets, int n, int C, int c) {
    long P;
    scored *v = sorted_column(probs, targets, n, C, c, &P);
    if (P == 0) { free(v); return NAN; }
    double ap = 0.0, prev_recall = 0.0;
    long tp = 0, fp = 0;
    for (int i = 0; i < n; i++) {
        tp += v[i].y;
        fp += !v[i].y;
        if (i + 1 < n && v[i + 1].s == v[i].s) continue; /* close the tie group first */
        double recall = (double)tp / P, precision = (double)tp / (double)(tp + fp);
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    free(v);
    return ap;
}

float ts_best_f1_threshold(const float *probs, const uint8_t *targets, int n, int C, int c, double *best_f1) {
    long P;
    scored *v = sorted_column(probs, targets, n, C, c, &P);
    if (P == 0) {
        free(v);
        if (best_f1) *best_f1 = NAN;
        return 0.5f;
    }
    double best = -1.0;
    float thr = 0.5f;
    long tp = 0, fp = 0;
    for (int i = 0; i < n; i++) {
        tp += v[i].y;
        fp += !v[i].y;
        if (i + 1 < n && v[i + 1].s == v[i].s) continue;
        double f1 = 2.0 * tp / (double)(tp + fp + P);
        if (f1 > best) {
            best = f1;
            /* midway to the next lower score; at the bottom, the score itself */
            thr = i + 1 < n ? 0.5f * (v[i].s + v[i + 1].s) : v[i].s;
        }
    }
    free(v);
    if (best_f1) *best_f1 = best;
    return thr;
}

void ts_prf(const float *probs, const uint8_t *targets, int n, int C, int c, float threshold,
            double *precision, double *recall, double *f1, long *tp_o, long *fp_o, long *fn_o) {
    long tp = 0, fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        int pred = probs[(size_t)i * C + c] >= threshold;
        int y = targets[(size_t)i * C + c] != 0;
        tp += pred && y;
        fp += pred && !y;
        fn += !pred && y;
    }
    double p = tp + fp ? (double)tp / (double)(tp + fp) : 0.0;
    double r = tp + fn ? (double)tp / (double)(tp + fn) : 0.0;
    if (precision) *precision = p;
    if (recall) *recall = r;
    if (f1) *f1 = p + r > 0 ? 2.0 * p * r / (p + r) : 0.0;
    if (tp_o) *tp_o = tp;
    if (fp_o) *fp_o = fp;
    if (fn_o) *fn_o = fn;
}

double ts_ece(const float *probs, const uint8_t *targets, int n, int C, ts_reliability_bin bins[TS_ECE_BINS]) {
    double sp[TS_ECE_BINS] = {0}, sy[TS_ECE_BINS] = {0};
    long cnt[TS_ECE_BINS] = {0}, N = 0;
    for (size_t i = 0; i < (size_t)n * C; i++) {
        double p = probs[i];
        int b = (int)(p * TS_ECE_BINS);
        if (b < 0) b = 0;
        if (b >= TS_ECE_BINS) b = TS_ECE_BINS - 1;
        cnt[b]++;
        sp[b] += p;
        sy[b] += targets[i] != 0;
        N++;
    }
    double ece = 0.0;
    for (int b = 0; b < TS_ECE_BINS; b++) {
        bins[b].count = cnt[b];
        bins[b].mean_prob = cnt[b] ? sp[b] / cnt[b] : NAN;
        bins[b].frac_pos = cnt[b] ? sy[b] / cnt[b] : NAN;
        if (cnt[b]) ece += (double)cnt[b] / N * fabs(bins[b].frac_pos - bins[b].mean_prob);
    }
    return N ? ece : NAN;
}

double ts_mean_active(const float *probs, const uint8_t *targets, int n, int C, int which) {
    long rows = 0, active = 0;
    for (int i = 0; i < n; i++) {
        int labelled = n_pos(targets + (size_t)i * C, C) > 0;
        if (labelled != (which != 0)) continue;
        rows++;
        for (int c = 0; c < C; c++) active += probs[(size_t)i * C + c] > 0.5f;
    }
    return rows ? (double)active / rows : NAN;
}

void ts_confusion(const float *probs, const uint8_t *targets, int n, int C, long *cm) {
    memset(cm, 0, sizeof *cm * (size_t)C * C);
    for (int i = 0; i < n; i++) {
        const uint8_t *t = targets + (size_t)i * C;
        if (n_pos(t, C) != 1) continue;
        int truth = 0;
        while (!t[truth]) truth++;
        cm[(size_t)truth * C + argmax(probs + (size_t)i * C, C)]++;
    }
}

void ts_metrics_compute(ts_metrics *m, const float *probs, const uint8_t *targets, int n, int C,
                        const int *group_of, int n_groups, const float *thresholds) {
    memset(m, 0, sizeof *m);
    m->C = C;
    m->loss = NAN;
    m->n_windows = n;
    for (int i = 0; i < n; i++) {
        if (n_pos(targets + (size_t)i * C, C)) m->n_labelled++;
        else m->n_background++;
    }
    m->window_acc = ts_top1_accuracy(probs, targets, n, C);
    float *gp = ts_xmalloc(sizeof(float) * ((size_t)n_groups * C + 1));
    uint8_t *gt = ts_xmalloc((size_t)n_groups * C + 1);
    ts_group_mean(probs, targets, group_of, n, C, n_groups, gp, gt);
    for (int g = 0; g < n_groups; g++) m->n_recordings += n_pos(gt + (size_t)g * C, C) > 0;
    m->recording_acc = ts_top1_accuracy(gp, gt, n_groups, C);
    {
        /* groups that hold no row are left out */
        int *has = ts_xcalloc((size_t)n_groups + 1, sizeof(int));
        for (int i = 0; i < n; i++) has[group_of[i]] = 1;
        int k = 0;
        for (int g = 0; g < n_groups; g++) {
            if (!has[g]) continue;
            memmove(gp + (size_t)k * C, gp + (size_t)g * C, sizeof(float) * C);
            memmove(gt + (size_t)k * C, gt + (size_t)g * C, (size_t)C);
            k++;
        }
        free(has);
        double s = 0.0;
        int na = 0;
        for (int c = 0; c < C; c++) {
            double ap = ts_average_precision(gp, gt, k, C, c);
            if (!isnan(ap)) { s += ap; na++; }
        }
        m->recording_map = na ? s / na : NAN;
    }
    free(gp);
    free(gt);
    m->precision = ts_xcalloc((size_t)C, sizeof(double));
    m->recall = ts_xcalloc((size_t)C, sizeof(double));
    m->f1 = ts_xcalloc((size_t)C, sizeof(double));
    m->ap = ts_xcalloc((size_t)C, sizeof(double));
    m->threshold = ts_xcalloc((size_t)C, sizeof(float));
    m->support = ts_xcalloc((size_t)C, sizeof(long));
    m->confusion = ts_xcalloc((size_t)C * C, sizeof(long));
    double sum_ap = 0.0;
    int n_ap = 0;
    for (int c = 0; c < C; c++) {
        m->threshold[c] = thresholds ? thresholds[c] : 0.5f;
        long tp, fn;
        ts_prf(probs, targets, n, C, c, m->threshold[c], &m->precision[c], &m->recall[c], &m->f1[c], &tp, NULL, &fn);
        m->support[c] = tp + fn;
        m->ap[c] = ts_average_precision(probs, targets, n, C, c);
        if (!isnan(m->ap[c])) { sum_ap += m->ap[c]; n_ap++; }
    }
    m->macro_map = n_ap ? sum_ap / n_ap : NAN;
    ts_confusion(probs, targets, n, C, m->confusion);
    m->ece = ts_ece(probs, targets, n, C, m->bins);
    m->ece_uncalibrated = NAN;
    m->active_labelled = ts_mean_active(probs, targets, n, C, 1);
    m->active_background = ts_mean_active(probs, targets, n, C, 0);
}

void ts_metrics_free(ts_metrics *m) {
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->ap);
    free(m->threshold);
    free(m->support);
    free(m->confusion);
    memset(m, 0, sizeof *m);
}

void ts_metrics_print(FILE *f, const ts_metrics *m, char *const *labels) {
    int C = m->C;
    fprintf(f, "windows: %ld (%ld labelled, %ld background), recordings: %ld labelled\n",
            m->n_windows, m->n_labelled, m->n_background, m->n_recordings);
    fprintf(f, "top-1 accuracy: window %.4f, recording %.4f\n", m->window_acc, m->recording_acc);
    fprintf(f, "macro mAP: window %.4f, recording %.4f   ECE (10 bins): %.4f\n", m->macro_map, m->recording_map,
            m->ece);
    if (!isnan(m->ece_uncalibrated))
        fprintf(f, "ECE without the model's calibration: %.4f\n", m->ece_uncalibrated);
    fprintf(f, "mean species with p > 0.5 per window: labelled %.3f, background %.3f\n",
            m->active_labelled, m->active_background);
    if (!isnan(m->loss)) fprintf(f, "mean BCE loss: %.4f\n", m->loss);
    fprintf(f, "\n%-28s %9s %9s %9s %9s %9s %8s\n", "species", "threshold", "precision", "recall", "F1", "AP", "support");
    for (int c = 0; c < C; c++)
        fprintf(f, "%-28s %9.3f %9.3f %9.3f %9.3f %9.3f %8ld\n", labels[c], m->threshold[c], m->precision[c],
                m->recall[c], m->f1[c], m->ap[c], m->support[c]);
    fprintf(f, "\nconfusion matrix (rows: true species, columns: arg-max), single-label windows\n");
    for (int r = 0; r < C; r++) {
        fprintf(f, "%-28s", labels[r]);
        for (int c = 0; c < C; c++) fprintf(f, " %6ld", m->confusion[(size_t)r * C + c]);
        fprintf(f, "\n");
    }
    fprintf(f, "\nreliability (all window x species pairs)\n%-11s %9s %9s %9s\n", "bin", "count", "mean p", "positive");
    for (int b = 0; b < TS_ECE_BINS; b++)
        fprintf(f, "[%.1f, %.1f%c %9ld %9.3f %9.3f\n", b / 10.0, (b + 1) / 10.0, b == TS_ECE_BINS - 1 ? ']' : ')',
                m->bins[b].count, m->bins[b].mean_prob, m->bins[b].frac_pos);
}

void ts_mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0.0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) { s += x[i]; k++; }
    if (!k) { *mean = NAN; *sd = NAN; return; }
    double mu = s / k, v = 0.0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) v += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *sd = k > 1 ? sqrt(v / (k - 1)) : 0.0;
}

int ts_species_rows(const float *probs, const uint8_t *targets, const int *group_of, int n, int C, int S,
                    float *po, uint8_t *yo, int *go) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        int filt = 0;
        for (int c = S; c < C; c++) filt |= targets[(size_t)i * C + c];
        if (filt) continue;
        memcpy(po + (size_t)m * S, probs + (size_t)i * C, sizeof(float) * (size_t)S);
        memcpy(yo + (size_t)m * S, targets + (size_t)i * C, (size_t)S);
        if (go) go[m] = group_of ? group_of[i] : 0;
        m++;
    }
    return m;
}

static void filter_figures(const float *probs, const uint8_t *targets, int n, int C, int c, float t, long *pos,
                           double *recall, double *false_alarm) {
    long tp = 0, fp = 0, np = 0, nn = 0;
    for (int i = 0; i < n; i++) {
        int y = targets[(size_t)i * C + c], on = probs[(size_t)i * C + c] >= t;
        np += y;
        nn += !y;
        tp += y && on;
        fp += !y && on;
    }
    *pos = np;
    *recall = np ? (double)tp / np : NAN;
    *false_alarm = nn ? (double)fp / nn : NAN;
}

void ts_filter_figures_print(FILE *f, const float *probs, const uint8_t *targets, int n, int C, int S,
                             const float *thr, char *const *labels) {
    for (int c = S; c < C; c++) {
        long pos;
        double r, fa;
        filter_figures(probs, targets, n, C, c, thr ? thr[c] : 0.5f, &pos, &r, &fa);
        fprintf(f, "filter class %s (threshold %.3f): recall %.3f on its %ld windows, fires on %.4f of the others\n",
                labels[c], thr ? thr[c] : 0.5f, r, pos, fa);
    }
}

json_t *ts_filter_figures_json(const float *probs, const uint8_t *targets, int n, int C, int S, const float *thr,
                               char *const *labels) {
    json_t *a = json_array();
    for (int c = S; c < C; c++) {
        long pos;
        double r, fa;
        filter_figures(probs, targets, n, C, c, thr ? thr[c] : 0.5f, &pos, &r, &fa);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(labels[c]));
        json_object_set_new(o, "threshold", json_real(thr ? thr[c] : 0.5));
        json_object_set_new(o, "windows", json_integer(pos));
        json_object_set_new(o, "recall", ts_json_number(r));
        json_object_set_new(o, "false_alarm_rate", ts_json_number(fa));
        json_array_append_new(a, o);
    }
    return a;
}
