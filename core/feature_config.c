/* bs_feature_config: defaults (librosa's), validation, derived sizes, JSON round trip.
 * One table describes every field: name, type, offset, allowed range. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"

bs_feature_config bs_feature_config_default(void) {
    bs_feature_config c;
    memset(&c, 0, sizeof c);
    c.sample_rate = 22050;
    c.n_fft = 2048;
    c.hop_length = 512;
    c.n_mels = 128;
    c.fmin = 0.0;
    c.fmax = 11025.0;
    c.segment_seconds = 1.0;
    c.segment_hop_seconds = 1.0;
    c.min_residual_seconds = 0.25;
    c.pad_mode = BS_PAD_ZERO;
    c.pad_noise_std = 1e-4f;
    c.pad_seed = 0;
    c.amin = 1e-10f;
    c.top_db = 80.0f;
    c.norm_std_floor = 1e-2f;
    c.db_ref = 1.0;
    return c;
}

typedef enum { F_INT, F_DOUBLE, F_FLOAT, F_U64, F_PADMODE, F_WINDOWNORM, F_DBREF } field_type;

static const struct field {
    const char *name;
    field_type type;
    size_t offset;
    double lo, hi; /* inclusive range for numbers */
    int optional;  /* added later: may be absent from JSON (the default is used), and is left
                      out when it has the default, so that older readers still load files
                      that do not need it */
} fields[] = {
    {"sample_rate", F_INT, offsetof(bs_feature_config, sample_rate), 1000, 768000, 0},
    {"n_fft", F_INT, offsetof(bs_feature_config, n_fft), 16, 65536, 0},
    {"hop_length", F_INT, offsetof(bs_feature_config, hop_length), 1, 65536, 0},
    {"n_mels", F_INT, offsetof(bs_feature_config, n_mels), 1, 1024, 0},
    {"fmin", F_DOUBLE, offsetof(bs_feature_config, fmin), 0, 384000, 0},
    {"fmax", F_DOUBLE, offsetof(bs_feature_config, fmax), 1, 384000, 0},
    {"segment_seconds", F_DOUBLE, offsetof(bs_feature_config, segment_seconds), 1e-3, 3600, 0},
    {"segment_hop_seconds", F_DOUBLE, offsetof(bs_feature_config, segment_hop_seconds), 1e-3,
     3600, 0},
    {"min_residual_seconds", F_DOUBLE, offsetof(bs_feature_config, min_residual_seconds), 0,
     3600, 0},
    {"pad_mode", F_PADMODE, offsetof(bs_feature_config, pad_mode), 0, 1, 0},
    {"pad_noise_std", F_FLOAT, offsetof(bs_feature_config, pad_noise_std), 0, 1, 0},
    {"pad_seed", F_U64, offsetof(bs_feature_config, pad_seed), 0, 0, 0},
    {"amin", F_FLOAT, offsetof(bs_feature_config, amin), 1e-30, 1, 0},
    {"top_db", F_FLOAT, offsetof(bs_feature_config, top_db), 0, 400, 0},
    {"norm_std_floor", F_FLOAT, offsetof(bs_feature_config, norm_std_floor), 1e-12, 1e6, 0},
    {"window_norm", F_WINDOWNORM, offsetof(bs_feature_config, window_norm), 0, 2, 1},
    /* 0 = BS_DB_REF_MAX ("max" in JSON), else a reference power */
    {"db_ref", F_DBREF, offsetof(bs_feature_config, db_ref), 0, 1e30, 1},
};

/* a reference power db_ref may hold: (0, 1e30] */
static int db_ref_power_ok(double v) { return v > 0.0 && v <= 1e30; }

int bs_db_ref_parse(const char *text, double *out) {
    if (!text) return -1;
    if (strcmp(text, "max") == 0) {
        *out = BS_DB_REF_MAX;
        return 0;
    }
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !db_ref_power_ok(v)) return -1;
    *out = v;
    return 0;
}

double bs_feature_db_offset(const bs_feature_config *c) {
    if (c->db_ref == BS_DB_REF_MAX) return 0.0;
    return 10.0 * log10(c->db_ref > c->amin ? c->db_ref : (double)c->amin);
}

float bs_feature_floor_db(const bs_feature_config *c) {
    if (c->db_ref == BS_DB_REF_MAX) return 0.0f;
    return (float)(10.0 * log10((double)c->amin) - bs_feature_db_offset(c));
}

static const char *const window_norm_names[] = {"none", "band_mean", "band_median"};

