/* birdsong: the ONE feature path shared by the trainer and the daemon.
 *
 *   audio file --bs_audio_read--> mono float at the file's rate
 *              --bs_resample_all / bs_resampler--> cfg.sample_rate
 *              --bs_segment--> windows of segment_seconds every segment_hop_seconds
 *              --bs_melspec_compute--> log-mel dB (n_mels, n_frames) per window
 *              --bs_features_normalize: z-score (mean/std from bs_norm_stats), then the
 *                window_norm setting--> network input
 *
 * The log-mel follows librosa 0.10 exactly (REFERENCES.md §1): periodic Hann, centre ZERO
 * padding of n_fft/2, power 2, slaney mel scale + slaney area normalization (filterbank built
 * in float64, stored float32), 10 log10(max(amin, S)) - 10 log10(max(amin, ref)) with the
 * config's db_ref (librosa's ref: 1 by default, a fixed reference power, or the window's own
 * maximum power, ref=np.max), then max(D, max(D) - top_db) with the max taken over the one
 * window. Layout is (n_mels, n_frames), row-major.
 *
 * Thread-safety: bs_feature_config functions, bs_segment, bs_norm_*, bs_normalize_apply,
 * bs_window_norm_apply and bs_features_normalize are re-entrant. A bs_melspec holds FFTW
 * buffers and scratch: use one per thread.
 * bs_melspec_create/free may be called from any thread (FFTW's planner is serialized by a
 * lock inside core); bs_melspec_compute on distinct objects runs in parallel. */
#ifndef BIRDSONG_FEATURES_H
#define BIRDSONG_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "birdsong/audio.h"
#include "birdsong/error.h"

struct json_t; /* jansson's json_t; include <jansson.h> to use the JSON helpers */

typedef enum bs_pad_mode {
    BS_PAD_ZERO = 0,   /* pad the residual with zeros */
    BS_PAD_NOISE = 1,  /* pad with N(0, pad_noise_std^2), seeded, reproducible */
} bs_pad_mode;

/* What is done to each window after the z-score (bs_features_normalize). */
typedef enum bs_window_norm {
    BS_WINDOW_NORM_NONE = 0,       /* nothing: the z-scored log-mel */
    BS_WINDOW_NORM_BAND_MEAN = 1,  /* subtract each mel band's mean over the window's frames:
                                      a steady background or a recorder's frequency response
                                      (the same in every frame) is removed, calls are kept */
    BS_WINDOW_NORM_BAND_MEDIAN = 2 /* the same with each band's median: the level of the
                                      band between calls, as long as calls fill less than half
                                      of the window (at most BS_WINDOW_NORM_MAX_FRAMES frames) */
} bs_window_norm;
#define BS_WINDOW_NORM_MAX_FRAMES 4096

/* Every feature setting. Defaults (bs_feature_config_default) are librosa's. The model file
 * carries this struct (as JSON) so the daemon reproduces the training features exactly. */
typedef struct bs_feature_config {
    int sample_rate;             /* model rate, Hz (22050) */
    int n_fft;                   /* FFT size = window length, even (2048) */
    int hop_length;              /* frame hop in samples (512) */
    int n_mels;                  /* mel bands (128) */
    double fmin;                 /* lowest mel edge, Hz (0) */
    double fmax;                 /* highest mel edge, Hz, <= sample_rate / 2 (11025) */
    double segment_seconds;      /* window length (1.0) */
    double segment_hop_seconds;  /* window hop (1.0 = no overlap) */
    double min_residual_seconds; /* tail >= this is padded to a window, shorter is dropped (0.25) */
    bs_pad_mode pad_mode;        /* BS_PAD_ZERO */
    float pad_noise_std;         /* for BS_PAD_NOISE (1e-4) */
    uint64_t pad_seed;           /* for BS_PAD_NOISE (0); segment i uses pad_seed + i */
    float amin;                  /* power floor before log (1e-10) */
    float top_db;                /* dynamic range per window, dB (80); 0 disables */
    float norm_std_floor;        /* z-score divides by max(std, floor), dB (0.01) */
    bs_window_norm window_norm;  /* after the z-score (BS_WINDOW_NORM_NONE); a model file
                                    without the field means none */
    double db_ref;               /* the dB reference power, librosa power_to_db's ref (1.0):
                                    any power in (0, 1e30], or BS_DB_REF_MAX: each window's own
                                    maximum (ref=np.max, the window's loudest cell is 0 dB); a
                                    model file without the field means 1.0 */
} bs_feature_config;
#define BS_DB_REF_MAX 0.0

