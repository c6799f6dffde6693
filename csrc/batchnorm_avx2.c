/* batchnorm_avx2.c -- batch normalization's row loops (batchnorm_kernel.h) compiled with
 * -mavx2 -mfma (only this translation unit): batchnorm.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define BN_KERNELS pynn_bn_avx2
#include "batchnorm_kernel.h"
#endif
