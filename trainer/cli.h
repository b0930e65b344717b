/* Small helpers shared by the sub-commands: option values parsed with a clear message. */
#ifndef BIRDSONG_TRAINER_CLI_H
#define BIRDSONG_TRAINER_CLI_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "birdsong/features.h"
#include "birdsong/model.h"
#include "trainer/dataset.h"
#include "trainer/metrics.h"

/* Each prints "birdsong CMD: --opt VALUE: expected ..." to stderr and returns -1 on bad input. */
int ts_opt_int(const char *cmd, const char *opt, const char *s, long lo, long hi, int *out);
int ts_opt_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
int ts_opt_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);

/* Prints the skipped files of a dataset to stderr ("skipped N file(s):" then one per line). */
void ts_print_skipped(const char *cmd, const ts_dataset *ds);

/* Feature settings of a model (parsed from its features JSON). 0 or -1 with err. */
int ts_model_feature_config(const bs_model *model, bs_feature_config *cfg, bs_error *err);

/* Metrics as a JSON object (labels [C]). New reference. */
json_t *ts_metrics_to_json(const ts_metrics *m, char *const *labels);

/* Writes s as one CSV field (RFC 4180: quoted, quotes doubled, when it holds a comma, a quote or
 * a line break). */
void ts_csv_field(FILE *f, const char *s);

/* Installs SIGINT/SIGTERM handlers that only set ts_stop_requested. */
void ts_install_stop_handler(void);

#endif
