/* test_embedding.c -- csrc/embedding.c (engineer G) from C under ASan/UBSan: Embedding's
 * gather and its checks of the ids, the gradient written only in the rows seen (each the
 * sum of its rows of dy in position order) and cleared again, Masking forward and
 * backward; sizes large enough for an OpenMP team, bitwise the same on 1 and 2 threads;
 * and the plan's OP_ROWS_SCOPE refused where malformed.  Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 99;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *floats(int64_t n, float fill) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = fill;
    return p;
}

static void check_forward(void) {
    const float table[6] = {1, 2, 3, 4, 5, 6};       /* V = 3, D = 2 */
    const float ids[4] = {2, 0, 1, 2};
    const float bad[5][2] = {{0, 3}, {0, -1}, {1.5f, 0}, {NAN, 0}, {1e30f, 0}};
    float y[8], mask[4], y2[4];
    int k;
    CHECK(pynn_embedding_forward(y, mask, ids, table, 4, 3, 2) == PYNN_OK, "forward");
    CHECK(y[0] == 5 && y[1] == 6 && y[2] == 1 && y[3] == 2 && y[4] == 3 && y[6] == 5,
          "gather");
    CHECK(mask[0] == 1 && mask[1] == 0 && mask[2] == 1 && mask[3] == 1, "mask");
    for (k = 0; k < 5; k++) {
        y2[0] = y2[1] = y2[2] = y2[3] = -7;
        CHECK(pynn_embedding_forward(y2, NULL, bad[k], table, 2, 3, 2) == PYNN_EINDEX,
              "bad id %d refused", k);
        CHECK(y2[0] == -7 && y2[3] == -7, "nothing written for bad id %d", k);
    }
    CHECK(pynn_embedding_forward(NULL, NULL, NULL, table, 0, 3, 2) == PYNN_OK, "n = 0");
    CHECK(pynn_embedding_forward(y, NULL, ids, table, 4, 0, 2) == PYNN_EINVAL, "V = 0");
    CHECK(pynn_embedding_forward(y, NULL, ids, NULL, 4, 3, 2) == PYNN_EINVAL, "NULL table");
}

/* backward on n ids of V rows, D columns: against a double sum, the rows not seen left as
 * they were, 1 vs 2 threads bitwise, then cleared */
static void check_backward(int64_t n, int64_t V, int64_t D) {
    float *ids = floats(n, 0), *dy = floats(n * D, 0);
    float *g1 = floats(V * D, 42.0f), *g2 = floats(V * D, 42.0f);
    int64_t *w1 = malloc((size_t)(2 * n + 1) * sizeof(int64_t));
    int64_t *w2 = malloc((size_t)(2 * n + 1) * sizeof(int64_t));
    double *ref = calloc((size_t)(V * D), sizeof(double));
    char *seen = calloc((size_t)V, 1);
    int64_t i, j;
    for (i = 0; i < n; i++) {
        ids[i] = (float)((int64_t)(uniform() * (float)(V / 2)) * 2);   /* even rows only */
        seen[(int64_t)ids[i]] = 1;
    }
    for (i = 0; i < n * D; i++) dy[i] = uniform() * 2.0f - 1.0f;
    for (i = 0; i < n; i++)
        for (j = 0; j < D; j++) ref[(int64_t)ids[i] * D + j] += dy[i * D + j];
    pynn_set_num_threads(1);
    CHECK(pynn_embedding_backward(g1, w1, ids, dy, n, V, D) == PYNN_OK, "backward n=%lld",
          (long long)n);
    pynn_set_num_threads(2);
    CHECK(pynn_embedding_backward(g2, w2, ids, dy, n, V, D) == PYNN_OK, "backward, 2 threads");
    CHECK(memcmp(g1, g2, (size_t)(V * D) * sizeof(float)) == 0, "1 vs 2 threads bitwise");
    for (i = 0; i < V; i++)
        for (j = 0; j < D; j++) {
            const double got = g1[i * D + j];
            if (seen[i])
                CHECK(fabs(got - ref[i * D + j]) <= 1e-5 * (double)n, "row %lld", (long long)i);
            else
                CHECK(got == 42.0, "row %lld not seen was written", (long long)i);
        }
    CHECK(pynn_embedding_grad_clear(g1, w1, n, V, D) == PYNN_OK, "clear");
    for (i = 0; i < V; i++)
        CHECK(seen[i] ? g1[i * D] == 0.0f && g1[i * D + D - 1] == 0.0f : g1[i * D] == 42.0f,
              "clear row %lld", (long long)i);
    CHECK(pynn_embedding_grad_clear(g2, NULL, 0, V, D) == PYNN_OK, "clear every row");
    for (i = 0; i < V * D; i++) CHECK(g2[i] == 0.0f, "every row cleared");
    ids[n - 1] = (float)V;
    CHECK(pynn_embedding_backward(g2, w2, ids, dy, n, V, D) == PYNN_EINDEX, "bad id");
    free(ids); free(dy); free(g1); free(g2); free(w1); free(w2); free(ref); free(seen);
}

