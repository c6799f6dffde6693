/* test_exp_span.c -- pynn_exp_span (csrc/exp_span*.c) at every dispatch level: bitwise
 * equal to the C library's expf, as softmax and the softmax cross-entropy rely on.
 *
 * Tolerance 0: the SIMD levels reproduce glibc's expf operation by operation (exp_span.c),
 * and the generic level calls expf.  Checked on a stride through all 2^32 float bit
 * patterns (every sign, exponent and NaN class), on the special cases around the
 * overflow and underflow thresholds, on every length 0 .. 40 at unaligned starts (the
 * 4- and 8-lane tails), in place, and never writing past the span. */
#include <float.h>
#include "ctest.h"
#include "internal.h"

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* y = pynn_exp_span(x), n values, against expf element by element. */
static void check_span(const char *what, const float *x, int64_t n) {
    float *got = ctest_new_floats(n), *want = ctest_new_floats(n);
    int64_t i;
    pynn_exp_span(got, x, n);
    for (i = 0; i < n; i++) want[i] = expf(x[i]);
    ctest_same_bits(what, got, want, n);
    free(got);
    free(want);
}

static void check_sweep(void) {
    enum { BLOCK = 4096 };
    const uint64_t stride = 997; /* prime: the low mantissa bits vary too */
    float *x = ctest_new_floats(BLOCK);
    uint64_t b = 0;
    int64_t n = 0;
    for (b = 0; b < ((uint64_t)1 << 32); b += stride) { /* bit patterns */
        x[n++] = from_bits((uint32_t)b);
        if (n == BLOCK) {
            check_span("stride through all floats", x, n);
            n = 0;
        }
    }
    check_span("stride through all floats, the last block", x, n);
    free(x);
}

static void check_specials(void) {
    static const float oflow = 0x1.62e42ep6f, uflow = -0x1.9fe368p6f, may = -0x1.9d1d9ep6f;
    float x[64];
    int n = 0, k;
    const float base[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN, -FLT_MIN,
                          FLT_MAX, -FLT_MAX, 0x1p-149f, -0x1p-149f, 1.0f, -1.0f, 0.5f,
                          88.0f, 89.0f, -87.0f, -104.0f, -150.0f, 1e-8f, -1e-8f};
    for (k = 0; k < (int)(sizeof base / sizeof base[0]); k++) x[n++] = base[k];
    for (k = -2; k <= 2; k++) {                  /* ulps around each threshold */
        x[n++] = oflow + (float)k * 0x1p-17f;
        x[n++] = uflow + (float)k * 0x1p-17f;
        x[n++] = may + (float)k * 0x1p-17f;
    }
    check_span("special values", x, n);
    for (k = 0; k < n; k++) check_span("special value alone", x + k, 1);
}

/* Every length 0 .. 40 at starts 0 .. 3 floats past an aligned address; the floats
 * around the span must keep their sentinels.  In place as well. */
static void check_lengths(void) {
    enum { PAD = 8, MAXN = 40 };
    float *buf = ctest_new_floats(MAXN + 2 * PAD), *ybuf = ctest_new_floats(MAXN + 2 * PAD);
    int64_t n, off, i;
    for (n = 0; n <= MAXN; n++)
        for (off = 0; off < 4; off++) {
            float *x = buf + PAD + off, *y = ybuf + PAD + off, *in_place;
            for (i = 0; i < MAXN + 2 * PAD; i++) ybuf[i] = -7.0f;
            for (i = 0; i < n; i++) x[i] = -20.0f + 40.0f * ctest_rand();
            pynn_exp_span(y, x, n);
            for (i = 0; i < n; i++)
                CHECK(memcmp(&(float){expf(x[i])}, y + i, sizeof(float)) == 0,
                      "n=%lld off=%lld: exp(%.9g) = %.9g, expf gives %.9g", (long long)n,
                      (long long)off, (double)x[i], (double)y[i], (double)expf(x[i]));
            for (i = 0; i < MAXN + 2 * PAD; i++)
                if (ybuf + i < y || ybuf + i >= y + n)
                    CHECK(ybuf[i] == -7.0f, "n=%lld off=%lld: wrote outside the span at %lld",
                          (long long)n, (long long)off, (long long)(ybuf + i - y));
            in_place = ctest_copy(x, n);
            pynn_exp_span(in_place, in_place, n);
            ctest_same_bits("in place", in_place, y, n);
            free(in_place);
        }
    free(buf);
    free(ybuf);
}

int main(void) {
    int level;
    for (level = PYNN_LEVEL_GENERIC; level <= pynn_cpu_level(); level++) {
        CTEST_CONTEXT("exp_span at %s", ctest_level_name(level));
        CHECK(pynn_select_level(level) == PYNN_OK, "select");
        check_specials();
        check_lengths();
        check_sweep();
    }
    pynn_select_level(PYNN_LEVEL_AUTO);
    return ctest_finish("test_exp_span");
}
