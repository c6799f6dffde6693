/* conv_dx_kernel.h -- the input gradient's tile kernels (contract: conv_dx_internal.h),
 * written once and compiled once per instruction set: conv_dx_generic.c, conv_dx_avx2.c
 * and conv_dx_avx512.c each define CONV_DX_KERNELS, the name of their table, and include
 * this file under their own -m flags.
 *
 * The vector primitives below are the set's own: AVX-512 and AVX2 with fused
 * multiply-adds (intrinsics), the baseline with GCC/Clang vectors and a separate multiply
 * and add (-ffp-contract=off keeps them apart), as the GEMM's portable micro-kernel does.
 * The tile loops themselves are in conv_dx_tile.h, included once per tile shape. */
#ifndef CONV_DX_KERNELS
#error "conv_dx_kernel.h: define CONV_DX_KERNELS (the table's name) first"
#endif

#include <string.h>
#include "internal.h"
#include "conv_dx_internal.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define CONV_DX_LANES 16
typedef __m512 conv_dx_vec;
#define DX_LOAD(p) _mm512_load_ps(p)              /* the packed kernel: aligned */
#define DX_STOREU(p, v) _mm512_storeu_ps((p), (v))
#define DX_SET1(x) _mm512_set1_ps(x)
#define DX_ZERO() _mm512_setzero_ps()
#define DX_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CONV_DX_LANES 8
typedef __m256 conv_dx_vec;
#define DX_LOAD(p) _mm256_load_ps(p)
#define DX_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define DX_SET1(x) _mm256_set1_ps(x)
#define DX_ZERO() _mm256_setzero_ps()
#define DX_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#else
#define CONV_DX_LANES 4
typedef float conv_dx_vec __attribute__((vector_size(16)));
static inline conv_dx_vec dx_loadu(const float *p) {
    conv_dx_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void dx_storeu(float *p, conv_dx_vec v) { memcpy(p, &v, sizeof v); }
#define DX_LOAD(p) dx_loadu(p)
#define DX_STOREU(p, v) dx_storeu((p), (v))
#define DX_SET1(x) ((conv_dx_vec){(x), (x), (x), (x)})
#define DX_ZERO() ((conv_dx_vec){0.0f, 0.0f, 0.0f, 0.0f})
#define DX_FMA(a, b, c) ((a) * (b) + (c))
#endif

#define CONV_DX_CAT_(a, b, c) a##b##x##c
#define CONV_DX_TILE_NAME(mr, nv) CONV_DX_CAT_(conv_dx_tile_, mr, nv)

#if CONV_DX_LANES == 16
/* 24 accumulators of 32 registers; 12, 8 or 6 row pointers in the 15 general ones */
#define CONV_DX_MR 12
#define CONV_DX_NV 2
#include "conv_dx_tile.h"
#define CONV_DX_MR 8
#define CONV_DX_NV 3
#include "conv_dx_tile.h"
#define CONV_DX_MR 6
#define CONV_DX_NV 4
#include "conv_dx_tile.h"
#define CONV_DX_MR 12
#define CONV_DX_NV 1
#include "conv_dx_tile.h"
const conv_dx_kernels CONV_DX_KERNELS = {
    CONV_DX_LANES, 4,
    {{12, 2, CONV_DX_TILE_NAME(12, 2)}, {8, 3, CONV_DX_TILE_NAME(8, 3)},
     {6, 4, CONV_DX_TILE_NAME(6, 4)}, {12, 1, CONV_DX_TILE_NAME(12, 1)}},
};
#elif CONV_DX_LANES == 8
/* 12 accumulators of 16 registers, as the GEMM's AVX2 micro-kernel */
#define CONV_DX_MR 6
#define CONV_DX_NV 2
#include "conv_dx_tile.h"
#define CONV_DX_MR 4
#define CONV_DX_NV 3
#include "conv_dx_tile.h"
#define CONV_DX_MR 12
#define CONV_DX_NV 1
#include "conv_dx_tile.h"
const conv_dx_kernels CONV_DX_KERNELS = {
    CONV_DX_LANES, 3,
    {{6, 2, CONV_DX_TILE_NAME(6, 2)}, {4, 3, CONV_DX_TILE_NAME(4, 3)},
     {12, 1, CONV_DX_TILE_NAME(12, 1)}},
};
#else
#define CONV_DX_MR 4
#define CONV_DX_NV 3
#include "conv_dx_tile.h"
#define CONV_DX_MR 8
#define CONV_DX_NV 1
#include "conv_dx_tile.h"
const conv_dx_kernels CONV_DX_KERNELS = {
    CONV_DX_LANES, 2,
    {{4, 3, CONV_DX_TILE_NAME(4, 3)}, {8, 1, CONV_DX_TILE_NAME(8, 1)}},
};
#endif
