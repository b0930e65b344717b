/* The privacy filter. See privacy.h. */
#include "daemon/privacy.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SPANS 256 /* protected spans remembered (merged when they touch) */

struct bsd_privacy {
    bsd_privacy_config cfg;
    int human;        /* output index, -1 none */
    float threshold;
    int active;
    double span0[MAX_SPANS], span1[MAX_SPANS];
    int n_spans, first_span; /* ring */
    bsd_detection held[BSD_PRIVACY_HELD_MAX];
    int n_held;
    bsd_privacy_stats stats;
};

int bsd_privacy_parse(const char *mode, const char *action, double margin, double threshold, bsd_privacy_config *out,
                      bs_error *err) {
    memset(out, 0, sizeof *out);
    if (!strcmp(mode, "auto")) out->mode = BSD_PRIVACY_AUTO;
    else if (!strcmp(mode, "on")) out->mode = BSD_PRIVACY_ON;
    else if (!strcmp(mode, "off")) out->mode = BSD_PRIVACY_OFF;
    else return bs_error_set(err, "directive 'privacy': '%s' is not auto, on or off", mode);
    if (!strcmp(action, "drop")) out->keep = 0;
    else if (!strcmp(action, "keep")) out->keep = 1;
    else return bs_error_set(err, "directive 'privacy_action': '%s' is not drop or keep", action);
    if (!(margin >= 0 && margin <= BSD_PRIVACY_MAX_MARGIN))
        return bs_error_set(err, "directive 'privacy_margin': %g is not between 0 and %g seconds", margin,
                            BSD_PRIVACY_MAX_MARGIN);
    out->margin = margin;
    if (!(threshold > 0 && threshold <= 1))
        return bs_error_set(err, "directive 'privacy_threshold': %g is not above 0 and at most 1", threshold);
    out->threshold = threshold;
    return 0;
}

bsd_privacy *bsd_privacy_new(const bsd_privacy_config *cfg, bs_error *err) {
    bsd_privacy *p = calloc(1, sizeof *p);
    if (!p) {
        bs_error_set(err, "privacy: out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    p->human = -1;
    return p;
}

void bsd_privacy_free(bsd_privacy *p) { free(p); }

int bsd_privacy_set_model(bsd_privacy *p, int human_index) {
    p->human = human_index;
    p->threshold = (float)p->cfg.threshold;
    p->active = human_index >= 0 && p->cfg.mode != BSD_PRIVACY_OFF;
    return p->active;
}

int bsd_privacy_active(const bsd_privacy *p) { return p->active; }

int bsd_privacy_window(bsd_privacy *p, double t0, double t1, const float *probs) {
    if (!p->active || !(probs[p->human] >= p->threshold)) return 0;
    p->stats.windows_filtered++;
    double a = t0 - p->cfg.margin, b = t1 + p->cfg.margin;
    if (p->n_spans > 0) { /* extend the latest span when they touch (windows overlap) */
        int last = (p->first_span + p->n_spans - 1) % MAX_SPANS;
        if (a <= p->span1[last]) {
            if (b > p->span1[last]) p->span1[last] = b;
            if (a < p->span0[last]) p->span0[last] = a;
            return 1;
        }
    }
    int k;
    if (p->n_spans < MAX_SPANS) {
        k = (p->first_span + p->n_spans++) % MAX_SPANS;
    } else { /* forget the oldest */
        k = p->first_span;
        p->first_span = (p->first_span + 1) % MAX_SPANS;
    }
    p->span0[k] = a;
    p->span1[k] = b;
    return 1;
}

static int overlaps(const bsd_privacy *p, double a, double b) {
    for (int i = 0; i < p->n_spans; i++) {
        int k = (p->first_span + i) % MAX_SPANS;
        if (p->span0[k] < b && a < p->span1[k]) return 1;
    }
    return 0;
}

int bsd_privacy_hold(bsd_privacy *p, const bsd_detection *d) {
    if (p->n_held == BSD_PRIVACY_HELD_MAX) return -1;
    p->held[p->n_held++] = *d;
    return 0;
}

int bsd_privacy_release(bsd_privacy *p, double seen_until, int flush, bsd_detection *out, int *verdicts, int max) {
    int n = 0, kept = 0;
    for (int i = 0; i < p->n_held; i++) {
        const bsd_detection *d = &p->held[i];
        double need = d->end + p->cfg.post_roll + p->cfg.margin;
        int full = p->n_held == BSD_PRIVACY_HELD_MAX && i == 0; /* a full queue releases its oldest */
        if ((flush || full || seen_until > need) && n < max) {
            int v = BSD_PRIVACY_CLEAN;
            if (overlaps(p, d->start, d->end)) v = p->cfg.keep ? BSD_PRIVACY_NO_CLIP : BSD_PRIVACY_DROP;
            else if (overlaps(p, d->start - p->cfg.pre_roll, d->end + p->cfg.post_roll)) v = BSD_PRIVACY_NO_CLIP;
            if (v == BSD_PRIVACY_DROP) p->stats.detections_dropped++;
            if (v != BSD_PRIVACY_CLEAN) p->stats.clips_withheld++;
            out[n] = *d;
            verdicts[n++] = v;
        } else {
            p->held[kept++] = *d;
        }
    }
    p->n_held = kept;
    return n;
}

bsd_privacy_stats bsd_privacy_get_stats(const bsd_privacy *p) { return p->stats; }