/* What the dB reference subtracts: 10 log10(max(amin, db_ref)) for a fixed reference (0 for
 * ref 1), 0 for BS_DB_REF_MAX (its offset is each window's own maximum). */
double bs_feature_db_offset(const bs_feature_config *cfg);
/* The dB value of digital silence (every power <= amin) in a window: 10 log10(amin) minus the
 * offset for a fixed reference (-100 by default), 0 for BS_DB_REF_MAX (silence is its own
 * maximum). The floor bs_norm_stats_update and the daemon's trial window use. */
float bs_feature_floor_db(const bs_feature_config *cfg);
/* "max" or the number (the spelling of model files and of the --db-ref option); parse
 * returns 0, or -1 for anything else (a number must be > 0 and finite). */
int bs_db_ref_parse(const char *text, double *out);

bs_feature_config bs_feature_config_default(void);

/* "none", "band_mean", "band_median" (the names in model files and on the command line);
 * parse returns 0, or -1 for an unknown name. */
const char *bs_window_norm_name(bs_window_norm mode);
int bs_window_norm_parse(const char *name, bs_window_norm *out);

/* Checks every field (ranges, n_fft even, fmin < fmax <= sr/2, segment >= one frame...).
 * Returns 0, or -1 with err naming the field, the expected range and the value found. */
int bs_feature_config_validate(const bs_feature_config *cfg, bs_error *err);

/* Derived sizes (cfg assumed valid). Rounding: nearest sample for the window and its hop;
 * floor for the residual limit (so "exactly 0.25 s" at 22050 Hz, 5512 or 5513 samples,
 * qualifies). */
int bs_feature_segment_samples(const bs_feature_config *cfg);      /* 22050 */
int bs_feature_segment_hop_samples(const bs_feature_config *cfg);  /* 22050 */
int bs_feature_min_residual_samples(const bs_feature_config *cfg); /* 5512 */
int bs_feature_n_frames(const bs_feature_config *cfg); /* 1 + segment_samples / hop = 44 */
int bs_feature_n_freqs(const bs_feature_config *cfg);  /* 1 + n_fft / 2 = 1025 */

/* JSON object with every field by name (pad_mode as "zero" / "noise"). New reference, or
 * NULL on allocation failure. */
struct json_t *bs_feature_config_to_json(const bs_feature_config *cfg);
/* Reads a JSON object written by bs_feature_config_to_json: every field must be present with
 * the right type; the result is validated. Unknown keys are an error (a typo must not fall
 * back to a default silently). Returns 0 or -1 with err naming the field. */
int bs_feature_config_from_json(const struct json_t *json, bs_feature_config *cfg,
                                bs_error *err);

/* ---- segmentation ---------------------------------------------------------------------- */

/* Windows of segment_samples starting every segment_hop_samples while they fit; then, if the
 * tail after the last full window's end is >= min_residual_samples, one more window starting
 * at the next hop position, padded at its end per pad_mode. A signal shorter than the
 * residual limit gives 0 windows (not an error). */
typedef struct bs_segments {
    size_t n;                /* number of windows */
    int segment_samples;     /* samples per window */
    float *data;             /* (n, segment_samples) */
    double *start_seconds;   /* n start times, seconds from the start of the signal */
} bs_segments;

