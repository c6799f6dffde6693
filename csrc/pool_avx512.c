/* pool_avx512.c -- pooling's window loops (pool_kernel.h) compiled with the AVX-512 flags
 * (only this translation unit): pool.c's table at PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define POOL_KERNELS pynn_pool_avx512
#include "pool_kernel.h"
#endif
