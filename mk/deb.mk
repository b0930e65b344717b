# Debian packages (issue 15): scripts/make-deb.sh from packaging/deb/ with dpkg-deb.
#   make deb              build/deb/birdsong_<version>_amd64.deb
#   make deb ARCH=arm64   build/deb/birdsong_<version>_arm64.deb, cross-built (mk/arm64.mk)
# Both run lintian and fail on an error. `make test` builds the amd64 one and
# tests/integration/test_deb.py installs it into a throwaway root, checks and removes it.
DEB_ARCH := $(or $(ARCH),amd64)
.PHONY: deb
ifeq ($(DEB_ARCH),arm64)
deb: arm64
	$(Q)bash scripts/make-deb.sh arm64 $(ARM64_OUT) $(BUILD)/deb $(ARM64_SYSROOT)
else
deb: all
	$(Q)bash scripts/make-deb.sh $(DEB_ARCH) $(BUILD) $(BUILD)/deb
endif

integration: deb
