/* test_gemm.c -- pynn_sgemm and pynn_sgemm_bias_act against a naive triple loop
 * accumulated in double, for every micro-kernel this CPU supports.
 *
 * Shapes aim at the edges of each kernel's blocking (1, primes, one below / at /
 * one past MR, NR, MC, KC and NC), in all four transpose cases, with several
 * alpha/beta pairs and leading dimensions wider than the rows.  The padding of
 * A and B holds NaN (reading it would poison the result) and the padding of C a
 * sentinel (writing it is a failure); with beta == 0, C starts as NaN (it must
 * not be read).  Also: 1 vs 2 threads bitwise, the fused epilogue against
 * GEMM-then-bias-then-activation bitwise, and PYNN_EINVAL for bad arguments.
 *
 * Error bound: a float32 dot product of length K with one rounding per
 * multiply-add is within K u sum|a_p b_p| of the exact value (u = 2^-24), plus a
 * few roundings for alpha, beta and the bias: we allow (K + 8) u times the sum of
 * the magnitudes.  A wrong or missing term is off by about |a b|, far above it.
 *
 * Exits 1 on any failure, after printing the first failures and a summary.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"
#include "gemm_internal.h"
#include "act_elementwise.h"

static int n_checks = 0, n_failures = 0;
static const char *kernel_name = "-";

#define CHECK(cond, ...)                                      \
    do {                                                      \
        n_checks++;                                           \
        if (!(cond)) {                                        \
            n_failures++;                                     \
            if (n_failures <= 40) {                           \
                printf("FAIL [%s] %s:%d: ", kernel_name, __FILE__, __LINE__); \
                printf(__VA_ARGS__);                          \
                printf("\n");                                 \
            }                                                 \
        }                                                     \
    } while (0)

static const float SENTINEL = 12345.0f;

/* ---- helpers ------------------------------------------------------------- */

static unsigned rng_state = 12345u;
static float rnd(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

static float *alloc_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (p == NULL) {
        printf("test_gemm: out of memory\n");
        exit(2);
    }
    return p;
}

/* A rows x cols matrix with row stride ld: random values, `pad_value` in the
 * ld - cols padding columns. */
static float *random_matrix(int64_t rows, int64_t cols, int64_t ld, float pad_value) {
    float *x = alloc_floats(rows * ld);
    int64_t i, j;
    for (i = 0; i < rows; i++)                /* rows */
        for (j = 0; j < ld; j++)              /* columns, then padding */
            x[i * ld + j] = j < cols ? rnd() : pad_value;
    return x;
}

/* op(X)(r, c) of a matrix stored with row stride ld, transposed if trans. */
static double op_at(const float *x, int trans, int64_t ld, int64_t r, int64_t c) {
    return trans ? (double)x[c * ld + r] : (double)x[r * ld + c];
}

/* Naive reference for one element: the exact-ish product (double) and the sum of
 * the magnitudes of its terms, which scales the error bound. */
static void naive_dot(double *value, double *magnitude, const float *a, const float *b,
                      int ta, int tb, int64_t lda, int64_t ldb, int64_t i, int64_t j, int64_t k) {
    double s = 0.0, mag = 0.0;
    int64_t p;
    for (p = 0; p < k; p++) {                 /* K: the dot product */
        double t = op_at(a, ta, lda, i, p) * op_at(b, tb, ldb, p, j);
        s += t;
        mag += fabs(t);
    }
    *value = s;
    *magnitude = mag;
}

static double error_bound(int64_t k, double magnitude) {
    return (double)(k + 8) * ldexp(1.0, -24) * magnitude + 1e-30;
}

static void softmax_reference(float *y, const float *z, int64_t rows, int64_t cols) {
    int64_t r, j;
    for (r = 0; r < rows; r++) {              /* rows */
        const float *zr = z + r * cols;
        float *yr = y + r * cols;
        float mx = zr[0], s = 0.0f;
        for (j = 1; j < cols; j++) mx = zr[j] > mx ? zr[j] : mx;   /* N: max */
        for (j = 0; j < cols; j++) {          /* N: exponentials, summed in order */
            yr[j] = expf(zr[j] - mx);
            s += yr[j];
        }
        for (j = 0; j < cols; j++) yr[j] = yr[j] / s;              /* N: normalise */
    }
}

/* ---- pynn_sgemm ------------------------------------------------------------- */

typedef struct {
    int ta, tb;
    int64_t m, n, k;
    float alpha, beta;
    int64_t pad;          /* extra columns in every leading dimension */
} gemm_case;

