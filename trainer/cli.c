/* Option parsing helpers and JSON output shared by the sub-commands. See cli.h. */
#include "trainer/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/train.h"
#include "trainer/json.h"

int ts_opt_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "birdsong %s: %s '%s': expected an integer from %ld to %ld\n", cmd, opt, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int ts_opt_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "birdsong %s: %s '%s': expected a number from %g to %g\n", cmd, opt, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int ts_opt_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "birdsong %s: %s '%s': expected a non-negative integer\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

void ts_print_skipped(const char *cmd, const ts_dataset *ds) {
    if (!ds->n_skipped) return;
    fprintf(stderr, "birdsong %s: skipped %d file(s):\n", cmd, ds->n_skipped);
    for (int i = 0; i < ds->n_skipped; i++)
        fprintf(stderr, "  %s: %s\n", ds->skipped[i].path, ds->skipped[i].reason);
}

int ts_model_feature_config(const bs_model *model, bs_feature_config *cfg, bs_error *err) {
    const bs_feature_config *c = bs_model_feature_config(model);
    if (!c) return bs_error_set(err, "the model carries no feature settings");
    *cfg = *c;
    return bs_feature_config_validate(cfg, err);
}

json_t *ts_metrics_to_json(const ts_metrics *m, char *const *labels) {
    int C = m->C;
    json_t *o = json_object();
    json_object_set_new(o, "windows", json_integer(m->n_windows));
    json_object_set_new(o, "labelled_windows", json_integer(m->n_labelled));
    json_object_set_new(o, "background_windows", json_integer(m->n_background));
    json_object_set_new(o, "recordings", json_integer(m->n_recordings));
    json_object_set_new(o, "window_accuracy", ts_json_number(m->window_acc));
    json_object_set_new(o, "recording_accuracy", ts_json_number(m->recording_acc));
    json_object_set_new(o, "macro_map", ts_json_number(m->macro_map));
    json_object_set_new(o, "recording_macro_map", ts_json_number(m->recording_map));
    json_object_set_new(o, "ece", ts_json_number(m->ece));
    if (isfinite(m->ece_uncalibrated)) json_object_set_new(o, "ece_uncalibrated", json_real(m->ece_uncalibrated));
    json_object_set_new(o, "mean_active_labelled", ts_json_number(m->active_labelled));
    json_object_set_new(o, "mean_active_background", ts_json_number(m->active_background));
    if (isfinite(m->loss)) json_object_set_new(o, "loss", json_real(m->loss));
    json_t *sp = json_array();
    for (int c = 0; c < C; c++) {
        json_t *s = json_object();
        json_object_set_new(s, "species", json_string(labels[c]));
        json_object_set_new(s, "threshold", json_real(m->threshold[c]));
        json_object_set_new(s, "precision", ts_json_number(m->precision[c]));
        json_object_set_new(s, "recall", ts_json_number(m->recall[c]));
        json_object_set_new(s, "f1", ts_json_number(m->f1[c]));
        json_object_set_new(s, "average_precision", ts_json_number(m->ap[c]));
        json_object_set_new(s, "support", json_integer(m->support[c]));
        json_array_append_new(sp, s);
    }
    json_object_set_new(o, "per_species", sp);
    json_t *cm = json_array();
    for (int r = 0; r < C; r++) {
        json_t *row = json_array();
        for (int c = 0; c < C; c++) json_array_append_new(row, json_integer(m->confusion[(size_t)r * C + c]));
        json_array_append_new(cm, row);
    }
    json_object_set_new(o, "confusion", cm);
    json_t *rel = json_array();
    for (int b = 0; b < TS_ECE_BINS; b++) {
        json_t *x = json_object();
        json_object_set_new(x, "low", json_real(b / (double)TS_ECE_BINS));
        json_object_set_new(x, "high", json_real((b + 1) / (double)TS_ECE_BINS));
        json_object_set_new(x, "count", json_integer(m->bins[b].count));
        json_object_set_new(x, "mean_probability", ts_json_number(m->bins[b].mean_prob));
        json_object_set_new(x, "fraction_positive", ts_json_number(m->bins[b].frac_pos));
        json_array_append_new(rel, x);
    }
    json_object_set_new(o, "reliability", rel);
    return o;
}

static void on_stop(int sig) {
    (void)sig;
    ts_stop_requested = 1;
}

void ts_install_stop_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void ts_csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
