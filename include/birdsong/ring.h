/* birdsong: single-producer single-consumer lock-free sample ring (C11 atomics).
 *
 * The producer (an audio callback or a file reader) writes float samples; the consumer
 * (the worker) reads them. Neither side blocks, allocates or locks. When the ring is full
 * the producer's excess samples are dropped and counted.
 *
 * Marks: the ring records where the stream is discontinuous. A mark carries the ring
 * position of the sample it starts at, the capture time of that sample (ns since the Unix
 * epoch, UTC) and the sample rate. The first write, the first write after a drop and the
 * first write after bs_ring_discontinuity() each push a mark. bs_ring_read() never returns
 * samples from both sides of a mark, so the consumer can restart its window and its clock
 * at each one: the time of the sample at position p is mark.t_ns + (p - mark.pos) / rate.
 */
#ifndef BIRDSONG_RING_H
#define BIRDSONG_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct bs_ring bs_ring;

typedef struct bs_ring_mark {
    uint64_t pos;     /* ring position (samples written before it) of the first sample */
    int64_t t_ns;     /* capture time of that sample, ns since 1970-01-01 UTC */
    double rate;      /* sample rate from this mark on, Hz */
} bs_ring_mark;

/* Allocates a ring holding exactly min_samples.
 * Returns NULL when min_samples is 0 or too large or memory is short. */
bs_ring *bs_ring_create(size_t min_samples);
void bs_ring_free(bs_ring *ring);
size_t bs_ring_capacity(const bs_ring *ring);

/* Producer side. Copies as many of the n samples as fit; the rest are dropped and counted.
 * t_ns is the capture time of data[0], rate the current sample rate; both are used only
 * when a mark is due. Returns the number of samples written. Wait-free. */
size_t bs_ring_write(bs_ring *ring, const float *data, size_t n, int64_t t_ns, double rate);
/* Producer side: the next write starts a new mark (device reopened, file restarted). */
void bs_ring_discontinuity(bs_ring *ring);

/* Consumer side. Reads up to max samples that lie before the next mark. When the samples
 * returned start at a mark, *mark is filled and *at_mark set to 1, else *at_mark = 0.
 * Returns the number of samples read (0 when empty). Wait-free. */
size_t bs_ring_read(bs_ring *ring, float *out, size_t max, bs_ring_mark *mark, int *at_mark);
/* Samples readable now (either side). */
size_t bs_ring_available(const bs_ring *ring);

/* Counters, readable from any thread. */
uint64_t bs_ring_written(const bs_ring *ring);  /* samples accepted so far */
uint64_t bs_ring_dropped(const bs_ring *ring);  /* samples dropped because the ring was full */
uint64_t bs_ring_overruns(const bs_ring *ring); /* writes that dropped at least one sample */
/* writes refused because the mark queue was full (their samples are counted as dropped):
 * a sample is never stored without the mark that times it */
uint64_t bs_ring_marks_lost(const bs_ring *ring);

#endif
