/* Keras .h5 / .keras into a birdsong layer list and weights. See keras.h. */
#include "trainer/keras.h"

#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "birdsong/nn_train.h"
#include "birdsong/npy.h"
#include "trainer/xalloc.h"

#define MAX_WEIGHTS 8
#define MAX_STR (1u << 24) /* a model config larger than 16 MB is not a model we import */

/* One Keras weight read from the file: float32 values and the stored shape. */
typedef struct kw_tensor {
    float *v;
    int ndim;
    size_t dims[4], n;
} kw_tensor;

/* Our layer being assembled: spec plus its tensors in bs_net order (already in our layouts). */
typedef struct pending {
    float *t[4];
    size_t n[4];
    int nt;
} pending;

typedef struct reader {
    const char *name;
    int zip;          /* .keras: weights under layers/<name>/vars/<i> */
    hid_t file, root; /* root: model_weights (h5) or the file */
    ts_keras_net *net;
    pending pend[BS_NN_MAX_LAYERS];
    bs_error *err;
} reader;

static int fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(reader *r, const char *fmt, ...) {
    char msg[sizeof r->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bs_error_set(r->err, "%s: %s", r->name, msg);
}

/* ---- HDF5 ---------------------------------------------------------------------------- */

/* A string attribute (fixed or variable length, scalar or n-element array) as n malloc'd
 * strings. Returns the count (0 when the attribute is absent), -1 when it is not strings. */
static int attr_strings(hid_t obj, const char *attr, char **out, int max) {
    if (H5Aexists(obj, attr) <= 0) return 0;
    hid_t a = H5Aopen(obj, attr, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a), mt = -1;
    int rc = -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (n == 0) { /* h5py stores an empty list as an empty float array */
        rc = 0;
        goto done;
    }
    if (t < 0 || n < 0 || n > max || H5Tget_class(t) != H5T_STRING) goto done;
    mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) goto done; /* h5py writes str as UTF-8 */
    if (H5Tis_variable_str(t) > 0) {
        char *p[64] = {0};
        if (n > 64 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, p) < 0) goto done;
        rc = (int)n;
        for (int i = 0; i < n; i++) {
            out[i] = strdup(p[i] ? p[i] : "");
            if (!out[i]) rc = -1;
        }
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, p);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > MAX_STR) goto done;
        char *buf = calloc((size_t)n ? (size_t)n : 1, sz);
        if (!buf || H5Tset_size(mt, sz) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 || H5Aread(a, mt, buf) < 0) {
            free(buf);
            goto done;
        }
        rc = (int)n;
        for (int i = 0; i < n; i++) {
            out[i] = strndup(buf + (size_t)i * sz, sz);
            if (!out[i]) rc = -1;
        }
        free(buf);
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

static char *attr_string(hid_t obj, const char *attr) {
    char *s[1] = {NULL};
    return attr_strings(obj, attr, s, 1) == 1 ? s[0] : NULL;
}

/* Dataset `path` under group g: float32 values, every one finite. 0 or -1 with err. */
static int read_dataset(reader *r, hid_t g, const char *path, const char *what, kw_tensor *t) {
    memset(t, 0, sizeof *t);
    if (H5Lexists(g, path, H5P_DEFAULT) <= 0) return fail(r, "%s: weight '%s' is missing", what, path);
    hid_t d = H5Dopen2(g, path, H5P_DEFAULT);
    if (d < 0) return fail(r, "%s: weight '%s' is not a dataset", what, path);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    int rc = -1;
    hsize_t dims[8];
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (ty < 0 || H5Tget_class(ty) != H5T_FLOAT) {
        fail(r, "%s: weight '%s' is not floating point", what, path);
        goto done;
    }
    if (nd < 0 || nd > 4 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        fail(r, "%s: weight '%s' has %d dimensions, expected 1 to 4", what, path, nd);
        goto done;
    }
    t->ndim = nd;
    t->n = 1;
    for (int i = 0; i < nd; i++) {
        if (dims[i] > (1u << 28)) {
            fail(r, "%s: weight '%s' is too large", what, path);
            goto done;
        }
        t->dims[i] = (size_t)dims[i];
        t->n *= t->dims[i];
    }
    if (t->n > (1u << 28)) {
        fail(r, "%s: weight '%s' is too large", what, path);
        goto done;
    }
    t->v = malloc(t->n ? t->n * sizeof(float) : 1);
    if (!t->v || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->v) < 0) {
        fail(r, "%s: weight '%s' cannot be read", what, path);
        goto done;
    }
    for (size_t i = 0; i < t->n; i++)
        if (!isfinite(t->v[i])) {
            fail(r, "%s: weight '%s' holds a non-finite value at %zu", what, path, i);
            goto done;
        }
    rc = 0;
