/* batchnorm_avx512.c -- batch normalization's row loops (batchnorm_kernel.h) compiled with
 * the AVX-512 flags (only this translation unit): batchnorm.c's table at PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define BN_KERNELS pynn_bn_avx512
#include "batchnorm_kernel.h"
#endif
