/* test_seq1d.c -- the sequence kernels of part D of #16 (csrc/seq1d.c): global max pooling,
 * the masked mean over steps and RepeatVector, forward and backward, against plain double
 * loops, at every dispatch level on 1 and 2 threads (ctest.h: the same bytes everywhere).
 *
 * Shapes: one element, one step, primes, an empty batch, and sizes past the 32768-element
 * threshold of an OpenMP team.  The data for max pooling is quantised (multiples of 1/4) so
 * that maxima repeat: the gradient must go to the first one.  Bounds (u = 2^-24): max
 * pooling and RepeatVector's forward move values (exact); RepeatVector's backward is a sum of
 * `times` terms in order, checked bitwise against the same order in float; the masked mean
 * is a sum of s products and a divide: (s + 2) u sum |terms| / count; its backward one
 * divide and one product: 2u.  Bad arguments return PYNN_EINVAL. */
#include "ctest.h"

typedef struct {
    int64_t n, s, c;
    const float *x, *dy, *mask;
} seq_case;

static void run_maxpool(void *ctx, unsigned char *out) {
    const seq_case *t = ctx;
    float *y = (float *)out, *dx = y + t->n * t->c;
    CHECK(pynn_global_maxpool_forward(y, t->x, t->n, t->s, t->c) == PYNN_OK, "maxpool forward");
    CHECK(pynn_global_maxpool_backward(dx, t->x, t->dy, t->n, t->s, t->c) == PYNN_OK,
          "maxpool backward");
}

static void run_masked(void *ctx, unsigned char *out) {
    const seq_case *t = ctx;
    float *y = (float *)out, *dx = y + t->n * t->c;
    CHECK(pynn_masked_mean_forward(y, t->x, t->mask, t->n, t->s, t->c) == PYNN_OK,
          "masked mean forward");
    CHECK(pynn_masked_mean_backward(dx, t->dy, t->mask, t->n, t->s, t->c) == PYNN_OK,
          "masked mean backward");
}

/* here s is the number of copies (times) and c the features */
static void run_repeat(void *ctx, unsigned char *out) {
    const seq_case *t = ctx;
    float *y = (float *)out, *dx = y + t->n * t->s * t->c;
    CHECK(pynn_repeat_vector_forward(y, t->x, t->n, t->s, t->c) == PYNN_OK, "repeat forward");
    CHECK(pynn_repeat_vector_backward(dx, t->dy, t->n, t->s, t->c) == PYNN_OK, "repeat backward");
}

static void check_maxpool(int64_t n, int64_t s, int64_t c) {
    const int64_t big = n * s * c, small = n * c;
    float *x = ctest_floats(big, -2.0f, 2.0f), *dy = ctest_floats(small, -1.0f, 1.0f);
    double *want = ctest_new_doubles(big + small + 1), *bound = ctest_new_doubles(big + small + 1);
    seq_case t = {n, s, c, x, dy, NULL};
    unsigned char *out;
    int64_t i, r, k, e;
    for (i = 0; i < big; i++) x[i] = floorf(x[i] * 4.0f) / 4.0f;   /* repeated maxima */
    for (i = 0; i < big + small; i++) { want[i] = 0.0; bound[i] = 0.0; }
    for (r = 0; r < n; r++)
        for (e = 0; e < c; e++) {
            int64_t at = 0;
            for (k = 1; k < s; k++)
                if (x[(r * s + k) * c + e] > x[(r * s + at) * c + e]) at = k;
            want[r * c + e] = x[(r * s + at) * c + e];
            want[small + (r * s + at) * c + e] = dy[r * c + e];
        }
    CTEST_CONTEXT("global maxpool n=%lld s=%lld c=%lld", (long long)n, (long long)s, (long long)c);
    out = ctest_everywhere(run_maxpool, &t, (size_t)(big + small) * sizeof(float), "maxpool");
    ctest_close("y and dx", (const float *)out, want, bound, big + small);
    free(out); free(x); free(dy); free(want); free(bound);
}