done:
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (rc) {
        free(t->v);
        t->v = NULL;
    }
    return rc;
}

/* The weights of Keras layer `lname`, in the file's order: through the layer group's
 * weight_names (.h5), or layers/<name>/vars/0.. (.keras). Returns the count or -1. */
static int layer_weights(reader *r, const char *lname, const char *what, kw_tensor *w, int max) {
    char path[512];
    if (strlen(lname) > 400 || strchr(lname, '/')) return fail(r, "%s: the layer name is not a plain name", what);
    if (r->zip) { /* H5Lexists needs every group on the path to exist: test them in turn */
        static const char *const parts[] = {"layers", "layers/%s", "layers/%s/vars"};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, parts[i], lname);
            if (H5Lexists(r->root, path, H5P_DEFAULT) <= 0) return 0;
        }
        int n = 0;
        for (;; n++) {
            snprintf(path, sizeof path, "layers/%s/vars/%d", lname, n);
            if (H5Lexists(r->root, path, H5P_DEFAULT) <= 0) break;
            if (n == max) return fail(r, "%s has more than %d weights", what, max);
            if (read_dataset(r, r->root, path, what, &w[n])) return -1;
        }
        return n;
    }
    if (H5Lexists(r->root, lname, H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(r->root, lname, H5P_DEFAULT);
    if (g < 0) return fail(r, "%s: weights entry '%s' is not a group", what, lname);
    char *names[MAX_WEIGHTS + 1] = {0};
    int n = attr_strings(g, "weight_names", names, MAX_WEIGHTS + 1), rc = n;
    if (n < 0) rc = fail(r, "%s: attribute weight_names is not a list of strings", what);
    else if (n > max) rc = fail(r, "%s has %d weights, expected at most %d", what, n, max);
    for (int i = 0; rc >= 0 && i < n; i++)
        if (read_dataset(r, g, names[i], what, &w[i])) rc = -1;
    for (int i = 0; i < MAX_WEIGHTS + 1; i++) free(names[i]);
    H5Gclose(g);
    return rc;
}

/* ---- the config ---------------------------------------------------------------------- */

static int get_pair(json_t *o, const char *key, int dflt, int *a, int *b) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *a = *b = dflt;
        return dflt > 0 ? 0 : -1;
    }
    if (json_is_integer(v)) {
        *a = *b = (int)json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) &&
               json_is_integer(json_array_get(v, 1))) {
        json_int_t x = json_integer_value(json_array_get(v, 0)), y = json_integer_value(json_array_get(v, 1));
        if (x < 1 || x > 4096 || y < 1 || y > 4096) return -1;
        *a = (int)x;
        *b = (int)y;
    } else {
        return -1;
    }
    return *a >= 1 && *a <= 4096 && *b >= 1 && *b <= 4096 ? 0 : -1;
}

/* Names of the layers feeding a layer, from Keras 2 (["name", 0, 0, {}]) or Keras 3
 * ({"keras_history": ["name", 0, 0]}) inbound nodes. */
static void collect_inbound(json_t *v, const char **names, int *n, int max) {
    if (json_is_object(v)) {
        json_t *h = json_object_get(v, "keras_history");
        if (json_is_array(h) && json_is_string(json_array_get(h, 0))) {
            if (*n < max) names[*n] = json_string_value(json_array_get(h, 0));
            (*n)++;
            return;
        }
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) collect_inbound(x, names, n, max);
    } else if (json_is_array(v)) {
        if (json_array_size(v) >= 3 && json_is_string(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
            if (*n < max) names[*n] = json_string_value(json_array_get(v, 0));
            (*n)++;
            return;
        }
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) collect_inbound(x, names, n, max);
    }
}

static const char *lname_of(json_t *layer) {
    const char *s = json_string_value(json_object_get(json_object_get(layer, "config"), "name"));
    if (!s) s = json_string_value(json_object_get(layer, "name"));
    return s ? s : "";
}

/* Functional models must be one chain: layer i fed by layer i-1 only, the last the output. */
static int check_chain(reader *r, json_t *cfg, json_t *layers) {
    size_t i;
    json_t *l;
    json_array_foreach(layers, i, l) {
        json_t *in = json_object_get(l, "inbound_nodes");
        const char *names[4];
        int n = 0;
        if (json_array_size(in) > 1)
            return fail(r, "layer %zu '%s' (%s) is called %zu times; only a single chain of layers is supported", i,
                        lname_of(l), json_string_value(json_object_get(l, "class_name")), json_array_size(in));
        collect_inbound(in, names, &n, 4);
        const char *prev = i ? lname_of(json_array_get(layers, i - 1)) : NULL;
        if ((i == 0 && n != 0) || (i > 0 && (n != 1 || strcmp(names[0], prev) != 0)))
            return fail(r, "layer %zu '%s' (%s) takes %d input(s)%s%s; only a single chain of layers is supported "
                        "(each fed by the one before)", i, lname_of(l),
                        json_string_value(json_object_get(l, "class_name")), n, n ? ", the first from " : "",
                        n ? names[0] : "");
    }
    const char *outs[4];
    int n = 0;
    collect_inbound(json_object_get(cfg, "output_layers"), outs, &n, 4);
    const char *last = lname_of(json_array_get(layers, json_array_size(layers) - 1));
    if (n != 1 || strcmp(outs[0], last) != 0)
        return fail(r, "the model has %d output(s)%s%s, expected one: its last layer '%s'", n, n ? ", the first " : "",
                    n ? outs[0] : "", last);
    return 0;
}

