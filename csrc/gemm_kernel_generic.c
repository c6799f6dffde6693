/* gemm_kernel_generic.c -- placeholder, replaced by its implementation. */
#include "internal.h"
