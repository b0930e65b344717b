#include "trainer/history.h"

#include "trainer/json.h"

json_t *ts_epoch_log_json(const ts_epoch_log *h) {
    json_t *e = json_object();
    json_object_set_new(e, "epoch", json_integer(h->epoch));
    json_object_set_new(e, "lr", json_real(h->lr));
    json_object_set_new(e, "train_loss", ts_json_number(h->train_loss));
    json_object_set_new(e, "val_loss", ts_json_number(h->val_loss));
    json_object_set_new(e, "val_accuracy", ts_json_number(h->val_acc));
    json_object_set_new(e, "seconds", json_real(h->seconds));
    json_object_set_new(e, "samples_per_second", json_real(h->samples_per_s));
    json_object_set_new(e, "outside_network_fraction", json_real(h->outside_fraction));
    return e;
}
