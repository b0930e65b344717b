/* bench/60-scale.sh's data: N synthetic "recordings", random crops of real ones with random
 * labels out of C classes, written as 16-bit WAV at the source's rate, and their manifest.
 * It measures speed and memory, not accuracy: the labels mean nothing.
 * usage: scale_crops OUT_DIR N SECONDS CLASSES SEED SOURCE... > manifest.tsv */
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "birdsong/audio.h"

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: scale_crops OUT_DIR N SECONDS CLASSES SEED SOURCE...\n");
        return 2;
    }
    const char *dir = argv[1];
    int n = atoi(argv[2]), classes = atoi(argv[4]), n_src = argc - 6;
    double seconds = atof(argv[3]);
    uint64_t rng = strtoull(argv[5], NULL, 10);
    if (n < 1 || seconds <= 0 || classes < 1) return 2;
    printf("path\tlabels\tgroup\n");
    /* crop k comes from source k % n_src: each source is decoded once */
    for (int s = 0; s < n_src && s < n; s++) {
        bs_audio a;
        bs_error err;
        if (bs_audio_read(argv[6 + s], &a, &err) != 0) {
            fprintf(stderr, "scale_crops: %s\n", err.msg);
            return 1;
        }
        size_t len = (size_t)(seconds * a.sample_rate);
        if (len > a.n_samples) len = a.n_samples;
        short *pcm = malloc(sizeof(short) * (len + 1));
        if (!pcm) return 1;
        for (int k = s; k < n; k += n_src) {
            size_t start = a.n_samples > len ? next(&rng) % (a.n_samples - len + 1) : 0;
            for (size_t i = 0; i < len; i++) {
                float v = a.samples[start + i] * 32767.0f;
                pcm[i] = (short)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : v);
            }
            char path[4096];
            snprintf(path, sizeof path, "%s/r%05d.wav", dir, k);
            SF_INFO info = {.samplerate = a.sample_rate, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
            SNDFILE *f = sf_open(path, SFM_WRITE, &info);
            if (!f || sf_write_short(f, pcm, (sf_count_t)len) != (sf_count_t)len) {
                fprintf(stderr, "scale_crops: cannot write %s\n", path);
                return 1;
            }
            sf_close(f);
            printf("%s\tc%02d\tr%05d\n", path, (int)(next(&rng) % (uint64_t)classes), k);
        }
        free(pcm);
        bs_audio_free(&a);
    }
    return 0;
}
