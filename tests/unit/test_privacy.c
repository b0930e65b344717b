/* The privacy filter's decisions (daemon/privacy.h): protected spans with their margin,
 * detections held until decidable, then dropped, kept without a clip, or emitted. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "daemon/privacy.h"

static bsd_detection det(double s, double e) {
    bsd_detection d;
    memset(&d, 0, sizeof d);
    snprintf(d.species, sizeof d.species, "Parus_major");
    d.start = s;
    d.end = e;
    return d;
}

static bsd_privacy *make(const char *action) {
    bsd_privacy_config c;
    bs_error err = {{0}};
    cr_assert_eq(bsd_privacy_parse("auto", action, 2.0, 0.5, &c, &err), 0, "%s", err.msg);
    c.pre_roll = c.post_roll = 1.0;
    bsd_privacy *p = bsd_privacy_new(&c, &err);
    cr_assert_not_null(p);
    return p;
}

Test(privacy, verdicts_follow_the_protected_spans) {
    bsd_privacy *p = make("drop");
    float probs[3] = {0.9f, 0.1f, 0.95f}; /* species, species, human */
    cr_assert_eq(bsd_privacy_set_model(p, 2), 1);
    /* human voice in [100, 101]: protected [98, 103] */
    cr_assert_eq(bsd_privacy_window(p, 100, 101, probs), 1);
    probs[2] = 0.2f;
    cr_assert_eq(bsd_privacy_window(p, 101, 102, probs), 0);
    bsd_detection a = det(100.5, 101.5), b = det(103.5, 104.5), c = det(110, 111);
    cr_assert_eq(bsd_privacy_hold(p, &a), 0);
    cr_assert_eq(bsd_privacy_hold(p, &b), 0);
    cr_assert_eq(bsd_privacy_hold(p, &c), 0);
    bsd_detection out[8];
    int v[8];
    /* nothing is decided before the windows up to end + post_roll + margin were seen */
    cr_assert_eq(bsd_privacy_release(p, 104.0, 0, out, v, 8), 0);
    int n = bsd_privacy_release(p, 108.0, 0, out, v, 8);
    cr_assert_eq(n, 2);
    cr_assert_eq(v[0], BSD_PRIVACY_DROP, "overlaps the voice: dropped");
    cr_assert_eq(v[1], BSD_PRIVACY_NO_CLIP, "only its clip's pre-roll reaches the protected span");
    n = bsd_privacy_release(p, 0, 1, out, v, 8);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0], BSD_PRIVACY_CLEAN);
    bsd_privacy_stats s = bsd_privacy_get_stats(p);
    cr_assert_eq(s.windows_filtered, 1);
    cr_assert_eq(s.detections_dropped, 1);
    cr_assert_eq(s.clips_withheld, 2);
    bsd_privacy_free(p);
}

Test(privacy, keep_emits_without_clip_and_off_or_no_human_never_filters) {
    bsd_privacy *p = make("keep");
    float probs[2] = {0.9f, 0.99f};
    bsd_privacy_set_model(p, 1);
    bsd_privacy_window(p, 10, 11, probs);
    bsd_detection a = det(10, 11), out[2];
    int v[2];
    bsd_privacy_hold(p, &a);
    cr_assert_eq(bsd_privacy_release(p, 0, 1, out, v, 2), 1);
    cr_assert_eq(v[0], BSD_PRIVACY_NO_CLIP);
    cr_assert_eq(bsd_privacy_set_model(p, -1), 0, "a model without human: inactive");
    cr_assert_eq(bsd_privacy_window(p, 20, 21, probs), 0);
    bsd_privacy_free(p);
    bsd_privacy_config c;
    bs_error err = {{0}};
    cr_assert_eq(bsd_privacy_parse("off", "drop", 1, 0.5, &c, &err), 0);
    p = bsd_privacy_new(&c, &err);
    cr_assert_eq(bsd_privacy_set_model(p, 1), 0, "privacy = off");
    bsd_privacy_free(p);
    cr_assert_eq(bsd_privacy_parse("on", "blur", 1, 0.5, &c, &err), -1);
    cr_assert(strstr(err.msg, "privacy_action"), "%s", err.msg);
    cr_assert_eq(bsd_privacy_parse("on", "drop", 6, 0.5, &c, &err), -1);
    cr_assert(strstr(err.msg, "privacy_margin"), "%s", err.msg);
    cr_assert_eq(bsd_privacy_parse("on", "drop", 1, 0, &c, &err), -1);
    cr_assert(strstr(err.msg, "privacy_threshold"), "%s", err.msg);
}
