/* The trainer's one rule for numbers in JSON: a finite value as a real, anything else (NaN, an
 * infinite loss, a metric with no data) as null, since JSON has neither. */
#ifndef BIRDSONG_TRAINER_JSON_H
#define BIRDSONG_TRAINER_JSON_H

#include <jansson.h>
#include <math.h>

static inline json_t *ts_json_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

#endif
