/* Data-parallel replicas with a fixed-order gradient reduction. See replicas.h. */
#include "trainer/replicas.h"
#include "trainer/dist.h"
#include "trainer/xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TS_MAX_REPLICAS 64

typedef struct replica {
    bs_net *net;
    float *params, *grads;      /* bs_net_params / bs_net_grads of net */
    float **buf;                /* [n_buf] the batchnorm buffers (running mean, var) */
    int off, b;                 /* this step's shard: samples [off, off + b) */
    float loss;
} replica;

struct ts_replicas {
    int n;                      /* replicas (threads: n - 1 workers + the caller) */
    int first;                  /* global index of replica 0 (MPI rank x replicas per rank) */
    replica rep[TS_MAX_REPLICAS];
    size_t n_params;
    int n_buf;
    size_t *buf_size;           /* [n_buf] floats in each buffer */
    /* the step being run */
    const float *x, *y, *pos_weight;
    int batch, active;          /* replicas that hold a shard this step */
    size_t per_x, per_y;
    /* the pool: workers wait for a new generation, run job(i), count down `pending` */
    pthread_t th[TS_MAX_REPLICAS];
    int started;
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    unsigned long gen;
    int pending, quit, pool_init;
    void (*job)(ts_replicas *, int);
    bs_adam *adam;              /* ts_replicas_adam_step's */
};

typedef struct worker_arg {
    ts_replicas *r;
    int i;
} worker_arg;

static void *worker(void *arg) {
    ts_replicas *r = ((worker_arg *)arg)->r;
    int i = ((worker_arg *)arg)->i;
    free(arg);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        while (r->gen == seen && !r->quit) pthread_cond_wait(&r->go, &r->lock);
        if (r->quit) {
            pthread_mutex_unlock(&r->lock);
            return NULL;
        }
        seen = r->gen;
        void (*job)(ts_replicas *, int) = r->job;
        pthread_mutex_unlock(&r->lock);
        job(r, i);
        pthread_mutex_lock(&r->lock);
        if (--r->pending == 0) pthread_cond_signal(&r->done);
        pthread_mutex_unlock(&r->lock);
    }
}

/* job(r, i) for every replica i, i = 0 on the calling thread; returns when all are done. */
static void run_all(ts_replicas *r, void (*job)(ts_replicas *, int)) {
    if (r->n > 1) {
        pthread_mutex_lock(&r->lock);
        r->job = job;
        r->pending = r->n - 1;
        r->gen++;
        pthread_cond_broadcast(&r->go);
        pthread_mutex_unlock(&r->lock);
    }
    job(r, 0);
    if (r->n > 1) {
        pthread_mutex_lock(&r->lock);
        while (r->pending > 0) pthread_cond_wait(&r->done, &r->lock);
        pthread_mutex_unlock(&r->lock);
    }
}

/* the slice [lo, hi) of n parameters that thread i of the pool handles */
static void slice(const ts_replicas *r, int i, size_t *lo, size_t *hi) {
    *lo = r->n_params * (size_t)i / (size_t)r->n;
    *hi = r->n_params * (size_t)(i + 1) / (size_t)r->n;
}

/* phase 0: thread i copies its slice of replica 0's weights into every other replica that
 * holds a shard (the copy split evenly, not all on the replicas' threads while replica 0
 * already computes; replica 0 only reads its parameters meanwhile) */
static void job_copy(ts_replicas *r, int i) {
    size_t lo, hi;
    slice(r, i, &lo, &hi);
    for (int k = 1; k < r->active; k++)
        memcpy(r->rep[k].params + lo, r->rep[0].params + lo, (hi - lo) * sizeof(float));
}

/* phase 1: forward, loss, backward of replica i on its shard */
static void job_shard(ts_replicas *r, int i) {
    if (i >= r->active) return;
    replica *p = &r->rep[i];
    if (i > 0) bs_net_params_changed(p->net); /* job_copy wrote them */
    bs_net_forward(p->net, r->x + (size_t)p->off * r->per_x, p->b, 1);
    p->loss = bs_net_loss(p->net, r->y + (size_t)p->off * r->per_y, r->pos_weight, p->b);
    bs_net_backward(p->net, p->b);
}

