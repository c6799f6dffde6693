/* test_pixel.c -- the pixel preprocessing kernels (csrc/pixel.c) from C under ASan/UBSan:
 * nothing (n = 0), one element, and images large enough for an OpenMP team with more
 * channels than a block of channel sums (67 > 64).  Results against double-precision loops;
 * bitwise the same on 1 and 2 threads; bad arguments refused; the op table's gap (ids
 * reserved for another family) has no names.  Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 777;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *floats(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = uniform() * scale;
    return p;
}

/* |a - b| <= tol * (1 + |b|) */
static int near(float a, double b, double tol) { return fabs((double)a - b) <= tol * (1.0 + fabs(b)); }

static void test_affine_and_normalize(int64_t outer, int64_t c, int64_t inner) {
    const int64_t n = outer * c * inner;
    float *x = floats(n, 10.0f), *y1 = floats(n, 1.0f), *y2 = floats(n, 1.0f);
    float *s = floats(c, 2.0f), *o = floats(c, 1.0f), *v = floats(c, 4.0f);
    int64_t e, inv;
    if (c > 0) v[0] = 0.0f;                                 /* the epsilon floor */
    pynn_set_num_threads(1);
    CHECK(pynn_channel_affine(y1, x, s, o, outer, c, inner) == PYNN_OK, "affine");
    for (e = 0; e < n; e++) {
        const int64_t k = (e / inner) % c;
        CHECK(near(y1[e], (double)x[e] * s[k] + o[k], 1e-6), "affine at %lld", (long long)e);
    }
    pynn_set_num_threads(2);
    CHECK(pynn_channel_affine(y2, x, s, o, outer, c, inner) == PYNN_OK, "affine 2 threads");
    CHECK(n == 0 || memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "affine threads differ");
    for (inv = 0; inv <= 1; inv++) {
        pynn_set_num_threads(1);
        CHECK(pynn_normalize(y1, x, o, v, outer, c, inner, (int)inv, 1e-7f) == PYNN_OK, "normalize");
        for (e = 0; e < n; e++) {
            const int64_t k = (e / inner) % c;
            const double d = fmax(sqrt((double)v[k]), 1e-7);
            const double want = inv ? o[k] + x[e] * d : (x[e] - o[k]) / d;
            CHECK(near(y1[e], want, 1e-5), "normalize at %lld", (long long)e);
        }
        pynn_set_num_threads(2);
        CHECK(pynn_normalize(y2, x, o, v, outer, c, inner, (int)inv, 1e-7f) == PYNN_OK, "normalize");
        CHECK(n == 0 || memcmp(y1, y2, (size_t)n * sizeof(float)) == 0, "normalize threads differ");
    }
    free(x); free(y1); free(y2); free(s); free(o); free(v);
}

static void test_random(int64_t n, int64_t hw, int64_t c) {
    const int64_t size = n * hw * c;
    float *x = floats(size, 255.0f), *dy = floats(size, 1.0f);
    float *y1 = floats(size, 1.0f), *y2 = floats(size, 1.0f), *f1 = floats(n, 1.0f);
    float *f2 = floats(n, 1.0f), *m1 = floats(size, 1.0f), *dx = floats(size, 1.0f);
    int64_t img, k, p;
    pynn_set_num_threads(1);
    CHECK(pynn_random_contrast(y1, f1, x, n, hw, c, 42, 3, 0.5, 0.5, 10.0f, 240.0f) == PYNN_OK,
          "contrast");
    for (img = 0; img < n; img++) {
        CHECK(f1[img] >= 0.5f && f1[img] <= 1.5f, "factor %g", f1[img]);
        for (k = 0; k < c; k++) {
            double m = 0.0;
            for (p = 0; p < hw; p++) m += x[(img * hw + p) * c + k];
            m /= (double)hw;
            for (p = 0; p < hw; p++) {
                const int64_t e = (img * hw + p) * c + k;
                const double want = fmin(fmax((x[e] - m) * f1[img] + m, 10.0), 240.0);
                CHECK(near(y1[e], want, 1e-5), "contrast at %lld", (long long)e);
            }
        }
    }
    pynn_set_num_threads(2);
    CHECK(pynn_random_contrast(y2, f2, x, n, hw, c, 42, 3, 0.5, 0.5, 10.0f, 240.0f) == PYNN_OK,
          "contrast 2 threads");
    CHECK(size == 0 || memcmp(y1, y2, (size_t)size * sizeof(float)) == 0, "contrast threads");
    CHECK(n == 0 || memcmp(f1, f2, (size_t)n * sizeof(float)) == 0, "factors threads");
    CHECK(pynn_random_contrast_backward(dx, x, f1, dy, n, hw, c, 10.0f, 240.0f) == PYNN_OK,
          "contrast backward");
    CHECK(pynn_random_contrast_backward(dy, x, f1, dy, n, hw, c, 10.0f, 240.0f) == PYNN_OK,
          "contrast backward in place");
    CHECK(size == 0 || memcmp(dx, dy, (size_t)size * sizeof(float)) == 0, "in place differs");
    CHECK(pynn_random_brightness(y1, m1, x, n, hw * c, 42, 3, -0.2, 0.2, 0.0f, 255.0f) == PYNN_OK,
          "brightness");
    for (img = 0; img < n; img++) {
        const float d = y1[img * hw * c] - x[img * hw * c];   /* unless clipped */
        CHECK(fabsf(d) <= 0.2f * 255.0f + 1e-3f, "delta %g", d);
    }
    for (p = 0; p < size; p++) CHECK(y1[p] >= 0.0f && y1[p] <= 255.0f, "brightness clip");
    free(x); free(dy); free(y1); free(y2); free(f1); free(f2); free(m1); free(dx);
}