static void check_sgemm(const gemm_case *t) {
    const int64_t rows_a = t->ta ? t->k : t->m, cols_a = t->ta ? t->m : t->k;
    const int64_t rows_b = t->tb ? t->n : t->k, cols_b = t->tb ? t->k : t->n;
    const int64_t lda = cols_a + t->pad, ldb = cols_b + t->pad, ldc = t->n + t->pad;
    float *a = random_matrix(rows_a, cols_a, lda, NAN);
    float *b = random_matrix(rows_b, cols_b, ldb, NAN);
    float *c0 = random_matrix(t->m, t->n, ldc, SENTINEL);
    float *c = alloc_floats(t->m * ldc);
    int64_t i, j, bad = 0, bad_i = -1, bad_j = -1, touched = 0;
    double worst = 0.0;
    int status;

    if (t->beta == 0.0f) {                    /* C must not be read: make it poison */
        for (i = 0; i < t->m; i++)            /* rows of C */
            for (j = 0; j < t->n; j++) c0[i * ldc + j] = NAN;  /* columns of C */
    }
    memcpy(c, c0, (size_t)(t->m * ldc) * sizeof(float));
    status = pynn_sgemm(c, a, b, t->ta, t->tb, t->m, t->n, t->k, t->alpha, t->beta,
                        lda, ldb, ldc);
    CHECK(status == PYNN_OK, "sgemm status %d", status);

    for (i = 0; i < t->m; i++) {              /* M: rows of C */
        for (j = 0; j < ldc; j++) {           /* N: columns of C, then padding */
            const float got = c[i * ldc + j];
            double dot = 0.0, mag = 0.0, expect, bound;
            if (j >= t->n) {
                touched += got != SENTINEL;
                continue;
            }
            if (t->alpha != 0.0f)
                naive_dot(&dot, &mag, a, b, t->ta, t->tb, lda, ldb, i, j, t->k);
            expect = (double)t->alpha * dot;
            mag *= fabs((double)t->alpha);
            if (t->beta != 0.0f) {
                expect += (double)t->beta * (double)c0[i * ldc + j];
                mag += fabs((double)t->beta * (double)c0[i * ldc + j]);
            }
            bound = error_bound(t->k, mag);
            if (!(fabs((double)got - expect) <= bound)) {
                if (bad == 0) {
                    bad_i = i;
                    bad_j = j;
                }
                bad++;
                if (isnan(got) || fabs((double)got - expect) / bound > worst)
                    worst = isnan(got) ? INFINITY : fabs((double)got - expect) / bound;
            }
        }
    }
    CHECK(bad == 0,
          "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld: %lld wrong "
          "elements, first (%lld, %lld), worst error %.3g x bound",
          t->ta, t->tb, (long long)t->m, (long long)t->n, (long long)t->k, t->alpha, t->beta,
          (long long)t->pad, (long long)bad, (long long)bad_i, (long long)bad_j, worst);
    CHECK(touched == 0, "sgemm M=%lld N=%lld K=%lld pad=%lld wrote %lld padding elements of C",
          (long long)t->m, (long long)t->n, (long long)t->k, (long long)t->pad, (long long)touched);
    free(a);
    free(b);
    free(c0);
    free(c);
}

static const float alpha_beta[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 2.0f},
                                      {2.0f, 0.0f}, {0.0f, 0.5f}};
#define N_ALPHA_BETA ((int)(sizeof alpha_beta / sizeof alpha_beta[0]))

/* All four transpose cases of one shape; alpha/beta and padding vary from call to call. */
static void check_sgemm_all_transposes(int64_t m, int64_t n, int64_t k) {
    static int rotation = 0;
    int ta, tb;
    for (ta = 0; ta < 2; ta++) {              /* A as stored, A transposed */
        for (tb = 0; tb < 2; tb++) {          /* B as stored, B transposed */
            gemm_case t;
            const int r = rotation++;
            t.ta = ta;
            t.tb = tb;
            t.m = m;
            t.n = n;
            t.k = k;
            t.alpha = alpha_beta[r % N_ALPHA_BETA][0];
            t.beta = alpha_beta[r % N_ALPHA_BETA][1];
            t.pad = (r / N_ALPHA_BETA) % 2 ? 3 : 0;
            check_sgemm(&t);
        }
    }
}

static void check_sgemm_shapes(const pynn_gemm_kernel_info *ki) {
    static const int64_t small[] = {1, 2, 5, 17};
    const int64_t mr = ki->mr, nr = ki->nr, mc = ki->mc, kc = ki->kc, nc = ki->nc;
    const int64_t m_edges[] = {mr - 1, mr, mr + 1, mc - 1, mc, mc + 1, 2 * mc + mr + 1};
    const int64_t n_edges[] = {nr - 1, nr, nr + 1, nc - 1, nc, nc + 1};
    const int64_t k_edges[] = {kc - 1, kc, kc + 1, 2 * kc + 1};
    int x, y, z, ab;

    /* Tiny shapes with every alpha/beta pair and both paddings. */
    for (x = 0; x < 4; x++)                   /* M */
        for (y = 0; y < 4; y++)               /* N */
            for (z = 0; z < 4; z++)           /* K */
                for (ab = 0; ab < N_ALPHA_BETA; ab++) {   /* alpha/beta pairs */
                    gemm_case t;
                    t.ta = (x + ab) & 1;
                    t.tb = ((y + ab) >> 1) & 1;
                    t.m = small[x];
                    t.n = small[y];
                    t.k = small[z];
                    t.alpha = alpha_beta[ab][0];
                    t.beta = alpha_beta[ab][1];
                    t.pad = (x + y + z + ab) % 2 ? 3 : 0;
                    check_sgemm(&t);
                }
    /* One dimension at each block edge, the others small primes. */
    for (x = 0; x < (int)(sizeof m_edges / sizeof m_edges[0]); x++)   /* M edges */
        if (m_edges[x] > 0) check_sgemm_all_transposes(m_edges[x], 7, 5);
    for (y = 0; y < (int)(sizeof n_edges / sizeof n_edges[0]); y++)   /* N edges */
        if (n_edges[y] > 0) check_sgemm_all_transposes(5, n_edges[y], 3);
    /* K edges, with M large enough that M N K is past the small path's limit (so
     * that the packed path's K blocks are the ones tested) */
    for (z = 0; z < (int)(sizeof k_edges / sizeof k_edges[0]); z++)   /* K edges */
        if (k_edges[z] > 0)
            check_sgemm_all_transposes(PYNN_GEMM_SMALL_MACS / ((nr + 3) * k_edges[z]) + 1, nr + 3,
                                       k_edges[z]);
    /* Every boundary at once: several M blocks, N panels and K blocks. */
    check_sgemm_all_transposes(mc + mr + 1, 2 * nr + 5, kc + 7);
    check_sgemm_all_transposes(mr + 1, nc + nr + 1, kc + 1);
}