/* phase 2: thread i reduces its slice of the parameters over the replicas, in replica order */
static void job_reduce(ts_replicas *r, int i) {
    size_t lo, hi;
    slice(r, i, &lo, &hi);
    float *g0 = r->rep[0].grads;
    float w0 = (float)r->rep[0].b / (float)r->batch;
    for (size_t j = lo; j < hi; j++) g0[j] *= w0;
    for (int k = 1; k < r->active; k++) {
        const float *g = r->rep[k].grads;
        float wk = (float)r->rep[k].b / (float)r->batch;
        for (size_t j = lo; j < hi; j++) g0[j] += wk * g[j];
    }
}

/* Adam on thread i's slice of replica 0's parameters (elementwise: same bits as one call) */
static void job_adam(ts_replicas *r, int i) {
    size_t lo, hi;
    slice(r, i, &lo, &hi);
    bs_adam_update(r->adam, r->rep[0].params, r->rep[0].grads, lo, hi);
}

ts_replicas *ts_replicas_create(bs_net *net, int n, bs_error *err) {
    if (n < 1 || n > TS_MAX_REPLICAS) {
        bs_error_set(err, "%d replicas: expected 1 to %d", n, TS_MAX_REPLICAS);
        return NULL;
    }
    if (!net || bs_net_inference_only(net)) {
        bs_error_set(err, "replicas need a training network");
        return NULL;
    }
    ts_replicas *r = ts_xcalloc(1, sizeof *r);
    r->n = n;
    r->n_params = bs_net_n_params(net);
    int nt = bs_net_n_tensors(net);
    bs_tensor_info t;
    for (int k = 0; k < nt; k++)
        if (bs_net_tensor(net, k, &t) == 0 && !t.grad) r->n_buf++;
    r->buf_size = ts_xcalloc((size_t)r->n_buf, sizeof(size_t));
    int max_b = bs_net_max_batch(net), shard = (max_b + n - 1) / n;
    if (shard < 2) shard = 2;
    for (int i = 0; i < n; i++) {
        replica *p = &r->rep[i];
        p->net = i == 0 ? net
                        : bs_net_create(bs_net_layers(net), bs_net_n_layers(net), bs_net_in_h(net),
                                        bs_net_in_w(net), bs_net_n_outputs(net), shard, 1, err);
        if (!p->net) {
            r->n = i;
            ts_replicas_free(r);
            return NULL;
        }
        p->params = bs_net_params(p->net);
        p->grads = bs_net_grads(p->net);
        p->buf = ts_xcalloc((size_t)r->n_buf, sizeof(float *));
        for (int k = 0, m = 0; k < nt; k++)
            if (bs_net_tensor(p->net, k, &t) == 0 && !t.grad) {
                p->buf[m] = t.data;
                r->buf_size[m++] = t.size;
            }
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->go, NULL);
    pthread_cond_init(&r->done, NULL);
    r->pool_init = 1;
    for (int i = 1; i < n; i++) {
        worker_arg *a = ts_xmalloc(sizeof *a);
        a->r = r;
        a->i = i;
        if (pthread_create(&r->th[i], NULL, worker, a) != 0) {
            free(a);
            bs_error_set(err, "could not start replica thread %d of %d", i + 1, n);
            r->n = n; /* free every net */
            ts_replicas_free(r);
            return NULL;
        }
        r->started = i;
    }
    return r;
}

void ts_replicas_free(ts_replicas *r) {
    if (!r) return;
    if (r->started > 0) {
        pthread_mutex_lock(&r->lock);
        r->quit = 1;
        pthread_cond_broadcast(&r->go);
        pthread_mutex_unlock(&r->lock);
        for (int i = 1; i <= r->started; i++) pthread_join(r->th[i], NULL);
    }
    if (r->pool_init) {
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->go);
        pthread_cond_destroy(&r->done);
    }
    for (int i = 0; i < r->n; i++) {
        if (i > 0) bs_net_free(r->rep[i].net);
        free(r->rep[i].buf);
    }
    free(r->buf_size);
    free(r);
}

int ts_replicas_n(const ts_replicas *r) { return r->n; }

void ts_replicas_set_first_index(ts_replicas *r, int first) { r->first = first; }

void ts_replicas_set_dropout_seed(ts_replicas *r, uint64_t seed) {
    for (int i = 0; i < r->n; i++)
        bs_net_set_dropout_seed(r->rep[i].net, seed + (uint64_t)(r->first + i) * 0x9E3779B97F4A7C15ull);
}

