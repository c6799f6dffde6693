/* pool_avx2.c -- pooling's window loops (pool_kernel.h) compiled with -mavx2 -mfma (only
 * this translation unit): pool.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define POOL_KERNELS pynn_pool_avx2
#include "pool_kernel.h"
#endif