/* ---- the small path (M N K <= PYNN_GEMM_SMALL_MACS) ---------------------------- */

/* Edges of the small path's tiles (8 x 32 and 8 x 16 AVX-512, 6 x 16 and 6 x 8 AVX2,
 * 4 x 16 generic; the column tiles of 16 x 1..16 AVX-512 and 8 x 9..12 AVX2) and of its
 * stack buffer for transposed operands (4096 floats), in all four transpose cases, with
 * the alpha/beta pairs and paddings rotating. */
static void check_small_shapes(void) {
    static const int64_t ms[] = {1, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 31, 33};
    static const int64_t ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 47, 48, 49, 64, 65};
    static const int64_t ks[] = {1, 2, 10, 33};
    int x, y, z;
    for (x = 0; x < (int)(sizeof ms / sizeof ms[0]); x++)          /* M */
        for (y = 0; y < (int)(sizeof ns / sizeof ns[0]); y++)      /* N */
            for (z = 0; z < (int)(sizeof ks / sizeof ks[0]); z++)  /* K */
                if ((x + y + z) % 3 == 0 || ms[x] == 1 || ns[y] == 1)
                    check_sgemm_all_transposes(ms[x], ns[y], ks[z]);
    /* the column tiles (at most 16 columns, A transposed, rows in the lanes): every
     * width, row counts around 8 and 16, and a tiny CNN's Dense layer (32 x 288 by
     * 288 x 10: the forward, and its dW) */
    for (y = 1; y <= 16; y++)                                      /* N */
        for (x = 0; x < 5; x++) {                                  /* M */
            static const int64_t col_ms[] = {1, 7, 16, 17, 40};
            check_sgemm_all_transposes(col_ms[x], y, y % 2 ? 3 : 50);
        }
    check_sgemm_all_transposes(32, 10, 288);
    check_sgemm_all_transposes(288, 10, 32);
    check_sgemm_all_transposes(45, 12, 130);
    /* the typical network shapes, and a transposed B past the stack buffer */
    check_sgemm_all_transposes(32, 32, 64);
    check_sgemm_all_transposes(32, 10, 32);
    check_sgemm_all_transposes(64, 32, 32);
    check_sgemm_all_transposes(3, 64, 100);
    check_sgemm_all_transposes(2, 70, 300);
    check_sgemm_all_transposes(1, 1, 5000);
}

/* Shapes on both sides of the small path's limit: correct, and bitwise the same on
 * 1 and 2 threads (the path taken must depend on the shape only). */
static void check_small_limit(void) {
    const int64_t lim = PYNN_GEMM_SMALL_MACS;
    const int64_t shapes[][3] = {{64, 64, 64},     {64, 64, 65},     {65, 64, 64},
                                 {64, 65, 64},     {63, 64, 65},     {1, 1, lim},
                                 {1, 1, lim + 1},  {lim / 256, 16, 16}, {lim / 256 + 1, 16, 16},
                                 {16, 16, lim / 256}, {16, 16, lim / 256 + 1},
                                 {8, lim / 512, 64}, {8, lim / 512 + 1, 64}};
    int s, ta, tb;
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {   /* shapes */
        const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = random_matrix(m, k, k, 0.0f), *b = random_matrix(k, n, n, 0.0f);
        float *c0 = random_matrix(m, n, n, 0.0f);
        float *c1 = alloc_floats(m * n), *c2 = alloc_floats(m * n);
        for (ta = 0; ta < 2; ta++) {          /* A as stored, transposed */
            for (tb = 0; tb < 2; tb++) {      /* B as stored, transposed */
                const int64_t lda = ta ? m : k, ldb = tb ? k : n;
                int s1, s2;
                memcpy(c1, c0, (size_t)(m * n) * sizeof(float));
                memcpy(c2, c0, (size_t)(m * n) * sizeof(float));
                pynn_set_num_threads(1);
                s1 = pynn_sgemm(c1, a, b, ta, tb, m, n, k, 0.75f, -1.25f, lda, ldb, n);
                pynn_set_num_threads(2);
                s2 = pynn_sgemm(c2, a, b, ta, tb, m, n, k, 0.75f, -1.25f, lda, ldb, n);
                CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm status %d / %d", s1, s2);
                CHECK(memcmp(c1, c2, (size_t)(m * n) * sizeof(float)) == 0,
                      "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld (M N K %s the small limit): "
                      "1 and 2 threads differ", ta, tb, (long long)m, (long long)n,
                      (long long)k, m * n * k <= lim ? "within" : "past");
            }
        }
        if (m * n * k <= 2 * lim && k <= 1024) {    /* correctness near the limit */
            gemm_case t;
            t.m = m;
            t.n = n;
            t.k = k;
            for (ta = 0; ta < 4; ta++) {      /* the four transpose cases */
                t.ta = ta & 1;
                t.tb = ta >> 1;
                t.alpha = alpha_beta[(s + ta) % N_ALPHA_BETA][0];
                t.beta = alpha_beta[(s + ta) % N_ALPHA_BETA][1];
                t.pad = ta == 3 ? 5 : 0;
                check_sgemm(&t);
            }
        }
        free(a);
        free(b);
        free(c0);
        free(c1);
        free(c2);
    }
    pynn_set_num_threads(1);
}

