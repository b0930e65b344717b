/* SPSC sample ring: see include/birdsong/ring.h.
 *
 * head and tail are free-running 64-bit sample counters (they never wrap in practice);
 * the buffer index is counter % capacity (one division per call, not per sample; the
 * capacity is exact so that a 12 s ring at 48 kHz costs 2.3 MB, not the 4 MB of a power of 2). The producer owns head, the consumer owns tail;
 * each publishes its counter with a release store and reads the other's with an acquire
 * load. Marks live in a second small SPSC queue and are published before the samples they
 * describe, so a consumer that sees a sample also sees its mark. */
#include "birdsong/ring.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RING_MARKS 64 /* power of two */

struct bs_ring {
    float *buf;
    size_t cap;
    _Alignas(64) _Atomic uint64_t head;   /* producer */
    _Atomic uint64_t dropped, overruns, marks_lost;
    _Atomic int mark_due;
    _Alignas(64) _Atomic uint64_t tail;   /* consumer */
    _Alignas(64) _Atomic uint64_t mhead;  /* producer */
    _Alignas(64) _Atomic uint64_t mtail;  /* consumer */
    bs_ring_mark marks[RING_MARKS];
};

bs_ring *bs_ring_create(size_t min_samples) {
    if (min_samples == 0 || min_samples > ((size_t)1 << 30)) return NULL;
    size_t cap = min_samples;
    bs_ring *r = aligned_alloc(64, (sizeof *r + 63) / 64 * 64);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->buf = calloc(cap, sizeof(float));
    if (!r->buf) {
        free(r);
        return NULL;
    }
    r->cap = cap;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->mhead, 0);
    atomic_init(&r->mtail, 0);
    atomic_init(&r->dropped, 0);
    atomic_init(&r->overruns, 0);
    atomic_init(&r->marks_lost, 0);
    atomic_init(&r->mark_due, 1); /* the first write starts the first mark */
    return r;
}

void bs_ring_free(bs_ring *ring) {
    if (!ring) return;
    free(ring->buf);
    free(ring);
}

size_t bs_ring_capacity(const bs_ring *ring) { return ring->cap; }

/* Returns 0 when the mark queue is full: the caller then drops the samples rather than
 * write them without their mark (a gap without a mark would put wrong times on every
 * later window). */
static int push_mark(bs_ring *r, uint64_t pos, int64_t t_ns, double rate) {
    uint64_t mh = atomic_load_explicit(&r->mhead, memory_order_relaxed);
    uint64_t mt = atomic_load_explicit(&r->mtail, memory_order_acquire);
    if (mh - mt >= RING_MARKS) {
        atomic_fetch_add_explicit(&r->marks_lost, 1, memory_order_relaxed);
        return 0;
    }
    r->marks[mh & (RING_MARKS - 1)] = (bs_ring_mark){.pos = pos, .t_ns = t_ns, .rate = rate};
    atomic_store_explicit(&r->mhead, mh + 1, memory_order_release);
    return 1;
}

size_t bs_ring_write(bs_ring *r, const float *data, size_t n, int64_t t_ns, double rate) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t space = r->cap - (size_t)(head - tail);
    size_t k = n < space ? n : space;
    if (k > 0 && atomic_load_explicit(&r->mark_due, memory_order_relaxed)) {
        if (push_mark(r, head, t_ns, rate))
            atomic_store_explicit(&r->mark_due, 0, memory_order_relaxed);
        else
            k = 0; /* no room for the mark: drop, and try the mark again next write */
    }
    if (k > 0) {
        size_t at = (size_t)(head % r->cap);
        size_t first = r->cap - at < k ? r->cap - at : k;
        memcpy(r->buf + at, data, first * sizeof(float));
        if (k > first) memcpy(r->buf, data + first, (k - first) * sizeof(float));
        atomic_store_explicit(&r->head, head + k, memory_order_release);
    }
    if (k < n) {
        atomic_fetch_add_explicit(&r->dropped, n - k, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->overruns, 1, memory_order_relaxed);
        atomic_store_explicit(&r->mark_due, 1, memory_order_relaxed);
    }
    return k;
}

void bs_ring_discontinuity(bs_ring *r) { atomic_store_explicit(&r->mark_due, 1, memory_order_relaxed); }

size_t bs_ring_read(bs_ring *r, float *out, size_t max, bs_ring_mark *mark, int *at_mark) {
    *at_mark = 0;
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t avail = (size_t)(head - tail);
    if (avail == 0 || max == 0) return 0;
    uint64_t mt = atomic_load_explicit(&r->mtail, memory_order_relaxed);
    uint64_t mh = atomic_load_explicit(&r->mhead, memory_order_acquire);
    /* Marks at or before tail (the one starting here) are consumed now. */
    while (mt < mh && r->marks[mt & (RING_MARKS - 1)].pos <= tail) {
        if (r->marks[mt & (RING_MARKS - 1)].pos == tail) {
            *mark = r->marks[mt & (RING_MARKS - 1)];
            *at_mark = 1;
        }
        mt++;
        atomic_store_explicit(&r->mtail, mt, memory_order_release);
    }
    if (mt < mh) {
        uint64_t next = r->marks[mt & (RING_MARKS - 1)].pos;
        if (next - tail < avail) avail = (size_t)(next - tail);
    }
    size_t k = max < avail ? max : avail;
    size_t at = (size_t)(tail % r->cap);
    size_t first = r->cap - at < k ? r->cap - at : k;
    memcpy(out, r->buf + at, first * sizeof(float));
    if (k > first) memcpy(out + first, r->buf, (k - first) * sizeof(float));
    atomic_store_explicit(&r->tail, tail + k, memory_order_release);
    return k;
}

size_t bs_ring_available(const bs_ring *r) {
    uint64_t head = atomic_load_explicit(&((bs_ring *)r)->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&((bs_ring *)r)->tail, memory_order_acquire);
    return (size_t)(head - tail);
}

uint64_t bs_ring_written(const bs_ring *r) { return atomic_load(&((bs_ring *)r)->head); }
uint64_t bs_ring_dropped(const bs_ring *r) { return atomic_load(&((bs_ring *)r)->dropped); }
uint64_t bs_ring_overruns(const bs_ring *r) { return atomic_load(&((bs_ring *)r)->overruns); }
uint64_t bs_ring_marks_lost(const bs_ring *r) { return atomic_load(&((bs_ring *)r)->marks_lost); }
