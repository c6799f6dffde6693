/* conv_direct_avx512.c -- the direct convolution's loops (conv_direct_kernel.h) compiled
 * with -mavx512f/vl/dq/bw (only this translation unit): conv_direct.c's table at
 * PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define CONV_DIRECT_KERNELS pynn_conv_direct_avx512
#include "conv_direct_kernel.h"
#endif
