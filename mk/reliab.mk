# reliability (issue 7): the daemon's integration tests under valgrind and under ASan+UBSan.
#   make test-valgrind   every birdsongd the tests start runs under valgrind memcheck, its
#                        report in build/valgrind/vg-<pid>.log; fails when any report is not
#                        empty (an invalid access or a definite leak). Timing-bound tests may
#                        fail under valgrind (~20x slower): they are reported, not the verdict.
#   make test-asan       birdsongd built with -fsanitize=address,undefined into build/asan and
#                        the integration tests run on it
# Default: the tests whose daemons read files. Through PortAudio and alsa-lib every run shows
# alsa-lib's well-known uninitialised-bits reports (hw_params refinement in Pa_Initialize),
# and the period sizes derived from them taint the callback's frame counts.
VALGRIND_TESTS ?= tests/integration/test_hostile_http.py tests/integration/test_faults.py \
  tests/integration/test_station.py tests/integration/test_load.py
VALGRIND_K ?= not unplugged
.PHONY: test-valgrind test-asan
VG_LOGS := $(abspath $(BUILD))/valgrind
test-valgrind: all
	$(Q)rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS)
	$(Q)BIRDSONG_VALGRIND=1 BIRDSONG_VALGRIND_LOGDIR=$(VG_LOGS) BIRDSONG_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -q -ra -k "$(VALGRIND_K)" $(VALGRIND_TESTS) || echo "test-valgrind: some tests failed (timing under valgrind?); memcheck verdict below"
	$(Q)n=$$(ls $(VG_LOGS) | wc -l); bad=$$(find $(VG_LOGS) -type f -size +0 | wc -l); \
	  echo "test-valgrind: $$n daemon runs under memcheck, $$bad with errors or definite leaks"; \
	  find $(VG_LOGS) -type f -size +0 -exec sh -c 'echo "== $$1"; head -60 "$$1"' _ {} \; ; test $$bad -eq 0

test-asan:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan \
	  OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	$(Q)ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=98 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  BIRDSONG_BUILD=$(abspath $(BUILD)/asan) $(PYTHON) -m pytest -q -ra tests/integration

# LD_PRELOAD clock shifter for the clock-jump fault test (tests/tools/clockshift.c).
all: $(BUILD)/tools/libclockshift.so
$(BUILD)/tools/libclockshift.so: tests/tools/clockshift.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) -std=c11 -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl
