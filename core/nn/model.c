/* birdsong: the model and its .bsm file. Format: docs/model-format.md.
 * JSON reals are written by jansson with 17 significant digits, so doubles (feature config)
 * and float32 values (thresholds, mean/std) read back bit-identical. */
#include "birdsong/model.h"
#include "birdsong/model_train.h"
#include "birdsong/nn_train.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .bsm writer and reader assume a little-endian host (tensors are copied as they are)"
#endif

#define HEADER_SIZE 64
#define ALIGN 64
#define MAX_LABELS 100000
#define MAX_LABEL_LEN 256

struct bs_model {
    bs_net *net;
    char arch[32];
    int n_labels;
    char **labels;
    float *thresholds;
    float *cal_a, *cal_b; /* [n_labels] Platt scaling on the logit, or NULL (none) */
    int n_filters;        /* the last n_filters outputs are filter classes, not species */
    int n_mels, n_frames;
    int n_channels;       /* input channels: 1 (a log-mel window) unless imported with more */
    float *mean, *std;
    int have_norm;
    bs_feature_config feat;
    json_t *features; /* object or NULL (not set yet) */
    json_t *training; /* object */
    char *features_str, *training_str, *meta_str;
    uint32_t crc;
};

static void refresh_meta(bs_model *m);

/* ---- CRC-32 ----------------------------------------------------------------------------- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t bs_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- little-endian helpers ---------------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- creation and free ------------------------------------------------------------------ */

void bs_model_free(bs_model *m) {
    if (!m) return;
    bs_net_free(m->net);
    if (m->labels)
        for (int i = 0; i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->thresholds);
    free(m->cal_a);
    free(m->cal_b);
    free(m->mean);
    free(m->std);
    if (m->features) json_decref(m->features);
    if (m->training) json_decref(m->training);
    free(m->features_str);
    free(m->training_str);
    free(m->meta_str);
    free(m);
}

/* max_batch 0: an inference-only network for batch 1 (loaded models) */
static bs_model *model_new(const bs_layer_spec *layers, int n_layers, const char *arch, int n_channels,
                           int n_mels, int n_frames, int n_labels, int max_batch, uint64_t seed,
                           bs_error *err) {
    bs_model *m = calloc(1, sizeof *m);
    if (!m) {
        bs_error_set(err, "out of memory for the model");
        return NULL;
    }
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->net = max_batch == 0
                 ? bs_net_create_inference_c(layers, n_layers, n_channels, n_mels, n_frames, n_labels, 1, err)
                 : bs_net_create_c(layers, n_layers, n_channels, n_mels, n_frames, n_labels, max_batch, seed, err);
    if (!m->net) {
        bs_model_free(m);
        return NULL;
    }
    m->n_labels = n_labels;
    m->n_mels = n_mels;
    m->n_frames = n_frames;
    m->n_channels = n_channels;
    m->labels = calloc((size_t)n_labels, sizeof(char *));
    m->thresholds = malloc(sizeof(float) * n_labels);
    m->mean = calloc((size_t)n_mels, sizeof(float));
    m->std = malloc(sizeof(float) * n_mels);
    m->training = json_object();
    m->training_str = strdup("{}");
    if (!m->labels || !m->thresholds || !m->mean || !m->std || !m->training || !m->training_str) {
        bs_error_set(err, "out of memory for the model");
        bs_model_free(m);
        return NULL;
    }
    for (int i = 0; i < n_labels; i++) m->thresholds[i] = 0.5f;
    for (int i = 0; i < n_mels; i++) m->std[i] = 1.0f;
    return m;
}

static int check_label(const char *s, int i, bs_error *err) {
    size_t n = strlen(s);
    if (n == 0 || n > MAX_LABEL_LEN)
        return bs_error_set(err, "labels[%d] has length %zu, expected 1 to %d characters", i, n,
                            MAX_LABEL_LEN);
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)s[k] < 0x20)
            return bs_error_set(err, "labels[%d] contains a control character", i);
    return 0;
}

bs_model *bs_model_create_layers(const bs_layer_spec *layers, int n_layers, int n_mels,
                                 int n_frames, const char *const *labels, int n_labels,
                                 int max_batch, uint64_t seed, bs_error *err) {
    return bs_model_create_layers_c(layers, n_layers, 1, n_mels, n_frames, labels, n_labels, max_batch, seed, err);
}

bs_model *bs_model_create_layers_c(const bs_layer_spec *layers, int n_layers, int n_channels, int n_mels,
                                   int n_frames, const char *const *labels, int n_labels, int max_batch,
                                   uint64_t seed, bs_error *err) {
    if (!labels || n_labels < 1 || n_labels > MAX_LABELS) {
        bs_error_set(err, "%d labels, expected 1 to %d", labels ? n_labels : 0, MAX_LABELS);
        return NULL;
    }
    for (int i = 0; i < n_labels; i++) {
        if (!labels[i]) {
            bs_error_set(err, "labels[%d] is NULL", i);
            return NULL;
        }
        if (check_label(labels[i], i, err)) return NULL;
        for (int k = 0; k < i; k++)
            if (strcmp(labels[k], labels[i]) == 0) {
                bs_error_set(err, "labels[%d] '%s' repeats labels[%d]", i, labels[i], k);
                return NULL;
            }
    }
    bs_model *m = model_new(layers, n_layers, "custom", n_channels, n_mels, n_frames, n_labels, max_batch,
                            seed, err);
    for (int i = 0; m && i < n_labels; i++)
        if (!(m->labels[i] = strdup(labels[i]))) {
            bs_error_set(err, "out of memory for the labels");
            bs_model_free(m);
            m = NULL;
        }
    if (m) refresh_meta(m);
    return m;
}

