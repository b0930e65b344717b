/* Synthetic non-bird sound for training negatives (`birdsong train --synthetic-negatives N`).
 *
 * A station hears much that is not a bird: frog and insect choruses (a tone or a pulse train
 * that lasts through the whole second), wind and water (coloured noise with a slow swell),
 * rain and clicks (short broadband impulses), engines and mains hum (a low harmonic series).
 * The labelled data holds few of these, and a model that never heard them can fire on them.
 * These generators make audio of each kind from a seeded generator; the trainer turns it into
 * log-mel windows with the model's own feature settings and trains on them with all-zero
 * targets, like background recordings. Every parameter is drawn at random, so the network
 * learns the kind of sound, not one instance of it. */
#ifndef BIRDSONG_TRAINER_SYNTH_H
#define BIRDSONG_TRAINER_SYNTH_H

#include "trainer/split.h"

typedef enum ts_synth_kind {
    TS_SYNTH_CHORUS = 0, /* 1-3 sustained tones or pulse trains, 300 Hz-9 kHz, 1-4 harmonics */
    TS_SYNTH_NOISE,      /* low-passed noise (50 Hz-6 kHz corner), slow swell: wind, water */
    TS_SYNTH_RAIN,       /* Poisson impulses, 5-200 per second, decaying noise bursts */
    TS_SYNTH_HUM,        /* harmonic series on 25-250 Hz up to 4 kHz, slow drift: engines, mains */
    TS_SYNTH_KINDS
} ts_synth_kind;

const char *ts_synth_kind_name(int kind);

/* Fills x[0..n) with one synthetic sound at sample rate sr, of the given kind, or of a kind
 * drawn from rng when kind < 0; the sound's peak is drawn log-uniformly in [0.003, 0.5], then
 * a faint white floor (50-70 dB below it) is added. Returns the kind made, or -1 (nothing
 * written) when n <= 0 or sr <= 0. Deterministic for a given rng state. */
int ts_synth_negative(ts_rng *rng, int kind, float *x, int n, int sr);

#endif