const char *bs_window_norm_name(bs_window_norm mode) {
    return (unsigned)mode < sizeof window_norm_names / sizeof *window_norm_names
               ? window_norm_names[mode]
               : "unknown";
}

int bs_window_norm_parse(const char *name, bs_window_norm *out) {
    for (unsigned i = 0; name && i < sizeof window_norm_names / sizeof *window_norm_names; i++)
        if (strcmp(name, window_norm_names[i]) == 0) {
            *out = (bs_window_norm)i;
            return 0;
        }
    return -1;
}
#define N_FIELDS (sizeof fields / sizeof fields[0])

static double field_get(const bs_feature_config *c, const struct field *f) {
    const char *p = (const char *)c + f->offset;
    switch (f->type) {
    case F_INT: return *(const int *)p;
    case F_DOUBLE: return *(const double *)p;
    case F_FLOAT: return *(const float *)p;
    case F_U64: return (double)*(const uint64_t *)p;
    case F_PADMODE: return (double)*(const bs_pad_mode *)p;
    case F_WINDOWNORM: return (double)*(const bs_window_norm *)p;
    case F_DBREF: return *(const double *)p;
    }
    return 0;
}

int bs_feature_segment_samples(const bs_feature_config *c) {
    return (int)lround(c->segment_seconds * c->sample_rate);
}
int bs_feature_segment_hop_samples(const bs_feature_config *c) {
    return (int)lround(c->segment_hop_seconds * c->sample_rate);
}
int bs_feature_min_residual_samples(const bs_feature_config *c) {
    return (int)floor(c->min_residual_seconds * c->sample_rate + 1e-9);
}
int bs_feature_n_frames(const bs_feature_config *c) {
    return 1 + bs_feature_segment_samples(c) / c->hop_length;
}
int bs_feature_n_freqs(const bs_feature_config *c) { return 1 + c->n_fft / 2; }

int bs_feature_config_validate(const bs_feature_config *c, bs_error *err) {
    if (!c) return bs_error_set(err, "feature config: missing (NULL)");
    for (size_t i = 0; i < N_FIELDS; i++) {
        const struct field *f = &fields[i];
        if (f->type == F_U64) continue; /* every value is valid */
        double v = field_get(c, f);
        if (!(v >= f->lo && v <= f->hi)) /* also catches NaN */
            return bs_error_set(err, "feature config: %s must be in [%g, %g], found %g", f->name,
                                f->lo, f->hi, v);
    }
    if (c->n_fft % 2 != 0)
        return bs_error_set(err, "feature config: n_fft must be even, found %d", c->n_fft);
    double nyq = c->sample_rate / 2.0;
    if (c->fmax > nyq + 1e-9)
        return bs_error_set(err, "feature config: fmax must be <= sample_rate/2 = %g Hz, found %g",
                            nyq, c->fmax);
    if (!(c->fmin < c->fmax))
        return bs_error_set(err, "feature config: fmin (%g Hz) must be below fmax (%g Hz)", c->fmin,
                            c->fmax);
    if (c->n_mels + 2 > c->n_fft)
        return bs_error_set(err, "feature config: n_mels %d needs n_fft >= %d, found %d",
                            c->n_mels, c->n_mels + 2, c->n_fft);
    double seg = c->segment_seconds * c->sample_rate;
    if (seg < 1.0 || seg > 1e9)
        return bs_error_set(err, "feature config: segment_seconds %g gives %g samples at %d Hz "
                                 "(expected 1..1e9)",
                            c->segment_seconds, seg, c->sample_rate);
    double hop = c->segment_hop_seconds * c->sample_rate;
    if (hop < 1.0 || hop > 1e9)
        return bs_error_set(err, "feature config: segment_hop_seconds %g gives %g samples at %d "
                                 "Hz (expected 1..1e9)",
                            c->segment_hop_seconds, hop, c->sample_rate);
    if (c->min_residual_seconds > c->segment_seconds)
        return bs_error_set(err, "feature config: min_residual_seconds %g must not exceed "
                                 "segment_seconds %g",
                            c->min_residual_seconds, c->segment_seconds);
    if (c->window_norm == BS_WINDOW_NORM_BAND_MEDIAN &&
        bs_feature_n_frames(c) > BS_WINDOW_NORM_MAX_FRAMES)
        return bs_error_set(err, "feature config: window_norm band_median needs at most %d frames "
                                 "per window, found %d",
                            BS_WINDOW_NORM_MAX_FRAMES, bs_feature_n_frames(c));
    double cells = (double)c->n_mels * bs_feature_n_frames(c);
    if (cells > 64e6)
        return bs_error_set(err, "feature config: %d mels x %d frames per window is too large",
                            c->n_mels, bs_feature_n_frames(c));
    return 0;
}

