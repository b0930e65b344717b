/* Stratified group K-fold and validation-fraction splits. See split.h. */
#include "trainer/split.h"
#include "trainer/xalloc.h"

#include <stdlib.h>
#include <string.h>

void ts_shuffle_int(ts_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ts_rng_below(r, (uint32_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Group table: group index per item, and per group its stratum and size. */
typedef struct groups {
    int n;
    int *of_item;   /* [n_items] */
    int *stratum;   /* [n] 0..n_labels (n_labels = background) */
    int *size;      /* [n] items in group */
} groups;

static void groups_build(const ts_dataset *ds, groups *g) {
    g->n = 0;
    g->of_item = ts_xmalloc(sizeof(int) * (size_t)(ds->n_items + 1));
    g->stratum = ts_xmalloc(sizeof(int) * (size_t)(ds->n_items + 1));
    g->size = ts_xcalloc((size_t)ds->n_items + 1, sizeof(int));
    /* O(n^2) matching is fine for datasets of thousands of recordings */
    for (int i = 0; i < ds->n_items; i++) {
        int found = -1;
        for (int j = 0; j < i; j++)
            if (strcmp(ds->items[j].group, ds->items[i].group) == 0) { found = g->of_item[j]; break; }
        if (found < 0) {
            found = g->n++;
            int p = ds->items[i].primary;
            g->stratum[found] = p < 0 ? ds->n_labels : p;
        }
        g->of_item[i] = found;
        g->size[found]++;
    }
}

static void groups_free(groups *g) {
    free(g->of_item);
    free(g->stratum);
    free(g->size);
}

int ts_split_kfold(const ts_dataset *ds, int k, uint64_t seed, int *fold_of, bs_error *err) {
    if (k < 2) return bs_error_set(err, "--folds %d: expected at least 2 folds", k);
    groups g;
    groups_build(ds, &g);
    if (g.n < k) {
        int n = g.n;
        groups_free(&g);
        return bs_error_set(err, "--folds %d: the data holds only %d recordings; expected at least one per fold", k, n);
    }
    int S = ds->n_labels + 1;
    int *order = ts_xmalloc(sizeof(int) * (size_t)g.n);
    int *gfold = ts_xmalloc(sizeof(int) * (size_t)g.n);
    long *fold_items = ts_xcalloc((size_t)k, sizeof(long));
    long *fold_stratum = ts_xcalloc((size_t)k * (size_t)S, sizeof(long));
    ts_rng rng = {seed};
    for (int s = 0; s < S; s++) {
        int n = 0;
        for (int j = 0; j < g.n; j++)
            if (g.stratum[j] == s) order[n++] = j;
        ts_shuffle_int(&rng, order, n);
        /* largest groups first (stable on the shuffled order) so big recordings spread out */
        for (int a = 1; a < n; a++) {
            int v = order[a], b = a - 1;
            while (b >= 0 && g.size[order[b]] < g.size[v]) { order[b + 1] = order[b]; b--; }
            order[b + 1] = v;
        }
        for (int a = 0; a < n; a++) {
            int best = 0;
            for (int f = 1; f < k; f++) {
                long cs = fold_stratum[(size_t)f * S + s], bs = fold_stratum[(size_t)best * S + s];
                if (cs < bs || (cs == bs && fold_items[f] < fold_items[best])) best = f;
            }
            gfold[order[a]] = best;
            fold_stratum[(size_t)best * S + s] += g.size[order[a]];
            fold_items[best] += g.size[order[a]];
        }
    }
    for (int i = 0; i < ds->n_items; i++) fold_of[i] = gfold[g.of_item[i]];
    free(order);
    free(gfold);
    free(fold_items);
    free(fold_stratum);
    groups_free(&g);
    return 0;
}

int ts_split_val_fraction(const ts_dataset *ds, double fraction, uint64_t seed, int *is_val, bs_error *err) {
    if (!(fraction > 0.0 && fraction < 1.0))
        return bs_error_set(err, "--val-fraction %g: expected a number between 0 and 1, exclusive", fraction);
    groups g;
    groups_build(ds, &g);
    if (g.n < 2) {
        groups_free(&g);
        return bs_error_set(err, "the data holds only one recording; a validation split needs at least two");
    }
    int *order = ts_xmalloc(sizeof(int) * (size_t)g.n);
    int *gval = ts_xcalloc((size_t)g.n, sizeof(int));
    ts_rng rng = {seed};
    int S = ds->n_labels + 1;
    for (int s = 0; s < S; s++) {
        int n = 0;
        for (int j = 0; j < g.n; j++)
            if (g.stratum[j] == s) order[n++] = j;
        if (n < 2) continue; /* a single recording of a class stays in training */
        ts_shuffle_int(&rng, order, n);
        int take = (int)(fraction * n + 0.5);
        if (take < 1) take = 1;
        if (take > n - 1) take = n - 1;
        for (int a = 0; a < take; a++) gval[order[a]] = 1;
    }
    for (int i = 0; i < ds->n_items; i++) is_val[i] = gval[g.of_item[i]];
    free(order);
    free(gval);
    groups_free(&g);
    return 0;
}
