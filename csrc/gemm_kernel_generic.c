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

/* ---- the small-problem path (gemm_internal.h) --------------------------------
 * The same 4 x 16 tiles and the same arithmetic as the micro-kernel above, read
 * straight from A and B.  Rows past m repeat row m - 1 (computed, not stored), so
 * every tile runs the same loop. */

/* Y = act(t) for the activations the small path applies itself. */
static float generic_act(float t, int act, float act_alpha) {
    if (act == PYNN_ACT_RELU) return t > 0.0f ? t : 0.0f;
    if (act == PYNN_ACT_LEAKY_RELU) return t > 0.0f ? t : act_alpha * t;
    return t;
}

void pynn_gemm_small_ref(const pynn_gemm_small_problem *pr) {
    const int64_t k = pr->k, ldb = pr->ldb, a_rs = pr->a_rs, a_cs = pr->a_cs;
    const int act_here = pr->y != NULL && (pr->act == PYNN_ACT_LINEAR || pr->act == PYNN_ACT_RELU ||
                                           pr->act == PYNN_ACT_LEAKY_RELU);
    int64_t i0, j0, p, i, j;
    for (i0 = 0; i0 < pr->m; i0 += GENERIC_MR) {            /* M: bands of rows */
        const int64_t m = pr->m - i0 < GENERIC_MR ? pr->m - i0 : GENERIC_MR;
        const float *ar[GENERIC_MR];
        for (i = 0; i < GENERIC_MR; i++)                     /* M: rows, the last repeated */
            ar[i] = pr->a + (i0 + (i < m ? i : m - 1)) * a_rs;
        for (j0 = 0; j0 < pr->n; j0 += GENERIC_NR) {         /* N: tiles of the band */
            const int64_t n = pr->n - j0 < GENERIC_NR ? pr->n - j0 : GENERIC_NR;
            float ab[GENERIC_MR][GENERIC_NR] = {{0.0f}};
            if (n == GENERIC_NR) {
                for (p = 0; p < k; p++) {                    /* K: rank-1 updates, in order */
                    const float *bp = pr->b + p * ldb + j0;
                    for (i = 0; i < GENERIC_MR; i++) {       /* M: rows of the tile */
                        const float ai = ar[i][p * a_cs];
                        for (j = 0; j < GENERIC_NR; j++)     /* N: columns of the tile */
                            ab[i][j] += ai * bp[j];
                    }
                }
            } else {
                for (p = 0; p < k; p++) {                    /* K: rank-1 updates, in order */
                    const float *bp = pr->b + p * ldb + j0;
                    for (i = 0; i < GENERIC_MR; i++) {       /* M: rows of the tile */
                        const float ai = ar[i][p * a_cs];
                        for (j = 0; j < n; j++)              /* N: columns that exist */
                            ab[i][j] += ai * bp[j];
                    }
                }
            }
            for (i = 0; i < m; i++) {                        /* M: rows of C stored */
                float *ci = pr->c + (i0 + i) * pr->ldc + j0;
                float *yi = act_here ? pr->y + (i0 + i) * pr->ldc + j0 : NULL;
                for (j = 0; j < n; j++) {                    /* N: columns of C stored */
                    float t = pr->beta == 0.0f ? pr->alpha * ab[i][j]
                                               : pr->beta * ci[j] + pr->alpha * ab[i][j];
                    if (pr->bias != NULL) t = t + pr->bias[j0 + j];
                    ci[j] = t;
                    if (act_here) yi[j] = generic_act(t, pr->act, pr->act_alpha);
                }
            }
        }
    }
}

/* bt[p*ldbt + j] = b[j*ldb + p], a cache line of every row of b at a time. */
void pynn_gemm_transpose_ref(float *bt, int64_t ldbt, const float *b, int64_t ldb,
                             int64_t k, int64_t n) {
    int64_t p0, p, j;
    for (p0 = 0; p0 < k; p0 += 16) {                         /* K: a cache line at a time */
        const int64_t p1 = p0 + 16 < k ? p0 + 16 : k;
        for (j = 0; j < n; j++)                               /* N: rows of b */
            for (p = p0; p < p1; p++)                         /* K: along the line */
                bt[p * ldbt + j] = b[j * ldb + p];
    }
}

/* Blocking: kc x 16 floats of B (16 KiB at kc = 256) sit in L1, a 128 x 256
 * block of A (128 KiB) in L2; the portable kernel is not tuned further. */
const pynn_gemm_kernel_info pynn_gemm_kernel_generic = {
    PYNN_KERNEL_GENERIC, GENERIC_MR, GENERIC_NR, 128, 256, 2048,
    gemm_ukernel_generic, NULL, NULL, pynn_gemm_small_ref, pynn_gemm_transpose_ref, 0, 0,
};
