/* The unit tests honour the programs' diagnostic switches (birdsong/switches.h): a test
 * binary run under BIRDSONG_NO_AVX2=1, BIRDSONG_NO_AVX512=1 or BIRDSONG_NN_WINOGRAD=0 tests
 * that path. Read once, before Criterion starts (and forks) the tests. */
#ifndef BIRDSONG_TESTS_SWITCHES_FROM_ENV_H
#define BIRDSONG_TESTS_SWITCHES_FROM_ENV_H

#include "birdsong/switches.h"

__attribute__((constructor)) static void switches_from_env(void) { bs_switches_from_env(); }

#endif