bs_model *bs_model_create(const char *arch, int n_mels, int n_frames, const char *const *labels,
                          int n_labels, int max_batch, uint64_t seed, bs_error *err) {
    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    int n = bs_nn_arch_layers(arch, layers, BS_NN_MAX_LAYERS);
    if (n < 0) {
        bs_error_set(err, "unknown architecture '%s', expected one of: %s", arch ? arch : "(null)",
                     bs_nn_arch_names());
        return NULL;
    }
    bs_model *m = bs_model_create_layers(layers, n, n_mels, n_frames, labels, n_labels, max_batch,
                                         seed, err);
    if (m) {
        snprintf(m->arch, sizeof m->arch, "%s", arch);
        refresh_meta(m);
    }
    return m;
}

bs_net *bs_model_net(bs_model *m) { return m->net; }

/* ---- setters ------------------------------------------------------------------------------ */

int bs_model_set_thresholds(bs_model *m, const float *thr, bs_error *err) {
    for (int i = 0; i < m->n_labels; i++)
        if (!(thr[i] >= 0.0f && thr[i] <= 1.0f))
            return bs_error_set(err, "threshold %d (%s) is %g, expected 0 to 1", i, m->labels[i],
                                (double)thr[i]);
    memcpy(m->thresholds, thr, sizeof(float) * m->n_labels);
    refresh_meta(m);
    return 0;
}

int bs_model_set_calibration(bs_model *m, const float *a, const float *b, bs_error *err) {
    if (!a || !b) {
        free(m->cal_a);
        free(m->cal_b);
        m->cal_a = m->cal_b = NULL;
        refresh_meta(m);
        return 0;
    }
    for (int i = 0; i < m->n_labels; i++) {
        if (!(a[i] > 0.0f && a[i] <= BS_CAL_MAX_A))
            return bs_error_set(err, "calibration slope a[%d] (%s) is %g, expected above 0 and at most %g", i,
                                m->labels[i], (double)a[i], BS_CAL_MAX_A);
        if (!(fabsf(b[i]) <= BS_CAL_MAX_B))
            return bs_error_set(err, "calibration offset b[%d] (%s) is %g, expected -%g to %g", i, m->labels[i],
                                (double)b[i], BS_CAL_MAX_B, BS_CAL_MAX_B);
    }
    if (!m->cal_a) m->cal_a = malloc(sizeof(float) * (size_t)m->n_labels);
    if (!m->cal_b) m->cal_b = malloc(sizeof(float) * (size_t)m->n_labels);
    if (!m->cal_a || !m->cal_b) return bs_error_set(err, "out of memory for the calibration");
    memcpy(m->cal_a, a, sizeof(float) * (size_t)m->n_labels);
    memcpy(m->cal_b, b, sizeof(float) * (size_t)m->n_labels);
    refresh_meta(m);
    return 0;
}

int bs_model_set_filter_classes(bs_model *m, int n_filters, bs_error *err) {
    if (n_filters < 0 || n_filters >= m->n_labels)
        return bs_error_set(err, "%d filter classes among %d outputs: at least one output must be a species", n_filters,
                            m->n_labels);
    m->n_filters = n_filters;
    refresh_meta(m);
    return 0;
}

int bs_model_set_normalization(bs_model *m, const float *mean, const float *std, int n_mels,
                               bs_error *err) {
    if (n_mels != m->n_mels)
        return bs_error_set(err, "normalization has %d mel bins, the network input has %d", n_mels,
                            m->n_mels);
    for (int i = 0; i < n_mels; i++) {
        if (!isfinite(mean[i]))
            return bs_error_set(err, "normalization mean[%d] is %g, expected a finite number", i,
                                (double)mean[i]);
        if (!(std[i] >= 0.0f) || !isfinite(std[i]))
            return bs_error_set(err, "normalization std[%d] is %g, expected a finite number >= 0",
                                i, (double)std[i]);
    }
    memcpy(m->mean, mean, sizeof(float) * n_mels);
    memcpy(m->std, std, sizeof(float) * n_mels);
    m->have_norm = 1;
    refresh_meta(m);
    return 0;
}

static int set_json_object(json_t **slot, char **str, const char *text, const char *what,
                           bs_error *err) {
    json_error_t je;
    json_t *j = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, &je);
    if (!j) return bs_error_set(err, "%s JSON: %s at line %d column %d", what, je.text, je.line, je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return bs_error_set(err, "%s JSON is not an object", what);
    }
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s) {
        json_decref(j);
        return bs_error_set(err, "out of memory for %s JSON", what);
    }
    if (*slot) json_decref(*slot);
    free(*str);
    *slot = j;
    *str = s;
    return 0;
}

static int check_feature_config(const bs_model *m, const bs_feature_config *cfg, bs_error *err) {
    if (bs_feature_config_validate(cfg, err)) return -1;
    if (cfg->n_mels != m->n_mels)
        return bs_error_set(err, "feature config has n_mels %d, the network input has %d mel bins",
                            cfg->n_mels, m->n_mels);
    if (bs_feature_n_frames(cfg) != m->n_frames)
        return bs_error_set(err, "feature config gives %d frames per window, the network input "
                            "has %d", bs_feature_n_frames(cfg), m->n_frames);
    return 0;
}

int bs_model_set_feature_config(bs_model *m, const bs_feature_config *cfg, bs_error *err) {
    if (check_feature_config(m, cfg, err)) return -1;
    json_t *j = bs_feature_config_to_json(cfg);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!s) {
        if (j) json_decref(j);
        return bs_error_set(err, "out of memory for the feature config");
    }
    if (m->features) json_decref(m->features);
    free(m->features_str);
    m->features = j;
    m->features_str = s;
    m->feat = *cfg;
    refresh_meta(m);
    return 0;
}