static void test_refusals(void) {
    float a[4] = {1, 2, 3, 4}, b[4];
    CHECK(pynn_channel_affine(b, a, NULL, NULL, 1, 4, 1) == PYNN_EINVAL, "no scale");
    CHECK(pynn_channel_affine(b, a, a, NULL, -1, 4, 1) == PYNN_EINVAL, "negative size");
    CHECK(pynn_normalize(b, a, NULL, a, 1, 4, 1, 2, 1e-7f) == PYNN_EINVAL, "invert 2");
    CHECK(pynn_random_contrast(b, a, a, 1, 0, 4, 1, 1, 0.1, 0.1, 0, 1) == PYNN_EINVAL, "hw 0");
    CHECK(pynn_random_contrast(b, a, a, 1, 4, 1, 1, 1, 0.1, 0.1, 2, 1) == PYNN_EINVAL, "vmin > vmax");
    CHECK(pynn_random_contrast(b, a, a, 1, 4, 1, 1, 1, NAN, 0.1, 0, 1) == PYNN_EINVAL, "NaN factor");
    CHECK(pynn_random_brightness(b, NULL, a, 1, 4, 1, 1, 0.5, 0.1, 0, 1) == PYNN_EINVAL,
          "lower > upper");
    CHECK(pynn_random_brightness(b, NULL, NULL, 1, 4, 1, 1, 0.1, 0.5, 0, 1) == PYNN_EINVAL, "no x");
    /* the op table's gap: 26 .. 30 are the image ops, 31 is unused, 32 .. 36 the pixel ops */
    CHECK(pynn_id_name(PYNN_TABLE_OP, 26) != NULL && pynn_id_name(PYNN_TABLE_OP, 31) == NULL,
          "id 31 has a name, or 26 none");
    CHECK(pynn_id_name(PYNN_TABLE_OP, 32) != NULL &&
          strcmp(pynn_id_name(PYNN_TABLE_OP, 32), "channel_affine") == 0, "id 32");
    /* 37 .. 39 are unused, 40 is the distributed gradient hook; the parts of issue #16 add
     * ids above it (engineer B: 50 transpose), so the count is at least 41 */
    CHECK(pynn_id_name(PYNN_TABLE_OP, PYNN_OP_RANDOM_BRIGHTNESS + 1) == NULL &&
          pynn_id_count(PYNN_TABLE_OP) > PYNN_OP_TRANSPOSE &&
          strcmp(pynn_id_name(PYNN_TABLE_OP, PYNN_OP_TRANSPOSE), "transpose") == 0, "count");
}

int main(void) {
    test_affine_and_normalize(0, 3, 2);
    test_affine_and_normalize(1, 1, 1);
    test_affine_and_normalize(7, 67, 1);
    test_affine_and_normalize(40, 1, 1000);
    test_random(0, 4, 3);
    test_random(1, 1, 1);
    test_random(3, 5, 67);
    test_random(9, 33 * 35, 3);
    test_refusals();
    printf("test_pixel: %s (%d failure%s)\n", failures ? "FAILED" : "passed", failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
