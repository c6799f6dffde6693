/* conv_variants_avx2.c -- the depthwise loops (conv_variants_kernel.h) compiled with the
 * avx2 flags (only this translation unit): conv_variants.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define DW_KERNELS pynn_dw_avx2
#include "conv_variants_kernel.h"
#endif
