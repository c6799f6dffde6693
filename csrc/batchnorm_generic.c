/* batchnorm_generic.c -- batch normalization's row loops (batchnorm_kernel.h) built for the
 * baseline target (SSE2 on x86-64): batchnorm.c's table at PYNN_LEVEL_GENERIC. */
#define BN_KERNELS pynn_bn_generic
#include "batchnorm_kernel.h"