float ts_replicas_step(ts_replicas *r, const float *x, const float *y, const float *pos_weight, int batch) {
    replica *z = &r->rep[0];
    if (r->n == 1) { /* the plain step */
        bs_net_forward(z->net, x, batch, 1);
        float loss = bs_net_loss(z->net, y, pos_weight, batch);
        bs_net_backward(z->net, batch);
        return loss;
    }
    r->x = x;
    r->y = y;
    r->pos_weight = pos_weight;
    r->batch = batch;
    r->per_x = (size_t)bs_net_in_h(z->net) * bs_net_in_w(z->net);
    r->per_y = (size_t)bs_net_n_outputs(z->net);
    r->active = batch / 2 < r->n ? batch / 2 : r->n;
    if (r->active < 1) r->active = 1;
    for (int i = 0, off = 0; i < r->n; i++) {
        int b = i < r->active ? batch / r->active + (i < batch % r->active) : 0;
        r->rep[i].off = off;
        r->rep[i].b = b;
        off += b;
    }
    /* the running statistics (small) before any forward updates replica 0's in place */
    for (int i = 1; i < r->active; i++)
        for (int k = 0; k < r->n_buf; k++) memcpy(r->rep[i].buf[k], z->buf[k], r->buf_size[k] * sizeof(float));
    if (r->active > 1) run_all(r, job_copy);
    run_all(r, job_shard);
    run_all(r, job_reduce);
    /* running statistics: the shard-weighted mean, replica order; and the loss likewise */
    double loss = 0.0;
    for (int k = 0; k < r->active; k++) loss += (double)r->rep[k].loss * r->rep[k].b;
    for (int m = 0; m < r->n_buf; m++) {
        float *d = z->buf[m];
        float w0 = (float)z->b / (float)batch;
        for (size_t j = 0; j < r->buf_size[m]; j++) d[j] *= w0;
        for (int k = 1; k < r->active; k++) {
            const float *s = r->rep[k].buf[m];
            float wk = (float)r->rep[k].b / (float)batch;
            for (size_t j = 0; j < r->buf_size[m]; j++) d[j] += wk * s[j];
        }
    }
    return (float)(loss / batch);
}

float ts_replicas_step_all(ts_replicas *r, const float *x, const float *y, const float *pos_weight, int batch) {
    int K = ts_dist_size();
    if (K < 2) return ts_replicas_step(r, x, y, pos_weight, batch);
    int rank = ts_dist_rank(), active = batch / 2 < K ? batch / 2 : K, off = 0, mine = 0;
    for (int k = 0; k < K; k++) {
        int bk = k < active ? batch / active + (k < batch % active) : 0;
        if (k == rank) mine = bk;
        if (k < rank) off += bk;
    }
    replica *z = &r->rep[0];
    size_t per_x = (size_t)bs_net_in_h(z->net) * bs_net_in_w(z->net), per_y = (size_t)bs_net_n_outputs(z->net);
    float wt = (float)mine / (float)batch;
    double loss = 0.0;
    if (mine > 0) {
        loss = (double)ts_replicas_step(r, x + (size_t)off * per_x, y + (size_t)off * per_y, pos_weight, mine) * mine;
        for (size_t j = 0; j < r->n_params; j++) z->grads[j] *= wt;
        for (int k = 0; k < r->n_buf; k++)
            for (size_t j = 0; j < r->buf_size[k]; j++) z->buf[k][j] *= wt;
    } else { /* a batch too small for every rank: this one adds nothing */
        memset(z->grads, 0, r->n_params * sizeof(float));
        for (int k = 0; k < r->n_buf; k++) memset(z->buf[k], 0, r->buf_size[k] * sizeof(float));
    }
    ts_dist_sum_float(z->grads, r->n_params);
    for (int k = 0; k < r->n_buf; k++) ts_dist_sum_float(z->buf[k], r->buf_size[k]);
    ts_dist_sum_double(&loss, 1);
    return (float)(loss / batch);
}

float ts_replicas_adam_step(ts_replicas *r, bs_adam *adam) {
    replica *z = &r->rep[0];
    z->params = bs_net_params(z->net); /* (tells the net its parameters change) */
    float norm = bs_adam_begin(adam, z->grads);
    if (r->n == 1) {
        bs_adam_update(adam, z->params, z->grads, 0, r->n_params);
        return norm;
    }
    r->adam = adam;
    run_all(r, job_adam);
    return norm;
}
