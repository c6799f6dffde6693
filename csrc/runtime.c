/* runtime.c -- the thread count, the one piece of global state besides the
 * GEMM micro-kernel dispatch (gemm.c). */
#include "internal.h"

static int pynn_num_threads = 0; /* 0: not set, use OpenMP's default */

int pynn_set_num_threads(int n) {
    if (n < 1) return PYNN_EINVAL;
    pynn_num_threads = n;
    return PYNN_OK;
}

int pynn_get_num_threads(void) { return pynn_threads(); }

int pynn_threads(void) {
    if (pynn_num_threads > 0) return pynn_num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int pynn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
