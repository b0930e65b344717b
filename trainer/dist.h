/* Training across processes and machines with MPI, loaded at run time.
 *
 * `mpirun -np K birdsong train|bench ...` starts K ranks; each loads OpenMPI's libmpi.so.40
 * with dlopen (RTLD_GLOBAL: OpenMPI's own plugins resolve their symbols against it) only when
 * the environment says it runs under mpirun (OMPI_COMM_WORLD_SIZE set). birdsong therefore
 * does not link libmpi: classify, eval, inspect and the daemon run where OpenMPI is not
 * installed, and a station never carries it. The handles OpenMPI's mpi.h defines as macros
 * (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM...) are the addresses of its exported objects
 * (ompi_mpi_comm_world, ...), found with dlsym: this is OpenMPI's ABI, not MPICH's.
 *
 * Outside mpirun every call is a no-op for one rank: rank 0 of 1. */
#ifndef BIRDSONG_TRAINER_DIST_H
#define BIRDSONG_TRAINER_DIST_H

#include <stddef.h>

#include "birdsong/error.h"

/* Under mpirun: loads libmpi and calls MPI_Init; a failure says what is missing. Otherwise
 * one rank. Call once, from the main thread, before any other thread starts. */
int ts_dist_init(bs_error *err);
void ts_dist_finalize(void);
int ts_dist_rank(void);
int ts_dist_size(void);
/* Element-wise sum over the ranks, in place, every rank gets the result. */
void ts_dist_sum_float(float *x, size_t n);
void ts_dist_sum_double(double *x, int n);
/* rank 0's x to every rank */
void ts_dist_bcast_float(float *x, size_t n);
/* Ends every rank (an error on one would leave the others waiting in a reduction). */
void ts_dist_abort(int code);

#endif
