# birdsong — build, test, run, bench, install.
#
#   make            build build/libbirdsong.a, build/birdsong, build/birdsongd
#   make test       install Debian deps if missing, build, run unit tests (ASan+UBSan),
#                   the numeric ones again per OpenBLAS kernel and log-mel SIMD body
#                   (mk/matrix.mk), fuzz corpora and integration tests (pytest on the real binaries)
#   make run        install deps, build, start birdsongd with models/demo.bsm
#   make bench      speed figures against the numpy / PyTorch peers and the sgemm ceiling
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS (clang)
#   make install    PREFIX=/usr/local DESTDIR=
#   make test-arm64 cross-build for arm64 and test under qemu-user (mk/arm64.mk)
#   make deb        build/deb/birdsong_<version>_amd64.deb; ARCH=arm64 for the arm64 one (mk/deb.mk)
#
# Options: WERROR=0 to drop -Werror, NATIVE=1 for -march=native, OPT=-O3, V=1 verbose.

CC       ?= cc
CLANG    ?= clang
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    := build
PYTHON   := /usr/bin/python3
WERROR   ?= 1
NATIVE   ?= 0
OPT      ?= -O2
FUZZ_SECONDS ?= 60

CORE_PKGS   := sndfile soxr fftw3f openblas jansson
DAEMON_PKGS := portaudio-2.0 libmicrohttpd inih sqlite3 libsystemd jansson alsa
# the Keras importer (trainer/keras.c): `birdsong` links these, birdsongd never does
TRAINER_PKGS := hdf5-serial libzip nettle
# headers only: the daemon loads these libraries on first use (dlopen), so a station that does
# not use them does not pay their memory: FFmpeg's when a network stream is opened
# (daemon/netsource.c), libcurl when a webhook starts (daemon/webhook.c)
DLOPEN_PKGS := libavformat libavcodec libswresample libavutil libcurl
TEST_PKGS   := criterion

PKG_CFLAGS = $(shell pkg-config --cflags $(1) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(1) 2>/dev/null)

WARN := -Wall -Wextra -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN += -Werror
endif
ifeq ($(NATIVE),1)
OPT += -march=native
endif

# -ffp-contract=off: never fuse a*b+c into one FMA. The log-mel's AVX-512 body (where FMA is
# available), its AVX2 and baseline bodies and the arm64 build (FMA always available) must
# round every product and sum alike: the trainer and a station on another CPU see the same
# features, and tests/unit/test_features.c compares the bodies bit for bit. GCC leaves
# contraction off under -std=c11 but turns it on under -std=gnu11, and clang contracts
# within expressions by default, so it is stated here rather than left to a default.
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -ffp-contract=off -g $(WARN) -Iinclude -Icore -I. -MMD -MP
CFLAGS_ALL   = $(BASE_CFLAGS) $(OPT) $(call PKG_CFLAGS,$(CORE_PKGS) $(DAEMON_PKGS) $(DLOPEN_PKGS) $(TRAINER_PKGS)) $(CFLAGS)
SAN_FLAGS   := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS_SAN   = $(BASE_CFLAGS) -O1 $(SAN_FLAGS) $(call PKG_CFLAGS,$(CORE_PKGS) $(DAEMON_PKGS) $(DLOPEN_PKGS) $(TRAINER_PKGS) $(TEST_PKGS)) $(CFLAGS)

CORE_LIBS    = $(call PKG_LIBS,$(CORE_PKGS)) -lm -lpthread
DAEMON_LIBS  = $(call PKG_LIBS,$(DAEMON_PKGS)) $(CORE_LIBS) -ldl
TRAINER_LIBS = $(call PKG_LIBS,$(TRAINER_PKGS)) $(CORE_LIBS)
TEST_LIBS    = $(call PKG_LIBS,$(TEST_PKGS) $(TRAINER_PKGS)) $(DAEMON_LIBS)

