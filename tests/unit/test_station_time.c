/* ISO 8601 times of the detections API (bsd_parse_iso8601 in daemon/station.c). */
#include <criterion/criterion.h>
#include <math.h>

#include "daemon/station.h"

static double parse(const char *s) {
    double t = NAN;
    cr_assert_eq(bsd_parse_iso8601(s, &t), 0, "'%s' was refused", s);
    return t;
}

Test(station_time, accepted_forms) {
    cr_assert_float_eq(parse("1970-01-01T00:00:00Z"), 0.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01T04:12:07Z"), 1777608727.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01T04:12:07.250Z"), 1777608727.25, 1e-9);
    cr_assert_float_eq(parse("2026-05-01T04:12Z"), 1777608720.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01t04:12:07z"), 1777608727.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01 04:12:07Z"), 1777608727.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01T06:12:07+02:00"), 1777608727.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01T00:12:07-04:00"), 1777608727.0, 1e-9);
    cr_assert_float_eq(parse("2026-05-01"), 1777593600.0, 1e-9);
    cr_assert_float_eq(parse("2024-02-29"), 1709164800.0, 1e-9);
}

Test(station_time, refused_forms) {
    const char *bad[] = {"", "yesterday", "2026-5-1", "2026-05-01T04:12:07", "2026-05-01T04:12:07+0200",
                         "2026-02-30", "2025-02-29", "2026-13-01", "2026-05-01T24:00:00Z", "2026-05-01T04:60Z",
                         "2026-05-01T04:12:7Z", "2026-05-01T04:12:07.Z", "2026-05-01T04:12:07Zjunk",
                         "2026-05-01junk", "1969-12-31", "2026-05-01T04:12:071Z", "-2026-05-01"};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double t;
        cr_assert_eq(bsd_parse_iso8601(bad[i], &t), -1, "'%s' was accepted", bad[i]);
    }
}
