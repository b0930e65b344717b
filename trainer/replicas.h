/* Data-parallel training in one process: N replicas of a network, each on its own thread and
 * its own shard of every batch, their gradients reduced in a fixed order.
 *
 * Replica 0 is the caller's net (the model's): it holds the weights Adam updates, the batchnorm
 * running statistics that are written, and after ts_replicas_step the reduced gradients.
 * Replicas 1..N-1 are nets of the same layer list with their own parameters, gradients and
 * activations; at the start of every step they take replica 0's parameters (copied by all
 * threads, one slice each) and batchnorm buffers, so whatever the caller does to replica 0 between steps (Adam, restoring the best or
 * the averaged weights) is what every replica trains from.
 *
 * A batch of b windows is cut into N contiguous shards, sizes differing by at most one (fewer
 * replicas when b < 2N: batchnorm needs two samples). Each replica runs forward, loss and
 * backward on its shard; then the gradient of the whole batch's mean loss is
 *     g = sum_i (b_i / b) g_i      summed for i = 0, 1, ..., N-1 in that order,
 * each element by one thread (the parameter range is cut into N slices), so the same N, seed
 * and data give the same bits whatever the thread timing.
 *
 * Batch normalisation: batch statistics are per replica (each shard is normalised by its own
 * mean and variance, as PyTorch's DistributedDataParallel does without SyncBatchNorm): syncing
 * them would need two extra exchanges inside every batchnorm layer of every forward and
 * backward, and per-shard statistics of 16 or more windows are as good an estimate as the
 * network needs. The running statistics that inference uses are the shard-size-weighted mean of
 * the replicas' in the same fixed order, written to replica 0 after every step.
 *
 * Dropout: replica i draws its masks from seed + i * 0x9E3779B97F4A7C15 (replica 0 from the
 * seed itself, so N = 1 is the plain single-net step, bit for bit); i counts across processes
 * under MPI (ts_replicas_set_first_index).
 *
 * OpenBLAS must run one thread per caller when N > 1 (bs_nn_set_threads(1)): the replicas are
 * the parallelism. */
#ifndef BIRDSONG_TRAINER_REPLICAS_H
#define BIRDSONG_TRAINER_REPLICAS_H

#include <stdint.h>

#include "birdsong/error.h"
#include "birdsong/nn_train.h"

typedef struct ts_replicas ts_replicas;

/* n >= 1 replicas around net (a training net, not inference-only), threads started. */
ts_replicas *ts_replicas_create(bs_net *net, int n, bs_error *err);
void ts_replicas_free(ts_replicas *r);
int ts_replicas_n(const ts_replicas *r);
/* Seeds every replica's dropout RNG (see above). */
void ts_replicas_set_dropout_seed(ts_replicas *r, uint64_t seed);
/* The global index of replica 0 when several processes train together (MPI rank r with N
 * replicas each: r * N), so that replica i draws the masks of global replica first + i, as
 * the same shard does in one process with more replicas (0). */
void ts_replicas_set_first_index(ts_replicas *r, int first);
/* One training step on x (batch, in_h, in_w) and targets y (batch, n_outputs), pos_weight as
 * bs_net_loss: leaves the gradient of the batch's mean loss in bs_net_grads(net) and the merged
 * running statistics in net; returns the batch's mean loss. 2 <= batch <= the net's max_batch. */
float ts_replicas_step(ts_replicas *r, const float *x, const float *y, const float *pos_weight, int batch);

/* The Adam step on replica 0 after ts_replicas_step(_all): bs_adam_step(adam,
 * bs_net_params(net), bs_net_grads(net)) with the elementwise update cut into the replicas'
 * slices of the parameters, one per thread (the norm and clipping on the caller's), so no core
 * idles through it. Same bits as bs_adam_step; returns its norm. */
float ts_replicas_adam_step(ts_replicas *r, bs_adam *adam);

/* The same over every MPI rank (dist.h): the batch (the same on every rank) is cut into one
 * share per rank as ts_replicas_step cuts it into replicas, this process steps on its share,
 * and the shares' gradients, running statistics and losses, each weighted by its share of the
 * batch, are summed over the ranks (MPI_Allreduce), so every rank ends with the same result.
 * Rank k with N replicas then computes exactly what replicas kN..kN+N-1 of one process
 * with K*N replicas would (for K*N = 2, bit for bit; beyond, the sums may be grouped
 * differently, within rounding). Without MPI, ts_replicas_step. */
float ts_replicas_step_all(ts_replicas *r, const float *x, const float *y, const float *pos_weight, int batch);

#endif
