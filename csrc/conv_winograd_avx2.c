/* conv_winograd_avx2.c -- the Winograd convolution's block kernel
 * (conv_winograd_kernel.h) compiled with -mavx2 -mfma (only this translation unit):
 * conv_winograd.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define WG_KERNELS pynn_conv_winograd_avx2
#include "conv_winograd_kernel.h"
#endif
