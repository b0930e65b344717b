/* MPI through dlopen. See dist.h. */
#include "trainer/dist.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

typedef void *mpi_handle; /* OpenMPI: every handle is a pointer to a predefined object */

static struct {
    void *lib;
    int rank, size;
    mpi_handle comm, t_float, t_double, op_sum;
    int (*init)(int *, char ***);
    int (*finalize)(void);
    int (*comm_rank)(mpi_handle, int *);
    int (*comm_size)(mpi_handle, int *);
    int (*allreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle);
    int (*bcast)(void *, int, mpi_handle, int, mpi_handle);
    int (*abort_)(mpi_handle, int);
} g = {.rank = 0, .size = 1};

#define MPI_IN_PLACE_ ((void *)1) /* OpenMPI's MPI_IN_PLACE */

int ts_dist_init(bs_error *err) {
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n || g.lib) return 0;
    const char *name = "libmpi.so.40";
    g.lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!g.lib)
        return bs_error_set(err, "running under mpirun (OMPI_COMM_WORLD_SIZE=%s) but %s could not be loaded: %s "
                                 "(install openmpi-bin)",
                            n, name, dlerror());
    struct {
        const char *sym;
        void **to;
    } need[] = {
        {"MPI_Init", (void **)&g.init},           {"MPI_Finalize", (void **)&g.finalize},
        {"MPI_Comm_rank", (void **)&g.comm_rank}, {"MPI_Comm_size", (void **)&g.comm_size},
        {"MPI_Allreduce", (void **)&g.allreduce}, {"MPI_Bcast", (void **)&g.bcast},
        {"MPI_Abort", (void **)&g.abort_},        {"ompi_mpi_comm_world", &g.comm},
        {"ompi_mpi_float", &g.t_float},           {"ompi_mpi_double", &g.t_double},
        {"ompi_mpi_op_sum", &g.op_sum},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        *need[i].to = dlsym(g.lib, need[i].sym);
        if (!*need[i].to) {
            bs_error_set(err, "%s has no symbol %s: not OpenMPI 4 (birdsong uses OpenMPI's ABI)", name, need[i].sym);
            dlclose(g.lib);
            g.lib = NULL;
            return -1;
        }
    }
    if (g.init(NULL, NULL) != 0 || g.comm_rank(g.comm, &g.rank) != 0 || g.comm_size(g.comm, &g.size) != 0)
        return bs_error_set(err, "MPI_Init failed");
    return 0;
}

void ts_dist_finalize(void) {
    if (g.lib) g.finalize();
    g.rank = 0;
    g.size = 1;
}

int ts_dist_rank(void) { return g.rank; }
int ts_dist_size(void) { return g.size; }

void ts_dist_sum_float(float *x, size_t n) {
    if (g.size < 2) return;
    for (size_t off = 0; off < n; off += (size_t)INT_MAX) {
        size_t k = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
        g.allreduce(MPI_IN_PLACE_, x + off, (int)k, g.t_float, g.op_sum, g.comm);
    }
}

void ts_dist_sum_double(double *x, int n) {
    if (g.size > 1) g.allreduce(MPI_IN_PLACE_, x, n, g.t_double, g.op_sum, g.comm);
}

void ts_dist_bcast_float(float *x, size_t n) {
    if (g.size < 2) return;
    for (size_t off = 0; off < n; off += (size_t)INT_MAX) {
        size_t k = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
        g.bcast(x + off, (int)k, g.t_float, 0, g.comm);
    }
}

void ts_dist_abort(int code) {
    if (g.size > 1) g.abort_(g.comm, code);
    exit(code);
}
