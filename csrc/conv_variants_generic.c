/* conv_variants_generic.c -- the depthwise loops (conv_variants_kernel.h) built for the
 * baseline target (SSE2 on x86-64): conv_variants.c's table at PYNN_LEVEL_GENERIC. */
#define DW_KERNELS pynn_dw_generic
#include "conv_variants_kernel.h"