# Sources are found by wildcard: a new module is a new file, no Makefile edit needed.
CORE_SRC     := $(shell find core -name '*.c' | sort)
TRAINER_SRC  := $(filter-out trainer/main.c,$(wildcard trainer/*.c))
DAEMON_SRC   := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
UNIT_SRC     := $(wildcard tests/unit/test_*.c)
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)

obj      = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
sanobj   = $(patsubst %.c,$(BUILD)/san/%.o,$(1))

LIBCORE      := $(BUILD)/libbirdsong.a
LIBTRAINER   := $(BUILD)/libbirdsong-trainer.a
LIBDAEMON    := $(BUILD)/libbirdsongd.a
SAN_LIBS     := $(BUILD)/san/libbirdsongd.a $(BUILD)/san/libbirdsong-trainer.a $(BUILD)/san/libbirdsong.a
UNIT_BINS    := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

PROGRAMS := $(BUILD)/birdsong
ifneq ($(wildcard daemon/main.c),)
PROGRAMS += $(BUILD)/birdsongd
endif

ifneq ($(V),1)
Q := @
endif

.PHONY: all deps test unit fuzz-corpus integration run bench fuzz install clean
all: $(LIBCORE) $(PROGRAMS)

deps:
	$(Q)bash scripts/install-deps.sh

# ---- objects ---------------------------------------------------------------
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-SAN  $<")
	$(Q)$(CC) $(CFLAGS_SAN) -c $< -o $@

$(LIBCORE): $(call obj,$(CORE_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^
$(LIBTRAINER): $(call obj,$(TRAINER_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^
$(LIBDAEMON): $(call obj,$(DAEMON_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^
$(BUILD)/san/libbirdsong.a: $(call sanobj,$(CORE_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^
$(BUILD)/san/libbirdsong-trainer.a: $(call sanobj,$(TRAINER_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^
$(BUILD)/san/libbirdsongd.a: $(call sanobj,$(DAEMON_SRC))
	$(Q)mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^

# ---- programs --------------------------------------------------------------
$(BUILD)/birdsong: $(call obj,trainer/main.c) $(LIBTRAINER) $(LIBCORE)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) -g -o $@ $^ $(TRAINER_LIBS) $(LDFLAGS)

$(BUILD)/birdsongd: $(call obj,daemon/main.c) $(LIBDAEMON) $(LIBCORE)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(OPT) -g -o $@ $^ $(DAEMON_LIBS) $(LDFLAGS)

# ---- tests -----------------------------------------------------------------
# Unit tests: one Criterion binary per tests/unit/test_*.c, built and run under ASan+UBSan.
$(BUILD)/tests/%: tests/unit/%.c $(SAN_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_SAN) -o $@ $< $(SAN_LIBS) $(TEST_LIBS)

unit: $(UNIT_BINS)
	$(Q)set -e; export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0; \
	  export BIRDSONG_SHARED_DATA=$${BIRDSONG_SHARED_DATA:-$(abspath ../shared/data)}; \
	  for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs 2 --short-filename || exit 1; done

# libFuzzer targets: built with clang; `make test` replays each over its committed corpus.
$(BUILD)/fuzz/%: tests/fuzz/%.c $(CORE_SRC) $(DAEMON_SRC)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CLANG) $(BASE_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(call PKG_CFLAGS,$(CORE_PKGS) $(DAEMON_PKGS) $(DLOPEN_PKGS)) -o $@ $< $(CORE_SRC) $(DAEMON_SRC) $(DAEMON_LIBS)

# the Keras importer's readers (trainer side): core + trainer/keras.c, libhdf5 and libzip
$(BUILD)/fuzz/fuzz_keras_%: tests/fuzz/fuzz_keras_%.c $(CORE_SRC) trainer/keras.c trainer/xalloc.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CLANG) $(BASE_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(call PKG_CFLAGS,$(CORE_PKGS) $(TRAINER_PKGS)) -o $@ $< $(CORE_SRC) trainer/keras.c trainer/xalloc.c $(TRAINER_LIBS)

fuzz-corpus: $(FUZZ_BINS)
	$(Q)set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); \
	  echo "== $$n over tests/fuzz/corpus/$$n"; \
	  $$f -runs=0 tests/fuzz/corpus/$$n >/dev/null 2>$(BUILD)/fuzz/$$n.log || { cat $(BUILD)/fuzz/$$n.log; exit 1; }; \
	  grep -h 'Done' $(BUILD)/fuzz/$$n.log || true; done

fuzz: $(FUZZ_BINS)
	$(Q)set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  echo "== $$n for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n; done

integration: all
	$(Q)BIRDSONG_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -ra tests/integration; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest: no integration tests collected"; exit 1; fi; exit $$rc

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory unit
	$(Q)$(MAKE) --no-print-directory unit-matrix
	$(Q)$(MAKE) --no-print-directory fuzz-corpus
	$(Q)$(MAKE) --no-print-directory integration

# ---- run, bench, install ---------------------------------------------------
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash scripts/run-demo.sh

bench: deps
	$(Q)bash scripts/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BIRDSONG_BUILD=$(abspath $(BUILD)) bash bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/birdsong/models \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(wildcard models/*.bsm),install -m 0644 $(wildcard models/*.bsm) $(DESTDIR)$(PREFIX)/share/birdsong/models/)
	$(if $(wildcard docs/man/*.1),install -m 0644 $(wildcard docs/man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/)
	$(if $(wildcard docs/man/*.8),install -m 0644 $(wildcard docs/man/*.8) $(DESTDIR)$(PREFIX)/share/man/man8/)
	$(if $(wildcard systemd/birdsongd.service),install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/birdsong)
	$(if $(wildcard systemd/birdsongd.service),sed 's|@PREFIX@|$(PREFIX)|g' systemd/birdsongd.service > $(DESTDIR)/etc/systemd/system/birdsongd.service)
	$(if $(wildcard etc/birdsongd.conf),test -e $(DESTDIR)/etc/birdsong/birdsongd.conf || install -m 0644 etc/birdsongd.conf $(DESTDIR)/etc/birdsong/birdsongd.conf)

clean:
	rm -rf $(BUILD)

-include $(wildcard mk/*.mk)
# (not inside the arm64 sysroot of mk/arm64.mk: it holds Debian's *.d directories)
-include $(shell find $(BUILD) -path '$(BUILD)/arm64/sysroot' -prune -o -name '*.d' -type f -print 2>/dev/null)
