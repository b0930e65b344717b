#include "daemon/detect.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "daemon/jsonw.h"

typedef struct species_state {
    char label[BSD_SPECIES_NAME_MAX];
    float model_threshold;
    float override_threshold; /* < 0: not set */
    double suppress_seconds;  /* < 0: use the default */
    int included, excluded;
    /* open event */
    int open;
    bsd_detection ev;
    double prob_sum;
    /* last emitted event */
    int has_emitted;
    double last_emitted_end;
} species_state;

struct bsd_detector {
    int n;
    species_state *sp;
    float min_confidence;
    double suppress_default;
    double max_event_seconds;
    int include_active;
    int has_last_seq;
    uint64_t last_seq;
    bsd_detector_stats stats;
};

bsd_detector *bsd_detector_new(int n_species, const char *const *labels, const float *model_thresholds,
                             bs_error *err) {
    if (n_species <= 0 || n_species > 100000) {
        bs_error_set(err, "detector: number of species must be 1..100000, found %d", n_species);
        return NULL;
    }
    if (!labels) {
        bs_error_set(err, "detector: no species labels given");
        return NULL;
    }
    bsd_detector *d = calloc(1, sizeof *d);
    species_state *sp = calloc((size_t)n_species, sizeof *sp);
    if (!d || !sp) {
        free(d);
        free(sp);
        bs_error_set(err, "detector: out of memory for %d species", n_species);
        return NULL;
    }
    d->n = n_species;
    d->sp = sp;
    d->max_event_seconds = 60.0;
    for (int i = 0; i < n_species; i++) {
        if (!labels[i] || !labels[i][0] || strlen(labels[i]) >= BSD_SPECIES_NAME_MAX) {
            bs_error_set(err, "detector: species label %d is empty or longer than %d bytes", i,
                         BSD_SPECIES_NAME_MAX - 1);
            bsd_detector_free(d);
            return NULL;
        }
        float t = model_thresholds ? model_thresholds[i] : 0.5f;
        if (!(t >= 0.0f && t <= 1.0f)) {
            bs_error_set(err, "detector: model threshold of species '%s' must be in [0, 1], found %g",
                         labels[i], (double)t);
            bsd_detector_free(d);
            return NULL;
        }
        strcpy(sp[i].label, labels[i]);
        sp[i].model_threshold = t;
        sp[i].override_threshold = -1.0f;
        sp[i].suppress_seconds = -1.0;
    }
    return d;
}

void bsd_detector_free(bsd_detector *d) {
    if (!d) return;
    free(d->sp);
    free(d);
}

int bsd_detector_species_index(const bsd_detector *d, const char *species) {
    if (!species) return -1;
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->sp[i].label, species) == 0) return i;
    return -1;
}

int bsd_detector_n_species(const bsd_detector *d) { return d->n; }
const char *bsd_detector_label(const bsd_detector *d, int i) {
    return (i >= 0 && i < d->n) ? d->sp[i].label : NULL;
}

int bsd_detector_set_min_confidence(bsd_detector *d, float v, bs_error *err) {
    if (!(v >= 0.0f && v <= 1.0f))
        return bs_error_set(err, "min_confidence must be in [0, 1], found %g", (double)v);
    d->min_confidence = v;
    return 0;
}

static int find_species(const bsd_detector *d, const char *species, const char *what, bs_error *err) {
    int i = bsd_detector_species_index(d, species);
    if (i < 0)
        bs_error_set(err, "%s: species '%s' is not one of the model's %d labels", what,
                     species ? species : "(null)", d->n);
    return i;
}

int bsd_detector_set_threshold(bsd_detector *d, const char *species, float t, bs_error *err) {
    int i = find_species(d, species, "threshold", err);
    if (i < 0) return -1;
    if (!(t >= 0.0f && t <= 1.0f))
        return bs_error_set(err, "threshold of species '%s' must be in [0, 1], found %g", species,
                            (double)t);
    d->sp[i].override_threshold = t;
    return 0;
}

int bsd_detector_set_suppress_seconds(bsd_detector *d, const char *species, double s, bs_error *err) {
    if (!(s >= 0.0 && s <= 86400.0))
        return bs_error_set(err, "suppress_seconds must be in [0, 86400], found %g", s);
    if (!species) {
        d->suppress_default = s;
        return 0;
    }
    int i = find_species(d, species, "suppress_seconds", err);
    if (i < 0) return -1;
    d->sp[i].suppress_seconds = s;
    return 0;
}

