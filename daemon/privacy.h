/* birdsongd: the privacy filter (issue 16).
 *
 * When the model has a filter class "human" and the filter is on, a window whose human
 * probability is at or above the model's threshold for it is "filtered": the span
 * [start - margin, end + margin] is protected. Detections are held until the windows that
 * could protect any part of [start - pre_roll - margin, end + post_roll + margin] have been
 * seen (a window starting after that span), then released with a verdict:
 *   - the detection overlaps a protected span: with action drop it is never emitted; with
 *     keep it is emitted without a clip;
 *   - only its clip's span [start - pre_roll, end + post_roll] overlaps one: emitted without
 *     a clip (a clip is dropped, never truncated);
 *   - else emitted as it was, with its clip.
 * So no audio within margin of a filtered window is ever written. Worker thread only; no
 * allocation after bsd_privacy_new. Counters are read under the station's lock by /metrics. */
#ifndef BIRDSONGD_PRIVACY_H
#define BIRDSONGD_PRIVACY_H

#include <stdint.h>

#include "birdsong/error.h"
#include "daemon/detect.h"

#define BSD_PRIVACY_MAX_MARGIN 5.0 /* seconds: the clips' history keeps 10 s beyond the clip */

#define BSD_PRIVACY_HELD_MAX 64 /* detections waiting for their verdict */

typedef enum { BSD_PRIVACY_AUTO, BSD_PRIVACY_ON, BSD_PRIVACY_OFF } bsd_privacy_mode;

typedef struct bsd_privacy_config {
    bsd_privacy_mode mode; /* auto: on when the model has a "human" filter class */
    double margin;         /* seconds protected either side of a filtered window, 0..5 */
    int keep;              /* privacy_action keep: detections overlapping are kept (no clip) */
    double pre_roll, post_roll; /* of the clips */
    double threshold;      /* privacy_threshold: a window is filtered when human >= this */
} bsd_privacy_config;

/* Parses the directives' values; 0, or -1 with err naming the directive. */
int bsd_privacy_parse(const char *mode, const char *action, double margin, double threshold, bsd_privacy_config *out,
                      bs_error *err);

typedef struct bsd_privacy bsd_privacy;

bsd_privacy *bsd_privacy_new(const bsd_privacy_config *cfg, bs_error *err);
void bsd_privacy_free(bsd_privacy *p);

/* For the model served now: the output index of "human" (-1: none). The window threshold is
 * the config's privacy_threshold, not the model's max-F1 threshold for human: a voice missed
 * leaks audio, a false alarm only costs a bird detection. Returns 1 when the filter is
 * active (on, or auto with a human class). Pending detections are kept. */
int bsd_privacy_set_model(bsd_privacy *p, int human_index);
int bsd_privacy_active(const bsd_privacy *p);

/* One window [t0, t1] (seconds) with its outputs; returns 1 when it is filtered. */
int bsd_privacy_window(bsd_privacy *p, double t0, double t1, const float *probs);

/* Holds a detection (copied). Returns 0, or -1 when the hold queue is full (the detection
 * is then released at once by the next bsd_privacy_release with the spans known so far). */
int bsd_privacy_hold(bsd_privacy *p, const bsd_detection *d);

enum { BSD_PRIVACY_CLEAN = 0, BSD_PRIVACY_NO_CLIP = 1, BSD_PRIVACY_DROP = 2 };
/* Releases the held detections decided by now (every window starting before `seen_until`
 * has been observed; flush: all of them) into out[max] with verdicts[max]; returns the count. */
int bsd_privacy_release(bsd_privacy *p, double seen_until, int flush, bsd_detection *out, int *verdicts, int max);

typedef struct bsd_privacy_stats {
    uint64_t windows_filtered, detections_dropped, clips_withheld;
} bsd_privacy_stats;
bsd_privacy_stats bsd_privacy_get_stats(const bsd_privacy *p);

#endif
