/* Platt scaling fit. See calibrate.h. */
#include "trainer/calibrate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/model.h"
#include "trainer/metrics.h"

/* Negative log-likelihood of sigmoid(a f + b) against smoothed targets t, stable form. */
static double nll(const double *f, const double *t, int n, double a, double b) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        double z = a * f[i] + b;
        /* -[t log s(z) + (1-t) log(1-s(z))] = log(1 + e^z) - t z */
        s += (z > 0 ? z + log1p(exp(-z)) : log1p(exp(z))) - t[i] * z;
    }
    return s;
}

int ts_platt_fit(const float *probs, const uint8_t *targets, int n, int C, int c, float *a_out, float *b_out) {
    *a_out = 1.0f;
    *b_out = 0.0f;
    long npos = 0;
    for (int i = 0; i < n; i++) npos += targets[(size_t)i * C + c] != 0;
    long nneg = n - npos;
    if (npos == 0 || nneg == 0) return -1;
    double *f = malloc(sizeof(double) * (size_t)n), *t = malloc(sizeof(double) * (size_t)n);
    if (!f || !t) abort();
    double hi = (npos + 1.0) / (npos + 2.0), lo = 1.0 / (nneg + 2.0);
    for (int i = 0; i < n; i++) {
        f[i] = bs_prob_logit(probs[(size_t)i * C + c]);
        t[i] = targets[(size_t)i * C + c] ? hi : lo;
    }
    double a = 1.0, b = 0.0, obj = nll(f, t, n, a, b);
    for (int it = 0; it < 100; it++) {
        /* gradient and Hessian of the NLL in (a, b), with a small ridge for stability */
        double ga = 0, gb = 0, haa = 1e-12, hab = 0, hbb = 1e-12;
        for (int i = 0; i < n; i++) {
            double z = a * f[i] + b;
            double p = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
            double d = p - t[i], w = p * (1 - p);
            ga += d * f[i];
            gb += d;
            haa += w * f[i] * f[i];
            hab += w * f[i];
            hbb += w;
        }
        if (fabs(ga) < 1e-9 * n && fabs(gb) < 1e-9 * n) break;
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = -(hbb * ga - hab * gb) / det, db = -(-hab * ga + haa * gb) / det;
        double step = 1.0, next = obj;
        for (; step >= 1e-10; step /= 2) {
            next = nll(f, t, n, a + step * da, b + step * db);
            if (next < obj + 1e-4 * step * (ga * da + gb * db)) break;
        }
        if (step < 1e-10) break;
        a += step * da;
        b += step * db;
        if (obj - next < 1e-12 * (fabs(obj) + 1)) {
            obj = next;
            break;
        }
        obj = next;
    }
    free(f);
    free(t);
    if (!(a > 0 && a <= BS_CAL_MAX_A && fabs(b) <= BS_CAL_MAX_B)) return -1;
    *a_out = (float)a;
    *b_out = (float)b;
    return 0;
}

void ts_platt_apply_rows(float *probs, int n, int C, const float *a, const float *b) {
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) probs[(size_t)i * C + c] = bs_platt_apply(probs[(size_t)i * C + c], a[c], b[c]);
}

/* cal_out [n, C] (may be NULL): the probabilities as calibrated for the "after" figure. */
static void fit(const float *probs, const uint8_t *targets, const int *fold, int n, int C, int K, float *a, float *b,
                double *ece_before, double *ece_after, int *n_unfitted, float *cal_out) {
    ts_reliability_bin bins[TS_ECE_BINS];
    *ece_before = ts_ece(probs, targets, n, C, bins);
    int bad = 0;
    for (int c = 0; c < C; c++) bad += ts_platt_fit(probs, targets, n, C, c, &a[c], &b[c]) != 0;
    if (n_unfitted) *n_unfitted = bad;
    float *cal = malloc(sizeof(float) * ((size_t)n * C + 1));
    if (!cal) abort();
    memcpy(cal, probs, sizeof(float) * (size_t)n * C);
    if (fold && K >= 2) {
        float *pk = malloc(sizeof(float) * ((size_t)n * C + 1));
        uint8_t *yk = malloc((size_t)n * C + 1);
        float *ak = malloc(sizeof(float) * (size_t)C), *bk = malloc(sizeof(float) * (size_t)C);
        if (!pk || !yk || !ak || !bk) abort();
        for (int k = 0; k < K; k++) {
            int m = 0;
            for (int i = 0; i < n; i++) {
                if (fold[i] == k) continue;
                memcpy(pk + (size_t)m * C, probs + (size_t)i * C, sizeof(float) * (size_t)C);
                memcpy(yk + (size_t)m * C, targets + (size_t)i * C, (size_t)C);
                m++;
            }
            for (int c = 0; c < C; c++) ts_platt_fit(pk, yk, m, C, c, &ak[c], &bk[c]);
            for (int i = 0; i < n; i++)
                if (fold[i] == k)
                    for (int c = 0; c < C; c++)
                        cal[(size_t)i * C + c] = bs_platt_apply(probs[(size_t)i * C + c], ak[c], bk[c]);
        }
        free(pk);
        free(yk);
        free(ak);
        free(bk);
    } else {
        ts_platt_apply_rows(cal, n, C, a, b);
    }
    *ece_after = ts_ece(cal, targets, n, C, bins);
    if (cal_out) memcpy(cal_out, cal, sizeof(float) * (size_t)n * C);
    free(cal);
}

void ts_calibration_fit(const float *probs, const uint8_t *targets, const int *fold, int n, int C, int K, float *a,
                        float *b, double *ece_before, double *ece_after, int *n_unfitted) {
    fit(probs, targets, fold, n, C, K, a, b, ece_before, ece_after, n_unfitted, NULL);
}

void ts_calibration_fit_species(const float *probs, const uint8_t *targets, const int *fold, int n, int C, int S,
                                int K, float *a, float *b, double *ece_before, double *ece_after, int *n_unfitted,
                                float *cal_out) {
    if (S >= C) {
        fit(probs, targets, fold, n, C, K, a, b, ece_before, ece_after, n_unfitted, cal_out);
        return;
    }
    float *cal = malloc(sizeof(float) * ((size_t)n * C + 1));
    float *ps = malloc(sizeof(float) * ((size_t)n * S + 1));
    uint8_t *ys = malloc((size_t)n * S + 1);
    if (!cal || !ps || !ys) abort();
    fit(probs, targets, fold, n, C, K, a, b, ece_before, ece_after, n_unfitted, cal);
    ts_reliability_bin bins[TS_ECE_BINS];
    int ns = ts_species_rows(probs, targets, NULL, n, C, S, ps, ys, NULL);
    *ece_before = ts_ece(ps, ys, ns, S, bins);
    ns = ts_species_rows(cal, targets, NULL, n, C, S, ps, ys, NULL);
    *ece_after = ts_ece(ps, ys, ns, S, bins);
    if (cal_out) memcpy(cal_out, cal, sizeof(float) * (size_t)n * C);
    free(cal);
    free(ps);
    free(ys);
}

void ts_pick_thresholds(const float *probs, const uint8_t *targets, int n, int C, float *thr) {
    for (int c = 0; c < C; c++) {
        thr[c] = ts_best_f1_threshold(probs, targets, n, C, c, NULL);
        if (thr[c] < 0.01f) thr[c] = 0.01f;
        if (thr[c] > 0.99f) thr[c] = 0.99f;
    }
}
