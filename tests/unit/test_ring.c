/* Unit tests of the SPSC sample ring (core/ring.c). */
#include <criterion/criterion.h>
#include <pthread.h>

#include "birdsong/ring.h"

Test(ring, capacity_is_exact) {
    bs_ring *r = bs_ring_create(441000);
    cr_assert_not_null(r);
    cr_assert_eq(bs_ring_capacity(r), 441000u);
    bs_ring_free(r);
    cr_assert_null(bs_ring_create(0));
}

Test(ring, first_read_starts_at_a_mark_with_time_and_rate) {
    bs_ring *r = bs_ring_create(13);
    float in[5] = {1, 2, 3, 4, 5}, out[16];
    cr_assert_eq(bs_ring_write(r, in, 5, 1000, 22050.0), 5u);
    bs_ring_mark m;
    int at;
    cr_assert_eq(bs_ring_read(r, out, 16, &m, &at), 5u);
    cr_assert_eq(at, 1);
    cr_assert_eq(m.pos, 0u);
    cr_assert_eq(m.t_ns, 1000);
    cr_assert_float_eq(m.rate, 22050.0, 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(out[i], in[i]);
    cr_assert_eq(bs_ring_write(r, in, 2, 2000, 22050.0), 2u);
    cr_assert_eq(bs_ring_read(r, out, 16, &m, &at), 2u);
    cr_assert_eq(at, 0, "a continuous write must not start a new mark");
    bs_ring_free(r);
}

Test(ring, full_ring_drops_and_counts_then_marks_the_gap) {
    bs_ring *r = bs_ring_create(8);
    float in[12], out[16];
    for (int i = 0; i < 12; i++) in[i] = (float)i;
    cr_assert_eq(bs_ring_write(r, in, 12, 0, 8000.0), 8u);
    cr_assert_eq(bs_ring_dropped(r), 4u);
    cr_assert_eq(bs_ring_overruns(r), 1u);
    cr_assert_eq(bs_ring_written(r), 8u);
    bs_ring_mark m;
    int at;
    cr_assert_eq(bs_ring_read(r, out, 3, &m, &at), 3u);
    cr_assert_eq(at, 1);
    /* After the drop the next accepted sample starts a new mark at position 8. */
    cr_assert_eq(bs_ring_write(r, in, 3, 5000, 8000.0), 3u);
    cr_assert_eq(bs_ring_read(r, out, 16, &m, &at), 5u, "a read must stop at the next mark");
    cr_assert_eq(at, 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(out[i], (float)(i + 3));
    cr_assert_eq(bs_ring_read(r, out, 16, &m, &at), 3u);
    cr_assert_eq(at, 1);
    cr_assert_eq(m.pos, 8u);
    cr_assert_eq(m.t_ns, 5000);
    bs_ring_free(r);
}

Test(ring, discontinuity_starts_a_mark_and_wraps_correctly) {
    bs_ring *r = bs_ring_create(8);
    float in[6] = {10, 11, 12, 13, 14, 15}, out[8];
    bs_ring_mark m;
    int at;
    bs_ring_write(r, in, 6, 0, 16000.0);
    cr_assert_eq(bs_ring_read(r, out, 6, &m, &at), 6u);
    bs_ring_discontinuity(r);
    cr_assert_eq(bs_ring_write(r, in, 6, 77, 48000.0), 6u); /* wraps around the end */
    cr_assert_eq(bs_ring_available(r), 6u);
    cr_assert_eq(bs_ring_read(r, out, 8, &m, &at), 6u);
    cr_assert_eq(at, 1);
    cr_assert_eq(m.pos, 6u);
    cr_assert_float_eq(m.rate, 48000.0, 0);
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], in[i]);
    bs_ring_free(r);
}

/* Two threads: the producer writes a counting sequence in odd-sized chunks, the consumer
 * checks that what it reads is the sequence with exactly the dropped samples missing. */
struct stress {
    bs_ring *r;
    uint64_t total;
};

static void *producer(void *arg) {
    struct stress *s = arg;
    float chunk[97];
    uint64_t v = 0;
    while (v < s->total) {
        size_t n = 0;
        for (; n < 97 && v < s->total; n++) chunk[n] = (float)v++; /* exact: total < 2^24 */
        size_t w = bs_ring_write(s->r, chunk, n, (int64_t)v, 1.0);
        (void)w;
    }
    return NULL;
}

Test(ring, concurrent_producer_and_consumer_see_an_exact_sequence) {
    struct stress s = {.r = bs_ring_create(1000), .total = 2000000};
    pthread_t t;
    pthread_create(&t, NULL, producer, &s);
    float out[61];
    uint64_t got = 0, expect = 0, gap_samples = 0;
    int done = 0;
    while (!done) {
        bs_ring_mark m;
        int at;
        size_t n = bs_ring_read(s.r, out, 61, &m, &at);
        if (at && got > 0) {
            /* a gap: the producer dropped samples; its value resumes at the mark */
            uint64_t resume = (uint64_t)out[0];
            cr_assert(resume > expect, "a gap must move forward");
            gap_samples += resume - expect;
            expect = resume;
        }
        for (size_t i = 0; i < n; i++, got++, expect++)
            cr_assert_eq(out[i], (float)expect, "sample %lu", (unsigned long)got);
        if (n == 0 && got + bs_ring_dropped(s.r) == s.total) done = 1;
    }
    pthread_join(t, NULL);
    uint64_t dropped = bs_ring_dropped(s.r);
    cr_assert_eq(got + dropped, s.total);
    /* Every drop before the last accepted sample showed up as a marked gap of exactly its
     * size; the drops after it (no later write to carry a mark) are the trailing ones. */
    uint64_t trailing = s.total - expect;
    cr_assert_eq(gap_samples + trailing, dropped, "gaps %lu + trailing %lu != dropped %lu",
                 (unsigned long)gap_samples, (unsigned long)trailing, (unsigned long)dropped);
    bs_ring_free(s.r);
}
