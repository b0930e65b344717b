/* `birdsong bench`: inference latency (batch 1, median) and training throughput (batch B,
 * forward + backward + Adam) of a network, beside the sgemm ceiling: the time cblas_sgemm
 * alone takes on the same matrix shapes. The last line of output is one JSON object. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "birdsong/nn_train.h"
#include "trainer/commands.h"
#include "trainer/replicas.h"
#include "trainer/dist.h"
#include "trainer/train.h"
#include "trainer/xalloc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: with one thread OpenBLAS runs in the caller, so this is
 * the work itself, robust to other processes sharing the cores (wall time is not). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of every thread of the process: with replicas, the work of all of them */
static double process_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double max_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: birdsong bench [--arch NAME] [--classes N] [--threads T] [--json]\n"
               "                      [--mels 128] [--frames 44] [--batch 32] [--iters 30]\n"
               "                      [--train-steps 5]\n\n"
               "Times batch-1 inference (median of --iters), training at --batch (median of\n"
               "--train-steps steps of forward + backward + Adam) and cblas_sgemm alone on the\n"
               "inference GEMM shapes. --threads T: OpenBLAS threads for inference; training\n"
               "runs T data-parallel replicas of one BLAS thread each, as `birdsong train\n"
               "--threads T` does. Under `mpirun -np K`, each rank trains its share of every\n"
               "batch and rank 0 reports the combined samples/s. Architectures: %s. The last\n"
               "line is JSON.\n",
            bs_nn_arch_names());
}

