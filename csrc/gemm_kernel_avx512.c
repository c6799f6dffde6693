/* gemm_kernel_avx512.c -- placeholder, replaced by its implementation. */
#include "internal.h"