/* ---- pynn_sgemm_bias_act ---------------------------------------------------- */

/* y_mode: 0 no Y, 1 a separate Y, 2 Y aliasing Z. */
static void check_bias_act(int ta, int tb, int64_t m, int64_t n, int64_t k,
                           int act, float act_alpha, int use_bias, int y_mode) {
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;   /* contiguous operands */
    float *a = random_matrix(ta ? k : m, lda, lda, 0.0f);
    float *b = random_matrix(tb ? n : k, ldb, ldb, 0.0f);
    float *bias = use_bias ? random_matrix(1, n, n, 0.0f) : NULL;
    float *z = alloc_floats(m * n), *y = alloc_floats(m * n);
    float *z_plain = alloc_floats(m * n), *y_expect = alloc_floats(m * n);
    float *y_arg = y_mode == 0 ? NULL : (y_mode == 1 ? y : z);
    int64_t i, j, bad = 0;
    int status;

    for (i = 0; i < m * n; i++) z[i] = y[i] = NAN;   /* outputs are not read */
    status = pynn_sgemm_bias_act(z, y_arg, a, b, bias, ta, tb, m, n, k, act, act_alpha);
    CHECK(status == PYNN_OK, "sgemm_bias_act status %d", status);

    /* The unfused path: GEMM, then bias, then activation. */
    status = pynn_sgemm(z_plain, a, b, ta, tb, m, n, k, 1.0f, 0.0f,
                        lda > 1 ? lda : 1, ldb > 1 ? ldb : 1, n);
    CHECK(status == PYNN_OK, "sgemm status %d", status);
    for (i = 0; i < m; i++)                   /* M: rows */
        for (j = 0; j < n; j++)               /* N: columns */
            if (bias) z_plain[i * n + j] += bias[j];
    if (act == PYNN_ACT_SOFTMAX)
        softmax_reference(y_expect, z_plain, m, n);
    else
        pynn_act_span(y_expect, z_plain, m * n, act, act_alpha);

    /* Z against the naive product, then both outputs bitwise against the unfused path. */
    if (y_mode != 2) {
        for (i = 0; i < m; i++) {             /* M: rows */
            for (j = 0; j < n; j++) {         /* N: columns */
                double dot, mag;
                naive_dot(&dot, &mag, a, b, ta, tb, lda, ldb, i, j, k);
                if (bias) {
                    dot += bias[j];
                    mag += fabs((double)bias[j]);
                }
                bad += !(fabs((double)z[i * n + j] - dot) <= error_bound(k, mag));
            }
        }
        CHECK(bad == 0, "sgemm_bias_act Z: %lld wrong elements (ta=%d tb=%d M=%lld N=%lld K=%lld)",
              (long long)bad, ta, tb, (long long)m, (long long)n, (long long)k);
        CHECK(memcmp(z, z_plain, (size_t)(m * n) * sizeof(float)) == 0,
              "sgemm_bias_act Z differs from sgemm + bias (act %d, M=%lld N=%lld K=%lld)",
              act, (long long)m, (long long)n, (long long)k);
    }
    if (y_mode != 0)
        CHECK(memcmp(y_arg, y_expect, (size_t)(m * n) * sizeof(float)) == 0,
              "sgemm_bias_act Y (act %d, %s) differs from the stand-alone activation "
              "(M=%lld N=%lld K=%lld)", act, y_mode == 2 ? "Y == Z" : "separate Y",
              (long long)m, (long long)n, (long long)k);
    free(a);
    free(b);
    free(bias);
    free(z);
    free(y);
    free(z_plain);
    free(y_expect);
}