const bs_feature_config *bs_model_feature_config(const bs_model *m) { return &m->feat; }

int bs_model_set_training_json(bs_model *m, const char *json, bs_error *err) {
    if (set_json_object(&m->training, &m->training_str, json, "training", err)) return -1;
    json_t *d = json_object_get(m->training, "date");
    if (d && !json_is_string(d)) return bs_error_set(err, "training JSON: date is not a string");
    refresh_meta(m);
    return 0;
}

/* ---- accessors ---------------------------------------------------------------------------- */

int bs_model_n_outputs(const bs_model *m) { return m->n_labels; }
int bs_model_n_species(const bs_model *m) { return m->n_labels - m->n_filters; }
int bs_model_n_filters(const bs_model *m) { return m->n_filters; }
int bs_model_filter_index(const bs_model *m, const char *name) {
    for (int i = m->n_labels - m->n_filters; i < m->n_labels; i++)
        if (strcmp(m->labels[i], name) == 0) return i;
    return -1;
}
const char *bs_model_label(const bs_model *m, int i) {
    return i >= 0 && i < m->n_labels ? m->labels[i] : NULL;
}
const char *const *bs_model_labels(const bs_model *m) { return (const char *const *)m->labels; }
const float *bs_model_thresholds(const bs_model *m) { return m->thresholds; }
int bs_model_calibration(const bs_model *m, const float **a, const float **b) {
    if (a) *a = m->cal_a;
    if (b) *b = m->cal_b;
    return m->cal_a != NULL;
}
int bs_model_n_mels(const bs_model *m) { return m->n_mels; }
int bs_model_n_frames(const bs_model *m) { return m->n_frames; }
int bs_model_n_channels(const bs_model *m) { return m->n_channels; }

int bs_model_check_audio_input(const bs_model *m, bs_error *err) {
    if (m->n_channels == 1) return 0;
    return bs_error_set(err, "the network takes %d-channel %dx%d inputs (an imported model), audio features give "
                        "one channel: classify .npy windows of shape (S, %d, %d, %d) instead",
                        m->n_channels, m->n_mels, m->n_frames, m->n_mels, m->n_frames, m->n_channels);
}
const float *bs_model_norm_mean(const bs_model *m) { return m->mean; }
const float *bs_model_norm_std(const bs_model *m) { return m->std; }
const char *bs_model_training_json(const bs_model *m) { return m->training_str; }
const char *bs_model_training_date(const bs_model *m) {
    const char *s = json_string_value(json_object_get(m->training, "date"));
    return s ? s : "";
}
const char *bs_model_arch(const bs_model *m) { return m->arch; }

/* 1-31 characters, none of them a control character (set and load share this check). */
static int arch_name_check(const char *name, bs_error *err) {
    const size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= 32) return bs_error_set(err, "architecture name must be 1 to 31 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return bs_error_set(err, "architecture name has a control character");
    return 0;
}

int bs_model_set_arch(bs_model *m, const char *name, bs_error *err) {
    if (arch_name_check(name, err)) return -1;
    snprintf(m->arch, sizeof m->arch, "%s", name);
    return 0;
}
uint32_t bs_model_checksum(const bs_model *m) { return m->crc; }

/* ---- inference ---------------------------------------------------------------------------- */

double bs_prob_logit(float p) {
    double q = p < BS_CAL_P_MIN ? BS_CAL_P_MIN : p > 1.0 - BS_CAL_P_MIN ? 1.0 - BS_CAL_P_MIN : (double)p;
    return log(q) - log1p(-q);
}

float bs_platt_apply(float p, float a, float b) {
    double z = (double)a * bs_prob_logit(p) + (double)b;
    return (float)(1.0 / (1.0 + exp(-z)));
}

void bs_model_calibrate(const bs_model *m, float *probs) {
    if (!m->cal_a) return;
    for (int i = 0; i < m->n_labels; i++) probs[i] = bs_platt_apply(probs[i], m->cal_a[i], m->cal_b[i]);
}

int bs_model_predict(bs_model *m, const float *features, float *probs) {
    bs_net_forward(m->net, features, 1, 0);
    bs_net_activate(m->net, 1, probs);
    for (int i = 0; i < m->n_labels; i++)
        if (!isfinite(probs[i])) return -1;
    bs_model_calibrate(m, probs);
    return 0;
}

void bs_model_normalize(const bs_model *m, float *x) {
    /* Feature settings, once set, match the network's input (check_feature_config). */
    /* Every channel of a multi-channel input alike, one (n_mels, n_frames) plane at a time. */
    for (int c = 0; c < m->n_channels; c++, x += (size_t)m->n_mels * m->n_frames) {
        if (m->features_str)
            bs_features_normalize(&m->feat, x, m->mean, m->std);
        else /* a model still being built has none: the plain z-score (no floor, no window norm) */
            bs_normalize_apply(x, m->mean, m->std, 0.0f, m->n_mels, m->n_frames);
    }
}

/* ---- metadata JSON ------------------------------------------------------------------------ */

