# birdsongd extras: the test model tool and the ALSA capture test plugin (REFERENCES.md §5),
# both built by `make all` so that the integration tests find them in $(BUILD).

TEST_TOOLS := $(BUILD)/tools/make_test_model $(BUILD)/alsa/libasound_module_pcm_bsfile.so

all: $(TEST_TOOLS)

$(BUILD)/tools/make_test_model: tests/tools/make_test_model.c $(LIBCORE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $< $(LIBCORE) $(CORE_LIBS)

# An ALSA ioplug capture device that plays a file at real-time pace, bit-exact.
# -DPIC matters: without it alsa-lib's plugin entry symbol is not exported as expected.
$(BUILD)/alsa/libasound_module_pcm_bsfile.so: tests/alsa/pcm_bsfile.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  ALSA    $@")
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -DPIC -fPIC -shared -o $@ $< \
	  $(call PKG_CFLAGS,alsa sndfile) $(call PKG_LIBS,alsa sndfile)

# `make test` also checks the unit file: verify clean, exposure <= 2.0.
.PHONY: systemd-check
systemd-check:
	$(Q)bash scripts/check-unit.sh systemd/birdsongd.service

integration: systemd-check