int bsd_detector_set_max_event_seconds(bsd_detector *d, double s, bs_error *err) {
    if (!(s >= 0.0 && s <= 86400.0))
        return bs_error_set(err, "max_event_seconds must be in [0, 86400], found %g", s);
    d->max_event_seconds = s;
    return 0;
}

/* Parses a comma separated list of labels into the include (exclude=0) or exclude flags.
 * Returns the number of names, or -1 on an unknown label (flags unchanged then). */
static int parse_list(bsd_detector *d, const char *list, int exclude, bs_error *err) {
    const char *what = exclude ? "exclude" : "include";
    int *tmp = calloc((size_t)d->n, sizeof *tmp);
    if (!tmp) return bs_error_set(err, "%s: out of memory", what);
    int count = 0;
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != ',') q++;
        const char *e = q;
        while (e > p && isspace((unsigned char)e[-1])) e--;
        char name[BSD_SPECIES_NAME_MAX];
        size_t len = (size_t)(e - p);
        if (len >= sizeof name) {
            free(tmp);
            return bs_error_set(err, "%s: species name '%.40s...' is longer than %d bytes", what, p,
                                BSD_SPECIES_NAME_MAX - 1);
        }
        memcpy(name, p, len);
        name[len] = 0;
        int i = bsd_detector_species_index(d, name);
        if (i < 0) {
            free(tmp);
            return bs_error_set(err, "%s: species '%s' is not one of the model's %d labels", what, name,
                                d->n);
        }
        tmp[i] = 1;
        count++;
        p = q;
    }
    for (int i = 0; i < d->n; i++) {
        if (exclude)
            d->sp[i].excluded = tmp[i];
        else
            d->sp[i].included = tmp[i];
    }
    free(tmp);
    return count;
}

int bsd_detector_set_include(bsd_detector *d, const char *list, bs_error *err) {
    int c = parse_list(d, list, 0, err);
    if (c < 0) return -1;
    d->include_active = c > 0;
    return 0;
}

int bsd_detector_set_exclude(bsd_detector *d, const char *list, bs_error *err) {
    int c = parse_list(d, list, 1, err);
    return c < 0 ? -1 : 0;
}

int bsd_detector_enabled(const bsd_detector *d, int i) {
    if (i < 0 || i >= d->n) return 0;
    if (d->sp[i].excluded) return 0;
    if (d->include_active && !d->sp[i].included) return 0;
    return 1;
}

double bsd_detector_suppress_seconds(const bsd_detector *d, int i) {
    if (i < 0 || i >= d->n) return 0.0;
    return d->sp[i].suppress_seconds >= 0.0 ? d->sp[i].suppress_seconds : d->suppress_default;
}

float bsd_detector_threshold(const bsd_detector *d, int i) {
    if (!bsd_detector_enabled(d, i)) return 2.0f;
    const species_state *s = &d->sp[i];
    if (s->override_threshold >= 0.0f) return s->override_threshold;
    return s->model_threshold > d->min_confidence ? s->model_threshold : d->min_confidence;
}

/* Closes species i's open event; writes it to out[*n] unless suppressed. */
static void close_event(bsd_detector *d, int i, bsd_detection *out, int max_out, int *n) {
    species_state *s = &d->sp[i];
    if (!s->open) return;
    s->open = 0;
    double sup = s->suppress_seconds >= 0.0 ? s->suppress_seconds : d->suppress_default;
    if (sup > 0.0 && s->has_emitted && s->ev.start < s->last_emitted_end + sup) {
        d->stats.suppressed++;
        return;
    }
    s->ev.mean_probability = (float)(s->prob_sum / s->ev.n_windows);
    s->has_emitted = 1;
    s->last_emitted_end = s->ev.end;
    d->stats.emitted++;
    if (*n < max_out) out[(*n)++] = s->ev;
}