static void check_bias_act_shapes(const pynn_gemm_kernel_info *ki) {
    /* small path: tiny, tile edges, a network's layers; packed path: past the limit,
     * with several K blocks */
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {9, 17, 5}, {ki->mr + 1, ki->nr + 1, 30},
                                 {32, 32, 64}, {33, 10, 32}, {64, 33, 40}, {32, 10, 288},
                                 {19, 12, 20}, {17, 16, 9},
                                 {ki->mr + 1, ki->nr + 1, PYNN_GEMM_SMALL_MACS / 64 + 1},
                                 {97, 45, 130}, {2 * ki->mr - 1, 10, 2 * ki->kc + 3 + 
                                  PYNN_GEMM_SMALL_MACS / (10 * (2 * ki->mr - 1))}};
    int act, s;
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {     /* shapes */
        for (act = PYNN_ACT_LINEAR; act <= PYNN_ACT_GELU; act++) {     /* activations */
            const int ta = (act + s) & 1, tb = ((act + s) >> 1) & 1;
            check_bias_act(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], act, 0.2f, 1, 1);
            check_bias_act(tb, ta, shapes[s][0], shapes[s][1], shapes[s][2], act, 0.2f, s & 1, 2);
        }
        check_bias_act(0, 0, shapes[s][0], shapes[s][1], shapes[s][2], PYNN_ACT_RELU, 0.0f, 1, 0);
        check_bias_act(1, 1, shapes[s][0], shapes[s][1], 0, PYNN_ACT_SIGMOID, 0.0f, 1, 1);
    }
}

/* ---- 1 vs 2 threads ---------------------------------------------------------- */

static void check_threads_bitwise(const pynn_gemm_kernel_info *ki) {
    /* Several blocks in every dimension and ragged edges everywhere. */
    const int64_t m = 2 * ki->mc + ki->mr + 3, n = ki->nc + 2 * ki->nr + 5, k = ki->kc + 17;
    const int64_t m_small = 3 * ki->mr + 1, n_small = 5 * ki->nr + 3;
    float *a = random_matrix(m, k, k, 0.0f), *b = random_matrix(k, n, n, 0.0f);
    float *bias = random_matrix(1, n, n, 0.0f);
    float *c0 = random_matrix(m, n, n, 0.0f);
    float *c1 = alloc_floats(m * n), *c2 = alloc_floats(m * n);
    float *y1 = alloc_floats(m * n), *y2 = alloc_floats(m * n);
    int ta, tb, s1, s2;

    for (ta = 0; ta < 2; ta++) {              /* A as stored, transposed */
        for (tb = 0; tb < 2; tb++) {          /* B as stored, transposed */
            /* The buffers hold m*k and k*n floats: read either way, op(A) is m x k. */
            const int64_t lda = ta ? m : k, ldb = tb ? k : n;
            memcpy(c1, c0, (size_t)(m * n) * sizeof(float));
            memcpy(c2, c0, (size_t)(m * n) * sizeof(float));
            pynn_set_num_threads(1);
            s1 = pynn_sgemm(c1, a, b, ta, tb, m, n, k, 0.75f, -1.25f, lda, ldb, n);
            pynn_set_num_threads(2);
            s2 = pynn_sgemm(c2, a, b, ta, tb, m, n, k, 0.75f, -1.25f, lda, ldb, n);
            CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm status %d / %d", s1, s2);
            CHECK(memcmp(c1, c2, (size_t)(m * n) * sizeof(float)) == 0,
                  "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld: 1 and 2 threads differ", ta, tb,
                  (long long)m, (long long)n, (long long)k);
        }
    }
    /* The fused epilogue, with a softmax (row-parallel) and a GELU. */
    pynn_set_num_threads(1);
    s1 = pynn_sgemm_bias_act(c1, y1, a, b, bias, 0, 0, m_small, n_small, k, PYNN_ACT_GELU, 0.0f);
    pynn_set_num_threads(2);
    s2 = pynn_sgemm_bias_act(c2, y2, a, b, bias, 0, 0, m_small, n_small, k, PYNN_ACT_GELU, 0.0f);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm_bias_act status %d / %d", s1, s2);
    CHECK(memcmp(c1, c2, (size_t)(m_small * n_small) * sizeof(float)) == 0 &&
          memcmp(y1, y2, (size_t)(m_small * n_small) * sizeof(float)) == 0,
          "sgemm_bias_act GELU: 1 and 2 threads differ");
    pynn_set_num_threads(1);
    s1 = pynn_sgemm_bias_act(c1, y1, a, b, bias, 0, 0, m, n, k, PYNN_ACT_SOFTMAX, 0.0f);
    pynn_set_num_threads(2);
    s2 = pynn_sgemm_bias_act(c2, y2, a, b, bias, 0, 0, m, n, k, PYNN_ACT_SOFTMAX, 0.0f);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm_bias_act status %d / %d", s1, s2);
    CHECK(memcmp(y1, y2, (size_t)(m * n) * sizeof(float)) == 0,
          "sgemm_bias_act softmax: 1 and 2 threads differ");
    free(a);
    free(b);
    free(bias);
    free(c0);
    free(c1);
    free(c2);
    free(y1);
    free(y2);
}

/* ---- few rows: the small-M path ----------------------------------------------- */

