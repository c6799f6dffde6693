/* gemm_internal.h -- the contract between the GEMM driver (gemm.c) and its
 * micro-kernels (gemm_kernel_*.c).  Not installed.
 *
 * The driver (Goto/BLIS structure) packs op(A) and op(B) into contiguous
 * micro-panels and calls one micro-kernel per MR x NR tile of C:
 *
 *   B panel (kc x nc, in L3)  is cut into NR-wide micro-panels, each stored row
 *                             after row:        b[p*NR + j] = op(B)(p, j)
 *   A block (mc x kc, in L2)  is cut into MR-tall micro-panels, each stored
 *                             column after column: a[p*MR + i] = op(A)(i, p)
 *
 * Rows of a micro-panel past the matrix edge are zero, so a kernel may always
 * compute a full MR x NR tile; it only stores the m x n corner that exists.
 *
 * Micro-kernel contract (BLIS-style):
 *
 *   C[0:m, 0:n] := beta * C[0:m, 0:n] + alpha * (A_p B_p)[0:m, 0:n]
 *
 *   c      the tile's top-left element; row stride ldc, column stride 1
 *   a, b   packed micro-panels as above, 64-byte aligned, kc >= 1
 *   m, n   1 <= m <= MR, 1 <= n <= NR (edge tiles are handled inside)
 *   beta   0 means C is not read (it may hold NaN or Inf)
 *
 * Every kernel sums the kc products of each element in increasing p, one
 * accumulator per element, whatever the tile's position: an element's value
 * depends only on the K blocking (fixed per kernel), never on the thread count.
 */
#ifndef PYNN_GEMM_INTERNAL_H
#define PYNN_GEMM_INTERNAL_H

#include <stdint.h>

typedef void (*pynn_gemm_ukernel_fn)(float *c, const float *a, const float *b,
                                     int64_t m, int64_t n, int64_t kc,
                                     float alpha, float beta, int64_t ldc);

/* Packing of one micro-panel (see the layouts above):
 *   A: ap[p*mr + i] = op(A)(i, p) = a[i*rs + p*cs], i < m, zero for m <= i < mr
 *   B: bp[p*nr + j] = op(B)(p, j) = b[p*rs + j*cs], j < n, zero for n <= j < nr */
typedef void (*pynn_gemm_pack_a_fn)(float *ap, const float *a, int64_t rs, int64_t cs,
                                    int64_t m, int64_t kc, int64_t mr);
typedef void (*pynn_gemm_pack_b_fn)(float *bp, const float *b, int64_t rs, int64_t cs,
                                    int64_t kc, int64_t n, int64_t nr);

/* The portable packing routines (gemm.c); a kernel's own packing may call them
 * for the layouts it does not specialise. */
void pynn_gemm_pack_a_ref(float *ap, const float *a, int64_t rs, int64_t cs,
                          int64_t m, int64_t kc, int64_t mr);
void pynn_gemm_pack_b_ref(float *bp, const float *b, int64_t rs, int64_t cs,
                          int64_t kc, int64_t n, int64_t nr);

/* The GEMM's cached packing workspace (gemm.c), for other drivers of the micro-kernels
 * (conv_gemm.c): *base is 64-byte aligned and holds `floats` floats until the matching
 * release; *owned is a per-call allocation to free there (NULL for the cache). */
int pynn_gemm_workspace_acquire(float **base, void **owned, size_t floats);
void pynn_gemm_workspace_release(float *base, void *owned);

/* The K-split's chunks of a product (sgemm_ksplit and the convolution's filter gradient,
 * which must cut K alike): the length of a chunk, pynn_sgemm_ksplit_chunks(M, N, K) of
 * them rounded up, and in *chunks how many are not empty (K >= 1). */
int64_t pynn_gemm_ksplit_chunk_len(int64_t M, int64_t N, int64_t K, int64_t *chunks);

/* The K-split products' last step (sgemm_ksplit and the convolution's filter gradient):
 * C = the sum of `chunks` partial products partials[ch] (m x n each, contiguous), added
 * in chunk order, each row of C written by one thread, so the result does not depend on
 * the thread count.  transpose: C is n x m (C[j][i] = sum of partials[ch][i][j]). */
void pynn_gemm_sum_partials(float *c, int64_t ldc, const float *partials, int64_t chunks,
                            int64_t m, int64_t n, int transpose);