static void check_masking(int64_t rows, int64_t D) {
    float *x = floats(rows * D, 0), *y1 = floats(rows * D, 0), *y2 = floats(rows * D, 0);
    float *m1 = floats(rows, -1), *m2 = floats(rows, -1), *dx = floats(rows * D, 0);
    int64_t r, j;
    for (r = 0; r < rows * D; r++) x[r] = uniform() < 0.5f ? 0.25f : uniform();
    for (r = 0; r < rows; r += 3)
        for (j = 0; j < D; j++) x[r * D + j] = 0.25f;            /* every third row masked */
    pynn_set_num_threads(1);
    CHECK(pynn_masking_forward(y1, m1, x, rows, D, 0.25f) == PYNN_OK, "masking");
    pynn_set_num_threads(2);
    CHECK(pynn_masking_forward(y2, m2, x, rows, D, 0.25f) == PYNN_OK, "masking, 2 threads");
    CHECK(memcmp(y1, y2, (size_t)(rows * D) * sizeof(float)) == 0, "1 vs 2 threads");
    for (r = 0; r < rows; r++) {
        int keep = 0;
        for (j = 0; j < D; j++) keep |= x[r * D + j] != 0.25f;
        CHECK(m1[r] == (float)keep, "mask row %lld", (long long)r);
        for (j = 0; j < D; j++) CHECK(y1[r * D + j] == x[r * D + j] * (float)keep, "y");
    }
    CHECK(pynn_masking_backward(dx, x, m1, rows, D) == PYNN_OK, "masking backward");
    for (r = 0; r < rows; r++) CHECK(dx[r * D] == x[r * D] * m1[r], "dx row %lld", (long long)r);
    CHECK(pynn_masking_backward(dx, x, NULL, rows, D) == PYNN_EINVAL, "NULL mask");
    free(x); free(y1); free(y2); free(m1); free(m2); free(dx);
}

/* OP_ROWS_SCOPE: a count past the end, a nested scope and T < 1 are refused */
static void check_rows_scope(void) {
    float data[4] = {0};
    pynn_buffer buf = {data, 0, 4, PYNN_DTYPE_F32};
    int64_t scope_bad[2] = {2, 5}, scope_ok[2] = {2, 1}, scope_zero[2] = {0, 0};
    int64_t scope_in[2] = {2, 0};
    int64_t scale_bufs[2] = {0, 0};
    double alpha = 1.0;
    pynn_op scale = {PYNN_OP_SCALE, 2, 0, 1, scale_bufs, NULL, &alpha};
    pynn_op ops[3];
    pynn_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.bufs = &buf;
    plan.n_bufs = 1;
    plan.capacity = 4;
    plan.ops = ops;
    ops[0] = (pynn_op){PYNN_OP_ROWS_SCOPE, 0, 2, 0, NULL, scope_ok, NULL};
    ops[1] = scale;
    plan.n_ops = 2;
    CHECK(pynn_plan_check(&plan, 2) == PYNN_OK, "a scope over one op");
    ops[0].ints = scope_bad;
    CHECK(pynn_plan_check(&plan, 2) == PYNN_EINVAL, "a scope past the end");
    ops[0].ints = scope_zero;
    CHECK(pynn_plan_check(&plan, 2) == PYNN_EINVAL, "T = 0");
    ops[0].ints = scope_ok;
    ops[1] = (pynn_op){PYNN_OP_ROWS_SCOPE, 0, 2, 0, NULL, scope_in, NULL};
    ops[2] = scale;
    plan.n_ops = 3;
    CHECK(pynn_plan_check(&plan, 2) == PYNN_EINVAL, "nested scopes");
}

/* pynn_embedding_sgd: the rows seen get the dense SGD's bits, then their gradient rows
 * zero; rows not seen are neither read (a NaN there stays unread) nor written.  And
 * pynn_optimizer_apply skips a PYNN_SEGMENT_SPARSE segment for plain SGD only. */
