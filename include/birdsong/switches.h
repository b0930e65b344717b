/* The diagnostic switches of birdsong's programs. The programs (birdsong, birdsongd, the unit
 * tests) read them from the environment with bs_switches_from_env and hand them to the
 * library as options; the library itself never reads the environment for them
 * (ARCHITECTURE.md: programs read the environment, the library takes options).
 *
 *   BIRDSONG_NO_AVX2=1               the log-mel's baseline body (bs_melspec_options)
 *   BIRDSONG_NO_AVX512=1             at most the log-mel's AVX2 body
 *   BIRDSONG_NN_WINOGRAD=0           no Winograd convolutions (bs_net_options)
 *   BIRDSONG_NN_WINOGRAD_BACKWARD=0  no Winograd in the training backward
 *   BIRDSONG_NN_WINOGRAD_ROWS=N      training Winograd GEMMs of about N tile rows (16 to 65536)
 *
 * A NO_ switch is on when set to anything but "" or "0"; the WINOGRAD ones are off at "0". */
#ifndef BIRDSONG_SWITCHES_H
#define BIRDSONG_SWITCHES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "birdsong/features.h"
#include "birdsong/nn.h"

static inline int bs_switch_is(const char *name, int when_zero) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    return (strcmp(v, "0") == 0) == when_zero;
}

/* Reads the switches and sets the library's default options; call once at start-up. */
static inline void bs_switches_from_env(void) {
    bs_melspec_options mo = {.max_simd = BS_SIMD_AVX512};
    if (bs_switch_is("BIRDSONG_NO_AVX512", 0)) mo.max_simd = BS_SIMD_AVX2;
    if (bs_switch_is("BIRDSONG_NO_AVX2", 0)) mo.max_simd = BS_SIMD_BASELINE;
    bs_melspec_set_default_options(&mo);
    bs_net_options no = {.no_winograd = bs_switch_is("BIRDSONG_NN_WINOGRAD", 1),
                         .no_winograd_backward = bs_switch_is("BIRDSONG_NN_WINOGRAD_BACKWARD", 1)};
    const char *rows = getenv("BIRDSONG_NN_WINOGRAD_ROWS");
    if (rows && *rows) {
        char *end;
        long v = strtol(rows, &end, 10);
        if (*end == '\0' && v >= 16 && v <= 65536)
            no.winograd_train_rows = (int)v;
        else
            fprintf(stderr, "BIRDSONG_NN_WINOGRAD_ROWS='%s' ignored: expected 16 to 65536\n", rows);
    }
    bs_net_set_default_options(&no);
}

#endif