/* M = 1..16 (the small-M path: no packing, column blocks on threads): every row count
 * against the naive product with odd N and K, all transposes; large enough products to
 * be cut between threads, 1 vs 2 threads bitwise; and the fused bias + activation. */
static void check_small_m(void) {
    static const int64_t dims[] = {1, 7, 17, 65};
    const int64_t big_n = 1000, big_k = 150;  /* M N K >= 150000: two threads, 16 blocks */
    float *a = random_matrix(16, big_k, big_k, 0.0f), *b = random_matrix(big_k, big_n, big_n, 0.0f);
    float *bias = random_matrix(1, big_n, big_n, 0.0f);
    float *c0 = random_matrix(16, big_n, big_n, 0.0f);
    float *c1 = alloc_floats(16 * big_n), *c2 = alloc_floats(16 * big_n);
    float *y1 = alloc_floats(16 * big_n), *y2 = alloc_floats(16 * big_n);
    int64_t m;
    int in, ik, ta, tb, act, s1, s2;
    for (m = 1; m <= 16; m++) {                        /* M: every row count of the path */
        for (in = 0; in < 4; in++)                     /* N: odd widths */
            for (ik = 0; ik < 4; ik++)                 /* K: odd depths */
                check_sgemm_all_transposes(m, dims[in], dims[ik]);
        if (m == 1 || m == 3 || m == 8 || m == 13 || m == 16)
            check_sgemm_all_transposes(m, 300, 520);   /* several threads' blocks, long K */
        for (act = PYNN_ACT_LINEAR; act <= PYNN_ACT_GELU; act++) {   /* activations */
            check_bias_act(0, 0, m, 65, 17, act, 0.2f, 1, 1);
            check_bias_act(0, 0, m, 7, 130, act, 0.2f, act & 1, 2);
            check_bias_act(act & 1, (act >> 1) & 1, m, 17, 7, act, 0.2f, 1, 1);
        }
        for (ta = 0; ta < 2; ta++) {                   /* A as stored, transposed */
            for (tb = 0; tb < 2; tb++) {               /* B as stored, transposed */
                const int64_t lda = ta ? m : big_k, ldb = tb ? big_k : big_n;
                memcpy(c1, c0, (size_t)(m * big_n) * sizeof(float));
                memcpy(c2, c0, (size_t)(m * big_n) * sizeof(float));
                pynn_set_num_threads(1);
                s1 = pynn_sgemm(c1, a, b, ta, tb, m, big_n, big_k, 0.75f, -1.25f, lda, ldb, big_n);
                pynn_set_num_threads(2);
                s2 = pynn_sgemm(c2, a, b, ta, tb, m, big_n, big_k, 0.75f, -1.25f, lda, ldb, big_n);
                CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm status %d / %d", s1, s2);
                CHECK(memcmp(c1, c2, (size_t)(m * big_n) * sizeof(float)) == 0,
                      "sgemm ta=%d tb=%d M=%lld N=%lld K=%lld: 1 and 2 threads differ", ta, tb,
                      (long long)m, (long long)big_n, (long long)big_k);
            }
        }
        for (act = PYNN_ACT_LINEAR; act <= PYNN_ACT_GELU; act++) {   /* activations */
            if (act == PYNN_ACT_SOFTMAX && m > 4) continue;
            pynn_set_num_threads(1);
            s1 = pynn_sgemm_bias_act(c1, y1, a, b, bias, 0, 0, m, big_n, big_k, act, 0.2f);
            pynn_set_num_threads(2);
            s2 = pynn_sgemm_bias_act(c2, y2, a, b, bias, 0, 0, m, big_n, big_k, act, 0.2f);
            CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "sgemm_bias_act status %d / %d", s1, s2);
            CHECK(memcmp(c1, c2, (size_t)(m * big_n) * sizeof(float)) == 0 &&
                  memcmp(y1, y2, (size_t)(m * big_n) * sizeof(float)) == 0,
                  "sgemm_bias_act act %d M=%lld: 1 and 2 threads differ", act, (long long)m);
        }
    }
    /* The fused Dense forward against the naive product at the size of the issue. */
    check_bias_act(0, 0, 1, 512, 784, PYNN_ACT_RELU, 0.0f, 1, 1);
    check_bias_act(0, 0, 16, 257, 300, PYNN_ACT_LEAKY_RELU, 0.2f, 1, 2);
    pynn_set_num_threads(1);
    free(a);
    free(b);
    free(bias);
    free(c0);
    free(c1);
    free(c2);
    free(y1);
    free(y2);
}

/* ---- argument checks and degenerate sizes -------------------------------------- */

