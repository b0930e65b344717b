/* The site species calendar. See calendar.h. */
#include "daemon/calendar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/detect.h"

#define CAL_MAX 4096 /* species listed */

typedef struct cal_entry {
    char species[BSD_SPECIES_NAME_MAX];
    int first, last;
} cal_entry;

struct bsd_calendar {
    cal_entry *e;
    int n;
};

void bsd_calendar_free(bsd_calendar *c) {
    if (!c) return;
    free(c->e);
    free(c);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

static int parse_day(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 366) return -1;
    *out = (int)v;
    return 0;
}

bsd_calendar *bsd_calendar_parse(const char *text, const char *name, bs_error *err) {
    bsd_calendar *c = calloc(1, sizeof *c);
    char *copy = strdup(text);
    if (!c || !copy) {
        free(c);
        free(copy);
        bs_error_set(err, "%s: out of memory", name);
        return NULL;
    }
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *t = trim(line);
        if (!*t || *t == '#') continue;
        char *f[4] = {0};
        int nf = 0;
        for (char *p = t; nf < 4; nf++) {
            f[nf] = p;
            char *comma = strchr(p, ',');
            if (!comma) {
                nf++;
                break;
            }
            *comma = 0;
            p = comma + 1;
        }
        if (nf != 3) {
            bs_error_set(err, "%s: line %d: expected species,first_day,last_day (3 fields), found %d", name, lineno, nf);
            goto fail;
        }
        for (int k = 0; k < 3; k++) f[k] = trim(f[k]);
        if (c->n == 0 && !strcmp(f[0], "species") && !strcmp(f[1], "first_day")) continue; /* header */
        cal_entry e;
        memset(&e, 0, sizeof e);
        if (!*f[0] || strlen(f[0]) >= sizeof e.species) {
            bs_error_set(err, "%s: line %d: species name is empty or longer than %d characters", name, lineno,
                         (int)sizeof e.species - 1);
            goto fail;
        }
        if (parse_day(f[1], &e.first) || parse_day(f[2], &e.last)) {
            bs_error_set(err, "%s: line %d: days must be integers from 1 to 366, found '%s' and '%s'", name, lineno, f[1],
                         f[2]);
            goto fail;
        }
        snprintf(e.species, sizeof e.species, "%s", f[0]);
        for (int i = 0; i < c->n; i++)
            if (!strcmp(c->e[i].species, e.species)) {
                bs_error_set(err, "%s: line %d: %s is listed twice", name, lineno, e.species);
                goto fail;
            }
        if (c->n == CAL_MAX) {
            bs_error_set(err, "%s: line %d: more than %d species", name, lineno, CAL_MAX);
            goto fail;
        }
        cal_entry *ne = realloc(c->e, (size_t)(c->n + 1) * sizeof *ne);
        if (!ne) {
            bs_error_set(err, "%s: out of memory", name);
            goto fail;
        }
        c->e = ne;
        c->e[c->n++] = e;
    }
    free(copy);
    return c;
fail:
    free(copy);
    bsd_calendar_free(c);
    return NULL;
}

bsd_calendar *bsd_calendar_load(const char *path, bs_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) {
        bs_error_set(err, "directive 'species_calendar': %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = !feof(f);
    fclose(f);
    if (big) {
        bs_error_set(err, "directive 'species_calendar': %s: larger than 64 KiB", path);
        return NULL;
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        bs_error_set(err, "directive 'species_calendar': %s: not a text file", path);
        return NULL;
    }
    char name[600];
    snprintf(name, sizeof name, "species_calendar %s", path);
    return bsd_calendar_parse(buf, name, err);
}

int bsd_calendar_check(const bsd_calendar *c, const char *const *labels, int n, bs_error *err) {
    for (int i = 0; i < c->n; i++) {
        int found = 0;
        for (int k = 0; k < n && !found; k++) found = !strcmp(labels[k], c->e[i].species);
        if (!found)
            return bs_error_set(err, "directive 'species_calendar': %s is not a species of the model", c->e[i].species);
    }
    return 0;
}

int bsd_calendar_allows_day(const bsd_calendar *c, const char *species, int yday1) {
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].species, species) != 0) continue;
        const cal_entry *e = &c->e[i];
        return e->first <= e->last ? yday1 >= e->first && yday1 <= e->last : yday1 >= e->first || yday1 <= e->last;
    }
    return 1;
}

int bsd_calendar_allows(const bsd_calendar *c, const char *species, double t) {
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r(&s, &tm)) return 1;
    return bsd_calendar_allows_day(c, species, tm.tm_yday + 1);
}
