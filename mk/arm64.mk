# arm64 (issue 15): the Raspberry Pi build, cross-compiled against Debian's arm64 libraries
# and tested under qemu-user.
#
#   make test-arm64   install the cross compiler and qemu-user (scripts/install-deps.sh
#                     --arm64), build the arm64 sysroot under build/arm64 (downloaded and
#                     unpacked .debs, never installed: scripts/arm64-sysroot.sh), cross-build
#                     the programs and every unit test (without sanitizers: ASan does not run
#                     under qemu-user; test_noalloc counts allocations through ASan's hooks, so
#                     it runs only natively) into build/arm64/out, then run them all under
#                     qemu-aarch64 plus the end-to-end check against the x86 build
#                     (scripts/test-arm64.sh: classify and birdsongd --input, within 1e-4),
#                     and the arm64 .deb built (mk/deb.mk), installed into a throwaway root,
#                     its programs run under qemu, removed.
#   make arm64        only the cross build (programs and unit tests) into build/arm64/out
ARM64_TRIPLET := aarch64-linux-gnu
ARM64_SYSROOT  = $(abspath $(BUILD))/arm64/sysroot
ARM64_OUT      = $(BUILD)/arm64/out
ARM64_PKGDIRS  = $(ARM64_SYSROOT)/usr/lib/$(ARM64_TRIPLET)/pkgconfig:$(ARM64_SYSROOT)/usr/share/pkgconfig
ARM64_TESTS   := $(filter-out test_noalloc,$(patsubst tests/unit/%.c,%,$(UNIT_SRC)))
# The variables a cross build needs: the compiler against the sysroot, pkg-config reading
# only the sysroot's .pc files (and prefixing their paths with it).
ARM64_MAKE = PKG_CONFIG_SYSROOT_DIR=$(ARM64_SYSROOT) PKG_CONFIG_LIBDIR=$(ARM64_PKGDIRS) PKG_CONFIG_PATH= \
  $(MAKE) --no-print-directory BUILD=$(ARM64_OUT) CC="$(ARM64_TRIPLET)-gcc --sysroot=$(ARM64_SYSROOT)"

.PHONY: arm64 arm64-sysroot test-arm64 tests-opt-all
arm64-sysroot:
	$(Q)bash scripts/install-deps.sh --arm64
	$(Q)bash scripts/arm64-sysroot.sh $(BUILD)

# every unit test built without sanitizers (used by the arm64 build)
tests-opt-all: $(patsubst %,$(BUILD)/tests-opt/%,$(ARM64_TESTS))

arm64: arm64-sysroot
	+$(Q)$(ARM64_MAKE) all tests-opt-all $(ARM64_OUT)/tools/libqemu_exec.so

# Loaded into emulated programs: Criterion's re-exec of a test goes through qemu again.
$(BUILD)/tools/libqemu_exec.so: tests/tools/qemu_exec.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) -std=c11 -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

test-arm64: arm64
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash scripts/make-deb.sh arm64 $(ARM64_OUT) $(BUILD)/deb $(ARM64_SYSROOT)
	$(Q)BIRDSONG_BUILD=$(abspath $(BUILD)) ARM64_OUT=$(abspath $(ARM64_OUT)) ARM64_SYSROOT=$(ARM64_SYSROOT) \
	  BIRDSONG_SHARED_DATA=$${BIRDSONG_SHARED_DATA:-$(abspath ../shared/data)} \
	  bash scripts/test-arm64.sh $(ARM64_TESTS)
