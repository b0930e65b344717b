/* The site species calendar (daemon/calendar.h): windows, wrap round the new year, unlisted
 * species, and every parse error named with its line. */
#include <criterion/criterion.h>
#include <string.h>

#include "daemon/calendar.h"

Test(calendar, windows_and_wrap) {
    bs_error err = {{0}};
    bsd_calendar *c = bsd_calendar_parse("# site list\nspecies,first_day,last_day\n"
                                         "Cecropis_daurica, 90, 280\n\nVireo_griseus,305,60\n",
                                         "cal.csv", &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_assert_eq(bsd_calendar_allows_day(c, "Cecropis_daurica", 89), 0);
    cr_assert_eq(bsd_calendar_allows_day(c, "Cecropis_daurica", 90), 1);
    cr_assert_eq(bsd_calendar_allows_day(c, "Cecropis_daurica", 280), 1);
    cr_assert_eq(bsd_calendar_allows_day(c, "Cecropis_daurica", 281), 0);
    cr_assert_eq(bsd_calendar_allows_day(c, "Vireo_griseus", 1), 1, "wraps round the new year");
    cr_assert_eq(bsd_calendar_allows_day(c, "Vireo_griseus", 366), 1);
    cr_assert_eq(bsd_calendar_allows_day(c, "Vireo_griseus", 180), 0);
    cr_assert_eq(bsd_calendar_allows_day(c, "Parus_major", 180), 1, "an unlisted species is not restricted");
    const char *labels[] = {"Cecropis_daurica", "Vireo_griseus"};
    cr_assert_eq(bsd_calendar_check(c, labels, 2, &err), 0);
    cr_assert_eq(bsd_calendar_check(c, labels, 1, &err), -1);
    cr_assert(strstr(err.msg, "Vireo_griseus is not a species of the model"), "%s", err.msg);
    bsd_calendar_free(c);
}

Test(calendar, errors_name_the_line) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"A,1\n", "line 1: expected species,first_day,last_day (3 fields), found 2"},
        {"A,1,2\nB,0,5\n", "line 2: days must be integers from 1 to 366, found '0' and '5'"},
        {"A,1,367\n", "found '1' and '367'"},
        {"A,x,3\n", "found 'x' and '3'"},
        {"A,1,2\nA,3,4\n", "line 2: A is listed twice"},
        {",1,2\n", "line 1: species name is empty"},
        {"A,1,2,3\n", "found 4"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bs_error err = {{0}};
        cr_assert_null(bsd_calendar_parse(bad[i].text, "cal.csv", &err), "%s", bad[i].text);
        cr_assert(strncmp(err.msg, "cal.csv: ", 9) == 0 && strstr(err.msg, bad[i].want), "%s -> %s", bad[i].text,
                  err.msg);
    }
    bs_error err = {{0}};
    cr_assert_null(bsd_calendar_load("/nonexistent/cal.csv", &err));
    cr_assert(strstr(err.msg, "species_calendar") && strstr(err.msg, "/nonexistent/cal.csv"), "%s", err.msg);
}
