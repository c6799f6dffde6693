/* gemm_kernel_avx2.c -- placeholder, replaced by its implementation. */
#include "internal.h"
