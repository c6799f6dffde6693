/* conv_winograd_avx512.c -- the Winograd convolution's block kernel
 * (conv_winograd_kernel.h) compiled with -mavx512f/vl/dq/bw (only this translation
 * unit): conv_winograd.c's table at PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define WG_KERNELS pynn_conv_winograd_avx512
#include "conv_winograd_kernel.h"
#endif