/* Number of windows bs_segment would return for n_samples samples (no allocation). */
size_t bs_segment_count(const bs_feature_config *cfg, size_t n_samples);

/* x: n_samples at cfg->sample_rate. Fills out (free with bs_segments_free). 0 or -1. */
int bs_segment(const bs_feature_config *cfg, const float *x, size_t n_samples, bs_segments *out,
               bs_error *err);
void bs_segments_free(bs_segments *s);

/* ---- log-mel dB ------------------------------------------------------------------------ */

typedef struct bs_melspec bs_melspec;

/* The bodies of bs_melspec_compute. The wide ones are built with GCC on x86-64 outside the
 * sanitizers and chosen at create from the CPU. All three give the same bits. */
typedef enum bs_simd_level {
    BS_SIMD_BASELINE = 0, /* the portable body (SSE2 on x86-64) */
    BS_SIMD_AVX2 = 1,
    BS_SIMD_AVX512 = 2,   /* AVX-512 F/VL/BW/DQ */
} bs_simd_level;

/* Create options. The library never reads the environment for them: programs do
 * (BIRDSONG_NO_AVX2, BIRDSONG_NO_AVX512, see birdsong/switches.h) and pass them here. */
typedef struct bs_melspec_options {
    bs_simd_level max_simd; /* the widest body allowed (BS_SIMD_AVX512: whatever the CPU has) */
} bs_melspec_options;

/* The options bs_melspec_create uses: BS_SIMD_AVX512 until a program sets others, once,
 * before it creates any (not thread-safe against concurrent creates). */
void bs_melspec_set_default_options(const bs_melspec_options *opt);
bs_melspec_options bs_melspec_default_options(void);

/* bs_melspec_create with explicit options (NULL: the defaults). */
bs_melspec *bs_melspec_create_with(const bs_feature_config *cfg, const bs_melspec_options *opt, bs_error *err);

/* Validates cfg, builds the filterbank (sparse: each mel row keeps only its nonzero bins),
 * the periodic Hann window and one FFTW plan (a complex FFT of n_fft/2 points; the real
 * spectrum is split from it). NULL with err on bad cfg or no memory. */
bs_melspec *bs_melspec_create(const bs_feature_config *cfg, bs_error *err);
void bs_melspec_free(bs_melspec *ms);
const bs_feature_config *bs_melspec_config(const bs_melspec *ms);
/* How the FFT was planned: "built-in wisdom" (the fixed fast plan for n_fft 2048 on AVX
 * machines) or "FFTW_ESTIMATE". Both are deterministic; for logs and benchmarks. */
const char *bs_melspec_fft_plan(const bs_melspec *ms);

/* segment: segment_samples floats. out: n_mels * n_frames floats, (n_mels, n_frames), dB.
 * Allocates nothing, cannot fail. Not thread-safe per object. */
void bs_melspec_compute(bs_melspec *ms, const float *segment, float *out);
/* Which body compute runs: the widest the CPU has, up to the create option max_simd. */
bs_simd_level bs_melspec_simd_level(const bs_melspec *ms);

/* Mel filterbank as a dense (n_mels, n_freqs) float32 matrix, for tests and tools; the
 * caller frees it. NULL with err on bad cfg. */
float *bs_mel_filterbank(const bs_feature_config *cfg, bs_error *err);
/* The Slaney mel scale the filterbank uses (librosa htk=False): mel of a frequency in Hz.
 * Band m's centre is point m + 1 of n_mels + 2 points evenly spaced in mel from fmin to fmax. */
double bs_mel_from_hz(double hz);

/* ---- file -> features (the trainer's path, `birdsong features`) ------------------------- */

typedef struct bs_feature_set {
    size_t n_segments;
    int n_mels, n_frames;
    float *data;             /* (n_segments, n_mels, n_frames), dB, before normalization */
    double *start_seconds;   /* n_segments */
    double duration_seconds; /* of the decoded file */
    int source_rate;         /* the file's sample rate */
} bs_feature_set;

