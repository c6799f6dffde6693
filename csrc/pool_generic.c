/* pool_generic.c -- pooling's window loops (pool_kernel.h) built for the baseline target
 * (SSE2 on x86-64): pool.c's table at PYNN_LEVEL_GENERIC. */
#define POOL_KERNELS pynn_pool_generic
#include "pool_kernel.h"
