/* The self-contained HTML report of `birdsong eval --report` and `birdsong train --report`:
 * one page, inline CSS and SVG, no script and nothing fetched. Sections: summary figures,
 * training curves (from the model's training history, when present), confusion matrix,
 * reliability diagram with its table, per-species table. */
#ifndef BIRDSONG_TRAINER_REPORT_H
#define BIRDSONG_TRAINER_REPORT_H

#include <stdio.h>

#include "birdsong/error.h"
#include "trainer/metrics.h"
#include "trainer/openset.h"

typedef struct ts_report {
    const char *title;
    const char *model_path;
    const char *data;
    char *const *labels;          /* [metrics->C] */
    const ts_metrics *metrics;
    const char *training_json;    /* the model's training provenance (may be NULL) */
    const ts_openset *openset;    /* per background source (may be NULL) */
    const char *openset_caption;  /* which windows it was measured on (may be NULL) */
} ts_report;

/* Writes the page to f. */
void ts_report_html(FILE *f, const ts_report *r);
/* Writes the page to a file; 0, or -1 with err. */
int ts_report_write(const char *path, const ts_report *r, bs_error *err);

/* HTML-escapes s into f. */
void ts_html_escape(FILE *f, const char *s);

#endif
