/* libFuzzer target: bs_model_load_buffer must never crash, whatever the bytes.
 * Each input is tried twice: as it is, and with the header's file size and the trailing
 * CRC-32 made consistent, so mutations reach the JSON and tensor checks behind the checksum.
 * A model that loads is run once on a zero window. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/model.h"

static void try_load(const uint8_t *data, size_t size) {
    bs_error err;
    bs_model *m = bs_model_load_buffer(data, size, "fuzz.bsm", &err);
    if (!m) {
        if (err.msg[0] == 0) abort(); /* a refusal must say why */
        return;
    }
    size_t n = (size_t)bs_model_n_mels(m) * bs_model_n_frames(m);
    float *x = calloc(n, sizeof(float)), *p = calloc((size_t)bs_model_n_outputs(m), sizeof(float));
    if (x && p) {
        bs_model_normalize(m, x);
        bs_model_predict(m, x, p);
    }
    (void)bs_model_metadata_json(m);
    free(x);
    free(p);
    bs_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_load(data, size);
    if (size < 68) return 0;
    uint8_t *c = malloc(size);
    if (!c) return 0;
    memcpy(c, data, size);
    for (int i = 0; i < 8; i++) c[40 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    uint32_t crc = bs_crc32(0, c, size - 4);
    for (int i = 0; i < 4; i++) c[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    try_load(c, size);
    free(c);
    return 0;
}