static json_t *float_array(const float *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

/* Strides and padding only when set: files of the built-in architectures stay as they were. */
static void geometry_json(json_t *o, const bs_layer_spec *s) {
    if (s->sh || s->sw) json_object_set_new(o, "strides", json_pack("[ii]", s->sh, s->sw));
    if (s->padding != BS_PAD_DEFAULT)
        json_object_set_new(o, "padding", json_string(s->padding == BS_PAD_SAME ? "same" : "valid"));
}

static json_t *layers_json(const bs_net *net) {
    json_t *a = json_array();
    const bs_layer_spec *L = bs_net_layers(net);
    for (int i = 0; i < bs_net_n_layers(net); i++) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string(bs_layer_kind_name(L[i].kind)));
        switch (L[i].kind) {
        case BS_LAYER_CONV2D:
            json_object_set_new(o, "filters", json_integer(L[i].filters));
            json_object_set_new(o, "kernel", json_pack("[ii]", L[i].kh, L[i].kw));
            geometry_json(o, &L[i]);
            break;
        case BS_LAYER_MAXPOOL:
        case BS_LAYER_AVGPOOL:
            json_object_set_new(o, "pool", json_pack("[ii]", L[i].kh, L[i].kw));
            geometry_json(o, &L[i]);
            break;
        case BS_LAYER_BATCHNORM:
            if (L[i].eps > 0.0f) json_object_set_new(o, "epsilon", json_real(L[i].eps));
            break;
        case BS_LAYER_DROPOUT:
            json_object_set_new(o, "rate", json_real(L[i].rate));
            break;
        case BS_LAYER_DENSE:
            json_object_set_new(o, "units", json_integer(L[i].units));
            break;
        default:
            break;
        }
        json_array_append_new(a, o);
    }
    return a;
}

/* Everything but "tensors". */
static json_t *metadata_json(const bs_model *m) {
    json_t *labels = json_array();
    for (int i = 0; i < m->n_labels; i++) json_array_append_new(labels, json_string(m->labels[i]));
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("birdsong-model"));
    json_object_set_new(root, "arch", json_string(m->arch));
    json_object_set_new(root, "input", json_pack("{s:i,s:i}", "n_mels", m->n_mels, "n_frames",
                                                 m->n_frames));
    /* only when not 1: files of one-channel models stay as they were (a file without it: 1) */
    if (m->n_channels != 1)
        json_object_set_new(json_object_get(root, "input"), "channels", json_integer(m->n_channels));
    json_object_set_new(root, "layers", layers_json(m->net));
    json_object_set_new(root, "output",
                        json_string(bs_layer_kind_name(bs_net_output_kind(m->net))));
    json_object_set_new(root, "labels", labels);
    json_object_set_new(root, "thresholds", float_array(m->thresholds, m->n_labels));
    if (m->n_filters > 0) {
        json_t *fc = json_array();
        for (int i = m->n_labels - m->n_filters; i < m->n_labels; i++) json_array_append_new(fc, json_string(m->labels[i]));
        json_object_set_new(root, "filter_classes", fc);
    }
    if (m->cal_a)
        json_object_set_new(root, "calibration",
                            json_pack("{s:s,s:o,s:o}", "method", "platt", "a", float_array(m->cal_a, m->n_labels), "b",
                                      float_array(m->cal_b, m->n_labels)));
    json_object_set_new(root, "features", m->features ? json_incref(m->features) : json_object());
    json_object_set_new(root, "normalization",
                        json_pack("{s:o,s:o}", "mean", float_array(m->mean, m->n_mels), "std",
                                  float_array(m->std, m->n_mels)));
    json_object_set(root, "training", m->training);
    return root;
}

/* The cached text is rebuilt by every change (setters, load, serialize), so that the accessor
 * only reads and may be called from any thread. */
static void refresh_meta(bs_model *m) {
    json_t *root = metadata_json(m);
    char *s = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (root) json_decref(root);
    if (s) {
        free(m->meta_str);
        m->meta_str = s;
    }
}

const char *bs_model_metadata_json(const bs_model *m) { return m->meta_str ? m->meta_str : "{}"; }

/* ---- saving ------------------------------------------------------------------------------- */

