# Every CPU (issue 15): the numeric unit tests once per OpenBLAS kernel an x86-64 machine may
# get and once per SIMD body of the log-mel, so that a CPU-dependent assumption fails here and
# not on a user's machine.
#
#   make unit-matrix   build the numeric tests WITHOUT sanitizers into build/tests-opt (the
#                      SIMD bodies are compiled out under ASan, see core/melspec.c, and the
#                      -O2/-O3 objects are what users run), then run each of them:
#                        OPENBLAS_CORETYPE=Prescott, Haswell, Zen, SkylakeX (a kernel this CPU
#                        cannot execute is skipped, and said so), and
#                        BIRDSONG_NO_AVX512=1 (the AVX2 body), BIRDSONG_NO_AVX2=1 (baseline);
#                      the AVX-512 body runs in the kernel runs when the CPU has it.
# test_nn checks that the kernel OpenBLAS reports is the one OPENBLAS_CORETYPE asked for, so a
# run that silently fell back to another kernel fails instead of passing on the wrong code.
MATRIX_TESTS   ?= test_nn test_model test_features test_reference test_trainer_train test_norm
MATRIX_KERNELS ?= Prescott Haswell Zen SkylakeX
MATRIX_BINS    := $(patsubst %,$(BUILD)/tests-opt/%,$(MATRIX_TESTS))

$(BUILD)/tests-opt/%: tests/unit/%.c $(LIBDAEMON) $(LIBTRAINER) $(LIBCORE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-O  $@")
	$(Q)$(CC) $(CFLAGS_ALL) $(call PKG_CFLAGS,$(TEST_PKGS)) -o $@ $< \
	  $(LIBDAEMON) $(LIBTRAINER) $(LIBCORE) $(TEST_LIBS)

.PHONY: unit-matrix
unit-matrix: $(MATRIX_BINS)
	$(Q)BIRDSONG_SHARED_DATA=$${BIRDSONG_SHARED_DATA:-$(abspath ../shared/data)} \
	  bash scripts/unit-matrix.sh "$(MATRIX_KERNELS)" $(MATRIX_BINS)