int bsd_detector_push(bsd_detector *d, uint64_t seq, double start, double end, const float *probs,
                     bsd_detection *out, int max_out) {
    int n = 0;
    int contiguous = d->has_last_seq && seq == d->last_seq + 1;
    d->has_last_seq = 1;
    d->last_seq = seq;
    d->stats.windows++;
    for (int i = 0; i < d->n; i++) {
        species_state *s = &d->sp[i];
        float p = probs[i];
        if (!isfinite(p)) p = 0.0f;
        int on = p >= bsd_detector_threshold(d, i);
        if (s->open && (!on || !contiguous ||
                        (d->max_event_seconds > 0 && end - s->ev.start > d->max_event_seconds)))
            close_event(d, i, out, max_out, &n);
        if (!on) continue;
        if (!s->open) {
            s->open = 1;
            memset(&s->ev, 0, sizeof s->ev);
            s->ev.species_index = i;
            memcpy(s->ev.species, s->label, sizeof s->ev.species);
            s->ev.start = start;
            s->ev.seq_first = seq;
            s->prob_sum = 0.0;
        }
        s->ev.end = end;
        s->ev.seq_last = seq;
        s->ev.n_windows++;
        s->prob_sum += p;
        if (p > s->ev.max_probability) s->ev.max_probability = p;
    }
    return n;
}

int bsd_detector_flush(bsd_detector *d, bsd_detection *out, int max_out) {
    int n = 0;
    for (int i = 0; i < d->n; i++) close_event(d, i, out, max_out, &n);
    return n;
}

bsd_detector_stats bsd_detector_get_stats(const bsd_detector *d) { return d->stats; }

void bsd_detection_write_json(bsd_jsonw *w, const bsd_detection *d, int has_audio) {
    char t[64];
    bsd_jsonw_lit(w, "{\"id\":");
    bsd_jsonw_int(w, d->id);
    bsd_jsonw_lit(w, ",\"species\":");
    bsd_jsonw_string(w, d->species);
    bsd_jsonw_lit(w, ",\"source\":");
    bsd_jsonw_string(w, d->source);
    bsd_format_seconds(d->start, t);
    bsd_jsonw_lit(w, ",\"start\":\"");
    bsd_jsonw_lit(w, t);
    bsd_format_seconds(d->end, t);
    bsd_jsonw_lit(w, "\",\"end\":\"");
    bsd_jsonw_lit(w, t);
    bsd_jsonw_lit(w, "\",\"max_probability\":");
    bsd_jsonw_real(w, (double)d->max_probability);
    bsd_jsonw_lit(w, ",\"mean_probability\":");
    bsd_jsonw_real(w, (double)d->mean_probability);
    bsd_jsonw_lit(w, ",\"n_windows\":");
    bsd_jsonw_int(w, d->n_windows);
    bsd_jsonw_lit(w, ",\"seq_first\":");
    bsd_jsonw_uint(w, d->seq_first);
    bsd_jsonw_lit(w, ",\"seq_last\":");
    bsd_jsonw_uint(w, d->seq_last);
    bsd_jsonw_lit(w, has_audio ? ",\"has_audio\":true}" : ",\"has_audio\":false}");
}

/* An RFC 4180 field: as it is, or quoted with its quotes doubled when it holds a separator. */
static void csv_field(bsd_jsonw *w, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        bsd_jsonw_lit(w, s);
        return;
    }
    bsd_jsonw_raw(w, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') bsd_jsonw_raw(w, "\"", 1); /* "" stands for " */
        bsd_jsonw_raw(w, p, 1);
    }
    bsd_jsonw_raw(w, "\"", 1);
}

void bsd_detection_write_csv(bsd_jsonw *w, const bsd_detection *d, int has_audio) {
    char t[64];
    bsd_jsonw_int(w, d->id);
    bsd_jsonw_raw(w, ",", 1);
    csv_field(w, d->species);
    bsd_jsonw_raw(w, ",", 1);
    csv_field(w, d->source);
    bsd_format_seconds(d->start, t);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_lit(w, t);
    bsd_format_seconds(d->end, t);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_lit(w, t);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_real(w, (double)d->max_probability);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_real(w, (double)d->mean_probability);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_int(w, d->n_windows);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_uint(w, d->seq_first);
    bsd_jsonw_raw(w, ",", 1);
    bsd_jsonw_uint(w, d->seq_last);
    bsd_jsonw_lit(w, has_audio ? ",true\r\n" : ",false\r\n");
}