static size_t align_up(size_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

int bs_model_serialize(bs_model *m, uint8_t **out, size_t *out_size, bs_error *err) {
    *out = NULL;
    *out_size = 0;
    if (!m->features)
        return bs_error_set(err, "feature settings were not set (bs_model_set_feature_config)");
    if (!m->have_norm)
        return bs_error_set(err, "normalization mean/std were not set (bs_model_set_normalization)");
    if (!json_object_get(m->training, "date")) {
        char date[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new(m->training, "date", json_string(date));
        char *s = json_dumps(m->training, JSON_COMPACT);
        if (s) {
            free(m->training_str);
            m->training_str = s;
        }
    }
    bs_net *net = m->net;
    for (size_t i = 0; i < bs_net_n_params(net); i++)
        if (!isfinite(bs_net_params(net)[i]))
            return bs_error_set(err, "parameter %zu is %g, refusing to save a non-finite model", i,
                                (double)bs_net_params(net)[i]);
    json_t *root = metadata_json(m);
    json_t *tens = json_array();
    size_t off = 0;
    int nt = bs_net_n_tensors(net);
    for (int i = 0; i < nt; i++) {
        bs_tensor_info t;
        bs_net_tensor(net, i, &t);
        json_t *shape = json_array();
        for (int d = 0; d < t.ndim; d++) json_array_append_new(shape, json_integer(t.shape[d]));
        json_array_append_new(tens, json_pack("{s:s,s:o,s:I}", "name", t.name, "shape", shape,
                                              "offset", (json_int_t)off));
        off = align_up(off + t.size * sizeof(float));
    }
    json_object_set_new(root, "tensors", tens);
    char *js = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!js) return bs_error_set(err, "out of memory for the model metadata");
    size_t json_size = strlen(js);
    size_t data_offset = align_up(HEADER_SIZE + json_size);
    size_t data_size = off;
    size_t file_size = data_offset + data_size + 4;
    uint8_t *buf = calloc(1, file_size);
    if (!buf) {
        free(js);
        return bs_error_set(err, "out of memory for %zu bytes of model file", file_size);
    }
    memcpy(buf, BS_MODEL_MAGIC, 8);
    wr32(buf + 8, BS_MODEL_VERSION);
    wr32(buf + 12, 0);
    wr64(buf + 16, json_size);
    wr64(buf + 24, data_offset);
    wr64(buf + 32, data_size);
    wr64(buf + 40, file_size);
    memcpy(buf + HEADER_SIZE, js, json_size);
    free(js);
    off = 0;
    for (int i = 0; i < nt; i++) {
        bs_tensor_info t;
        bs_net_tensor(net, i, &t);
        memcpy(buf + data_offset + off, t.data, t.size * sizeof(float));
        off = align_up(off + t.size * sizeof(float));
    }
    uint32_t crc = bs_crc32(0, buf, file_size - 4);
    wr32(buf + file_size - 4, crc);
    m->crc = crc;
    refresh_meta(m);
    *out = buf;
    *out_size = file_size;
    return 0;
}

int bs_model_save(bs_model *m, const char *path, bs_error *err) {
    uint8_t *buf;
    size_t n;
    if (bs_model_serialize(m, &buf, &n, err)) {
        bs_error_prefix(err, path);
        return -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(buf);
        return bs_error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            free(buf);
            return bs_error_set(err, "%s: write failed: %s", tmp, strerror(e));
        }
        done += (size_t)w;
    }
    free(buf);
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return bs_error_set(err, "%s: cannot flush: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return bs_error_set(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return 0;
}

/* ---- loading ------------------------------------------------------------------------------ */

static int get_int(json_t *o, const char *key, const char *where, int lo, int hi, int *out,
                   bs_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return bs_error_set(err, "%s has no '%s'", where, key);
    if (!json_is_integer(v)) return bs_error_set(err, "%s.%s is not an integer", where, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return bs_error_set(err, "%s.%s is %lld, expected %d to %d", where, key, (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int get_pair(json_t *o, const char *key, const char *where, int *a, int *b, bs_error *err) {
    json_t *v = json_object_get(o, key);
    if (!v) return bs_error_set(err, "%s has no '%s'", where, key);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(json_array_get(v, 0)) ||
        !json_is_integer(json_array_get(v, 1)))
        return bs_error_set(err, "%s.%s is not an array of 2 integers", where, key);
    json_int_t x = json_integer_value(json_array_get(v, 0)), y = json_integer_value(json_array_get(v, 1));
    if (x < 1 || x > 4096 || y < 1 || y > 4096)
        return bs_error_set(err, "%s.%s is [%lld, %lld], expected values 1 to 4096", where, key,
                            (long long)x, (long long)y);
    *a = (int)x;
    *b = (int)y;
    return 0;
}

/* The optional "strides" [sh, sw] and "padding" "same" | "valid" of conv2d and pools. */
static int parse_geometry(json_t *o, const char *where, bs_layer_spec *s, bs_error *err) {
    if (json_object_get(o, "strides") && get_pair(o, "strides", where, &s->sh, &s->sw, err)) return -1;
    json_t *p = json_object_get(o, "padding");
    if (!p) return 0;
    const char *v = json_string_value(p);
    if (v && strcmp(v, "same") == 0)
        s->padding = BS_PAD_SAME;
    else if (v && strcmp(v, "valid") == 0)
        s->padding = BS_PAD_VALID;
    else
        return bs_error_set(err, "%s.padding is not \"same\" or \"valid\"", where);
    return 0;
}

static int parse_layers(json_t *arr, bs_layer_spec *out, int *n_out, bs_error *err) {
    if (!json_is_array(arr)) return bs_error_set(err, "metadata 'layers' is not an array");
    size_t n = json_array_size(arr);
    if (n < 2 || n > BS_NN_MAX_LAYERS)
        return bs_error_set(err, "metadata 'layers' has %zu entries, expected 2 to %d", n,
                            BS_NN_MAX_LAYERS);
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "layers[%zu]", i);
        json_t *o = json_array_get(arr, i);
        if (!json_is_object(o)) return bs_error_set(err, "%s is not an object", where);
        const char *type = json_string_value(json_object_get(o, "type"));
        if (!type) return bs_error_set(err, "%s has no string 'type'", where);
        bs_layer_spec *s = &out[i];
        memset(s, 0, sizeof *s);
        int k;
        for (k = 0; k <= BS_LAYER_LAST_KIND; k++)
            if (strcmp(type, bs_layer_kind_name((bs_layer_kind)k)) == 0) break;
        if (k > BS_LAYER_LAST_KIND)
            return bs_error_set(err, "%s.type is '%.40s', not a known layer", where, type);
        s->kind = (bs_layer_kind)k;
        switch (s->kind) {
        case BS_LAYER_CONV2D:
            if (get_int(o, "filters", where, 1, 4096, &s->filters, err) ||
                get_pair(o, "kernel", where, &s->kh, &s->kw, err) || parse_geometry(o, where, s, err))
                return -1;
            break;
        case BS_LAYER_MAXPOOL:
        case BS_LAYER_AVGPOOL:
            if (get_pair(o, "pool", where, &s->kh, &s->kw, err) || parse_geometry(o, where, s, err)) return -1;
            break;
        case BS_LAYER_BATCHNORM: {
            json_t *e = json_object_get(o, "epsilon");
            if (e && !(json_is_number(e) && json_number_value(e) > 0.0 && json_number_value(e) <= 1.0))
                return bs_error_set(err, "%s.epsilon is not a number in (0, 1]", where);
            s->eps = e ? (float)json_number_value(e) : 0.0f;
            break;
        }
        case BS_LAYER_DROPOUT: {
            json_t *r = json_object_get(o, "rate");
            if (!json_is_number(r)) return bs_error_set(err, "%s.rate is not a number", where);
            double rate = json_number_value(r);
            if (!(rate >= 0.0 && rate < 1.0))
                return bs_error_set(err, "%s.rate is %g, expected 0 <= rate < 1", where, rate);
            s->rate = (float)rate;
            break;
        }
        case BS_LAYER_DENSE:
            if (get_int(o, "units", where, 1, MAX_LABELS, &s->units, err)) return -1;
            break;
        default:
            break;
        }
    }
    *n_out = (int)n;
    return 0;
}

static int read_floats(json_t *a, const char *what, int n, float *out, bs_error *err) {
    if (!json_is_array(a)) return bs_error_set(err, "metadata '%s' is not an array", what);
    if (json_array_size(a) != (size_t)n)
        return bs_error_set(err, "metadata '%s' has %zu values, expected %d", what,
                            json_array_size(a), n);
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_number(v)) return bs_error_set(err, "%s[%d] is not a number", what, i);
        double d = json_number_value(v);
        if (!isfinite(d) || fabs(d) > 3.4e38) return bs_error_set(err, "%s[%d] is not a finite float", what, i);
        out[i] = (float)d;
    }
    return 0;
}

