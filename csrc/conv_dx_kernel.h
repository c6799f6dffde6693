/* conv_dx_kernel.h -- the input gradient's tile kernels (contract: conv_dx_internal.h),
 * written once and compiled once per instruction set: conv_dx_generic.c, conv_dx_avx2.c
 * and conv_dx_avx512.c each define CONV_DX_KERNELS, the name of their table, and include
 * this file under their own -m flags.
 *
 * The vector primitives below are the set's own: AVX-512 and AVX2 with fused
 * multiply-adds (intrinsics), the baseline with GCC/Clang vectors and a separate multiply
 * and add (-ffp-contract=off keeps them apart), as the GEMM's portable micro-kernel does.
 * The tile loops themselves are in conv_dx_tile.h (channels in the lanes) and
 * conv_dx_flane.h (filters in the lanes, for a few channels), included once per shape. */
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
#define CONV_DX_FLANE_NAME_(fc) conv_dx_flane_##fc
#define CONV_DX_FLANE_NAME(fc) CONV_DX_FLANE_NAME_(fc)

/* ---- the filter-lanes tiles (conv_dx_flane.h): 16-float logical vectors ---------- */
#if defined(__AVX512F__)
typedef __m512 dx16;
static inline dx16 dx16_zero(void) { return _mm512_setzero_ps(); }
static inline dx16 dx16_load(const float *p) { return _mm512_loadu_ps(p); }
static inline dx16 dx16_load_part(const float *p, int64_t valid) {
    return valid >= 16 ? _mm512_loadu_ps(p)
                       : _mm512_maskz_loadu_ps((__mmask16)((1u << valid) - 1u), p);
}
static inline dx16 dx16_fma(dx16 a, dx16 b, dx16 c) { return _mm512_fmadd_ps(a, b, c); }
static inline void dx16_store(float *p, dx16 v) { _mm512_storeu_ps(p, v); }
#define CONV_DX_FL_BUDGET 24                   /* accumulator registers */
#elif defined(__AVX2__) && defined(__FMA__)
typedef struct {
    __m256 lo, hi;
} dx16;
static inline dx16 dx16_zero(void) {
    dx16 r;
    r.lo = r.hi = _mm256_setzero_ps();
    return r;
}
static inline dx16 dx16_load(const float *p) {
    dx16 r;
    r.lo = _mm256_loadu_ps(p);
    r.hi = _mm256_loadu_ps(p + 8);
    return r;
}
static inline dx16 dx16_load_part(const float *p, int64_t valid) {
    float t[16] = {0};
    if (valid >= 16) return dx16_load(p);
    memcpy(t, p, (size_t)valid * sizeof(float));
    return dx16_load(t);
}
static inline dx16 dx16_fma(dx16 a, dx16 b, dx16 c) {
    dx16 r;
    r.lo = _mm256_fmadd_ps(a.lo, b.lo, c.lo);
    r.hi = _mm256_fmadd_ps(a.hi, b.hi, c.hi);
    return r;
}
static inline void dx16_store(float *p, dx16 v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
#define CONV_DX_FL_BUDGET 6                    /* two registers each */
#else
typedef float dx16 __attribute__((vector_size(64)));
static inline dx16 dx16_zero(void) { return (dx16){0.0f}; }
static inline dx16 dx16_load(const float *p) {
    dx16 r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline dx16 dx16_load_part(const float *p, int64_t valid) {
    float t[16] = {0};
    if (valid >= 16) return dx16_load(p);
    memcpy(t, p, (size_t)valid * sizeof(float));
    return dx16_load(t);
}
static inline dx16 dx16_fma(dx16 a, dx16 b, dx16 c) { return a * b + c; }
static inline void dx16_store(float *p, dx16 v) { memcpy(p, &v, sizeof v); }
#define CONV_DX_FL_BUDGET 3                    /* four registers each */
#endif

/* The 16 lanes added in a fixed tree, the same at every level: for h = 8, 4, 2, 1,
 * l[i] = l[i] + l[i + h] for i < h; the answer is l[0]. */
#if defined(__AVX512F__)
static inline float dx16_sum(dx16 v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xEE));   /* lanes 8..15 onto 0..7 */
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x01));   /* 4..7 onto 0..3 */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x0E));         /* 2, 3 onto 0, 1 */
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x01));         /* 1 onto 0 */
    return _mm512_cvtss_f32(v);
}
#elif defined(__AVX2__) && defined(__FMA__)
static inline float dx16_sum(dx16 v) {
    const __m256 s = _mm256_add_ps(v.lo, v.hi);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ps(x, _mm_shuffle_ps(x, x, 0x01));
    return _mm_cvtss_f32(x);
}
#else
static inline float dx16_sum(dx16 v) {
    float l[16];
    int h, i;
    dx16_store(l, v);
    for (h = 8; h >= 1; h /= 2)
        for (i = 0; i < h; i++) l[i] = l[i] + l[i + h];
    return l[0];
}
#endif

/* rows per filter-lanes tile: as many as the accumulator budget allows, 1 to 8 (the
 * rows' dz pointers live in general registers) */
#define CONV_DX_FL_ROWS(fc) \
    ((CONV_DX_FL_BUDGET / (fc)) < 1 ? 1 : (CONV_DX_FL_BUDGET / (fc)) > 8 ? 8 : (CONV_DX_FL_BUDGET / (fc)))

#define CONV_DX_FL(fc) {CONV_DX_FL_ROWS(fc), 1, CONV_DX_FLANE_NAME(fc)}

#define CONV_DX_FC 1
#define CONV_DX_FP CONV_DX_FL_ROWS(1)
#include "conv_dx_flane.h"
#define CONV_DX_FC 2
#define CONV_DX_FP CONV_DX_FL_ROWS(2)
#include "conv_dx_flane.h"
#define CONV_DX_FC 3
#define CONV_DX_FP CONV_DX_FL_ROWS(3)
#include "conv_dx_flane.h"
#define CONV_DX_FC 4
#define CONV_DX_FP CONV_DX_FL_ROWS(4)
#include "conv_dx_flane.h"

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
    {CONV_DX_FL(1), CONV_DX_FL(2), CONV_DX_FL(3), CONV_DX_FL(4)},
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
    {CONV_DX_FL(1), CONV_DX_FL(2), CONV_DX_FL(3), CONV_DX_FL(4)},
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
    {CONV_DX_FL(1), CONV_DX_FL(2), CONV_DX_FL(3), CONV_DX_FL(4)},
};
#endif
