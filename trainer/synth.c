/* Synthetic non-bird sound for training negatives; see synth.h. */
#include "trainer/synth.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const char *const kind_names[TS_SYNTH_KINDS] = {"chorus", "noise", "rain", "hum"};

const char *ts_synth_kind_name(int kind) {
    return kind >= 0 && kind < TS_SYNTH_KINDS ? kind_names[kind] : "unknown";
}

static double uni(ts_rng *r, double lo, double hi) { return lo + (hi - lo) * ts_rng_uniform(r); }
static double loguni(ts_rng *r, double lo, double hi) { return exp(uni(r, log(lo), log(hi))); }
static double white(ts_rng *r) { return 2.0 * ts_rng_uniform(r) - 1.0; }

/* A fixed pseudo-random value in [0, 1) per pulse number (lowbias32 hash). */
static double pulse_hash(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x * (1.0 / 4294967296.0);
}

/* Frogs, toads, crickets, cicadas: each source lasts through the whole window; a pulsed one
 * is a train of raised-sine pulses (3-80 per second, duty 0.2-0.8, levels varying from pulse
 * to pulse), a steady one a tone; 40 % of them are a band of noise around the pitch instead of
 * a tone; the pitch drifts by up to 2 % and wavers by up to 1 %. */
static void chorus(ts_rng *r, float *x, int n, int sr) {
    int n_src = 1 + (int)ts_rng_below(r, 3);
    double f_hi = fmin(9000.0, 0.45 * sr);
    for (int s = 0; s < n_src; s++) {
        double f0 = loguni(r, 300.0, f_hi), amp = loguni(r, 0.3, 1.0), tilt = uni(r, 0.5, 2.0);
        int harmonics = 1 + (int)ts_rng_below(r, 4);
        int pulsed = ts_rng_uniform(r) < 0.75;
        double rate = loguni(r, 3.0, 80.0), duty = uni(r, 0.2, 0.8), p0 = ts_rng_uniform(r);
        double pulse_spread = uni(r, 0.0, 0.7); /* pulse levels vary by up to this share */
        /* 40 % of sources are a band of noise around each harmonic (50-1500 Hz wide), not a tone */
        double bw = ts_rng_uniform(r) < 0.4 ? loguni(r, 50.0, 1500.0) : 0.0;
        double na = exp(-2.0 * M_PI * bw / sr), nsd = sqrt((1.0 - na) / (1.0 + na) / 3.0), nstate = 0.0;
        double drift = uni(r, -0.02, 0.02), vib_rate = uni(r, 0.0, 8.0), vib_depth = uni(r, 0.0, 0.01);
        double vib_phase = uni(r, 0.0, 2.0 * M_PI), phase = uni(r, 0.0, 2.0 * M_PI);
        for (int i = 0; i < n; i++) {
            double t = (double)i / sr;
            double f = f0 * (1.0 + drift * ((double)i / n - 0.5) + vib_depth * sin(2.0 * M_PI * vib_rate * t + vib_phase));
            phase += 2.0 * M_PI * f / sr;
            double env = 1.0;
            if (pulsed) {
                double q = p0 + rate * t, p = q - floor(q);
                env = p < duty ? sin(M_PI * p / duty) : 0.0;
                env *= env * (1.0 - pulse_spread * pulse_hash((uint32_t)(uint64_t)q));
            }
            if (bw > 0.0) nstate = (1.0 - na) * white(r) + na * nstate;
            if (env == 0.0) continue;
            double v = 0.0;
            for (int h = 1; h <= harmonics && h * f < 0.49 * sr; h++) v += sin(h * phase) / pow(h, tilt);
            if (bw > 0.0) v *= nstate / nsd;
            x[i] += (float)(amp * env * v);
        }
    }
}

/* Wind, streams, distant traffic: white noise through one or two one-pole low-passes
 * (corner 50 Hz-6 kHz), sometimes differenced (a band-pass), with a slow swell. */
