/* Training checkpoints. See checkpoint.h. */
#include "trainer/checkpoint.h"
#include "trainer/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char k_magic[8] = {'B', 'S', 'C', 'K', 'P', 'T', '0', '1'};
static const char k_end[8] = {'B', 'S', 'C', 'K', 'E', 'N', 'D', '\n'};

typedef struct writer {
    FILE *f;
    int ok;
} writer;

static void put(writer *w, const void *p, size_t n) {
    if (w->ok && n && fwrite(p, 1, n, w->f) != n) w->ok = 0;
}
static void put_u64(writer *w, uint64_t v) { put(w, &v, sizeof v); }
static void put_array(writer *w, const void *p, size_t count, size_t elem) {
    put_u64(w, count);
    put(w, p, count * elem);
}

int ts_checkpoint_write(const char *path, const ts_checkpoint *c, bs_error *err) {
    size_t len = strlen(path);
    char *tmp = ts_xmalloc(len + 5);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    writer w = {fopen(tmp, "wb"), 1};
    if (!w.f) {
        int e = errno;
        free(tmp);
        return bs_error_set(err, "checkpoint %s: cannot create: %s", path, strerror(e));
    }
    put(&w, k_magic, sizeof k_magic);
    put_array(&w, c->settings, strlen(c->settings), 1);
    int32_t ints[5] = {c->epoch, c->batch, c->since_best, c->best_epoch, c->n_hist};
    put(&w, ints, sizeof ints);
    int64_t longs[3] = {c->step, c->seen, c->adam_t};
    put(&w, longs, sizeof longs);
    double dbl[2] = {c->loss_sum, c->best_val_loss};
    put(&w, dbl, sizeof dbl);
    uint64_t rng[2] = {c->order_rng, c->aug_rng};
    put(&w, rng, sizeof rng);
    put_array(&w, c->hist, (size_t)c->n_hist, sizeof *c->hist);
    put_array(&w, c->order, (size_t)c->n_order, sizeof *c->order);
    put_array(&w, c->adam_m, c->n_params, sizeof(float));
    put_array(&w, c->adam_v, c->n_params, sizeof(float));
    put_array(&w, c->weights, c->n_snap, sizeof(float));
    put_array(&w, c->best, c->n_snap, sizeof(float));
    put_array(&w, c->ema, c->ema ? c->n_snap : 0, sizeof(float));
    put(&w, k_end, sizeof k_end);
    if (w.ok && fflush(w.f) != 0) w.ok = 0;
    if (w.ok && fsync(fileno(w.f)) != 0) w.ok = 0;
    int e = errno;
    if (fclose(w.f) != 0) w.ok = 0;
    if (w.ok && rename(tmp, path) != 0) {
        e = errno;
        w.ok = 0;
    }
    if (!w.ok) {
        unlink(tmp);
        free(tmp);
        return bs_error_set(err, "checkpoint %s: cannot write: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

typedef struct reader {
    FILE *f;
    const char *path;
    bs_error *err;
    int ok;
} reader;

static int get(reader *r, void *p, size_t n, const char *what) {
    if (!r->ok) return -1;
    if (n && fread(p, 1, n, r->f) != n) {
        r->ok = 0;
        return bs_error_set(r->err, "checkpoint %s: ends inside the %s (a damaged or partly written file)",
                            r->path, what);
    }
    return 0;
}

/* an array of exactly `want` elements (want = (size_t)-1: any count up to `limit`) */
static void *get_array(reader *r, size_t want, size_t limit, size_t elem, size_t *count, const char *what) {
    uint64_t n;
    if (get(r, &n, sizeof n, what) != 0) return NULL;
    if ((want != (size_t)-1 && n != want) || (want == (size_t)-1 && n > limit)) {
        r->ok = 0;
        if (want != (size_t)-1)
            bs_error_set(r->err, "checkpoint %s: %s holds %llu values, this run has %zu", r->path, what,
                         (unsigned long long)n, want);
        else
            bs_error_set(r->err, "checkpoint %s: %s holds %llu values, at most %zu expected", r->path, what,
                         (unsigned long long)n, limit);
        return NULL;
    }
    if (count) *count = (size_t)n;
    void *p = ts_xcalloc((size_t)n + 1, elem);
    if (get(r, p, (size_t)n * elem, what) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int ts_checkpoint_read(const char *path, ts_checkpoint *c, int n_order, size_t n_params, size_t n_snap,
                       int has_ema, bs_error *err) {
    memset(c, 0, sizeof *c);
    reader r = {fopen(path, "rb"), path, err, 1};
    if (!r.f) return bs_error_set(err, "checkpoint %s: cannot open: %s", path, strerror(errno));
    char magic[8];
    if (get(&r, magic, sizeof magic, "header") == 0 && memcmp(magic, k_magic, sizeof magic) != 0) {
        r.ok = 0;
        bs_error_set(err, "checkpoint %s: not a birdsong checkpoint (or another version)", path);
    }
    size_t n;
    c->settings = get_array(&r, (size_t)-1, 1 << 20, 1, &n, "settings");
    if (c->settings) c->settings[n] = 0;
    int32_t ints[5];
    int64_t longs[3];
    double dbl[2];
    uint64_t rng[2];
    get(&r, ints, sizeof ints, "counters");
    get(&r, longs, sizeof longs, "counters");
    get(&r, dbl, sizeof dbl, "losses");
    get(&r, rng, sizeof rng, "random states");
    if (r.ok) {
        c->epoch = ints[0];
        c->batch = ints[1];
        c->since_best = ints[2];
        c->best_epoch = ints[3];
        c->n_hist = ints[4];
        c->step = longs[0];
        c->seen = longs[1];
        c->adam_t = longs[2];
        c->loss_sum = dbl[0];
        c->best_val_loss = dbl[1];
        c->order_rng = rng[0];
        c->aug_rng = rng[1];
        if (c->epoch < 0 || c->batch < 0 || c->n_hist < 0 || c->n_hist > c->epoch + 1 || c->seen < 0 ||
            c->adam_t < 0) {
            r.ok = 0;
            bs_error_set(err, "checkpoint %s: inconsistent counters (epoch %d, batch %d, %d epochs logged)", path,
                         c->epoch, c->batch, c->n_hist);
        }
    }
    if (r.ok) c->hist = get_array(&r, (size_t)c->n_hist, 0, sizeof *c->hist, NULL, "epoch history");
    c->n_order = n_order;
    c->n_params = n_params;
    c->n_snap = n_snap;
    if (r.ok) c->order = get_array(&r, (size_t)n_order, 0, sizeof *c->order, NULL, "epoch order");
    if (r.ok) c->adam_m = get_array(&r, n_params, 0, sizeof(float), NULL, "Adam first moments");
    if (r.ok) c->adam_v = get_array(&r, n_params, 0, sizeof(float), NULL, "Adam second moments");
    if (r.ok) c->weights = get_array(&r, n_snap, 0, sizeof(float), NULL, "weights");
    if (r.ok) c->best = get_array(&r, n_snap, 0, sizeof(float), NULL, "best weights");
    if (r.ok) {
        c->ema = get_array(&r, has_ema ? n_snap : 0, 0, sizeof(float), NULL, "--ema average");
        if (!has_ema) {
            free(c->ema);
            c->ema = NULL;
        }
    }
    char end[8];
    if (get(&r, end, sizeof end, "end mark") == 0 && memcmp(end, k_end, sizeof end) != 0) {
        r.ok = 0;
        bs_error_set(err, "checkpoint %s: no end mark where expected (a damaged file)", path);
    }
    fclose(r.f);
    if (!r.ok) {
        ts_checkpoint_free(c);
        return -1;
    }
    return 0;
}

void ts_checkpoint_free(ts_checkpoint *c) {
    free(c->settings);
    free(c->hist);
    free(c->order);
    free(c->adam_m);
    free(c->adam_v);
    free(c->weights);
    free(c->best);
    free(c->ema);
    memset(c, 0, sizeof *c);
}

/* the value of `key` in "key=value\n" lines, copied into out ("(none)" when absent) */
static void value_of(const char *lines, const char *key, size_t klen, char *out, size_t n) {
    for (const char *p = lines; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vl = len - klen - 1 < n - 1 ? len - klen - 1 : n - 1;
            memcpy(out, p + klen + 1, vl);
            out[vl] = 0;
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
    snprintf(out, n, "(none)");
}

int ts_checkpoint_compare(const char *path, const char *have, const char *want, bs_error *err) {
    /* every key of either side, in the order of this run's lines, then the checkpoint's */
    const char *sides[2] = {want, have};
    for (int s = 0; s < 2; s++)
        for (const char *p = sides[s]; p && *p;) {
            const char *eq = strchr(p, '='), *eol = strchr(p, '\n');
            if (!eq || (eol && eq > eol)) break;
            char key[96], a[160], b[160];
            size_t kl = (size_t)(eq - p) < sizeof key - 1 ? (size_t)(eq - p) : sizeof key - 1;
            memcpy(key, p, kl);
            key[kl] = 0;
            value_of(have, key, kl, a, sizeof a);
            value_of(want, key, kl, b, sizeof b);
            if (strcmp(a, b) != 0)
                return bs_error_set(err, "checkpoint %s was made with other settings or data: %s is %s there, %s in "
                                         "this run",
                                    path, key, a, b);
            p = eol ? eol + 1 : NULL;
        }
    return 0;
}
