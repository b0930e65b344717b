/* libFuzzer target: the decode path on arbitrary bytes (libsndfile virtual I/O from memory),
 * then, for short decodable inputs, the rest of the feature path (resample to 22050 Hz,
 * windows, log-mel). Must never crash, leak or read out of bounds; every failure must be an
 * error message. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/audio.h"
#include "birdsong/features.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bs_audio a;
    bs_error err;
    err.msg[0] = 0;
    if (bs_audio_read_memory(data, size, "fuzz", &a, &err) != 0) {
        if (err.msg[0] == 0) abort(); /* a failure must say why */
        return 0;
    }
    if (a.n_samples == 0 || !a.samples) abort();
    for (size_t i = 0; i < a.n_samples; i++)
        if (!isfinite(a.samples[i])) abort(); /* non-finite samples must be refused */
    /* The features of short inputs: keeps each run fast while covering resampling from any
     * rate libsndfile reports and the padding of a partial window. */
    if (a.n_samples <= 48000) {
        static bs_melspec *ms;
        if (!ms) {
            bs_feature_config cfg = bs_feature_config_default();
            ms = bs_melspec_create(&cfg, NULL);
            if (!ms) abort();
        }
        bs_feature_set fs;
        if (bs_features_from_audio(ms, &a, &fs, &err) == 0) {
            for (size_t i = 0; i < fs.n_segments * (size_t)fs.n_mels * (size_t)fs.n_frames; i++)
                if (!isfinite(fs.data[i])) abort();
            bs_feature_set_free(&fs);
        }
    }
    bs_audio_free(&a);
    return 0;
}