static void shape_str(char *buf, size_t n, const int *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", d ? "," : "", shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* The fixed header (docs/model-format.md): magic, version, flags, reserved bytes, the
 * sizes and where the parts lie, the CRC of the whole file. */
typedef struct file_layout {
    uint64_t json_size, data_offset, data_size;
    uint32_t crc;
} file_layout;

static int check_header(const uint8_t *p, size_t size, file_layout *fl, bs_error *err) {
    if (size < HEADER_SIZE + 4)
        return bs_error_set(err, "file is %zu bytes, too short for a model (at least %d)", size, HEADER_SIZE + 4);
    if (memcmp(p, BS_MODEL_MAGIC, 8) != 0)
        return bs_error_set(err, "not a birdsong model: the file does not start with the magic 'BSMODEL\\0'");
    uint32_t version = rd32(p + 8);
    if (version != BS_MODEL_VERSION)
        return bs_error_set(err, "format version is %u, this program reads version %d", version, BS_MODEL_VERSION);
    if (rd32(p + 12) != 0) return bs_error_set(err, "header flags are 0x%08x, expected 0", rd32(p + 12));
    for (int i = 48; i < HEADER_SIZE; i++)
        if (p[i]) return bs_error_set(err, "header byte %d is %u, reserved bytes 48-63 must be 0", i, p[i]);
    uint64_t json_size = rd64(p + 16), data_offset = rd64(p + 24), data_size = rd64(p + 32),
             file_size = rd64(p + 40);
    if (file_size != size)
        return bs_error_set(err, "header says the file has %llu bytes, it has %zu (truncated or padded)",
                            (unsigned long long)file_size, size);
    uint32_t crc = bs_crc32(0, p, size - 4), stored = rd32(p + size - 4);
    if (crc != stored)
        return bs_error_set(err, "CRC-32 is 0x%08x, the file says 0x%08x (the file is damaged)", crc, stored);
    if (json_size == 0 || json_size > size || data_offset % ALIGN != 0 ||
        data_offset < HEADER_SIZE + json_size || data_offset > size || data_size % 4 != 0 ||
        data_size > size || data_offset + data_size + 4 != size)
        return bs_error_set(err, "header sizes are inconsistent: json %llu bytes, data at %llu of %llu "
                            "bytes, file %zu bytes",
                            (unsigned long long)json_size, (unsigned long long)data_offset,
                            (unsigned long long)data_size, size);
    for (uint64_t i = HEADER_SIZE + json_size; i < data_offset; i++)
        if (p[i]) return bs_error_set(err, "padding byte at offset %llu is not 0", (unsigned long long)i);
    *fl = (file_layout){.json_size = json_size, .data_offset = data_offset, .data_size = data_size, .crc = crc};
    return 0;
}

/* The network's shape from the metadata (format, arch, input, layers, output, the label
 * count) and a model built for it; NULL with err. */
static bs_model *model_from_metadata(json_t *root, bs_error *err) {
    if (!json_is_object(root)) {
        bs_error_set(err, "metadata is not a JSON object");
        return NULL;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    if (!fmt || strcmp(fmt, "birdsong-model") != 0) {
        bs_error_set(err, "metadata 'format' is not \"birdsong-model\"");
        return NULL;
    }
    const char *arch = json_string_value(json_object_get(root, "arch"));
    if (!arch || arch_name_check(arch, err)) {
        bs_error_set(err, "metadata 'arch' is not a string of 1 to 31 printable characters");
        return NULL;
    }
    json_t *input = json_object_get(root, "input");
    if (!json_is_object(input)) {
        bs_error_set(err, "metadata 'input' is not an object");
        return NULL;
    }
    int n_mels = 0, n_frames = 0, n_channels = 1;
    if (get_int(input, "n_mels", "input", 1, 4096, &n_mels, err) ||
        get_int(input, "n_frames", "input", 1, 4096, &n_frames, err) ||
        (json_object_get(input, "channels") && get_int(input, "channels", "input", 1, 4096, &n_channels, err)))
        return NULL;
    bs_layer_spec specs[BS_NN_MAX_LAYERS];
    int n_layers = 0;
    if (parse_layers(json_object_get(root, "layers"), specs, &n_layers, err)) return NULL;
    const char *output = json_string_value(json_object_get(root, "output"));
    if (!output || strcmp(output, bs_layer_kind_name(specs[n_layers - 1].kind)) != 0) {
        bs_error_set(err, "metadata 'output' is %s%s%s, the last layer is %s", output ? "\"" : "",
                     output ? output : "missing", output ? "\"" : "",
                     bs_layer_kind_name(specs[n_layers - 1].kind));
        return NULL;
    }
    json_t *labels = json_object_get(root, "labels");
    if (!json_is_array(labels) || json_array_size(labels) < 1 ||
        json_array_size(labels) > MAX_LABELS) {
        bs_error_set(err, "metadata 'labels' is not an array of 1 to %d strings", MAX_LABELS);
        return NULL;
    }
    int n_labels = (int)json_array_size(labels);
    if (specs[n_layers - 2].kind == BS_LAYER_DENSE && specs[n_layers - 2].units != n_labels) {
        bs_error_set(err, "metadata has %d labels, the layer list has %d outputs", n_labels,
                     specs[n_layers - 2].units);
        return NULL;
    }
    bs_model *m = model_new(specs, n_layers, arch, n_channels, n_mels, n_frames, n_labels, 0, 0, err);
    if (!m) bs_error_prefix(err, "layer list");
    return m;
}

/* Labels (distinct, printable) and their thresholds in [0, 1]. */
static int read_labels(bs_model *m, json_t *root, bs_error *err) {
    json_t *labels = json_object_get(root, "labels");
    for (int i = 0; i < m->n_labels; i++) {
        const char *s = json_string_value(json_array_get(labels, i));
        if (!s) return bs_error_set(err, "labels[%d] is not a string", i);
        if (check_label(s, i, err)) return -1;
        for (int k = 0; k < i; k++)
            if (strcmp(m->labels[k], s) == 0) return bs_error_set(err, "labels[%d] '%s' repeats labels[%d]", i, s, k);
        m->labels[i] = strdup(s);
        if (!m->labels[i]) return bs_error_set(err, "out of memory for the labels");
    }
    if (read_floats(json_object_get(root, "thresholds"), "thresholds", m->n_labels, m->thresholds, err)) return -1;
    for (int i = 0; i < m->n_labels; i++)
        if (!(m->thresholds[i] >= 0.0f && m->thresholds[i] <= 1.0f))
            return bs_error_set(err, "thresholds[%d] is %g, expected 0 to 1", i, (double)m->thresholds[i]);
    return 0;
}

/* Filter classes (optional: the last outputs, named in order; files before them: all
 * species) and the per-output Platt calibration (optional: files before it load as
 * uncalibrated). */
static int read_filters_calibration(bs_model *m, json_t *root, bs_error *err) {
    const int n_labels = m->n_labels;
    json_t *fcl = json_object_get(root, "filter_classes");
    if (fcl) {
        size_t nf = json_is_array(fcl) ? json_array_size(fcl) : 0;
        if (!json_is_array(fcl) || nf < 1 || nf >= (size_t)n_labels)
            return bs_error_set(err,
                                "metadata 'filter_classes' is not an array of 1 to %d labels (at least one output "
                                "must be a species)",
                                n_labels - 1);
        for (size_t k = 0; k < nf; k++) {
            json_t *v = json_array_get(fcl, k);
            const char *want = m->labels[n_labels - nf + k];
            if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
                return bs_error_set(err,
                                    "filter_classes[%zu] is not \"%s\": filter classes must be the last labels, in order",
                                    k, want);
        }
        m->n_filters = (int)nf;
    }
    json_t *cal = json_object_get(root, "calibration");
    if (!cal) return 0;
    if (!json_is_object(cal)) return bs_error_set(err, "metadata 'calibration' is not an object");
    json_t *method = json_object_get(cal, "method");
    if (!json_is_string(method) || strcmp(json_string_value(method), "platt") != 0)
        return bs_error_set(err, "metadata calibration.method is not \"platt\"");
    float *ab = malloc(sizeof(float) * 2 * (size_t)n_labels + 1);
    if (!ab) return bs_error_set(err, "out of memory for the calibration");
    int bad = read_floats(json_object_get(cal, "a"), "calibration.a", n_labels, ab, err) ||
              read_floats(json_object_get(cal, "b"), "calibration.b", n_labels, ab + n_labels, err) ||
              bs_model_set_calibration(m, ab, ab + n_labels, err);
    free(ab);
    return bad ? -1 : 0;
}

/* The feature settings (matching the network's input), the normalization, the training
 * record. */
static int read_settings(bs_model *m, json_t *root, bs_error *err) {
    json_t *features = json_object_get(root, "features");
    if (!json_is_object(features)) return bs_error_set(err, "metadata 'features' is not an object");
    if (bs_feature_config_from_json(features, &m->feat, err)) return -1;
    if (check_feature_config(m, &m->feat, err)) return -1;
    m->features = json_incref(features);
    m->features_str = json_dumps(features, JSON_COMPACT);
    json_t *norm = json_object_get(root, "normalization");
    if (!json_is_object(norm)) return bs_error_set(err, "metadata 'normalization' is not an object");
    const int n_mels = m->n_mels;
    float *tmp = malloc(sizeof(float) * 2 * n_mels);
    int bad = !tmp || read_floats(json_object_get(norm, "mean"), "normalization.mean", n_mels, tmp, err) ||
              read_floats(json_object_get(norm, "std"), "normalization.std", n_mels, tmp + n_mels, err) ||
              bs_model_set_normalization(m, tmp, tmp + n_mels, n_mels, err);
    free(tmp);
    if (bad) return -1;
    json_t *training = json_object_get(root, "training");
    if (!json_is_object(training)) return bs_error_set(err, "metadata 'training' is not an object");
    if (json_object_get(training, "date") && !json_is_string(json_object_get(training, "date")))
        return bs_error_set(err, "metadata training.date is not a string");
    json_decref(m->training);
    free(m->training_str);
    m->training = json_incref(training);
    m->training_str = json_dumps(training, JSON_COMPACT);
    if (!m->features_str || !m->training_str) return bs_error_set(err, "out of memory for the metadata");
    return 0;
}

/* Tensors: exactly the network's, each once, in bounds, aligned, finite; running variances
 * >= 0. data: the data_size bytes of tensor data. */
static int read_tensors(bs_model *m, json_t *root, const uint8_t *data, uint64_t data_size, bs_error *err) {
    json_t *tens = json_object_get(root, "tensors");
    bs_net *net = m->net;
    int nt = bs_net_n_tensors(net);
    if (!json_is_array(tens)) return bs_error_set(err, "metadata 'tensors' is not an array");
    if (json_array_size(tens) != (size_t)nt)
        return bs_error_set(err, "metadata lists %zu tensors, the layer list needs %d", json_array_size(tens), nt);
    for (int i = 0; i < nt; i++) {
        json_t *t = json_array_get(tens, i);
        if (!json_is_object(t)) return bs_error_set(err, "tensors[%d] is not an object", i);
        const char *name = json_string_value(json_object_get(t, "name"));
        if (!name) return bs_error_set(err, "tensors[%d] has no string 'name'", i);
        bs_tensor_info ti;
        bs_net_tensor(net, i, &ti);
        if (strcmp(name, ti.name) != 0)
            return bs_error_set(err, "tensors[%d] is '%.48s', the layer list needs '%s' there", i, name, ti.name);
        json_t *shape = json_object_get(t, "shape");
        int sh[4] = {0}, ok = json_is_array(shape) && json_array_size(shape) >= 1 &&
                              json_array_size(shape) <= 4;
        size_t nd = ok ? json_array_size(shape) : 0;
        for (size_t d = 0; ok && d < nd; d++) {
            json_t *v = json_array_get(shape, d);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > (1 << 30))
                ok = 0;
            else
                sh[d] = (int)json_integer_value(v);
        }
        if (!ok)
            return bs_error_set(err, "tensor %s: 'shape' is not an array of 1 to 4 non-negative integers", ti.name);
        int same = (int)nd == ti.ndim;
        for (int d = 0; same && d < ti.ndim; d++) same = sh[d] == ti.shape[d];
        if (!same) {
            char a[64], b[64];
            shape_str(a, sizeof a, sh, (int)nd);
            shape_str(b, sizeof b, ti.shape, ti.ndim);
            return bs_error_set(err, "tensor %s has shape %s, the layer list needs %s", ti.name, a, b);
        }
        json_t *ov = json_object_get(t, "offset");
        if (!json_is_integer(ov) || json_integer_value(ov) < 0)
            return bs_error_set(err, "tensor %s: 'offset' is not a non-negative integer", ti.name);
        uint64_t off = (uint64_t)json_integer_value(ov), bytes = ti.size * sizeof(float);
        if (off % ALIGN != 0)
            return bs_error_set(err, "tensor %s is at offset %llu, not a multiple of %d", ti.name,
                                (unsigned long long)off, ALIGN);
        if (off > data_size || bytes > data_size - off)
            return bs_error_set(err, "tensor %s has %zu values at offset %llu, past the %llu bytes of "
                                "tensor data", ti.name, ti.size, (unsigned long long)off,
                                (unsigned long long)data_size);
        memcpy(ti.data, data + off, bytes);
        for (size_t k = 0; k < ti.size; k++)
            if (!isfinite(ti.data[k]))
                return bs_error_set(err, "tensor %s value %zu is %g, expected a finite number", ti.name, k,
                                    (double)ti.data[k]);
    }
    for (int i = 0; i < nt; i++) { /* the running variance must keep sqrt(var + eps) real */
        bs_tensor_info ti;
        bs_net_tensor(net, i, &ti);
        size_t L = strlen(ti.name);
        if (L > 12 && strcmp(ti.name + L - 12, ".running_var") == 0)
            for (size_t k = 0; k < ti.size; k++)
                if (ti.data[k] < 0.0f)
                    return bs_error_set(err, "tensor %s value %zu is %g, a variance must be >= 0", ti.name, k,
                                        (double)ti.data[k]);
    }
    return 0;
}

/* Every check of docs/model-format.md, in file order: header, metadata, tensors. */
static bs_model *load_checked(const uint8_t *p, size_t size, bs_error *err) {
    file_layout fl = {0};
    if (check_header(p, size, &fl, err)) return NULL;
    json_error_t je;
    json_t *root = json_loadb((const char *)p + HEADER_SIZE, fl.json_size, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        bs_error_set(err, "metadata is not valid JSON: %s at line %d column %d", je.text, je.line, je.column);
        return NULL;
    }
    bs_model *m = model_from_metadata(root, err);
    if (!m || read_labels(m, root, err) || read_filters_calibration(m, root, err) || read_settings(m, root, err) ||
        read_tensors(m, root, p + fl.data_offset, fl.data_size, err)) {
        bs_model_free(m);
        json_decref(root);
        return NULL;
    }
    m->crc = fl.crc;
    refresh_meta(m);
    json_decref(root);
    return m;
}

bs_model *bs_model_load_buffer(const void *data, size_t size, const char *name, bs_error *err) {
    bs_model *m = load_checked(data, size, err);
    if (!m) bs_error_prefix(err, name ? name : "model");
    return m;
}

bs_model *bs_model_load(const char *path, bs_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        bs_error_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        bs_error_set(err, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_size > (off_t)4 << 30) {
        fclose(f);
        bs_error_set(err, "%s: file is %lld bytes, larger than the 4 GiB a model may have", path,
                     (long long)st.st_size);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        bs_error_set(err, "%s: cannot read %zu bytes", path, n);
        return NULL;
    }
    fclose(f);
    bs_model *m = bs_model_load_buffer(buf, n, path, err);
    free(buf);
    return m;
}
