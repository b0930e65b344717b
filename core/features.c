/* Segmentation of a signal into windows, and the file -> features path the trainer and
 * `birdsong features` use. Both cut windows with the same segment_fill(). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/audio.h"
#include "birdsong/features.h"
#include "birdsong/rng.h"

/* Window layout for n samples: n_full windows at k * hop, plus maybe one padded window. */
typedef struct {
    size_t n_full, n_total;
    size_t seg, hop;
} seg_plan;

static seg_plan plan_segments(const bs_feature_config *c, size_t n) {
    seg_plan p = {0, 0, (size_t)bs_feature_segment_samples(c),
                  (size_t)bs_feature_segment_hop_samples(c)};
    if (n >= p.seg) p.n_full = 1 + (n - p.seg) / p.hop;
    /* The tail: samples after the end of the last full window (all of them when none fits). */
    size_t covered = p.n_full ? (p.n_full - 1) * p.hop + p.seg : 0;
    size_t tail = n - covered;
    size_t next_start = p.n_full * p.hop;
    p.n_total = p.n_full;
    if (tail > 0 && tail >= (size_t)bs_feature_min_residual_samples(c) && next_start < n)
        p.n_total++;
    return p;
}

size_t bs_segment_count(const bs_feature_config *cfg, size_t n_samples) {
    return plan_segments(cfg, n_samples).n_total;
}

/* The seeded noise padding's uniform numbers (birdsong/rng.h). */
static double uniform01(uint64_t *s) { /* in (0, 1) */
    return ((double)(bs_rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Fills buf (seg samples) with window i of x: samples from i * hop, then padding. */
static void segment_fill(const bs_feature_config *c, const seg_plan *p, const float *x, size_t n,
                         size_t i, float *buf) {
    size_t start = i * p->hop;
    size_t avail = start < n ? n - start : 0;
    if (avail > p->seg) avail = p->seg;
    memcpy(buf, x + start, avail * sizeof *buf);
    if (avail == p->seg) return;
    if (c->pad_mode == BS_PAD_NOISE && c->pad_noise_std > 0.0f) {
        uint64_t s = c->pad_seed + (uint64_t)i; /* reproducible per (seed, window index) */
        for (size_t k = avail; k < p->seg; k += 2) { /* Box-Muller, two values per draw */
            double u1 = uniform01(&s), u2 = uniform01(&s);
            double r = sqrt(-2.0 * log(u1)) * c->pad_noise_std;
            buf[k] = (float)(r * cos(2.0 * M_PI * u2));
            if (k + 1 < p->seg) buf[k + 1] = (float)(r * sin(2.0 * M_PI * u2));
        }
    } else {
        memset(buf + avail, 0, (p->seg - avail) * sizeof *buf);
    }
}

void bs_segments_free(bs_segments *s) {
    if (!s) return;
    free(s->data);
    free(s->start_seconds);
    memset(s, 0, sizeof *s);
}

int bs_segment(const bs_feature_config *cfg, const float *x, size_t n_samples, bs_segments *out,
               bs_error *err) {
    memset(out, 0, sizeof *out);
    if (bs_feature_config_validate(cfg, err)) return -1;
    seg_plan p = plan_segments(cfg, n_samples);
    out->segment_samples = (int)p.seg;
    if (p.n_total == 0) return 0;
    out->data = malloc(p.n_total * p.seg * sizeof *out->data);
    out->start_seconds = malloc(p.n_total * sizeof *out->start_seconds);
    if (!out->data || !out->start_seconds) {
        bs_segments_free(out);
        return bs_error_set(err, "segment: out of memory for %zu windows of %zu samples",
                            p.n_total, p.seg);
    }
    for (size_t i = 0; i < p.n_total; i++) {
        segment_fill(cfg, &p, x, n_samples, i, out->data + i * p.seg);
        out->start_seconds[i] = (double)(i * p.hop) / cfg->sample_rate;
    }
    out->n = p.n_total;
    out->segment_samples = (int)p.seg;
    return 0;
}

void bs_feature_set_free(bs_feature_set *s) {
    if (!s) return;
    free(s->data);
    free(s->start_seconds);
    memset(s, 0, sizeof *s);
}

/* x at cfg->sample_rate -> windows -> log-mel, into out (allocated here). */
static int features_from_signal(bs_melspec *ms, const float *x, size_t n, bs_feature_set *out,
                                bs_error *err) {
    const bs_feature_config *cfg = bs_melspec_config(ms);
    seg_plan p = plan_segments(cfg, n);
    const size_t cells = (size_t)cfg->n_mels * (size_t)bs_feature_n_frames(cfg);
    out->n_segments = p.n_total;
    out->n_mels = cfg->n_mels;
    out->n_frames = bs_feature_n_frames(cfg);
    if (p.n_total == 0) return 0;
    out->data = malloc(p.n_total * cells * sizeof *out->data);
    out->start_seconds = malloc(p.n_total * sizeof *out->start_seconds);
    float *buf = malloc(p.seg * sizeof *buf);
    if (!out->data || !out->start_seconds || !buf) {
        free(buf);
        bs_feature_set_free(out);
        return bs_error_set(err, "out of memory for %zu windows of features", p.n_total);
    }
    for (size_t i = 0; i < p.n_total; i++) {
        segment_fill(cfg, &p, x, n, i, buf);
        bs_melspec_compute(ms, buf, out->data + i * cells);
        out->start_seconds[i] = (double)(i * p.hop) / cfg->sample_rate;
    }
    free(buf);
    return 0;
}

int bs_features_from_audio(bs_melspec *ms, const bs_audio *audio, bs_feature_set *out,
                           bs_error *err) {
    memset(out, 0, sizeof *out);
    const bs_feature_config *cfg = bs_melspec_config(ms);
    int rc;
    if (audio->sample_rate == cfg->sample_rate) {
        rc = features_from_signal(ms, audio->samples, audio->n_samples, out, err);
    } else {
        float *y = NULL;
        size_t ny = 0;
        if (bs_resample_all(audio->samples, audio->n_samples, audio->sample_rate,
                            cfg->sample_rate, &y, &ny, err))
            return -1;
        rc = features_from_signal(ms, y, ny, out, err);
        free(y);
    }
    if (rc) return -1;
    out->duration_seconds = (double)audio->n_samples / audio->sample_rate;
    out->source_rate = audio->sample_rate;
    return 0;
}

int bs_features_from_file(const bs_feature_config *cfg, const char *path, bs_feature_set *out,
                          bs_error *err) {
    memset(out, 0, sizeof *out);
    bs_melspec *ms = bs_melspec_create(cfg, err);
    if (!ms) return -1;
    bs_audio a;
    if (bs_audio_read(path, &a, err)) {
        bs_melspec_free(ms);
        return -1;
    }
    int rc = bs_features_from_audio(ms, &a, out, err);
    if (rc) bs_error_prefix(err, path);
    bs_audio_free(&a);
    bs_melspec_free(ms);
    return rc;
}
