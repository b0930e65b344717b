/* libFuzzer target: the Keras importer's HDF5 (.h5) reader (libhdf5 over the bytes in memory) must never
 * crash, whatever the bytes; a refusal must say why. Both layouts of the input are tried. */
#include <stdint.h>
#include <stdlib.h>

#include "trainer/keras.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int frames_mels = 0; frames_mels < 2; frames_mels++) {
        ts_keras_net net;
        bs_error err;
        err.msg[0] = 0;
        if (ts_keras_read_buffer(data, size, "fuzz.h5", frames_mels, &net, &err) != 0 && err.msg[0] == 0) abort();
        ts_keras_free(&net);
    }
    return 0;
}
