/* conv_dx_avx2.c -- the input gradient's tile kernels (conv_dx_kernel.h) compiled with
 * -mavx2 -mfma (only this translation unit): conv_dx.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define CONV_DX_KERNELS pynn_conv_dx_avx2
#include "conv_dx_kernel.h"
#endif
