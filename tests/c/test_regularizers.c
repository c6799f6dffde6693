/* test_regularizers.c -- the penalty and constraint kernels (csrc/regularizers.c; engineer F)
 * from C under ASan/UBSan: nothing (n = 0), one element, sizes just off the chunk size and
 * large enough for an OpenMP team.  Results against double-precision loops; bitwise the
 * same on 1 and 2 threads; bad arguments refused.  Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 4242;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *floats(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = (uniform() - 0.5f) * scale;
    return p;
}

static int near(double a, double b, double tol) { return fabs(a - b) <= tol * (1.0 + fabs(b)); }

static void test_penalty(int64_t n) {
    float *x = floats(n, 4.0f), *d1 = floats(n, 1.0f), *d2 = malloc((size_t)(n > 0 ? n : 1) * 4);
    float *start = malloc((size_t)(n > 0 ? n : 1) * 4);
    double v1 = -1, v2 = -2, s1 = 0, s2 = 0;
    const double l1 = 0.01, l2 = 0.3, scale = 0.5;
    int64_t i;
    if (n > 1) x[1] = 0.0f;
    memcpy(start, d1, (size_t)n * 4);
    memcpy(d2, d1, (size_t)n * 4);
    for (i = 0; i < n; i++) {
        s1 += fabs((double)x[i]);
        s2 += (double)x[i] * x[i];
    }
    pynn_set_num_threads(1);
    CHECK(pynn_penalty(&v1, d1, x, n, l1, l2, scale, 1) == PYNN_OK, "penalty n=%lld", (long long)n);
    CHECK(near(v1, scale * (l1 * s1 + l2 * s2), 1e-12), "penalty value n=%lld", (long long)n);
    for (i = 0; i < n; i++) {
        const double sg = x[i] > 0 ? 1.0 : (x[i] < 0 ? -1.0 : 0.0);
        CHECK(near(d1[i], start[i] + scale * (l1 * sg + 2 * l2 * x[i]), 1e-6), "grad at %lld",
              (long long)i);
    }
    pynn_set_num_threads(2);
    CHECK(pynn_penalty(&v2, d2, x, n, l1, l2, scale, 1) == PYNN_OK, "penalty 2 threads");
    CHECK(v1 == v2, "penalty value differs on 2 threads (n=%lld)", (long long)n);
    CHECK(n == 0 || memcmp(d1, d2, (size_t)n * 4) == 0, "gradient differs on 2 threads");
    /* overwrite, and no gradient */
    CHECK(pynn_penalty(&v2, d2, x, n, 0.0, 1.0, 1.0, 0) == PYNN_OK, "overwrite");
    for (i = 0; i < n; i++) CHECK(d2[i] == 2.0f * x[i], "overwrite at %lld", (long long)i);
    CHECK(pynn_penalty(&v2, NULL, x, n, l1, l2, scale, 1) == PYNN_OK && v2 == v1, "no gradient");
    free(x); free(d1); free(d2); free(start);
}

static void test_constraint(int kind, int64_t outer, int64_t red, int64_t inner) {
    const int64_t n = outer * red * inner;
    float *w = floats(n, 3.0f), *w1 = malloc((size_t)(n > 0 ? n : 1) * 4);
    float *w2 = malloc((size_t)(n > 0 ? n : 1) * 4);
    const double a = 0.4, b = 0.9, rate = 0.6;
    int64_t o, r, k;
    memcpy(w1, w, (size_t)n * 4);
    memcpy(w2, w, (size_t)n * 4);
    pynn_set_num_threads(1);
    CHECK(pynn_constraint(w1, outer, red, inner, kind, a, b, rate) == PYNN_OK, "constraint %d", kind);
    for (o = 0; o < outer; o++)
        for (k = 0; k < inner; k++) {
            double s = 0, norm, f;
            for (r = 0; r < red; r++) {
                const double v = w[(o * red + r) * inner + k];
                s += v * v;
            }
            norm = sqrt(s);
            if (kind == PYNN_CONSTRAINT_MAX_NORM) f = fmin(norm, a) / (1e-7 + norm);
            else if (kind == PYNN_CONSTRAINT_MIN_MAX_NORM)
                f = (rate * fmin(fmax(norm, a), b) + (1 - rate) * norm) / (1e-7 + norm);
            else f = 1.0 / (1e-7 + norm);
            for (r = 0; r < red; r++) {
                const int64_t e = (o * red + r) * inner + k;
                const double want = kind == PYNN_CONSTRAINT_NON_NEG ? fmax(w[e], 0.0) : w[e] * f;
                CHECK(near(w1[e], want, 1e-5), "constraint %d at %lld", kind, (long long)e);
            }
        }
    pynn_set_num_threads(2);
    CHECK(pynn_constraint(w2, outer, red, inner, kind, a, b, rate) == PYNN_OK, "2 threads");
    CHECK(n == 0 || memcmp(w1, w2, (size_t)n * 4) == 0, "constraint %d differs on 2 threads", kind);
    free(w); free(w1); free(w2);
}

int main(void) {
    const int64_t sizes[] = {0, 1, 7, 4095, 4097, 100003};
    size_t i;
    int kind;
    double v;
    float w[4] = {1, 2, 3, 4};
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) test_penalty(sizes[i]);
    for (kind = 0; kind < PYNN_CONSTRAINT_KINDS; kind++) {
        test_constraint(kind, 1, 1, 1);
        test_constraint(kind, 3, 5, 4);
        test_constraint(kind, 1, 300, 130);
        test_constraint(kind, 2, 0, 3);
    }
    /* refused */
    CHECK(pynn_penalty(NULL, NULL, w, 4, 0.1, 0.1, 1.0, 0) == PYNN_EINVAL, "NULL value");
    CHECK(pynn_penalty(&v, NULL, w, 4, -0.1, 0.1, 1.0, 0) == PYNN_EINVAL, "negative l1");
    CHECK(pynn_penalty(&v, NULL, w, 4, 0.1, NAN, 1.0, 0) == PYNN_EINVAL, "NaN l2");
    CHECK(pynn_penalty(&v, NULL, NULL, 4, 0.1, 0.1, 1.0, 0) == PYNN_EINVAL, "NULL x");
    CHECK(pynn_penalty(&v, NULL, w, -1, 0.1, 0.1, 1.0, 0) == PYNN_EINVAL, "negative n");
    CHECK(pynn_constraint(w, 1, 4, 1, 7, 1, 1, 1) == PYNN_EINVAL, "unknown kind");
    CHECK(pynn_constraint(w, 1, -4, 1, 0, 1, 1, 1) == PYNN_EINVAL, "negative size");
    CHECK(pynn_constraint(NULL, 1, 4, 1, 0, 1, 1, 1) == PYNN_EINVAL, "NULL w");
    CHECK(pynn_constraint(w, 1, 4, 1, 0, NAN, 1, 1) == PYNN_EINVAL, "NaN max_value");
    CHECK(pynn_constraint(w, INT64_MAX, 4, 2, 0, 1, 1, 1) == PYNN_EINVAL, "overflow");
    CHECK(w[0] == 1 && w[3] == 4, "a refused call changed w");
    if (failures) printf("%d failures\n", failures);
    else printf("test_regularizers: ok\n");
    return failures != 0;
}