/* decode -> resample to cfg->sample_rate -> segment -> log-mel dB. Zero segments (a file
 * shorter than the residual limit) is success with n_segments = 0. Returns 0 or -1 with
 * err = "<path>: <problem>". Creates a bs_melspec per call; a thread converting many files
 * should use bs_features_from_audio with its own bs_melspec. */
int bs_features_from_file(const bs_feature_config *cfg, const char *path, bs_feature_set *out,
                          bs_error *err);

/* Same from decoded audio at any rate (resampled with bs_resample_all when it differs from
 * the extractor's sample_rate), reusing the caller's extractor (one per thread). */
int bs_features_from_audio(bs_melspec *ms, const bs_audio *audio, bs_feature_set *out,
                           bs_error *err);

void bs_feature_set_free(bs_feature_set *s);

/* ---- normalization (per mel bin, Welford) ---------------------------------------------- */

/* Running per-mel-bin mean and M2 over every (segment, frame) value of that bin, in double.
 * Mergeable (Chan et al.) across threads and folds. Silent windows (every value at the dB
 * floor bs_feature_floor_db, i.e. digital silence) are skipped and counted, not accumulated, so
 * that padding and dead channels do not drag the statistics. */
typedef struct bs_norm_stats {
    int n_mels;
    uint64_t count;          /* values accumulated per bin (segments x frames) */
    uint64_t n_segments;     /* windows accumulated */
    uint64_t n_silent;       /* windows skipped as silent */
    double *mean;            /* n_mels */
    double *m2;              /* n_mels, sum of squared deviations */
} bs_norm_stats;

int bs_norm_stats_init(bs_norm_stats *s, int n_mels, bs_error *err);
void bs_norm_stats_free(bs_norm_stats *s);

/* x: (n_mels, n_frames) dB of one window; floor_db = bs_feature_floor_db (-100 for the default).
 * Returns 1 when accumulated, 0 when skipped as silent. */
int bs_norm_stats_update(bs_norm_stats *s, const float *x, int n_frames, float floor_db);

/* dst += src (same n_mels, else -1 with err). */
int bs_norm_stats_merge(bs_norm_stats *dst, const bs_norm_stats *src, bs_error *err);

/* mean[n_mels], std[n_mels] (population std, ddof 0). -1 with err when nothing was
 * accumulated (count == 0). */
int bs_norm_stats_finalize(const bs_norm_stats *s, float *mean, float *std, bs_error *err);

/* In place: x[m, t] = (x[m, t] - mean[m]) / max(std[m], std_floor); a std that is zero, NaN
 * or below the floor uses the floor (std_floor > 0 required; <= 0 is treated as 1e-6), so the
 * output is finite for every finite input, a silent window included. */
void bs_normalize_apply(float *x, const float *mean, const float *std, float std_floor,
                        int n_mels, int n_frames);

/* In place, per mode: BS_WINDOW_NORM_BAND_MEAN subtracts from each row x[m, :] its mean over
 * the n_frames frames (summed in double); BS_WINDOW_NORM_BAND_MEDIAN its median (for an even
 * count, 0.5f * (a + b) of the two middle values; n_frames <= BS_WINDOW_NORM_MAX_FRAMES, which
 * validation enforces; no allocation); BS_WINDOW_NORM_NONE does nothing. */
void bs_window_norm_apply(bs_window_norm mode, float *x, int n_mels, int n_frames);

/* The whole normalization between the log-mel window (n_mels, n_frames of cfg) and the
 * network: bs_normalize_apply with cfg->norm_std_floor, then cfg->window_norm. The trainer and
 * every inference path call this one function. */
void bs_features_normalize(const bs_feature_config *cfg, float *x, const float *mean,
                           const float *std);

#endif