static void noise(ts_rng *r, float *x, int n, int sr) {
    double a = exp(-2.0 * M_PI * loguni(r, 50.0, fmin(6000.0, 0.45 * sr)) / sr);
    int poles = 1 + (int)ts_rng_below(r, 2), diff = ts_rng_uniform(r) < 0.5;
    double swell = uni(r, 0.2, 3.0), depth = uni(r, 0.0, 0.8), ph = uni(r, 0.0, 2.0 * M_PI);
    double y1 = 0.0, y2 = 0.0, prev = 0.0;
    for (int i = -256; i < n; i++) { /* 256 samples of run-in: the filters start settled */
        y1 = (1.0 - a) * white(r) + a * y1;
        y2 = (1.0 - a) * y1 + a * y2;
        double v = poles == 2 ? y2 : y1, out = diff ? v - prev : v;
        prev = v;
        if (i < 0) continue;
        double env = 1.0 - depth * (0.5 + 0.5 * sin(2.0 * M_PI * swell * i / sr + ph));
        x[i] += (float)(env * out);
    }
}

/* Rain on leaves, dripping, clicks: impulses at Poisson times (5-200 per second), each a burst
 * of noise decaying over 0.5-5 ms, levels spread over 30 dB, sometimes differenced (crisper). */
static void rain(ts_rng *r, float *x, int n, int sr) {
    double rate = loguni(r, 5.0, 200.0);
    int diff = ts_rng_uniform(r) < 0.5;
    double t = -log(1.0 - ts_rng_uniform(r)) / rate;
    while (t * sr < n) {
        int i0 = (int)(t * sr), len = (int)(uni(r, 0.5e-3, 5e-3) * sr) + 1;
        double amp = pow(10.0, -uni(r, 0.0, 1.5)), tau = len / 3.0 + 1e-9, prev = 0.0;
        for (int j = 0; j < len && i0 + j < n; j++) {
            double v = amp * white(r) * exp(-j / tau);
            x[i0 + j] += (float)(diff ? v - prev : v);
            prev = v;
        }
        t += -log(1.0 - ts_rng_uniform(r)) / rate;
    }
}

/* Engines, generators, mains hum: a harmonic series on 25-250 Hz up to 4 kHz, the harmonics'
 * levels falling as 1/h^(0.5..2) with a random spread, the pitch drifting by up to 3 %. */
static void hum(ts_rng *r, float *x, int n, int sr) {
    double f0 = loguni(r, 25.0, 250.0), tilt = uni(r, 0.5, 2.0), drift = uni(r, -0.03, 0.03);
    int harmonics = (int)(fmin(4000.0, 0.45 * sr) / f0);
    if (harmonics < 1) harmonics = 1;
    if (harmonics > 40) harmonics = 40;
    double gain[40], phase0[40];
    for (int h = 0; h < harmonics; h++) {
        gain[h] = uni(r, 0.5, 1.0) / pow(h + 1, tilt);
        phase0[h] = uni(r, 0.0, 2.0 * M_PI);
    }
    double phase = 0.0;
    for (int i = 0; i < n; i++) {
        phase += 2.0 * M_PI * f0 * (1.0 + drift * ((double)i / n - 0.5)) / sr;
        double v = 0.0;
        for (int h = 0; h < harmonics; h++) v += gain[h] * sin((h + 1) * phase + phase0[h]);
        x[i] += (float)v;
    }
}

int ts_synth_negative(ts_rng *rng, int kind, float *x, int n, int sr) {
    if (n <= 0 || sr <= 0) return -1;
    if (kind < 0 || kind >= TS_SYNTH_KINDS) kind = (int)ts_rng_below(rng, TS_SYNTH_KINDS);
    memset(x, 0, sizeof(float) * (size_t)n);
    switch (kind) {
    case TS_SYNTH_CHORUS: chorus(rng, x, n, sr); break;
    case TS_SYNTH_NOISE: noise(rng, x, n, sr); break;
    case TS_SYNTH_RAIN: rain(rng, x, n, sr); break;
    default: hum(rng, x, n, sr); break;
    }
    float peak = 0.0f;
    for (int i = 0; i < n; i++) peak = fmaxf(peak, fabsf(x[i]));
    double target = loguni(rng, 0.003, 0.5);
    float g = peak > 0.0f ? (float)(target / peak) : 0.0f;
    double floor_amp = target * pow(10.0, -uni(rng, 50.0, 70.0) / 20.0);
    for (int i = 0; i < n; i++) x[i] = x[i] * g + (float)(floor_amp * white(rng));
    return kind;
}