static void check_arguments(void) {
    float a[64], b[64], c[64], y[64];
    int i;
    for (i = 0; i < 64; i++) a[i] = b[i] = 1.0f;   /* elements of the operands */

    /* Negative sizes, NULL pointers, short leading dimensions, unknown ids. */
    CHECK(pynn_sgemm(c, a, b, 0, 0, -1, 2, 2, 1, 0, 2, 2, 2) == PYNN_EINVAL, "M < 0");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, -1, 2, 1, 0, 2, 1, 1) == PYNN_EINVAL, "N < 0");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 2, -1, 1, 0, 1, 2, 2) == PYNN_EINVAL, "K < 0");
    CHECK(pynn_sgemm(NULL, a, b, 0, 0, 2, 2, 2, 1, 0, 2, 2, 2) == PYNN_EINVAL, "C NULL");
    CHECK(pynn_sgemm(c, NULL, b, 0, 0, 2, 2, 2, 1, 0, 2, 2, 2) == PYNN_EINVAL, "A NULL");
    CHECK(pynn_sgemm(c, a, NULL, 0, 0, 2, 2, 2, 1, 0, 2, 2, 2) == PYNN_EINVAL, "B NULL");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 4, 1, 0, 3, 3, 3) == PYNN_EINVAL, "lda < K");
    CHECK(pynn_sgemm(c, a, b, 1, 0, 2, 3, 4, 1, 0, 1, 3, 3) == PYNN_EINVAL, "trans lda < M");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 4, 1, 0, 4, 2, 3) == PYNN_EINVAL, "ldb < N");
    CHECK(pynn_sgemm(c, a, b, 0, 1, 2, 3, 4, 1, 0, 4, 3, 3) == PYNN_EINVAL, "trans ldb < K");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 4, 1, 0, 4, 3, 2) == PYNN_EINVAL, "ldc < N");
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 4, 1, 0, 4, 3, 0) == PYNN_EINVAL, "ldc 0");
    CHECK(pynn_sgemm_bias_act(c, y, a, b, NULL, 0, 0, 2, 2, 2, 99, 0) == PYNN_EINVAL, "act 99");
    CHECK(pynn_sgemm_bias_act(c, y, a, b, NULL, 0, 0, 2, 2, 2, -1, 0) == PYNN_EINVAL, "act -1");
    CHECK(pynn_sgemm_bias_act(NULL, y, a, b, NULL, 0, 0, 2, 2, 2, 0, 0) == PYNN_EINVAL, "Z NULL");
    CHECK(pynn_sgemm_bias_act(c, y, a, b, NULL, 0, 0, -2, 2, 2, 0, 0) == PYNN_EINVAL, "M < 0");
    CHECK(pynn_gemm_select_kernel(99) == PYNN_EINVAL, "select_kernel(99)");
    CHECK(pynn_gemm_kernel_supported(99) == 0, "kernel_supported(99)");
    CHECK(pynn_gemm_kernel_supported(PYNN_KERNEL_GENERIC) == 1, "generic always supported");

    /* Empty products: no pointer is touched, C = beta C when K == 0. */
    CHECK(pynn_sgemm(NULL, NULL, NULL, 0, 0, 0, 0, 0, 1, 0, 1, 1, 1) == PYNN_OK, "all sizes 0");
    CHECK(pynn_sgemm(NULL, NULL, b, 0, 0, 0, 3, 4, 1, 0, 4, 3, 3) == PYNN_OK, "M == 0");
    for (i = 0; i < 6; i++) c[i] = NAN;            /* elements of C: must not be read */
    CHECK(pynn_sgemm(c, NULL, NULL, 0, 0, 2, 3, 0, 1, 0, 1, 3, 3) == PYNN_OK, "K == 0");
    for (i = 0; i < 6; i++)                        /* elements of C */
        CHECK(c[i] == 0.0f, "K == 0, beta == 0: C[%d] = %g, expected 0", i, c[i]);
    for (i = 0; i < 6; i++) c[i] = (float)i;       /* elements of C */
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 0, 1, 2.0f, 1, 3, 3) == PYNN_OK, "K == 0, beta 2");
    for (i = 0; i < 6; i++)                        /* elements of C */
        CHECK(c[i] == 2.0f * (float)i, "K == 0, beta 2: C[%d] = %g", i, c[i]);
    /* alpha == 0: A and B are not used (here they hold NaN). */
    for (i = 0; i < 6; i++) { a[i] = b[i] = NAN; c[i] = 1.0f; }   /* elements */
    CHECK(pynn_sgemm(c, a, b, 0, 0, 2, 3, 2, 0.0f, 3.0f, 2, 3, 3) == PYNN_OK, "alpha == 0");
    for (i = 0; i < 6; i++)                        /* elements of C */
        CHECK(c[i] == 3.0f, "alpha == 0: C[%d] = %g, expected 3", i, c[i]);
    /* K == 0 in the fused call: Z = bias, Y = act(bias). */
    {
        const float bias[3] = {-1.0f, 0.5f, 2.0f};
        CHECK(pynn_sgemm_bias_act(c, y, NULL, NULL, bias, 0, 0, 2, 3, 0, PYNN_ACT_RELU, 0)
              == PYNN_OK, "bias_act K == 0");
        for (i = 0; i < 6; i++)                    /* elements of Z and Y */
            CHECK(c[i] == bias[i % 3] && y[i] == (bias[i % 3] > 0 ? bias[i % 3] : 0.0f),
                  "bias_act K == 0: Z[%d] = %g, Y[%d] = %g", i, c[i], i, y[i]);
    }
}

/* pynn_sgemm_ksplit: K cut into chunks fixed by the shape, each by one thread, added in
 * chunk order.  Against the naive product, with padded leading dimensions (padding
 * columns of C untouched), and bitwise the same on 1 and 2 threads. */