static void check_sparse_sgd(void) {
    enum { n = 5, V = 6, D = 3 };
    const float ids[n] = {4, 1, 4, 0, 1};
    float w[V * D], w_dense[V * D], g[V * D], dy[n * D];
    int64_t work[2 * n], i;
    int64_t segs[6] = {0, 4, PYNN_SEGMENT_DECAY, 4, V * D - 4, PYNN_SEGMENT_SPARSE};
    double hyper[PYNN_HYPER_COUNT] = {0}, options[PYNN_OPTION_COUNT] = {0};
    float nan_ = NAN;
    for (i = 0; i < V * D; i++) w[i] = w_dense[i] = uniform();
    for (i = 0; i < n * D; i++) dy[i] = uniform();
    for (i = 0; i < V * D; i++) g[i] = 0.0f;
    CHECK(pynn_embedding_backward(g, work, ids, dy, n, V, D) == PYNN_OK, "backward");
    CHECK(pynn_sgd_update(w_dense, NULL, g, V * D, 0.3f, 0.0f, 0) == PYNN_OK, "dense");
    for (i = 0; i < D; i++) g[2 * D + i] = nan_;          /* row 2: not seen */
    CHECK(pynn_embedding_sgd(w, g, work, n, V, D, 0.3f, 1) == PYNN_OK, "sparse");
    CHECK(memcmp(w, w_dense, sizeof w) == 0, "sparse == dense, bitwise");
    for (i = 0; i < V * D; i++)
        CHECK(i / D == 2 ? g[i] != g[i] : g[i] == 0.0f, "gradient rows seen cleared, %lld",
              (long long)i);
    CHECK(pynn_embedding_sgd(w, g, work, n, V, D, 0.3f, 0) == PYNN_OK, "clear only");
    CHECK(memcmp(w, w_dense, sizeof w) == 0, "apply 0: no change");
    work[1] = -1;
    CHECK(pynn_embedding_sgd(w, g, work, n, V, D, 0.3f, 1) == PYNN_EINVAL, "bad keys");
    CHECK(pynn_embedding_sgd(w, g, NULL, n, V, D, 0.3f, 1) == PYNN_EINVAL, "NULL work");
    CHECK(pynn_embedding_sgd(NULL, NULL, NULL, 0, V, D, 0.3f, 1) == PYNN_OK, "n = 0");

    /* the optimizer: segment 1 (flag SPARSE) skipped for plain SGD, a NaN there unread */
    hyper[PYNN_HYPER_LEARNING_RATE] = 0.5;
    for (i = 0; i < V * D; i++) { w[i] = 1.0f; g[i] = i < 4 ? 2.0f : nan_; }
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_SGD, hyper, options, 0) == 1, "plain SGD");
    CHECK(pynn_optimizer_apply(w, NULL, NULL, g, V * D, segs, 2, PYNN_OPT_SGD, 1, hyper,
                               options) == PYNN_OK, "apply, sparse");
    for (i = 0; i < V * D; i++) CHECK(w[i] == (i < 4 ? 0.0f : 1.0f), "skipped, %lld", (long long)i);
    hyper[PYNN_HYPER_MOMENTUM] = 0.9;
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_SGD, hyper, options, 0) == 0, "momentum");
    hyper[PYNN_HYPER_MOMENTUM] = 0.0;
    hyper[PYNN_HYPER_WEIGHT_DECAY] = 0.01;
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_SGD, hyper, options, 0) == 0, "weight decay");
    hyper[PYNN_HYPER_WEIGHT_DECAY] = 0.0;
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_SGD, hyper, options, 1) == 0, "EMA");
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_ADAM, hyper, options, 0) == 0, "Adam");
    options[PYNN_OPTION_CLIPVALUE] = 1.0;
    CHECK(pynn_optimizer_sparse_ok(PYNN_OPT_SGD, hyper, options, 0) == 0, "clipvalue");
    /* not plain SGD: the flag is ignored, the dense update reads the NaN */
    CHECK(pynn_optimizer_apply(w, NULL, NULL, g, V * D, segs, 2, PYNN_OPT_SGD, 1, hyper,
                               options) == PYNN_OK, "apply, dense");
    CHECK(w[V * D - 1] != w[V * D - 1], "dense: the whole table updated");
    segs[5] = 4;
    CHECK(pynn_optimizer_options_check(V * D, segs, 2, NULL) == PYNN_EINVAL, "unknown flag");
}

int main(void) {
    check_forward();
    check_sparse_sgd();
    check_backward(1, 3, 1);
    check_backward(7, 9, 5);
    check_backward(5000, 64, 16);            /* an OpenMP team: n * D > 32768 */
    check_masking(1, 1);
    check_masking(4000, 12);
    check_rows_scope();
    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("test_embedding: all checks passed\n");
    return 0;
}
