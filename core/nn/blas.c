/* birdsong: OpenBLAS kernel selection. OpenBLAS picks its kernels from CPUID when it loads;
 * on virtual CPUs it may not know the model ("Intel Xeon Processor") and fall back to its
 * generic SSE3 "Prescott" kernels, 3 to 5 times slower than what the CPU can do. The choice
 * can only be overridden by OPENBLAS_CORETYPE before the library loads, hence a re-exec. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "birdsong/nn.h"

const char *bs_nn_blas_core(void) { return openblas_get_corename(); }

/* The best kernel OpenBLAS has for this CPU when it fell back to a generic one. x86 only:
 * __builtin_cpu_init/__builtin_cpu_supports exist only there. Elsewhere (arm64: Raspberry Pi)
 * OpenBLAS's own detection is kept and nothing is re-executed. */
#if defined(__x86_64__) || defined(__i386__)
static const char *best_core(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}
#else
static const char *best_core(void) { return NULL; }
#endif

void bs_nn_blas_tune(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("BIRDSONG_NO_BLAS_TUNE")) return;
    const char *core = openblas_get_corename();
    if (!core || (strcasecmp(core, "prescott") != 0 && strcasecmp(core, "core2") != 0 &&
                  strcasecmp(core, "nehalem") != 0 && strcasecmp(core, "katmai") != 0))
        return;
    const char *want = best_core();
    if (!want || !argv) return;
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the generic kernels */
}