static void check_ksplit(int64_t m, int64_t n, int64_t k, int ta, int tb) {
    const int64_t pad = 3;
    const int64_t rows_a = ta ? k : m, cols_a = ta ? m : k;
    const int64_t rows_b = tb ? n : k, cols_b = tb ? k : n;
    const int64_t lda = cols_a + pad, ldb = cols_b + pad, ldc = n + pad;
    const int64_t chunks = pynn_sgemm_ksplit_chunks(m, n, k);
    float *a = random_matrix(rows_a, cols_a, lda, NAN);
    float *b = random_matrix(rows_b, cols_b, ldb, NAN);
    float *c1 = random_matrix(m, n, ldc, SENTINEL);
    float *c2 = alloc_floats(m * ldc);
    float *work = alloc_floats(chunks * m * n);
    int64_t i, j, bad = 0, touched = 0, differ = 0;
    int s1, s2;
    memcpy(c2, c1, (size_t)(m * ldc) * sizeof(float));
    pynn_set_num_threads(1);
    s1 = pynn_sgemm_ksplit(c1, work, a, b, ta, tb, m, n, k, lda, ldb, ldc);
    pynn_set_num_threads(2);
    s2 = pynn_sgemm_ksplit(c2, work, a, b, ta, tb, m, n, k, lda, ldb, ldc);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "ksplit status %d %d", s1, s2);
    for (i = 0; i < m; i++)                   /* M: rows of C */
        for (j = 0; j < ldc; j++) {           /* N: columns of C, then padding */
            double dot, mag;
            if (j >= n) {
                touched += c1[i * ldc + j] != SENTINEL || c2[i * ldc + j] != SENTINEL;
                continue;
            }
            differ += memcmp(&c1[i * ldc + j], &c2[i * ldc + j], sizeof(float)) != 0;
            naive_dot(&dot, &mag, a, b, ta, tb, lda, ldb, i, j, k);
            bad += !(fabs((double)c1[i * ldc + j] - dot) <= error_bound(k, mag));
        }
    CHECK(bad == 0 && touched == 0 && differ == 0,
          "ksplit ta=%d tb=%d M=%lld N=%lld K=%lld (%lld chunks): %lld wrong, %lld padding "
          "written, %lld differ between 1 and 2 threads", ta, tb, (long long)m, (long long)n,
          (long long)k, (long long)chunks, (long long)bad, (long long)touched, (long long)differ);
    free(a);
    free(b);
    free(c1);
    free(c2);
    free(work);
}

static void check_ksplit_shapes(void) {
    static const int64_t shapes[][3] = {{16, 150, 6400}, {1, 1, 1}, {7, 33, 255},
                                        {13, 29, 257}, {5, 3, 2049}, {17, 1, 3001}};
    size_t s;
    int ta, tb;
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)   /* shapes */
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++)
                check_ksplit(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb);
    CHECK(pynn_sgemm_ksplit_chunks(16, 150, 6400) == 8 && pynn_sgemm_ksplit_chunks(3, 3, 256) == 1,
          "ksplit chunk rule");
}

int main(void) {
    static const char *names[] = {"auto", "generic", "avx2", "avx512"};
    int which, tested = 0;
    kernel_name = "args";
    check_arguments();
    for (which = PYNN_KERNEL_GENERIC; which <= PYNN_KERNEL_AVX512; which++) {   /* kernels */
        const pynn_gemm_kernel_info *ki = pynn_gemm_kernel_info_of(which);
        const int failures_before = n_failures;
        if (!pynn_gemm_kernel_supported(which)) {
            CHECK(pynn_gemm_select_kernel(which) == PYNN_ENOTSUP, "select of unsupported kernel");
            printf("test_gemm: %-8s not supported by this CPU/build, skipped\n", names[which]);
            continue;
        }
        kernel_name = names[which];
        CHECK(ki != NULL && ki->id == which, "kernel table of %s", names[which]);
        CHECK(pynn_gemm_select_kernel(which) == PYNN_OK, "select %s", names[which]);
        CHECK(pynn_gemm_kernel() == which, "kernel in use after select");
        if (ki == NULL) continue;
        check_sgemm_shapes(ki);
        check_small_shapes();
        check_small_limit();
        check_bias_act_shapes(ki);
        check_threads_bitwise(ki);
        check_small_m();
        check_ksplit_shapes();
        printf("test_gemm: %-8s MR=%lld NR=%lld MC=%lld KC=%lld NC=%lld: %s\n", names[which],
               (long long)ki->mr, (long long)ki->nr, (long long)ki->mc, (long long)ki->kc,
               (long long)ki->nc, n_failures == failures_before ? "ok" : "FAILED");
        tested++;
    }
    kernel_name = "auto";
    CHECK(pynn_gemm_select_kernel(PYNN_KERNEL_AUTO) == PYNN_OK, "select auto");
    CHECK(tested >= 1, "no kernel tested");
    printf("test_gemm: %d kernel(s), %d checks, %d failures\n", tested, n_checks, n_failures);
    return n_failures == 0 ? 0 : 1;
}
