# nn: the network's elementwise loops (relu, batchnorm, pooling, im2col, Adam) need -O3 to
# vectorize; GCC's -O2 cost model leaves them scalar.
$(BUILD)/obj/core/nn/%.o: OPT += -O3
