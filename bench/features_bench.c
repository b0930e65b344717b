/* Log-mel speed on real audio: decodes recordings until `seconds` of audio at the model rate,
 * cuts 1 s windows and times bs_melspec_compute over all of them (best of `reps`). Writes the
 * audio it used as .npy so that the numpy reference times the very same samples.
 * usage: features_bench SECONDS REPS OUT_AUDIO.npy FILE... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "birdsong/audio.h"
#include "birdsong/features.h"
#include "birdsong/npy.h"
#include "birdsong/switches.h"

/* CPU time of this thread: the machine is shared, wall time would count other processes. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    bs_switches_from_env(); /* BIRDSONG_NO_AVX2 / BIRDSONG_NO_AVX512, as the programs */
    if (argc < 5) {
        fprintf(stderr, "usage: %s SECONDS REPS OUT_AUDIO.npy FILE...\n", argv[0]);
        return 2;
    }
    const double seconds = atof(argv[1]);
    const int reps = atoi(argv[2]);
    bs_feature_config cfg = bs_feature_config_default();
    const size_t want = (size_t)(seconds * cfg.sample_rate);
    float *sig = malloc(want * sizeof *sig);
    size_t n = 0;
    bs_error err;
    double t0 = now();
    size_t nfiles = 0;
    for (int i = 4; i < argc && n < want; i++) {
        bs_audio a;
        if (bs_audio_read(argv[i], &a, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        float *y = a.samples;
        size_t ny = a.n_samples;
        if (a.sample_rate != cfg.sample_rate &&
            bs_resample_all(a.samples, a.n_samples, a.sample_rate, cfg.sample_rate, &y, &ny, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        size_t take = ny < want - n ? ny : want - n;
        memcpy(sig + n, y, take * sizeof *sig);
        n += take;
        if (y != a.samples) free(y);
        bs_audio_free(&a);
        nfiles++;
    }
    double t_decode = now() - t0;
    if (n < want) {
        fprintf(stderr, "only %.1f s of audio in the files given, %.1f s wanted\n",
                (double)n / cfg.sample_rate, seconds);
        return 1;
    }
    size_t shape[1] = {n};
    if (bs_npy_write_f32(argv[3], sig, shape, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bs_segments segs;
    if (bs_segment(&cfg, sig, n, &segs, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    bs_melspec *ms = bs_melspec_create(&cfg, &err);
    const size_t cells = (size_t)cfg.n_mels * bs_feature_n_frames(&cfg);
    float *out = malloc(segs.n * cells * sizeof *out);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = now();
        for (size_t i = 0; i < segs.n; i++)
            bs_melspec_compute(ms, segs.data + i * segs.segment_samples, out + i * cells);
        t = now() - t;
        if (t < best) best = t;
    }
    double checksum = 0;
    for (size_t i = 0; i < segs.n * cells; i++) checksum += out[i];
    printf("c_decode_seconds %.6f files %zu\n", t_decode, nfiles);
    printf("c_windows %zu\n", segs.n);
    printf("c_logmel_seconds %.6f\n", best);
    printf("c_fft_plan %s\n", bs_melspec_fft_plan(ms));
    printf("c_checksum %.3f\n", checksum);
    free(out);
    bs_melspec_free(ms);
    bs_segments_free(&segs);
    free(sig);
    return 0;
}