json_t *bs_feature_config_to_json(const bs_feature_config *c) {
    const bs_feature_config defaults = bs_feature_config_default();
    json_t *o = json_object();
    if (!o) return NULL;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const struct field *f = &fields[i];
        const char *p = (const char *)c + f->offset;
        if (f->optional && field_get(c, f) == field_get(&defaults, f)) continue;
        json_t *v = NULL;
        switch (f->type) {
        case F_INT: v = json_integer(*(const int *)p); break;
        case F_DOUBLE: v = json_real(*(const double *)p); break;
        case F_FLOAT: v = json_real((double)*(const float *)p); break;
        /* JSON integers are signed 64-bit: store the bits, read them back the same way. */
        case F_U64: v = json_integer((json_int_t)*(const uint64_t *)p); break;
        case F_PADMODE:
            v = json_string(*(const bs_pad_mode *)p == BS_PAD_NOISE ? "noise" : "zero");
            break;
        case F_WINDOWNORM: v = json_string(bs_window_norm_name(*(const bs_window_norm *)p)); break;
        case F_DBREF:
            v = *(const double *)p == BS_DB_REF_MAX ? json_string("max") : json_real(*(const double *)p);
            break;
        }
        if (!v || json_object_set_new(o, f->name, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int bs_feature_config_from_json(const json_t *json, bs_feature_config *out, bs_error *err) {
    if (!json || !json_is_object(json))
        return bs_error_set(err, "feature config: expected a JSON object");
    bs_feature_config c = bs_feature_config_default(); /* for the optional fields */
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)json, key, val) {
        size_t i = 0;
        while (i < N_FIELDS && strcmp(fields[i].name, key) != 0) i++;
        if (i == N_FIELDS)
            return bs_error_set(err, "feature config: unknown field \"%s\"", key);
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        const struct field *f = &fields[i];
        json_t *v = json_object_get(json, f->name);
        char *p = (char *)&c + f->offset;
        if (!v && f->optional) continue;
        if (!v) return bs_error_set(err, "feature config: field \"%s\" is missing", f->name);
        switch (f->type) {
        case F_INT: {
            if (!json_is_integer(v))
                return bs_error_set(err, "feature config: field \"%s\" must be an integer",
                                    f->name);
            json_int_t x = json_integer_value(v);
            if (x < (json_int_t)f->lo || x > (json_int_t)f->hi)
                return bs_error_set(err, "feature config: %s must be in [%g, %g], found %lld",
                                    f->name, f->lo, f->hi, (long long)x);
            *(int *)p = (int)x;
            break;
        }
        case F_DOUBLE:
            if (!json_is_number(v))
                return bs_error_set(err, "feature config: field \"%s\" must be a number", f->name);
            *(double *)p = json_number_value(v);
            break;
        case F_FLOAT:
            if (!json_is_number(v))
                return bs_error_set(err, "feature config: field \"%s\" must be a number", f->name);
            *(float *)p = (float)json_number_value(v);
            break;
        case F_U64:
            if (!json_is_integer(v))
                return bs_error_set(err, "feature config: field \"%s\" must be an integer",
                                    f->name);
            *(uint64_t *)p = (uint64_t)json_integer_value(v);
            break;
        case F_PADMODE: {
            const char *s = json_string_value(v);
            if (s && strcmp(s, "zero") == 0)
                *(bs_pad_mode *)p = BS_PAD_ZERO;
            else if (s && strcmp(s, "noise") == 0)
                *(bs_pad_mode *)p = BS_PAD_NOISE;
            else
                return bs_error_set(err, "feature config: pad_mode must be \"zero\" or \"noise\"");
            break;
        }
        case F_WINDOWNORM:
            if (bs_window_norm_parse(json_string_value(v), (bs_window_norm *)p))
                return bs_error_set(err, "feature config: window_norm must be \"none\", "
                                         "\"band_mean\" or \"band_median\"");
            break;
        case F_DBREF: {
            const char *s = json_string_value(v);
            double x = json_number_value(v);
            if (s ? strcmp(s, "max") != 0 : !(json_is_number(v) && db_ref_power_ok(x)))
                return bs_error_set(err, "feature config: db_ref must be a reference power in (0, 1e30] "
                                         "or \"max\"");
            *(double *)p = s ? BS_DB_REF_MAX : x;
            break;
        }
        }
    }
    if (bs_feature_config_validate(&c, err)) return -1;
    *out = c;
    return 0;
}
