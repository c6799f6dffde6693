/* conv_winograd_generic.c -- the Winograd convolution's block kernel
 * (conv_winograd_kernel.h) built for the baseline target: conv_winograd.c's table at
 * PYNN_LEVEL_GENERIC. */
#define WG_KERNELS pynn_conv_winograd_generic
#include "conv_winograd_kernel.h"
