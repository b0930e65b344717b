# reliability (issue 7): the daemon's integration tests under valgrind and under ASan+UBSan.
#   make test-valgrind   every birdsongd the tests start runs under valgrind memcheck
#                        (exit 99 on an invalid access or a definite leak); VALGRIND_TESTS
#                        picks the files (timing-bound tests are left out: valgrind is ~20x slower)
#   make test-asan       birdsongd built with -fsanitize=address,undefined into build/asan and
#                        the integration tests run on it
VALGRIND_TESTS ?= tests/integration/test_hostile_http.py tests/integration/test_faults.py \
  tests/integration/test_daemon.py tests/integration/test_station.py
.PHONY: test-valgrind test-asan
test-valgrind: all
	$(Q)BIRDSONG_VALGRIND=1 BIRDSONG_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -ra $(VALGRIND_TESTS)

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
