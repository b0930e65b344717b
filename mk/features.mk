# The log-mel inner loops (window, power, mel projection across frames, log) are written to be
# vectorized: build that one file at -O3 (GCC's -O2 cost model leaves them scalar).
$(BUILD)/obj/core/melspec.o: CFLAGS += -O3 -funroll-loops