/* ---- the small-problem path ------------------------------------------------
 *
 * Products too small to repay packing (a few dozen rows and columns: every GEMM of
 * a small network's training step) are computed straight from the operands:
 *
 *   C[0:m, 0:n] := alpha op(A) B + beta C (+ bias) (then Y = act(C) for LINEAR, RELU
 *                  and LEAKY_RELU, in registers)
 *
 *   op(A)(i, p) = a[i*a_rs + p*a_cs], with a_rs == 1 or a_cs == 1 (A transposed or not)
 *   B(p, j)     = b[p*ldb + j]: rows contiguous (the driver transposes a transposed
 *                 B into a small buffer first)
 *
 * Each element of C is one accumulator summed over p = 0 .. k-1 in increasing order
 * (no K blocking), then t = alpha * sum; beta != 0: t = beta c + t (one fused
 * multiply-add, or the generic kernel's beta * c + t); bias: t = t + bias[j]: the
 * same roundings, in the same order, as the micro-kernel followed by the epilogue
 * (gemm.c), so for K <= KC both paths agree bitwise.  beta == 0 means C is not read.
 * act: with y != NULL, y = act(t) for PYNN_ACT_LINEAR, _RELU (t > 0 ? t : 0) and
 * _LEAKY_RELU (t > 0 ? t : alpha t), the formulas of pynn_act_span; y == NULL or any
 * other act leaves Y to the driver.  y has row stride ldc and may equal c.
 * One thread; m, n, k >= 1.  The driver also runs it on products of a few rows
 * (M <= 16, B as stored: no packing), cut into column blocks, one per thread: a
 * routine may tile as it likes, but an element's arithmetic must not depend on which
 * columns or rows it is computed with. */
/* Products of at most this many multiply-adds (M N K) take the small path, whatever
 * the thread count (gemm.c); tests aim at both sides of it. */
#ifndef PYNN_GEMM_SMALL_MACS
#define PYNN_GEMM_SMALL_MACS ((int64_t)64 * 64 * 64)
#endif

typedef struct {
    float *c;
    int64_t ldc;
    const float *a;
    int64_t a_rs, a_cs;
    const float *b;
    int64_t ldb;
    int64_t m, n, k;
    float alpha, beta;
    const float *bias;       /* (n,) or NULL */
    float *y;                /* NULL: no activation in the kernel */
    int act;
    float act_alpha;
} pynn_gemm_small_problem;

typedef void (*pynn_gemm_small_fn)(const pynn_gemm_small_problem *pr);

/* bt[p*ldbt + j] = b[j*ldb + p] for p < k, j < n: op(B) of a transposed B made
 * row-contiguous for the small path (bt's padding columns are left as they are). */
typedef void (*pynn_gemm_transpose_fn)(float *bt, int64_t ldbt, const float *b, int64_t ldb,
                                       int64_t k, int64_t n);

/* The portable small-path routines (gemm_kernel_generic.c). */
void pynn_gemm_small_ref(const pynn_gemm_small_problem *pr);
void pynn_gemm_transpose_ref(float *bt, int64_t ldbt, const float *b, int64_t ldb,
                             int64_t k, int64_t n);

/* A micro-kernel and the blocking the driver uses with it.
 *   mr, nr  register tile
 *   mc      rows of the packed A block   (mc x kc floats stay in L2), multiple of mr
 *   kc      depth of one K block         (kc x nr of B stays in L1)
 *   nc      columns of the packed B panel (kc x nc floats stay in L3), multiple of nr */
typedef struct {
    int id;           /* PYNN_KERNEL_*: the dispatch level it runs at */
    int64_t mr, nr, mc, kc, nc;
    pynn_gemm_ukernel_fn ukernel;
    pynn_gemm_pack_a_fn pack_a;   /* packing in the kernel's instruction set, */
    pynn_gemm_pack_b_fn pack_b;   /* or NULL for the portable routines        */
    pynn_gemm_small_fn small;     /* the small-problem path in the same instruction */
    pynn_gemm_transpose_fn transpose;  /* set (never NULL)                        */
    /* The small path's column tiles: with A transposed (a_rs == 1), products of
     * col_min_n <= N <= col_max_n columns put rows of C in the vector lanes
     * (col_max_n 0: none).  Documentation and tests; the small routine decides. */
    int64_t col_max_n, col_min_n;
} pynn_gemm_kernel_info;

extern const pynn_gemm_kernel_info pynn_gemm_kernel_generic;
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_gemm_kernel_info pynn_gemm_kernel_avx2;
extern const pynn_gemm_kernel_info pynn_gemm_kernel_avx512;
#endif

/* The blocking table of a supported kernel (PYNN_KERNEL_GENERIC, _AVX2, _AVX512),
 * NULL if this CPU or build lacks it.  Tests use it to aim at block edges. */
const pynn_gemm_kernel_info *pynn_gemm_kernel_info_of(int which);

#endif /* PYNN_GEMM_INTERNAL_H */
