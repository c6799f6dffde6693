/* conv_variants_avx512.c -- the depthwise loops (conv_variants_kernel.h) compiled with the
 * avx512 flags (only this translation unit): conv_variants.c's table at PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define DW_KERNELS pynn_dw_avx512
#include "conv_variants_kernel.h"
#endif
