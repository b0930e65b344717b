/* Open-set figures per background source. See openset.h. */
#include "trainer/openset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/xalloc.h"
#include "trainer/json.h"

void ts_openset_init(ts_openset *o, const ts_dataset *ds) {
    memset(o, 0, sizeof *o);
    o->n_sources = ds->n_sources;
    o->n_species = ds->n_labels - ds->n_filters;
    o->names = ts_xcalloc((size_t)ds->n_sources + 1, sizeof *o->names);
    o->rows = ts_xcalloc((size_t)ds->n_sources + 1, sizeof *o->rows);
    for (int s = 0; s < ds->n_sources; s++) {
        o->names[s] = ts_xstrdup(ds->sources[s]);
    }
}

void ts_openset_free(ts_openset *o) {
    for (int s = 0; s < o->n_sources; s++) free(o->names[s]);
    free(o->names);
    free(o->rows);
    memset(o, 0, sizeof *o);
}

typedef struct order_key {
    int item;
    double start;
    int k; /* position in idx */
} order_key;

static int cmp_key(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->k - y->k;
}

static void row_add(ts_openset_row *r, long windows, long active, long det, double seconds) {
    r->windows += windows;
    r->active_pairs += active;
    r->detections += det;
    r->seconds += seconds;
}

void ts_openset_add(ts_openset *o, const ts_dataset *ds, const ts_windows *w, const int *idx, int n,
                    const float *probs, const float *thr, double window_s) {
    int C = w->C, S = o->n_species > 0 && o->n_species < C ? o->n_species : C;
    order_key *key = ts_xmalloc(sizeof *key * ((size_t)n + 1));
    uint8_t *on = ts_xcalloc((size_t)C + 1, 1);
    int m = 0;
    for (int k = 0; k < n; k++) {
        int it = w->item[idx[k]];
        if (ds->items[it].source < 0) continue;
        key[m++] = (order_key){it, w->start[idx[k]], k};
    }
    qsort(key, (size_t)m, sizeof *key, cmp_key);
    /* one file at a time: [a, b) are its windows in time order */
    for (int a = 0, b; a < m; a = b) {
        for (b = a; b < m && key[b].item == key[a].item; b++) {}
        long active = 0, det = 0;
        memset(on, 0, (size_t)C);
        for (int i = a; i < b; i++) {
            const float *p = probs + (size_t)key[i].k * C;
            for (int c = 0; c < S; c++) {
                active += p[c] > 0.5f;
                int now = p[c] >= (thr ? thr[c] : 0.5f);
                det += now && !on[c];
                on[c] = (uint8_t)now;
            }
        }
        double seconds = key[b - 1].start + window_s;
        int s = ds->items[key[a].item].source;
        if (s >= 0 && s < o->n_sources) row_add(&o->rows[s], b - a, active, det, seconds);
        row_add(&o->total, b - a, active, det, seconds);
    }
    free(key);
    free(on);
}

void ts_openset_merge(ts_openset *dst, const ts_openset *src) {
    for (int s = 0; s < dst->n_sources && s < src->n_sources; s++) {
        const ts_openset_row *r = &src->rows[s];
        row_add(&dst->rows[s], r->windows, r->active_pairs, r->detections, r->seconds);
    }
    row_add(&dst->total, src->total.windows, src->total.active_pairs, src->total.detections, src->total.seconds);
}

double ts_openset_active(const ts_openset_row *r) {
    return r->windows > 0 ? (double)r->active_pairs / (double)r->windows : NAN;
}

double ts_openset_per_hour(const ts_openset_row *r) {
    return r->seconds > 0 ? (double)r->detections * 3600.0 / r->seconds : NAN;
}

static json_t *row_json(const char *name, const ts_openset_row *r) {
    json_t *j = json_object();
    json_object_set_new(j, "source", json_string(name));
    json_object_set_new(j, "windows", json_integer(r->windows));
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_object_set_new(j, "species_above_half_per_window", ts_json_number(ts_openset_active(r)));
    json_object_set_new(j, "false_detections", json_integer(r->detections));
    json_object_set_new(j, "false_detections_per_hour", ts_json_number(ts_openset_per_hour(r)));
    return j;
}

json_t *ts_openset_to_json(const ts_openset *o) {
    json_t *a = json_array();
    for (int s = 0; s < o->n_sources; s++) json_array_append_new(a, row_json(o->names[s], &o->rows[s]));
    json_array_append_new(a, row_json("all background", &o->total));
    return a;
}

void ts_openset_print(FILE *f, const ts_openset *o) {
    if (o->total.windows == 0) return;
    fprintf(f, "open set (windows with none of the species): species with p > 0.5 per window, false detections "
               "per hour at the model's thresholds\n");
    for (int s = 0; s <= o->n_sources; s++) {
        const ts_openset_row *r = s < o->n_sources ? &o->rows[s] : &o->total;
        if (s < o->n_sources && r->windows == 0) continue;
        fprintf(f, "  %-40s %6ld windows %8.1f s  %.3f per window  %ld detections, %.1f per hour\n",
                s < o->n_sources ? o->names[s] : "all background", r->windows, r->seconds, ts_openset_active(r),
                r->detections, ts_openset_per_hour(r));
    }
}