static void check_masked(int64_t n, int64_t s, int64_t c) {
    const int64_t big = n * s * c, small = n * c;
    float *x = ctest_floats(big, -1.0f, 1.0f), *dy = ctest_floats(small, -1.0f, 1.0f);
    float *mask = ctest_floats(n * s, 0.0f, 1.0f);
    double *want = ctest_new_doubles(big + small + 1), *bound = ctest_new_doubles(big + small + 1);
    seq_case t = {n, s, c, x, dy, mask};
    unsigned char *out;
    int64_t r, k, e;
    for (r = 0; r < n; r++) {
        double count = 0.0;
        for (k = 0; k < s; k++) {
            mask[r * s + k] = (k == 0 || mask[r * s + k] < 0.6f) ? 1.0f : 0.0f;
            count += mask[r * s + k];
        }
        for (e = 0; e < c; e++) {
            double sum = 0.0, abs_sum = 0.0;
            for (k = 0; k < s; k++) {
                sum += mask[r * s + k] * (double)x[(r * s + k) * c + e];
                abs_sum += fabs(mask[r * s + k] * (double)x[(r * s + k) * c + e]);
            }
            want[r * c + e] = sum / count;
            bound[r * c + e] = (double)(s + 2) * CTEST_U * abs_sum / count;
            for (k = 0; k < s; k++) {
                const int64_t i = small + (r * s + k) * c + e;
                want[i] = mask[r * s + k] * (double)dy[r * c + e] / count;
                bound[i] = 2.0 * CTEST_U * fabs(want[i]);
            }
        }
    }
    CTEST_CONTEXT("masked mean n=%lld s=%lld c=%lld", (long long)n, (long long)s, (long long)c);
    out = ctest_everywhere(run_masked, &t, (size_t)(big + small) * sizeof(float), "masked mean");
    ctest_close("y and dx", (const float *)out, want, bound, big + small);
    free(out); free(x); free(dy); free(mask); free(want); free(bound);
}

static void check_repeat(int64_t n, int64_t times, int64_t f) {
    const int64_t big = n * times * f, small = n * f;
    float *x = ctest_floats(small, -1.0f, 1.0f), *dy = ctest_floats(big, -1.0f, 1.0f);
    float *want = ctest_new_floats(big + small + 1);
    seq_case t = {n, times, f, x, dy, NULL};
    unsigned char *out;
    int64_t r, k, e;
    for (r = 0; r < n; r++)
        for (e = 0; e < f; e++) {
            float sum = dy[(r * times) * f + e];
            for (k = 0; k < times; k++) want[(r * times + k) * f + e] = x[r * f + e];
            for (k = 1; k < times; k++) sum += dy[(r * times + k) * f + e];   /* in order */
            want[big + r * f + e] = sum;
        }
    CTEST_CONTEXT("repeat vector n=%lld times=%lld f=%lld", (long long)n, (long long)times,
                  (long long)f);
    out = ctest_everywhere(run_repeat, &t, (size_t)(big + small) * sizeof(float), "repeat");
    ctest_same_bits("y and dx", (const float *)out, want, big + small);
    free(out); free(x); free(dy); free(want);
}

static void check_refusals(void) {
    float a[4] = {0}, b[4] = {0}, m[4] = {1, 1, 1, 1};
    CTEST_CONTEXT("refusals");
    CHECK(pynn_global_maxpool_forward(a, b, 1, 0, 1) == PYNN_EINVAL, "no steps");
    CHECK(pynn_global_maxpool_forward(a, b, -1, 1, 1) == PYNN_EINVAL, "negative batch");
    CHECK(pynn_global_maxpool_forward(NULL, b, 1, 1, 1) == PYNN_EINVAL, "NULL y");
    CHECK(pynn_global_maxpool_backward(a, NULL, b, 1, 1, 1) == PYNN_EINVAL, "NULL x");
    CHECK(pynn_masked_mean_forward(a, b, NULL, 1, 1, 1) == PYNN_EINVAL, "NULL mask");
    CHECK(pynn_masked_mean_backward(a, b, m, 1, 0, 1) == PYNN_EINVAL, "no steps");
    CHECK(pynn_repeat_vector_forward(a, b, 1, 0, 1) == PYNN_EINVAL, "times 0");
    CHECK(pynn_repeat_vector_backward(a, NULL, 1, 2, 1) == PYNN_EINVAL, "NULL dy");
    /* an empty batch: nothing read or written, NULL allowed */
    CHECK(pynn_global_maxpool_forward(NULL, NULL, 0, 3, 2) == PYNN_OK, "empty batch");
    CHECK(pynn_repeat_vector_forward(NULL, NULL, 0, 3, 2) == PYNN_OK, "empty batch");
    CHECK(pynn_masked_mean_backward(NULL, NULL, NULL, 0, 3, 2) == PYNN_OK, "empty batch");
}

int main(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {2, 1, 3}, {3, 7, 5}, {5, 13, 2},
                                        {0, 4, 3}, {17, 67, 31}};
    size_t i;
    ctest_seed(7);
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_maxpool(shapes[i][0], shapes[i][1], shapes[i][2]);
        if (shapes[i][0] > 0) check_masked(shapes[i][0], shapes[i][1], shapes[i][2]);
        check_repeat(shapes[i][0], shapes[i][1], shapes[i][2]);
    }
    check_refusals();
    return ctest_finish("test_seq1d");
}
