/* One line of a training run's history: what an epoch measured. Kept by ts_train_run
 * (trainer/train.h), saved in checkpoints (trainer/checkpoint.h), printed by `birdsong train`. */
#ifndef BIRDSONG_TRAINER_HISTORY_H
#define BIRDSONG_TRAINER_HISTORY_H

#include <jansson.h>

typedef struct ts_epoch_log {
    int epoch;
    double lr, train_loss, val_loss, val_acc, seconds, samples_per_s, outside_fraction;
} ts_epoch_log;

/* The epoch as the report's "history" entries and the --log-json lines write it (a loss
 * that is not finite is null). */
json_t *ts_epoch_log_json(const ts_epoch_log *h);

#endif
