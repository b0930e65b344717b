/* The one pseudo-random generator of birdsong: splitmix64 (Steele, Lea, Flood 2014), small,
 * well mixed, the same numbers on every platform for a seed. Used by weight initialisation,
 * dropout, the features' seeded noise padding and the trainer's splits and shuffles. */
#ifndef BIRDSONG_RNG_H
#define BIRDSONG_RNG_H

#include <stdint.h>

/* The next 64 random bits; advances *state. */
static inline uint64_t bs_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform float in [0, 1) with 24 random bits. */
static inline float bs_rng_uniform(uint64_t *state) { return (float)(bs_rng_next(state) >> 40) * 0x1p-24f; }

#endif
