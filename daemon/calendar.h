/* birdsongd: the site species calendar (issue 16), `species_calendar = FILE`.
 *
 * A simple, honest stand-in for the location-and-season range models of BirdNET: the
 * operator lists when each species may occur at the site. CSV, one species per line:
 *   species,first_day,last_day
 * days of the year 1..366 (local time of the station), inclusive; first > last wraps around
 * the new year (e.g. 305,60 = November to February). Blank lines and lines starting with #
 * are ignored; a first line "species,first_day,last_day" is a header. A species of the model
 * that the file does not list is not restricted. Outside its window a species still gets its
 * probabilities, but no detection. Errors name the file, the line and the problem. */
#ifndef BIRDSONGD_CALENDAR_H
#define BIRDSONGD_CALENDAR_H

#include "birdsong/error.h"

typedef struct bsd_calendar bsd_calendar;

bsd_calendar *bsd_calendar_load(const char *path, bs_error *err);
/* The same from text; `name` prefixes messages. */
bsd_calendar *bsd_calendar_parse(const char *text, const char *name, bs_error *err);
void bsd_calendar_free(bsd_calendar *c);

/* 0, or -1 with err naming the first listed species that is not among labels[n]. */
int bsd_calendar_check(const bsd_calendar *c, const char *const *labels, int n, bs_error *err);

/* 1 when `species` may be detected at unix time t (local day of the year), else 0. */
int bsd_calendar_allows(const bsd_calendar *c, const char *species, double t);
/* The same for a day of the year 1..366. */
int bsd_calendar_allows_day(const bsd_calendar *c, const char *species, int yday1);

#endif
