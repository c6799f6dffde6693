/* gemm_kernel_generic.c -- the portable C micro-kernel, the reference the SIMD
 * kernels are checked against.  Contract: see gemm_internal.h.
 *
 * 4 x 16 tile: 64 accumulators, written so that the compiler can keep a row of
 * the tile in vector registers on any target (SSE2 on baseline x86-64). */
#include "internal.h"
#include "gemm_internal.h"

#define GENERIC_MR 4
#define GENERIC_NR 16

static void gemm_ukernel_generic(float *c, const float *a, const float *b,
                                 int64_t m, int64_t n, int64_t kc,
                                 float alpha, float beta, int64_t ldc) {
    float ab[GENERIC_MR][GENERIC_NR] = {{0.0f}};
    int64_t p, i, j;
    for (p = 0; p < kc; p++) {                /* K: one rank-1 update per step */
        for (i = 0; i < GENERIC_MR; i++) {    /* M: rows of the tile */
            const float ai = a[i];
            for (j = 0; j < GENERIC_NR; j++)  /* N: columns of the tile */
                ab[i][j] += ai * b[j];
        }
        a += GENERIC_MR;
        b += GENERIC_NR;
    }
    /* Only the m x n corner exists in C; beta == 0 must not read C. */
    for (i = 0; i < m; i++) {                 /* M: rows of C stored */
        float *ci = c + i * ldc;
        if (beta == 0.0f) {
            for (j = 0; j < n; j++)           /* N: columns of C stored */
                ci[j] = alpha * ab[i][j];
        } else {
            for (j = 0; j < n; j++)           /* N: columns of C stored */
                ci[j] = beta * ci[j] + alpha * ab[i][j];
        }
    }
}

/* Blocking: kc x 16 floats of B (16 KiB at kc = 256) sit in L1, a 128 x 256
 * block of A (128 KiB) in L2; the portable kernel is not tuned further. */
const pynn_gemm_kernel_info pynn_gemm_kernel_generic = {
    PYNN_KERNEL_GENERIC, "generic", GENERIC_MR, GENERIC_NR, 128, 256, 2048,
    gemm_ukernel_generic, NULL, NULL,
};
