/* conv_dx_generic.c -- the input gradient's tile kernels (conv_dx_kernel.h) built for the
 * baseline target (SSE2 on x86-64): conv_dx.c's table at PYNN_LEVEL_GENERIC. */
#define CONV_DX_KERNELS pynn_conv_dx_generic
#include "conv_dx_kernel.h"