static int parse_pos(const char *opt, const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "birdsong bench: %s expects an integer from %d to %d, found '%s'\n", opt,
                lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* median time of `reps` runs of one sgemm of each shape (same arguments as conv2d_forward) */
static double sgemm_ms(int (*mnk)[3], int n, int reps, double *cpu_ms) {
    double total = 0.0, total_cpu = 0.0;
    for (int s = 0; s < n; s++) {
        int M = mnk[s][0], N = mnk[s][1], K = mnk[s][2];
        float *A = ts_xmalloc(sizeof(float) * M * K), *B = ts_xmalloc(sizeof(float) * K * N),
              *C = ts_xmalloc(sizeof(float) * M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
        double *t = ts_xmalloc(sizeof(double) * reps), *tc = ts_xmalloc(sizeof(double) * reps);
        for (int r = -2; r < reps; r++) {
            double t0 = now_s(), c0 = cpu_s();
            if (M == 1) /* batch-1 dense: the network uses sgemv too */
                cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, B, K, A, 1, 1.0f, C, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N,
                            1.0f, C, N);
            if (r >= 0) {
                t[r] = now_s() - t0;
                tc[r] = cpu_s() - c0;
            }
        }
        total += median(t, reps);
        total_cpu += median(tc, reps);
        free(A);
        free(B);
        free(C);
        free(t);
        free(tc);
    }
    *cpu_ms = total_cpu * 1e3;
    return total * 1e3;
}

/* Training throughput: one warm-up step, then `steps` steps of forward + backward + Adam at
 * batch `batch` with `threads` replicas (as `birdsong train --threads` runs them, one BLAS
 * thread each; under mpirun each rank its share). ms: the medians per step of wall time, the
 * calling thread's CPU time and the whole process's CPU time. y gets one positive per row. */
static int bench_train(const bs_layer_spec *layers, int nl, int mels, int frames, int classes, int batch,
                       int threads, int steps, const float *x, float *y, double ms[3], bs_error *err) {
    bs_net *net = bs_net_create(layers, nl, mels, frames, classes, batch, 1, err);
    if (!net) return -1;
    for (int n = 0; n < batch; n++) y[(size_t)n * classes + n % classes] = 1.0f;
    bs_adam_config cfg = bs_adam_defaults();
    bs_adam *adam = ts_xcheck(bs_adam_create(bs_net_n_params(net), &cfg));
    bs_nn_set_threads(1);
    ts_replicas *reps = ts_replicas_create(net, threads, err);
    if (!reps) {
        bs_adam_free(adam);
        bs_net_free(net);
        return -1;
    }
    ts_replicas_set_first_index(reps, ts_dist_rank() * threads);
    double *t = ts_xmalloc(sizeof(double) * (size_t)steps * 3), *tc = t + steps, *tp = tc + steps;
    for (int r = -1; r < steps; r++) {
        double t0 = now_s(), c0 = cpu_s(), p0 = process_cpu_s();
        ts_replicas_step_all(reps, x, y, NULL, batch);
        ts_replicas_adam_step(reps, adam);
        if (r >= 0) {
            t[r] = now_s() - t0;
            tc[r] = cpu_s() - c0;
            tp[r] = process_cpu_s() - p0;
        }
    }
    ms[0] = median(t, steps) * 1e3;
    ms[1] = median(tc, steps) * 1e3;
    ms[2] = median(tp, steps) * 1e3;
    free(t);
    ts_replicas_free(reps);
    bs_adam_free(adam);
    bs_net_free(net);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    const char *arch = "convnet1";
    int classes = 70, threads = 1, json = 0, mels = 128, frames = 44, batch = 32, iters = 30,
        steps = 5;
    static const struct option opts[] = {
        {"arch", required_argument, 0, 'a'},   {"classes", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
        {"mels", required_argument, 0, 'm'},   {"frames", required_argument, 0, 'f'},
        {"batch", required_argument, 0, 'b'},  {"iters", required_argument, 0, 'i'},
        {"train-steps", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': arch = optarg; break;
        case 'c': if (parse_pos("--classes", optarg, 1, 100000, &classes)) return 2; break;
        case 't': if (parse_pos("--threads", optarg, 1, 256, &threads)) return 2; break;
        case 'j': json = 1; break;
        case 'm': if (parse_pos("--mels", optarg, 1, 4096, &mels)) return 2; break;
        case 'f': if (parse_pos("--frames", optarg, 1, 4096, &frames)) return 2; break;
        case 'b': if (parse_pos("--batch", optarg, 1, 4096, &batch)) return 2; break;
        case 'i': if (parse_pos("--iters", optarg, 1, 100000, &iters)) return 2; break;
        case 's': if (parse_pos("--train-steps", optarg, 0, 100000, &steps)) return 2; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "birdsong bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    bs_error err;
    /* under mpirun: every rank trains its share of each batch, the gradients are summed over
     * the ranks, and rank 0 reports the combined samples/s of the whole batch */
    if (ts_dist_init(&err) != 0) {
        fprintf(stderr, "birdsong bench: %s\n", err.msg);
        return 1;
    }
    int ranks = ts_dist_size();
    if (ts_dist_rank() > 0 && (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))) return 1;
    bs_nn_set_threads(threads);
    /* ---- inference, batch 1 ---- */
    double rss0 = max_rss_mb();
    bs_layer_spec layers[BS_NN_MAX_LAYERS];
    int nl = bs_nn_arch_layers(arch, layers, BS_NN_MAX_LAYERS);
    bs_net *net = nl < 0 ? NULL
                         : bs_net_create_inference(layers, nl, mels, frames, classes, 1, &err);
    if (nl < 0)
        bs_error_set(&err, "unknown architecture '%s', expected one of: %s", arch,
                     bs_nn_arch_names());
    if (!net) {
        fprintf(stderr, "birdsong bench: %s\n", err.msg);
        return 1;
    }
    size_t nx = (size_t)mels * frames;
    float *x = ts_xmalloc(sizeof(float) * nx * batch), *y = ts_xcalloc((size_t)classes * batch, 4);
    float *probs = ts_xmalloc(sizeof(float) * classes);
    uint64_t rng = 1;
    for (size_t i = 0; i < nx * batch; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((rng >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
    double *t = ts_xmalloc(sizeof(double) * (iters > steps ? iters : steps + 1));
    double *tc = ts_xmalloc(sizeof(double) * (iters > steps ? iters : steps + 1));
    for (int r = -3; r < iters; r++) {
        double t0 = now_s(), c0 = cpu_s();
        bs_net_forward(net, x, 1, 0);
        bs_net_activate(net, 1, probs);
        if (r >= 0) {
            t[r] = now_s() - t0;
            tc[r] = cpu_s() - c0;
        }
    }
    double infer_ms = median(t, iters) * 1e3, infer_cpu_ms = median(tc, iters) * 1e3;
    double rss_infer = max_rss_mb();
    double weights_mb = bs_net_n_params(net) * 4.0 / (1 << 20);
    double net_mb = bs_net_memory_bytes(net) / 1048576.0;
    double gflop = bs_net_flops(net) / 1e9;
    int mnk[4096][3];
    int ng = bs_net_gemm_shapes(net, 1, mnk, 4096);
    double gemm_cpu_ms;
    double gemm_ms = sgemm_ms(mnk, ng, iters < 10 ? iters : 10, &gemm_cpu_ms);
    bs_net_free(net);
    /* ---- training, batch B ---- */
    double train_sps = 0.0, step_ms = 0.0, step_cpu_ms = 0.0, step_pcpu_ms = 0.0;
    if (steps > 0) {
        double ms[3];
        if (bench_train(layers, nl, mels, frames, classes, batch, threads, steps, x, y, ms, &err) != 0) {
            fprintf(stderr, "birdsong bench: %s\n", err.msg);
            return 1;
        }
        step_ms = ms[0];
        step_cpu_ms = ms[1];
        step_pcpu_ms = ms[2];
        train_sps = batch / (step_ms / 1e3);
    }
    /* one thread: compare CPU times (robust to a shared machine); more: wall times */
    double eff = threads == 1 ? gemm_cpu_ms / infer_cpu_ms : gemm_ms / infer_ms;
    {
        fprintf(json ? stderr : stdout,
                "%s, %d classes, %dx%d input, %d thread(s), OpenBLAS %s kernels: %.3f GFLOP per "
                "window\n"
                "  inference (batch 1, median of %d): %.2f ms per window (%.2f ms CPU), %.1f "
                "GFLOP/s\n"
                "  sgemm alone on the same shapes:    %.2f ms (%.2f ms CPU, %.1f GFLOP/s): %.0f%% "
                "of the ceiling\n"
                "  training (batch %d, median of %d steps): %.0f ms per step (%.0f ms CPU), %.1f "
                "samples/s\n"
                "  weights %.1f MB, inference network %.1f MB in all, peak RSS after inference "
                "%.1f MB (%.1f MB at start)\n",
                arch, classes, mels, frames, threads, bs_nn_blas_core(), gflop, iters, infer_ms, infer_cpu_ms,
                gflop / (infer_ms / 1e3), gemm_ms, gemm_cpu_ms, gflop / (gemm_ms / 1e3), 100.0 * eff,
                batch, steps, step_ms, step_cpu_ms, train_sps,
                weights_mb, net_mb, rss_infer, rss0);
    }
    printf("{\"arch\":\"%s\",\"classes\":%d,\"n_mels\":%d,\"n_frames\":%d,\"threads\":%d,\"ranks\":%d,"
           "\"blas_core\":\"%s\",\"gflop_per_window\":%.4f,\"infer_ms_per_window\":%.3f,"
           "\"infer_cpu_ms_per_window\":%.3f,\"sgemm_ms_per_window\":%.3f,"
           "\"sgemm_cpu_ms_per_window\":%.3f,\"sgemm_efficiency\":%.3f,\"train_batch\":%d,"
           "\"train_ms_per_step\":%.1f,\"train_cpu_ms_per_step\":%.1f,"
           "\"train_samples_per_s\":%.2f,\"train_samples_per_cpu_s\":%.2f,"
           "\"train_process_cpu_ms_per_step\":%.1f,"
           "\"weights_mb\":%.2f,\"infer_net_mb\":%.2f,\"peak_rss_infer_mb\":%.1f}\n",
           arch, classes, mels, frames, threads, ranks, bs_nn_blas_core(), gflop, infer_ms, infer_cpu_ms,
           gemm_ms, gemm_cpu_ms, eff, batch, step_ms, step_cpu_ms, train_sps,
           step_cpu_ms > 0 ? batch / (step_cpu_ms / 1e3) : 0.0, step_pcpu_ms, weights_mb, net_mb, rss_infer);
    free(x);
    free(y);
    free(probs);
    free(t);
    free(tc);
    ts_dist_finalize();
    return 0;
}