/* ---- conversion ---------------------------------------------------------------------- */

/* The shape flowing through the Keras layers, in Keras orientation (H, W, C). */
typedef struct kflow {
    int h, w, c;
    int flat;      /* after Flatten / global pooling / Dense: c values */
    int fh, fw, fc; /* set by Flatten: the (H, W, C) it flattened, for the next Dense */
    int from_flatten;
} kflow;

static bs_layer_spec *add_layer(reader *r, bs_layer_kind kind, int ki, const char *what) {
    ts_keras_net *net = r->net;
    if (net->n_layers >= BS_NN_MAX_LAYERS - 1) {
        fail(r, "%s: the network needs more than %d birdsong layers", what, BS_NN_MAX_LAYERS);
        return NULL;
    }
    (void)ki;
    bs_layer_spec *s = &net->layers[net->n_layers++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

static int expect_shape(reader *r, const char *what, const char *wname, const kw_tensor *t, int nd, const size_t *dims) {
    int ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++) ok = t->dims[i] == dims[i];
    if (ok) return 0;
    char got[64] = "", want[64] = "";
    for (int i = 0; i < t->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", i ? "," : "", t->dims[i]);
    for (int i = 0; i < nd; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%zu", i ? "," : "", dims[i]);
    return fail(r, "%s: %s has shape [%s], the config needs [%s]", what, wname, got, want);
}

static int keep(reader *r, float *v, size_t n) {
    pending *p = &r->pend[r->net->n_layers - 1];
    p->t[p->nt] = v;
    p->n[p->nt++] = n;
    return 0;
}

/* Activation `act` after a layer: relu adds a layer, linear nothing, sigmoid/softmax mark the
 * output (*out_kind). */
static int activation(reader *r, const char *act, const char *what, bs_layer_kind *out_kind) {
    if (!act || !strcmp(act, "linear")) return 0;
    if (*out_kind != BS_LAYER_LINEAR) return fail(r, "%s follows the output activation", what);
    if (!strcmp(act, "relu")) return add_layer(r, BS_LAYER_RELU, 0, what) ? 0 : -1;
    if (!strcmp(act, "sigmoid")) *out_kind = BS_LAYER_SIGMOID;
    else if (!strcmp(act, "softmax")) *out_kind = BS_LAYER_SOFTMAX;
    else return fail(r, "%s has activation '%.40s'; supported: relu, sigmoid, softmax, linear", what, act);
    return 0;
}

static int convert_layer(reader *r, int ki, json_t *layer, kflow *f, bs_layer_kind *out_kind, int T) {
    const char *cls = json_string_value(json_object_get(layer, "class_name"));
    json_t *cfg = json_object_get(layer, "config");
    const char *lname = lname_of(layer);
    char what[192];
    snprintf(what, sizeof what, "layer %d '%.80s' (%.40s)", ki, lname, cls ? cls : "?");
    if (!cls || !json_is_object(cfg)) return fail(r, "%s has no class_name or config", what);
    if (*out_kind != BS_LAYER_LINEAR && strcmp(cls, "Dropout") != 0)
        return fail(r, "%s follows the output activation", what);
    kw_tensor w[MAX_WEIGHTS];
    memset(w, 0, sizeof w);
    int nw = 0, rc = -1;
    const char *act = json_string_value(json_object_get(cfg, "activation"));
    if (!strcmp(cls, "InputLayer")) {
        if (ki != 0) return fail(r, "%s is not the first layer", what);
        return 0;
    }
    const char *df = json_string_value(json_object_get(cfg, "data_format"));
    if (df && strcmp(df, "channels_last") != 0)
        return fail(r, "%s has data_format '%.20s', only channels_last is supported", what, df);
    int spatial = !strcmp(cls, "Conv2D") || !strcmp(cls, "BatchNormalization") || !strcmp(cls, "MaxPooling2D") ||
                  !strcmp(cls, "AveragePooling2D") || !strcmp(cls, "GlobalAveragePooling2D") ||
                  !strcmp(cls, "GlobalMaxPooling2D") || !strcmp(cls, "Flatten");
    if (spatial && f->flat) return fail(r, "%s comes after the data was flattened; expected a (H, W, C) input", what);
    nw = layer_weights(r, lname, what, w, MAX_WEIGHTS);
    if (nw < 0) goto out; /* the weights read before the failure are freed there */

    if (!strcmp(cls, "Conv2D")) {
        int kh, kw, sh, sw, dh, dw;
        json_int_t filters = json_integer_value(json_object_get(cfg, "filters"));
        const char *pad = json_string_value(json_object_get(cfg, "padding"));
        int bias = !json_is_false(json_object_get(cfg, "use_bias"));
        if (get_pair(cfg, "kernel_size", 0, &kh, &kw) || get_pair(cfg, "strides", 1, &sh, &sw) ||
            get_pair(cfg, "dilation_rate", 1, &dh, &dw) || filters < 1 || filters > 4096 || !pad ||
            (strcmp(pad, "same") && strcmp(pad, "valid"))) {
            fail(r, "%s: kernel_size, strides, filters or padding is missing or out of range", what);
            goto out;
        }
        if (dh != 1 || dw != 1) {
            fail(r, "%s has dilation_rate %dx%d; only 1 is supported", what, dh, dw);
            goto out;
        }
        json_t *groups = json_object_get(cfg, "groups");
        if (groups && json_integer_value(groups) != 1) {
            fail(r, "%s has groups %lld; only 1 is supported", what, (long long)json_integer_value(groups));
            goto out;
        }
        if (nw != 1 + bias) {
            fail(r, "%s has %d weights, expected %d (kernel%s)", what, nw, 1 + bias, bias ? ", bias" : "");
            goto out;
        }
        size_t kd[4] = {(size_t)kh, (size_t)kw, (size_t)f->c, (size_t)filters}, bd[1] = {(size_t)filters};
        if (expect_shape(r, what, "kernel", &w[0], 4, kd) || (bias && expect_shape(r, what, "bias", &w[1], 1, bd)))
            goto out;
        bs_layer_spec *s = add_layer(r, BS_LAYER_CONV2D, ki, what);
        if (!s) goto out;
        s->filters = (int)filters;
        s->kh = T ? kw : kh;
        s->kw = T ? kh : kw;
        s->sh = T ? sw : sh;
        s->sw = T ? sh : sw;
        s->padding = !strcmp(pad, "same") ? BS_PAD_SAME : BS_PAD_VALID;
        /* HWIO -> (O, I, our kh, our kw) */
        size_t n = w[0].n;
        float *W = ts_xmalloc(n * sizeof(float)), *B = ts_xcalloc((size_t)filters, sizeof(float));
        for (int o = 0; o < filters; o++)
            for (int c = 0; c < f->c; c++)
                for (int i = 0; i < s->kh; i++)
                    for (int j = 0; j < s->kw; j++) {
                        int y = T ? j : i, x = T ? i : j; /* Keras kernel row, column */
                        W[(((size_t)o * f->c + c) * s->kh + i) * s->kw + j] =
                            w[0].v[(((size_t)y * kw + x) * f->c + c) * filters + o];
                    }
        if (bias) memcpy(B, w[1].v, sizeof(float) * (size_t)filters);
        keep(r, W, n);
        keep(r, B, (size_t)filters);
        f->h = bs_nn_conv_out_size(f->h, kh, sh, !strcmp(pad, "same"));
        f->w = bs_nn_conv_out_size(f->w, kw, sw, !strcmp(pad, "same"));
        f->c = (int)filters;
        if (f->h < 1 || f->w < 1) {
            fail(r, "%s leaves no output on its input", what);
            goto out;
        }
        rc = activation(r, act, what, out_kind);
    } else if (!strcmp(cls, "BatchNormalization")) {
        json_t *axis = json_object_get(cfg, "axis");
        if (json_is_array(axis) && json_array_size(axis) == 1) axis = json_array_get(axis, 0);
        json_int_t ax = json_is_integer(axis) ? json_integer_value(axis) : 0;
        if (ax != -1 && ax != 3) {
            fail(r, "%s normalizes axis %lld; only the channel axis (-1 or 3) is supported", what, (long long)ax);
            goto out;
        }
        double eps = json_number_value(json_object_get(cfg, "epsilon"));
        if (!(eps > 0.0 && eps <= 1.0)) {
            fail(r, "%s has epsilon %g, expected 0 < epsilon <= 1", what, eps);
            goto out;
        }
        int center = !json_is_false(json_object_get(cfg, "center")), scale = !json_is_false(json_object_get(cfg, "scale"));
        if (nw != 2 + center + scale) {
            fail(r, "%s has %d weights, expected %d (%s%smoving_mean, moving_variance)", what, nw, 2 + center + scale,
                 scale ? "gamma, " : "", center ? "beta, " : "");
            goto out;
        }
        size_t cd[1] = {(size_t)f->c};
        static const char *nm[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        int k = 0;
        float *T4[4];
        for (int i = 0; i < 4; i++) {
            T4[i] = ts_xmalloc(sizeof(float) * (size_t)f->c);
            if ((i == 0 && !scale) || (i == 1 && !center)) {
                for (int c = 0; c < f->c; c++) T4[i][c] = i == 0 ? 1.0f : 0.0f;
                continue;
            }
            if (expect_shape(r, what, nm[i], &w[k], 1, cd)) {
                for (int j = 0; j <= i; j++) free(T4[j]);
                goto out;
            }
            memcpy(T4[i], w[k++].v, sizeof(float) * (size_t)f->c);
        }
        for (int c = 0; c < f->c; c++)
            if (T4[3][c] < 0.0f) {
                fail(r, "%s: moving_variance[%d] is negative", what, c);
                for (int j = 0; j < 4; j++) free(T4[j]);
                goto out;
            }
        bs_layer_spec *s = add_layer(r, BS_LAYER_BATCHNORM, ki, what);
        if (!s) {
            for (int j = 0; j < 4; j++) free(T4[j]);
            goto out;
        }
        s->eps = (float)eps;
        for (int i = 0; i < 4; i++) keep(r, T4[i], (size_t)f->c);
        rc = 0;
    } else if (!strcmp(cls, "MaxPooling2D") || !strcmp(cls, "AveragePooling2D")) {
        int ph, pw, sh, sw;
        const char *pad = json_string_value(json_object_get(cfg, "padding"));
        if (get_pair(cfg, "pool_size", 0, &ph, &pw) || !pad || (strcmp(pad, "same") && strcmp(pad, "valid"))) {
            fail(r, "%s: pool_size or padding is missing or out of range", what);
            goto out;
        }
        if (get_pair(cfg, "strides", -1, &sh, &sw)) {
            sh = ph;
            sw = pw;
        }
        bs_layer_spec *s = add_layer(r, cls[0] == 'M' ? BS_LAYER_MAXPOOL : BS_LAYER_AVGPOOL, ki, what);
        if (!s) goto out;
        s->kh = T ? pw : ph;
        s->kw = T ? ph : pw;
        s->sh = T ? sw : sh;
        s->sw = T ? sh : sw;
        s->padding = !strcmp(pad, "same") ? BS_PAD_SAME : BS_PAD_VALID;
        f->h = bs_nn_conv_out_size(f->h, ph, sh, !strcmp(pad, "same"));
        f->w = bs_nn_conv_out_size(f->w, pw, sw, !strcmp(pad, "same"));
        if (f->h < 1 || f->w < 1) {
            fail(r, "%s leaves no output on its input", what);
            goto out;
        }
        rc = 0;
    } else if (!strcmp(cls, "GlobalAveragePooling2D") || !strcmp(cls, "GlobalMaxPooling2D")) {
        if (json_is_true(json_object_get(cfg, "keepdims"))) {
            fail(r, "%s has keepdims true; only false is supported", what);
            goto out;
        }
        if (!add_layer(r, cls[6] == 'A' ? BS_LAYER_GLOBAL_AVGPOOL : BS_LAYER_GLOBAL_MAXPOOL, ki, what)) goto out;
        f->h = f->w = 1;
        f->flat = 1;
        f->from_flatten = 0;
        rc = 0;
    } else if (!strcmp(cls, "Flatten")) {
        if (!add_layer(r, BS_LAYER_FLATTEN, ki, what)) goto out;
        f->fh = f->h;
        f->fw = f->w;
        f->fc = f->c;
        f->c = f->h * f->w * f->c;
        f->h = f->w = 1;
        f->flat = 1;
        f->from_flatten = 1;
        rc = 0;
    } else if (!strcmp(cls, "Dropout")) {
        double rate = json_number_value(json_object_get(cfg, "rate"));
        if (!(rate >= 0.0 && rate < 1.0)) {
            fail(r, "%s has rate %g, expected 0 <= rate < 1", what, rate);
            goto out;
        }
        if (*out_kind != BS_LAYER_LINEAR) { /* after the output: nothing at inference */
            rc = 0;
            goto out;
        }
        bs_layer_spec *s = add_layer(r, BS_LAYER_DROPOUT, ki, what);
        if (!s) goto out;
        s->rate = (float)rate;
        rc = 0;
    } else if (!strcmp(cls, "Dense")) {
        json_int_t units = json_integer_value(json_object_get(cfg, "units"));
        int bias = !json_is_false(json_object_get(cfg, "use_bias"));
        if (!f->flat) {
            fail(r, "%s acts on a (H, W, C) input; expected Flatten or global pooling before it", what);
            goto out;
        }
        if (units < 1 || units > 100000) {
            fail(r, "%s has %lld units, expected 1 to 100000", what, (long long)units);
            goto out;
        }
        if (nw != 1 + bias) {
            fail(r, "%s has %d weights, expected %d (kernel%s)", what, nw, 1 + bias, bias ? ", bias" : "");
            goto out;
        }
        size_t kd[2] = {(size_t)f->c, (size_t)units}, bd[1] = {(size_t)units};
        if (expect_shape(r, what, "kernel", &w[0], 2, kd) || (bias && expect_shape(r, what, "bias", &w[1], 1, bd)))
            goto out;
        if (!add_layer(r, BS_LAYER_DENSE, ki, what)) goto out;
        r->net->layers[r->net->n_layers - 1].units = (int)units;
        float *W = ts_xmalloc(sizeof(float) * w[0].n), *B = ts_xcalloc((size_t)units, sizeof(float));
        /* (in, out) -> (out, in); after Flatten, Keras's input index is (h*W + w)*C + c and
         * ours (c*H' + y)*W' + x with (H', W') our (possibly transposed) orientation */
        int oh = T ? f->fw : f->fh, ow = T ? f->fh : f->fw;
        for (int q = 0; q < f->c; q++) {
            int k = q;
            if (f->from_flatten) {
                int c = q / (oh * ow), y = (q / ow) % oh, x = q % ow;
                int h = T ? x : y, ww = T ? y : x;
                k = (h * f->fw + ww) * f->fc + c;
            }
            for (int u = 0; u < units; u++) W[(size_t)u * f->c + q] = w[0].v[(size_t)k * units + u];
        }
        if (bias) memcpy(B, w[1].v, sizeof(float) * (size_t)units);
        keep(r, W, w[0].n);
        keep(r, B, (size_t)units);
        f->c = (int)units;
        f->from_flatten = 0;
        rc = activation(r, act, what, out_kind);
    } else if (!strcmp(cls, "Activation")) {
        rc = activation(r, act, what, out_kind);
    } else {
        fail(r, "%s is not supported; supported: InputLayer, Conv2D, BatchNormalization, MaxPooling2D, "
             "AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten, Dropout, Dense, Activation",
             what);
    }
    if (rc == 0 && nw > 0 && strcmp(cls, "Conv2D") && strcmp(cls, "BatchNormalization") && strcmp(cls, "Dense"))
        rc = fail(r, "%s has %d weights, expected none", what, nw);
out:
    for (int i = 0; i < MAX_WEIGHTS; i++) free(w[i].v);
    return rc;
}

/* The (H, W, C) of the first layer's batch_input_shape (Keras 2) or batch_shape (Keras 3). */
static int input_shape(reader *r, json_t *first, kflow *f) {
    json_t *cfg = json_object_get(first, "config");
    json_t *s = json_object_get(cfg, "batch_input_shape");
    if (!s) s = json_object_get(cfg, "batch_shape");
    if (!json_is_array(s) || json_array_size(s) != 4)
        return fail(r, "the first layer has no 4-dimensional batch_input_shape / batch_shape (None, H, W, C)");
    int v[3];
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(s, (size_t)i + 1);
        if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 4096)
            return fail(r, "the input shape's dimension %d is not a size of 1 to 4096", i + 1);
        v[i] = (int)json_integer_value(x);
    }
    f->h = v[0];
    f->w = v[1];
    f->c = v[2]; /* 1 for a log-mel window; more (e.g. RGB) for .npy input only */
    return 0;
}

static int convert(reader *r, const char *config_text, int T) {
    ts_keras_net *net = r->net;
    json_error_t je;
    json_t *root = json_loads(config_text, 0, &je);
    int rc = -1;
    if (!root) return fail(r, "the model config is not JSON (%s, line %d)", je.text, je.line);
    const char *mclass = json_string_value(json_object_get(root, "class_name"));
    json_t *cfg = json_object_get(root, "config");
    json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
    if (!mclass || !json_is_array(layers) || json_array_size(layers) < 1) {
        fail(r, "the model config has no class_name or no layer list");
        goto done;
    }
    snprintf(net->model_class, sizeof net->model_class, "%s", mclass);
    if (strcmp(mclass, "Sequential") != 0) {
        if (strcmp(mclass, "Functional") != 0 && strcmp(mclass, "Model") != 0) {
            fail(r, "the model is a %.40s; Sequential and Functional models are supported", mclass);
            goto done;
        }
        if (check_chain(r, cfg, layers)) goto done;
    }
    kflow f = {0};
    if (input_shape(r, json_array_get(layers, 0), &f)) goto done;
    net->in_h = f.h;
    net->in_w = f.w;
    net->in_c = f.c;
    net->n_mels = T ? f.w : f.h;
    net->n_frames = T ? f.h : f.w;
    bs_layer_kind out_kind = BS_LAYER_LINEAR;
    size_t i;
    json_t *l;
    json_array_foreach(layers, i, l) if (convert_layer(r, (int)i, l, &f, &out_kind, T)) goto done;
    if (out_kind == BS_LAYER_LINEAR && !f.flat && f.c > 1 && f.h * f.w > 1) {
        fail(r, "the output is a %dx%dx%d map without an activation; birdsong needs one value per label "
             "(a Dense layer or a one-channel map)", f.h, f.w, f.c);
        goto done;
    }
    net->n_outputs = f.flat ? f.c : f.h * f.w * f.c;
    net->head_softmax = out_kind == BS_LAYER_SOFTMAX;
    if (!add_layer(r, out_kind, -1, "the output")) goto done;
    if (net->n_layers < 2) {
        fail(r, "the model has no layer birdsong can run");
        goto done;
    }
    /* the network, to check the layer list and lay the weights out in bs_net order */
    bs_error e;
    bs_net *bn = bs_net_create_inference_c(net->layers, net->n_layers, net->in_c, net->n_mels, net->n_frames,
                                           net->n_outputs, 1, &e);
    if (!bn) {
        fail(r, "the converted layer list is refused: %s", e.msg);
        goto done;
    }
    /* every tensor (parameters and batchnorm statistics) in bs_net order, concatenated */
    net->n_params = 0;
    for (int t = 0; t < bs_net_n_tensors(bn); t++) {
        bs_tensor_info ti;
        bs_net_tensor(bn, t, &ti);
        net->n_params += ti.size;
    }
    net->params = ts_xmalloc(sizeof(float) * (net->n_params ? net->n_params : 1));
    int t = 0;
    size_t off = 0;
    rc = 0;
    for (int k = 0; k < net->n_layers && !rc; k++)
        for (int j = 0; j < r->pend[k].nt; j++, t++) {
            bs_tensor_info ti;
            if (bs_net_tensor(bn, t, &ti) || ti.size != r->pend[k].n[j]) {
                rc = fail(r, "internal: tensor %d does not match the converted weights", t);
                break;
            }
            memcpy(net->params + off, r->pend[k].t[j], sizeof(float) * ti.size);
            off += ti.size;
        }
    if (!rc && (t != bs_net_n_tensors(bn) || off != net->n_params))
        rc = fail(r, "internal: %d converted tensors for %d in the network", t, bs_net_n_tensors(bn));
    bs_net_free(bn);
done:
    json_decref(root);
    return rc;
}

/* ---- containers ---------------------------------------------------------------------- */

static hid_t open_h5_image(const void *data, size_t size) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    hid_t f = -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_file_image(fapl, (void *)data, size) >= 0)
        f = H5Fopen("keras-image.h5", H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

/* One member of an open zip, malloc'd and NUL-terminated; NULL when absent or unreadable. */
static char *zip_member(zip_t *z, const char *name, size_t *size) {
    zip_stat_t st;
    if (zip_stat(z, name, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) || st.size > (1ull << 31)) return NULL;
    zip_file_t *zf = zip_fopen(z, name, 0);
    if (!zf) return NULL;
    char *buf = malloc((size_t)st.size + 1);
    zip_int64_t n = buf ? zip_fread(zf, buf, st.size) : -1;
    zip_fclose(zf);
    if (n < 0 || (zip_uint64_t)n != st.size) {
        free(buf);
        return NULL;
    }
    buf[st.size] = '\0';
    if (size) *size = (size_t)st.size;
    return buf;
}

static int read_h5(reader *r, const void *data, size_t size, int T) {
    r->file = open_h5_image(data, size);
    if (r->file < 0) return fail(r, "not a readable HDF5 file (truncated or damaged)");
    char *config = attr_string(r->file, "model_config");
    char *ver = attr_string(r->file, "keras_version");
    snprintf(r->net->keras_version, sizeof r->net->keras_version, "%s", ver ? ver : "unknown");
    free(ver);
    int rc;
    if (!config) {
        rc = fail(r, "HDF5 file without a model_config attribute: not a whole Keras model (weights only?)");
    } else {
        r->root = H5Lexists(r->file, "model_weights", H5P_DEFAULT) > 0 ? H5Gopen2(r->file, "model_weights", H5P_DEFAULT)
                                                                      : H5Gopen2(r->file, "/", H5P_DEFAULT);
        rc = r->root < 0 ? fail(r, "model_weights is not a group") : convert(r, config, T);
    }
    free(config);
    return rc;
}

static int read_zip(reader *r, const void *data, size_t size, int T) {
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(data, size, 0, &ze);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY, &ze) : NULL;
    if (!z) {
        fail(r, "not a readable zip (%s)", zip_error_strerror(&ze));
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return -1;
    }
    zip_error_fini(&ze);
    size_t wsize = 0;
    char *config = zip_member(z, "config.json", NULL), *meta = zip_member(z, "metadata.json", NULL);
    char *weights = zip_member(z, "model.weights.h5", &wsize);
    int rc;
    if (!config || !weights) {
        rc = fail(r, ".keras zip lacks %s", !config ? "config.json" : "model.weights.h5");
    } else {
        json_t *m = meta ? json_loads(meta, 0, NULL) : NULL;
        const char *v = json_string_value(json_object_get(m, "keras_version"));
        snprintf(r->net->keras_version, sizeof r->net->keras_version, "%s", v ? v : "unknown");
        json_decref(m);
        r->file = open_h5_image(weights, wsize);
        if (r->file < 0) {
            rc = fail(r, "model.weights.h5 in the zip is not a readable HDF5 file");
        } else {
            r->root = H5Gopen2(r->file, "/", H5P_DEFAULT);
            rc = convert(r, config, T);
        }
    }
    free(config);
    free(meta);
    free(weights);
    zip_close(z);
    return rc;
}

int ts_keras_read_buffer(const void *data, size_t size, const char *name, int frames_mels, ts_keras_net *net,
                         bs_error *err) {
    memset(net, 0, sizeof *net);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors come back as return codes, never printed */
    reader r = {.name = name, .file = -1, .root = -1, .net = net, .err = err};
    const unsigned char *b = data;
    int rc;
    if (size >= 8 && memcmp(b, "\x89HDF\r\n\x1a\n", 8) == 0) {
        snprintf(net->container, sizeof net->container, "h5");
        rc = read_h5(&r, data, size, frames_mels);
    } else if (size >= 4 && memcmp(b, "PK\x03\x04", 4) == 0) {
        snprintf(net->container, sizeof net->container, "keras");
        r.zip = 1;
        rc = read_zip(&r, data, size, frames_mels);
    } else {
        rc = fail(&r, "neither an HDF5 file (.h5) nor a zip (.keras): unknown first bytes");
    }
    if (r.root >= 0) H5Gclose(r.root);
    if (r.file >= 0) H5Fclose(r.file);
    for (int k = 0; k < BS_NN_MAX_LAYERS; k++)
        for (int j = 0; j < r.pend[k].nt; j++) free(r.pend[k].t[j]);
    return rc;
}



void ts_keras_free(ts_keras_net *net) {
    free(net->params);
    net->params = NULL;
}

/* ---- normalization statistics ------------------------------------------------------- */

static int stats_member(zip_t *z, const char *path, const char *key, int n_mels, float *out, bs_error *err) {
    char member[32];
    snprintf(member, sizeof member, "%s.npy", key);
    size_t size;
    char *buf = zip_member(z, member, &size);
    if (!buf) return bs_error_set(err, "%s: no array '%s' (expected numpy.savez(..., mean=..., std=...))", path, key);
    float *v;
    size_t shape[8];
    int nd;
    char name[600];
    snprintf(name, sizeof name, "%s: %s", path, key);
    int rc = bs_npy_parse_f32(buf, size, name, &v, shape, &nd, err);
    free(buf);
    if (rc) return -1;
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (n != 1 && n != (size_t)n_mels) {
        free(v);
        return bs_error_set(err, "%s: '%s' has %zu values, expected 1 or %d (one per mel band)", path, key, n, n_mels);
    }
    for (int i = 0; i < n_mels; i++) {
        out[i] = v[n == 1 ? 0 : i];
        if (!isfinite(out[i])) {
            free(v);
            return bs_error_set(err, "%s: '%s'[%d] is not finite", path, key, i);
        }
    }
    free(v);
    return 0;
}

int ts_read_stats_npz(const char *path, int n_mels, float *mean, float *std, bs_error *err) {
    int ze;
    zip_t *z = zip_open(path, ZIP_RDONLY, &ze);
    if (!z) {
        zip_error_t e;
        zip_error_init_with_code(&e, ze);
        bs_error_set(err, "%s: not a readable .npz (%s)", path, zip_error_strerror(&e));
        zip_error_fini(&e);
        return -1;
    }
    int rc = stats_member(z, path, "mean", n_mels, mean, err) || stats_member(z, path, "std", n_mels, std, err) ? -1 : 0;
    for (int i = 0; rc == 0 && i < n_mels; i++)
        if (std[i] < 0.0f) rc = bs_error_set(err, "%s: std[%d] is negative", path, i);
    zip_close(z);
    return rc;
}
