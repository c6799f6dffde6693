/* conv_direct_avx2.c -- the direct convolution's loops (conv_direct_kernel.h) compiled
 * with -mavx2 -mfma (only this translation unit): conv_direct.c's table at
 * PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define CONV_DIRECT_KERNELS pynn_conv_direct_avx2
#include "conv_direct_kernel.h"
#endif
