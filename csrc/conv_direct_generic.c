/* conv_direct_generic.c -- the direct convolution's loops (conv_direct_kernel.h) built for
 * the baseline target (SSE2 on x86-64): conv_direct.c's table at PYNN_LEVEL_GENERIC. */
#define CONV_DIRECT_KERNELS pynn_conv_direct_generic
#include "conv_direct_kernel.h"
