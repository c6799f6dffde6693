/* test_plan.c -- pynn_plan_run (csrc/plan.c) from C, under ASan/UBSan:
 *   - a small MLP (dense, dropout, dense, sparse CCE, accuracy, backward, Adam) and a small
 *     CNN (direct conv, GEMM conv, max pooling, batch norm and a ReLU over it -- the pairs
 *     plan.c folds, forward and backward -- dense, SGD with momentum) and a
 *     branchy network (every other op kind: average poolings, concat, a residual merge,
 *     inference batch norm, scale, a weighted MSE, RMSprop) built as plans and run for a few
 *     epochs give bitwise the numbers of calling the kernels directly in the same order
 *     (weights, losses, metrics, predictions or input gradients copied out);
 *   - after the first step, steps call malloc not at all (the link wraps the allocators);
 *   - 1 and 2 threads give bitwise the same weights;
 *   - OP_GRAD_HOOK calls the plan's hook between the step's ops with its bucket, rows and
 *     step (the gradients final), does nothing without a hook, ends the run on a hook's
 *     failure (PYNN_EHOOK) and refuses a bucket outside the gradients;
 *   - an inference plan reads inputs in place (input_direct) with bitwise the predictions of
 *     copying them, never writing the caller's rows, and copies where it must;
 *   - bad labels and NaN inputs are refused before the step changes anything, and every
 *     kind of malformed plan or feed is refused with PYNN_EINVAL, nothing changed.
 * Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static long alloc_calls = 0;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n) { alloc_calls++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t s) { alloc_calls++; return __real_calloc(n, s); }
void *__wrap_realloc(void *p, size_t n) { alloc_calls++; return __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) { alloc_calls++; return __real_posix_memalign(p, a, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { alloc_calls++; return __real_aligned_alloc(a, n); }

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 12345;
static float uniform(void) { /* xorshift: repeatable data without libc's rand state */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}

static float *floats(int64_t n) { return __real_calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

/* ---- a plan under construction -------------------------------------------------- */
#define MAX_BUFS 64
#define MAX_OPS 32

typedef struct {
    pynn_buffer bufs[MAX_BUFS];
    pynn_op ops[MAX_OPS];
    int64_t pool[2048];            /* every op's buffer indices and ints */
    double reals[256];
    int64_t n_pool, n_reals;
    pynn_plan plan;
    int64_t inputs[4], targets[4], classes[4], outputs[4];
} builder;

static void builder_init(builder *b, int64_t capacity) {
    memset(b, 0, sizeof *b);
    b->plan.bufs = b->bufs;
    b->plan.ops = b->ops;
    b->plan.capacity = capacity;
    b->plan.input_bufs = b->inputs;
    b->plan.target_bufs = b->targets;
    b->plan.target_classes = b->classes;
    b->plan.output_bufs = b->outputs;
}

/* a batched buffer of its own memory (freed by builder_free) */
static int64_t batched(builder *b, int64_t row_size, int32_t dtype) {
    pynn_buffer *buf = &b->bufs[b->plan.n_bufs];
    buf->size = b->plan.capacity * row_size;
    buf->data = __real_calloc((size_t)buf->size, dtype == PYNN_DTYPE_I64 ? 8 : 4);
    buf->row_size = row_size;
    buf->dtype = dtype;
    return b->plan.n_bufs++;
}

/* a fixed buffer over the caller's memory */
static int64_t fixed(builder *b, float *data, int64_t size) {
    pynn_buffer *buf = &b->bufs[b->plan.n_bufs];
    buf->data = data;
    buf->size = size;
    buf->row_size = 0;
    buf->dtype = PYNN_DTYPE_F32;
    return b->plan.n_bufs++;
}

static void add_op(builder *b, int kind, const int64_t *bufs, int nb, const int64_t *ints, int ni,
                   const double *reals, int nr) {
    pynn_op *op = &b->ops[b->plan.n_ops++];
    op->kind = kind;
    op->n_bufs = nb;
    op->n_ints = ni;
    op->n_reals = nr;
    op->bufs = b->pool + b->n_pool;
    memcpy(b->pool + b->n_pool, bufs, (size_t)nb * sizeof(int64_t));
    b->n_pool += nb;
    op->ints = b->pool + b->n_pool;
    if (ni > 0) memcpy(b->pool + b->n_pool, ints, (size_t)ni * sizeof(int64_t));
    b->n_pool += ni;
    op->reals = b->reals + b->n_reals;
    if (nr > 0) memcpy(b->reals + b->n_reals, reals, (size_t)nr * sizeof(double));
    b->n_reals += nr;
}

#define LIST(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define REALS(...) (const double[]){__VA_ARGS__}, (int)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double))
#define NO_INTS NULL, 0
#define NO_REALS NULL, 0

static void builder_free(builder *b) {
    int64_t i;
    for (i = 0; i < b->plan.n_bufs; i++)
        if (b->bufs[i].row_size > 0) free(b->bufs[i].data);
}

/* ---- data ---------------------------------------------------------------------------- */
enum { N = 300, BATCH = 32, STEPS = (N + BATCH - 1) / BATCH };   /* 9 full steps and 12 rows */

static void make_data(float *x, int64_t *labels, int64_t in, int64_t classes) {
    int64_t i, j;
    rng_state = 7;
    for (i = 0; i < N; i++) {
        int64_t best = 0;
        for (j = 0; j < in; j++) x[i * in + j] = uniform() * 2.0f - 1.0f;
        for (j = 1; j < classes; j++) best = x[i * in + j] > x[i * in + best] ? j : best;
        labels[i] = best;
    }
}

static void make_order(int64_t *order) {
    int64_t i;
    rng_state = 11;
    for (i = 0; i < N; i++) order[i] = i;
    for (i = N - 1; i > 0; i--) {   /* Fisher-Yates */
        int64_t j = (int64_t)(uniform() * (float)(i + 1)), t;
        if (j > i) j = i;
        t = order[i]; order[i] = order[j]; order[j] = t;
    }
}

static void init_params(float *p, int64_t n, unsigned long long seed, float scale) {
    int64_t i;
    rng_state = seed;
    for (i = 0; i < n; i++) p[i] = (uniform() - 0.5f) * scale;
}

/* ---- the MLP: 20 -> 37 relu -> dropout 0.2 -> 4 logits, sparse CCE, Adam ------------ */
enum { IN = 20, HID = 37, OUT = 4 };
enum { W1 = 0, B1 = W1 + IN * HID, W2 = B1 + HID, B2 = W2 + HID * OUT, P_MLP = B2 + OUT };
static const double ADAM[PYNN_HYPER_COUNT] = {0.01, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7};
#define DROPOUT_SEED 77

typedef struct {
    builder b;
    float *params, *grads, *m, *v;
    int64_t x, labels, probs;
} mlp_net;

static void mlp_build(mlp_net *n) {
    builder *b = &n->b;
    int64_t w1, b1, w2, b2, dw1, db1, dw2, db2, pa, ga, m, v;
    int64_t x, labels, z1, y1, mask, d, z2, grad, dd, dy1, probs;
    builder_init(b, BATCH);
    n->params = floats(P_MLP);
    n->grads = floats(P_MLP);
    n->m = floats(P_MLP);
    n->v = floats(P_MLP);
    init_params(n->params, P_MLP, 99, 0.6f);
    pa = fixed(b, n->params, P_MLP);
    ga = fixed(b, n->grads, P_MLP);
    m = fixed(b, n->m, P_MLP);
    v = fixed(b, n->v, P_MLP);
    w1 = fixed(b, n->params + W1, IN * HID); b1 = fixed(b, n->params + B1, HID);
    w2 = fixed(b, n->params + W2, HID * OUT); b2 = fixed(b, n->params + B2, OUT);
    dw1 = fixed(b, n->grads + W1, IN * HID); db1 = fixed(b, n->grads + B1, HID);
    dw2 = fixed(b, n->grads + W2, HID * OUT); db2 = fixed(b, n->grads + B2, OUT);
    x = batched(b, IN, PYNN_DTYPE_F32);
    labels = batched(b, 1, PYNN_DTYPE_I64);
    z1 = batched(b, HID, PYNN_DTYPE_F32); y1 = batched(b, HID, PYNN_DTYPE_F32);
    mask = batched(b, HID, PYNN_DTYPE_F32); d = batched(b, HID, PYNN_DTYPE_F32);
    z2 = batched(b, OUT, PYNN_DTYPE_F32); grad = batched(b, OUT, PYNN_DTYPE_F32);
    dd = batched(b, HID, PYNN_DTYPE_F32); dy1 = batched(b, HID, PYNN_DTYPE_F32);
    probs = batched(b, OUT, PYNN_DTYPE_F32);
    add_op(b, PYNN_OP_DENSE, LIST(x, w1, b1, z1, y1), LIST(IN, HID, PYNN_ACT_RELU), REALS(0.0));
    add_op(b, PYNN_OP_DROPOUT, LIST(y1, mask, d), LIST(DROPOUT_SEED, 1, HID, 0, 0), REALS(0.2));
    add_op(b, PYNN_OP_DENSE, LIST(d, w2, b2, z2, z2), LIST(HID, OUT, PYNN_ACT_LINEAR), REALS(0.0));
    add_op(b, PYNN_OP_LOSS, LIST(z2, labels, grad, -1), LIST(PYNN_LOSS_SPARSE_CCE, 1, OUT, 0, 0, 0, 0), REALS(1.0, 0.0, 0.0));
    add_op(b, PYNN_OP_ACTIVATION, LIST(z2, probs), LIST(OUT, PYNN_ACT_SOFTMAX), REALS(0.0));
    add_op(b, PYNN_OP_METRIC, LIST(probs, labels, -1),
           LIST(PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, OUT, 0, 1, 1, 1), REALS(0.5));
    add_op(b, PYNN_OP_METRIC, LIST(probs, labels, -1), LIST(PYNN_METRIC_MSE, OUT, 1, 1, 1, 1),
           REALS(0.5));
    add_op(b, PYNN_OP_DENSE_BACKWARD, LIST(d, w2, z2, z2, grad, dw2, db2, dd),
           LIST(HID, OUT, PYNN_ACT_LINEAR), REALS(0.0));
    add_op(b, PYNN_OP_DROPOUT_BACKWARD, LIST(dd, mask, dy1), NO_INTS, NO_REALS);
    add_op(b, PYNN_OP_DENSE_BACKWARD, LIST(x, w1, z1, y1, dy1, dw1, db1, -1),
           LIST(IN, HID, PYNN_ACT_RELU), REALS(0.0));
    add_op(b, PYNN_OP_OPTIMIZER, LIST(pa, ga, m, v, -1), LIST(PYNN_OPT_ADAM), ADAM, PYNN_HYPER_COUNT);
    b->inputs[0] = x; b->targets[0] = labels; b->classes[0] = OUT; b->outputs[0] = probs;
    b->plan.n_inputs = 1; b->plan.n_targets = 1; b->plan.n_outputs = 1;
    b->plan.n_losses = 1; b->plan.n_metrics = 2;
    n->x = x; n->labels = labels; n->probs = probs;
}

static void mlp_free(mlp_net *n) {
    builder_free(&n->b);
    free(n->params); free(n->grads); free(n->m); free(n->v);
}

/* The same steps by calling the kernels directly. */
typedef struct {
    float *params, *grads, *m, *v;
    float *xb, *z1, *y1, *mask, *d, *z2, *grad, *dd, *dy1, *probs;
    int64_t *lb;
} mlp_direct;

static void mlp_direct_init(mlp_direct *r) {
    r->params = floats(P_MLP); r->grads = floats(P_MLP); r->m = floats(P_MLP); r->v = floats(P_MLP);
    init_params(r->params, P_MLP, 99, 0.6f);
    r->xb = floats(BATCH * IN);
    r->z1 = floats(BATCH * HID); r->y1 = floats(BATCH * HID); r->mask = floats(BATCH * HID);
    r->d = floats(BATCH * HID); r->z2 = floats(BATCH * OUT); r->grad = floats(BATCH * OUT);
    r->dd = floats(BATCH * HID); r->dy1 = floats(BATCH * HID); r->probs = floats(BATCH * OUT);
    r->lb = __real_calloc(BATCH, sizeof(int64_t));
}

static void mlp_direct_free(mlp_direct *r) {
    free(r->params); free(r->grads); free(r->m); free(r->v); free(r->xb); free(r->z1);
    free(r->y1); free(r->mask); free(r->d); free(r->z2); free(r->grad); free(r->dd);
    free(r->dy1); free(r->probs); free(r->lb);
}

static int mlp_direct_step(mlp_direct *r, const float *x, const int64_t *labels,
                           const int64_t *order, int64_t r0, int64_t rows, int64_t step,
                           double *loss, double *metrics, float *probs_out) {
    static const int64_t dims[1] = {HID}, broadcast[2] = {0, 0};
    int64_t i;
    int s = 0;
    for (i = 0; i < rows; i++) {
        memcpy(r->xb + i * IN, x + order[r0 + i] * IN, IN * sizeof(float));
        r->lb[i] = labels[order[r0 + i]];
    }
    s |= pynn_sgemm_bias_act(r->z1, r->y1, r->xb, r->params + W1, r->params + B1, 0, 0, rows, HID,
                             IN, PYNN_ACT_RELU, 0.0f);
    s |= pynn_dropout_forward(r->d, r->mask, r->y1, rows, dims, broadcast, 1, DROPOUT_SEED,
                              (uint64_t)step, 0.2);
    s |= pynn_sgemm_bias_act(r->z2, r->z2, r->d, r->params + W2, r->params + B2, 0, 0, rows, OUT,
                             HID, PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_sparse_cce(r->grad, loss, r->z2, r->lb, rows, OUT, 1, NULL);
    s |= pynn_activation_forward(r->probs, r->z2, rows, OUT, PYNN_ACT_SOFTMAX, 0.0f);
    s |= pynn_metric_sum(&metrics[0], r->probs, NULL, r->lb, rows, OUT,
                         PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, 1, 0.5f, NULL, 1);
    s |= pynn_metric_sum(&metrics[1], r->probs, NULL, r->lb, rows, OUT, PYNN_METRIC_MSE, 1, 0.5f,
                         NULL, 1);
    s |= pynn_dense_backward(r->grads + W2, r->grads + B2, r->dd, r->grad, r->d, r->params + W2,
                             r->z2, r->z2, rows, HID, OUT, PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_multiply(r->dy1, r->dd, r->mask, rows * HID);
    s |= pynn_dense_backward(r->grads + W1, r->grads + B1, NULL, r->dy1, r->xb, r->params + W1,
                             r->z1, r->y1, rows, IN, HID, PYNN_ACT_RELU, 0.0f);
    s |= pynn_optimizer_step(r->params, (float *[]){r->m, r->v, NULL}, r->grads, P_MLP, PYNN_OPT_ADAM, step, ADAM);
    memcpy(probs_out + r0 * OUT, r->probs, (size_t)(rows * OUT) * sizeof(float));
    return s;
}

static int mlp_run(mlp_net *n, const float *x, const int64_t *labels, const int64_t *order,
                   float *probs, int64_t first_row, int64_t steps, int64_t iterations,
                   double *losses, double *metrics, int64_t *rows) {
    const void *inputs[1] = {x}, *targets[1] = {labels};
    void *outputs[1] = {probs};
    pynn_plan_feed feed = {inputs, targets, outputs, N, order, N, NULL, NULL};
    return pynn_plan_run(&n->b.plan, &feed, first_row, BATCH, steps, iterations, 1, losses,
                         metrics, rows);
}

static void test_mlp_plan(const float *x, const int64_t *labels, const int64_t *order) {
    static float probs_plan[N * OUT], probs_direct[N * OUT];
    double losses[STEPS], metrics[STEPS * 2];
    int64_t rows[STEPS], it = 0, s, epoch;
    mlp_net n;
    mlp_direct r;
    long calls;
    int same = 1;
    mlp_build(&n);
    mlp_direct_init(&r);
    pynn_set_num_threads(2);
    /* warm-up: one step (the GEMM sizes its packing buffer once) */
    CHECK(mlp_run(&n, x, labels, order, probs_plan, 0, 1, 0, losses, metrics, rows) == PYNN_OK,
          "MLP warm-up");
    {
        double l, m[2];
        CHECK(mlp_direct_step(&r, x, labels, order, 0, BATCH, 1, &l, m, probs_direct) == PYNN_OK,
              "direct warm-up");
        same &= l == losses[0] && m[0] == metrics[0] && m[1] == metrics[1];
    }
    it = 1;
    calls = alloc_calls;
    for (epoch = 0; epoch < 3; epoch++) {
        const int64_t first = epoch == 0 ? BATCH : 0, steps = epoch == 0 ? STEPS - 1 : STEPS;
        CHECK(mlp_run(&n, x, labels, order, probs_plan, first, steps, it, losses, metrics, rows) ==
              PYNN_OK, "MLP epoch %ld", (long)epoch);
        CHECK(rows[steps - 1] == N - (STEPS - 1) * BATCH, "the last step's rows: %ld",
              (long)rows[steps - 1]);
        for (s = 0; s < steps; s++) {
            double l, m[2];
            const int64_t r0 = first + s * BATCH;
            const int64_t nr = r0 + BATCH < N ? BATCH : N - r0;
            long before = alloc_calls;
            CHECK(mlp_direct_step(&r, x, labels, order, r0, nr, it + s + 1, &l, m, probs_direct) ==
                  PYNN_OK, "direct step");
            alloc_calls = before;   /* only the plan's steps are counted */
            same &= l == losses[s] && m[0] == metrics[2 * s] && m[1] == metrics[2 * s + 1];
        }
        it += steps;
    }
    CHECK(alloc_calls == calls, "MLP plan: %ld allocations during training steps",
          alloc_calls - calls);
    CHECK(same, "MLP plan: losses or metrics differ from the direct kernel calls");
    CHECK(memcmp(n.params, r.params, P_MLP * sizeof(float)) == 0,
          "MLP plan: weights differ from the direct kernel calls");
    CHECK(memcmp(n.m, r.m, P_MLP * sizeof(float)) == 0 && memcmp(n.v, r.v, P_MLP * sizeof(float)) == 0,
          "MLP plan: Adam's moments differ");
    CHECK(memcmp(probs_plan, probs_direct, sizeof probs_plan) == 0,
          "MLP plan: predictions differ");
    CHECK(metrics[0] >= 0.0 && metrics[0] <= (double)BATCH, "accuracy sum %g", metrics[0]);

    /* refusals before anything changes */
    {
        static int64_t bad[N];
        static float xnan[N * IN];
        float *snapshot = floats(P_MLP);
        memcpy(bad, labels, sizeof bad);
        memcpy(snapshot, n.params, P_MLP * sizeof(float));
        bad[order[5]] = OUT;
        CHECK(mlp_run(&n, x, bad, order, probs_plan, 0, 2, it, losses, metrics, rows) == PYNN_ELABEL,
              "a label == classes accepted");
        bad[order[5]] = -1;
        CHECK(mlp_run(&n, x, bad, order, probs_plan, 0, 2, it, losses, metrics, rows) == PYNN_ELABEL,
              "a negative label accepted");
        memcpy(xnan, x, sizeof xnan);
        xnan[order[7] * IN + 3] = NAN;
        CHECK(mlp_run(&n, xnan, labels, order, probs_plan, 0, 2, it, losses, metrics, rows) ==
              PYNN_ENONFINITE, "a NaN input accepted");
        CHECK(memcmp(snapshot, n.params, P_MLP * sizeof(float)) == 0,
              "a refused step changed the weights");
        free(snapshot);
    }
    mlp_free(&n);
    mlp_direct_free(&r);
}

/* ---- malformed plans and feeds ----------------------------------------------------- */
static void test_malformed(const float *x, const int64_t *labels, const int64_t *order) {
    static float probs[N * OUT];
    double losses[STEPS], metrics[2 * STEPS];
    int64_t rows[STEPS];
    mlp_net n;
    float *snapshot = floats(P_MLP);
    pynn_op saved_op;
    pynn_buffer saved_buf;
    pynn_plan saved_plan;
    int64_t bad_ints[16];
    int k;
    mlp_build(&n);
    memcpy(snapshot, n.params, P_MLP * sizeof(float));
    saved_plan = n.b.plan;

#define REFUSED(what) do { \
        CHECK(mlp_run(&n, x, labels, order, probs, 0, 3, 0, losses, metrics, rows) == PYNN_EINVAL, \
              "malformed plan accepted: %s", what); \
        CHECK(memcmp(snapshot, n.params, P_MLP * sizeof(float)) == 0, "%s: weights changed", what); \
    } while (0)
#define WITH_OP(i, change, what) do { saved_op = n.b.ops[i]; change; REFUSED(what); \
        n.b.ops[i] = saved_op; } while (0)
#define WITH_BUF(i, change, what) do { saved_buf = n.b.bufs[i]; change; REFUSED(what); \
        n.b.bufs[i] = saved_buf; } while (0)
#define WITH_PLAN(change, what) do { change; REFUSED(what); n.b.plan = saved_plan; } while (0)

    /* the ops: 0 dense, 1 dropout, 2 dense, 3 loss, 4 activation, 5-6 metric, 7 dense_backward,
     * 8 dropout_backward, 9 dense_backward, 10 optimizer; a bad op late in the list must
     * still stop the first step */
    WITH_OP(10, n.b.ops[10].kind = PYNN_OP_COUNT, "an unknown op kind");
    WITH_OP(10, n.b.ops[10].kind = -1, "a negative op kind");
    WITH_OP(9, n.b.ops[9].n_bufs = 7, "dense_backward with 7 buffers");
    WITH_OP(0, n.b.ops[0].n_ints = 2, "dense with 2 ints");
    WITH_OP(0, n.b.ops[0].n_reals = 0, "dense without alpha");
    WITH_OP(0, n.b.ops[0].bufs = NULL, "an op with NULL buffer indices");
    for (k = 0; k < 5; k++) bad_ints[k] = n.b.ops[0].bufs[k];
    bad_ints[3] = n.b.plan.n_bufs;
    WITH_OP(0, n.b.ops[0].bufs = bad_ints, "a buffer index == n_bufs");
    bad_ints[3] = -2;
    WITH_OP(0, n.b.ops[0].bufs = bad_ints, "a buffer index -2");
    bad_ints[3] = -1;
    WITH_OP(0, n.b.ops[0].bufs = bad_ints, "an absent dense output");
    bad_ints[3] = n.b.ops[2].bufs[3];        /* z2: 4 floats a row, not 37 */
    WITH_OP(0, n.b.ops[0].bufs = bad_ints, "an output buffer too small");
    bad_ints[3] = n.labels;
    WITH_OP(0, n.b.ops[0].bufs = bad_ints, "an int64 buffer as a float operand");
    for (k = 0; k < 3; k++) bad_ints[k] = n.b.ops[0].ints[k];
    bad_ints[1] = HID + 1;
    WITH_OP(0, n.b.ops[0].ints = bad_ints, "a kernel too small for in x out");
    bad_ints[1] = HID;
    bad_ints[2] = PYNN_ACT_COUNT;
    WITH_OP(0, n.b.ops[0].ints = bad_ints, "an unknown activation");
    bad_ints[0] = INT64_MAX;
    bad_ints[2] = PYNN_ACT_RELU;
    WITH_OP(0, n.b.ops[0].ints = bad_ints, "in x out overflowing");
    for (k = 0; k < 5; k++) bad_ints[k] = n.b.ops[1].ints[k];
    bad_ints[1] = 2;
    WITH_OP(1, n.b.ops[1].ints = bad_ints, "dropout's ndim not matching its ints");
    bad_ints[1] = 1;
    bad_ints[2] = HID + 3;
    WITH_OP(1, n.b.ops[1].ints = bad_ints, "dropout's row not dividing its buffer");
    WITH_OP(1, n.b.ops[1].reals = (const double[]){1.0}, "a dropout rate of 1");
    for (k = 0; k < 7; k++) bad_ints[k] = n.b.ops[3].ints[k];
    bad_ints[0] = PYNN_LOSS_CCE;
    WITH_OP(3, n.b.ops[3].ints = bad_ints, "labels for a float loss");
    bad_ints[0] = PYNN_LOSS_SPARSE_CCE;
    bad_ints[3] = 1;
    WITH_OP(3, n.b.ops[3].ints = bad_ints, "a loss slot out of range");
    bad_ints[3] = 0;
    bad_ints[2] = 3;
    WITH_OP(3, n.b.ops[3].ints = bad_ints, "labels of 4 classes for 3 columns");
    bad_ints[2] = OUT;
    bad_ints[6] = 2;
    WITH_OP(3, n.b.ops[3].ints = bad_ints, "a loss's reduce_sum 2");
    bad_ints[6] = 0;
    WITH_OP(3, n.b.ops[3].n_ints = 6, "a loss with the old 6 ints");
    for (k = 0; k < 6; k++) bad_ints[k] = n.b.ops[5].ints[k];
    bad_ints[0] = PYNN_METRIC_COUNT;
    WITH_OP(5, n.b.ops[5].ints = bad_ints, "an unknown metric");
    bad_ints[0] = PYNN_METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY;
    bad_ints[3] = 0;
    WITH_OP(5, n.b.ops[5].ints = bad_ints, "a top-k metric with k = 0");
    bad_ints[3] = 1;
    bad_ints[4] = 2;
    WITH_OP(5, n.b.ops[5].ints = bad_ints, "a per-row metric of width 2");
    bad_ints[4] = 1;
    bad_ints[5] = 0;
    WITH_OP(5, n.b.ops[5].ints = bad_ints, "a metric's per_weight 0");
    bad_ints[5] = 1;
    WITH_OP(5, n.b.ops[5].n_ints = 4, "a metric with the old 4 ints");
    WITH_OP(5, n.b.ops[5].n_reals = 0, "a metric without its threshold");
    WITH_OP(5, n.b.ops[5].reals = (const double[]){NAN}, "a NaN threshold");
    bad_ints[0] = PYNN_METRIC_CONFUSION;
    bad_ints[4] = 4;
    WITH_OP(6, (n.b.ops[6].ints = bad_ints, n.b.ops[6].reals = (const double[]){0.2, 0.7},
                n.b.ops[6].n_reals = 2), "confusion counts of 2 thresholds in 4 slots");
    bad_ints[2] = 0;
    bad_ints[4] = 8;
    WITH_OP(6, (n.b.ops[6].ints = bad_ints, n.b.ops[6].reals = (const double[]){0.2, 0.7},
                n.b.ops[6].n_reals = 2), "confusion counts past the step's metric slots");
    bad_ints[0] = PYNN_METRIC_MSE;
    bad_ints[4] = 1;
    for (k = 0; k < 3; k++) bad_ints[8 + k] = n.b.ops[5].bufs[k];
    bad_ints[10] = n.labels;
    WITH_OP(6, n.b.ops[6].bufs = bad_ints + 8, "int64 sample weights");
    bad_ints[10] = n.b.ops[2].bufs[2];       /* b2: OUT floats, fewer than the rows */
    WITH_OP(6, n.b.ops[6].bufs = bad_ints + 8, "sample weights shorter than the rows");
    for (k = 0; k < 4; k++) bad_ints[k] = n.b.ops[10].bufs[k];
    bad_ints[3] = -1;
    WITH_OP(10, n.b.ops[10].bufs = bad_ints, "Adam without its second moment");
    WITH_OP(10, n.b.ops[10].n_reals = PYNN_HYPER_COUNT - 1, "hyper-parameters missing");
    bad_ints[0] = PYNN_MERGE_SUBTRACT;
    WITH_OP(10, (n.b.ops[10].kind = PYNN_OP_MERGE, n.b.ops[10].n_bufs = 4, n.b.ops[10].n_ints = 1,
                 n.b.ops[10].ints = bad_ints, n.b.ops[10].n_reals = 0), "subtract of 3 inputs");

    WITH_BUF(n.x, n.b.bufs[n.x].size = BATCH * IN - 1, "a batched buffer below capacity rows");
    WITH_BUF(n.x, n.b.bufs[n.x].data = NULL, "a buffer without data");
    WITH_BUF(n.x, n.b.bufs[n.x].dtype = 7, "an unknown dtype");
    WITH_BUF(n.labels, n.b.bufs[n.labels].dtype = PYNN_DTYPE_F32, "float labels for a label target");
    WITH_BUF(n.x, n.b.bufs[n.x].row_size = -1, "a negative row size");

    WITH_PLAN(n.b.plan.capacity = 0, "capacity 0");
    WITH_PLAN(n.b.plan.n_ops = -1, "n_ops -1");
    WITH_PLAN(n.b.plan.ops = NULL, "ops NULL");
    WITH_PLAN(n.b.plan.n_inputs = 2, "an input list running past its array");
    WITH_PLAN(n.b.plan.input_bufs = NULL, "input_bufs NULL");
    WITH_PLAN(n.b.plan.output_bufs = (const int64_t[]){0}, "a fixed buffer as an output");
    WITH_PLAN(n.b.plan.target_classes = (const int64_t[]){-1}, "negative classes");
    WITH_PLAN(n.b.plan.n_losses = 0, "no loss slots for the loss op");

    /* the run's arguments and the feed */
    {
        const void *inputs[1] = {x}, *targets[1] = {labels}, *nulls[1] = {NULL};
        void *outputs[1] = {probs};
        static int64_t bad_order[N];
        pynn_plan_feed feed = {inputs, targets, outputs, N, order, N, NULL, NULL};
        const pynn_plan *p = &n.b.plan;
        CHECK(pynn_plan_run(p, NULL, 0, BATCH, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "a NULL feed");
        CHECK(pynn_plan_run(NULL, &feed, 0, BATCH, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "a NULL plan");
        CHECK(pynn_plan_run(p, &feed, 0, BATCH + 1, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "batch > capacity");
        CHECK(pynn_plan_run(p, &feed, 0, 0, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "batch 0");
        CHECK(pynn_plan_run(p, &feed, N, BATCH, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "a step of no rows");
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, STEPS + 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "more steps than rows");
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 1, -1, 0, losses, metrics, rows) == PYNN_EINVAL,
              "negative iterations");
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 1, 0, 0, NULL, metrics, rows) == PYNN_EINVAL,
              "no room for the losses");
        feed.inputs = nulls;
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "a NULL input array");
        feed.inputs = inputs;
        memcpy(bad_order, order, sizeof bad_order);
        bad_order[BATCH + 3] = N;
        feed.order = bad_order;
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 2, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "an order index == n_rows");
        feed.order = NULL;
        feed.n_order = N + 1;
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 1, 0, 0, losses, metrics, rows) == PYNN_EINVAL,
              "n_order > n_rows without an order");
        feed.n_order = N;
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 0, 0, 0, NULL, NULL, NULL) == PYNN_OK,
              "zero steps refused");
        CHECK(memcmp(snapshot, n.params, P_MLP * sizeof(float)) == 0, "a refused run changed the weights");
        CHECK(pynn_plan_run(p, &feed, 0, BATCH, 1, 0, 0, losses, metrics, NULL) == PYNN_OK,
              "the intact plan refused");
    }
#undef REFUSED
#undef WITH_OP
#undef WITH_BUF
#undef WITH_PLAN
    free(snapshot);
    mlp_free(&n);
}

/* ---- the CNN: 8x8x1 -> conv 3x3x8 relu (direct) -> conv 3x3x8 relu (im2col + GEMM) ->
 * max pool 2x2 -> batch norm -> dense 32 -> 4 logits; sparse CCE; SGD, Nesterov momentum -- */
enum { CI = 64, CO = 4 };
enum { K1 = 0, CB1 = K1 + 72, K2 = CB1 + 8, CB2 = K2 + 576, GAMMA = CB2 + 8, BETA = GAMMA + 8,
       W3 = BETA + 8, B3 = W3 + 32 * CO, P_CNN = B3 + CO };
static const double SGD_MOM[PYNN_HYPER_COUNT] = {0.05, 0.9, 1.0, 0.9, 0.999, 0.9, 1e-7};
#define G1 8, 8, 1, 3, 3, 1, 1, 0, 0, 6, 6, 8, PYNN_ACT_RELU
#define G2 6, 6, 8, 3, 3, 1, 1, 0, 0, 4, 4, 8, PYNN_ACT_RELU
#define GP 4, 4, 8, 2, 2, 2, 2, 0, 0, 2, 2

typedef struct {
    builder b;
    float *params, *grads, *mom, *mm, *mv, *mean, *inv, *work1, *work2;
    int64_t work1_size, work2_size;
} cnn_net;

static void cnn_build(cnn_net *n) {
    builder *b = &n->b;
    int64_t pa, ga, mo, k1, b1, k2, b2, gm, bt, w3, b3, dk1, db1, dk2, db2, dgm, dbt, dw3, db3;
    int64_t mm, mv, mean, inv, wk1, wk2;
    int64_t x, labels, cols1, z1, y1, cols2, z2, y2, pool, bn, z3, grad, dbn, dpool, dy2, dy1;
    builder_init(b, BATCH);
    n->params = floats(P_CNN); n->grads = floats(P_CNN); n->mom = floats(P_CNN);
    n->mm = floats(8); n->mv = floats(8); n->mean = floats(8); n->inv = floats(8);
    init_params(n->params, P_CNN, 5, 0.5f);
    for (k1 = 0; k1 < 8; k1++) { n->params[GAMMA + k1] = 1.0f; n->params[BETA + k1] = 0.0f; n->mv[k1] = 1.0f; }
    n->work1_size = pynn_conv2d_backward_work(BATCH, 8, 8, 1, 3, 3, 1, 1, 6, 6, 8);
    n->work2_size = pynn_conv2d_backward_work(BATCH, 6, 6, 8, 3, 3, 1, 1, 4, 4, 8);
    n->work1 = floats(n->work1_size); n->work2 = floats(n->work2_size);
    pa = fixed(b, n->params, P_CNN); ga = fixed(b, n->grads, P_CNN); mo = fixed(b, n->mom, P_CNN);
    k1 = fixed(b, n->params + K1, 72); b1 = fixed(b, n->params + CB1, 8);
    k2 = fixed(b, n->params + K2, 576); b2 = fixed(b, n->params + CB2, 8);
    gm = fixed(b, n->params + GAMMA, 8); bt = fixed(b, n->params + BETA, 8);
    w3 = fixed(b, n->params + W3, 32 * CO); b3 = fixed(b, n->params + B3, CO);
    dk1 = fixed(b, n->grads + K1, 72); db1 = fixed(b, n->grads + CB1, 8);
    dk2 = fixed(b, n->grads + K2, 576); db2 = fixed(b, n->grads + CB2, 8);
    dgm = fixed(b, n->grads + GAMMA, 8); dbt = fixed(b, n->grads + BETA, 8);
    dw3 = fixed(b, n->grads + W3, 32 * CO); db3 = fixed(b, n->grads + B3, CO);
    mm = fixed(b, n->mm, 8); mv = fixed(b, n->mv, 8);
    mean = fixed(b, n->mean, 8); inv = fixed(b, n->inv, 8);
    wk1 = fixed(b, n->work1, n->work1_size); wk2 = fixed(b, n->work2, n->work2_size);
    x = batched(b, CI, PYNN_DTYPE_F32); labels = batched(b, 1, PYNN_DTYPE_I64);
    cols1 = batched(b, 36 * 9, PYNN_DTYPE_F32); z1 = batched(b, 288, PYNN_DTYPE_F32);
    y1 = batched(b, 288, PYNN_DTYPE_F32); cols2 = batched(b, 16 * 72, PYNN_DTYPE_F32);
    z2 = batched(b, 128, PYNN_DTYPE_F32); y2 = batched(b, 128, PYNN_DTYPE_F32);
    pool = batched(b, 32, PYNN_DTYPE_F32); bn = batched(b, 32, PYNN_DTYPE_F32);
    z3 = batched(b, CO, PYNN_DTYPE_F32); grad = batched(b, CO, PYNN_DTYPE_F32);
    dbn = batched(b, 32, PYNN_DTYPE_F32); dpool = batched(b, 32, PYNN_DTYPE_F32);
    dy2 = batched(b, 128, PYNN_DTYPE_F32); dy1 = batched(b, 288, PYNN_DTYPE_F32);
    add_op(b, PYNN_OP_CONV2D, LIST(x, k1, b1, cols1, z1, y1), LIST(G1), REALS(0.0));
    add_op(b, PYNN_OP_CONV2D, LIST(y1, k2, b2, cols2, z2, y2), LIST(G2), REALS(0.0));
    add_op(b, PYNN_OP_MAXPOOL2D, LIST(y2, pool), LIST(GP), NO_REALS);
    add_op(b, PYNN_OP_BATCHNORM_TRAIN, LIST(pool, gm, bt, mm, mv, mean, inv, bn), LIST(8),
           REALS(0.9, 1e-3));
    /* a ReLU written over the batch norm's output: plan.c folds the pair (run_fused) */
    add_op(b, PYNN_OP_ACTIVATION, LIST(bn, bn), LIST(8, PYNN_ACT_RELU), REALS(0.0));
    add_op(b, PYNN_OP_DENSE, LIST(bn, w3, b3, z3, z3), LIST(32, CO, PYNN_ACT_LINEAR), REALS(0.0));
    add_op(b, PYNN_OP_LOSS, LIST(z3, labels, grad, -1), LIST(PYNN_LOSS_SPARSE_CCE, 1, CO, 0, 0, 0, 0), REALS(1.0, 0.0, 0.0));
    add_op(b, PYNN_OP_METRIC, LIST(z3, labels, -1), LIST(PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, CO, 0, 1, 1, 1),
           REALS(0.5));
    add_op(b, PYNN_OP_DENSE_BACKWARD, LIST(bn, w3, z3, z3, grad, dw3, db3, dbn),
           LIST(32, CO, PYNN_ACT_LINEAR), REALS(0.0));
    /* the ReLU's backward over its gradient, then the batch norm's written over it: folded
     * too; a second batch norm backward (dpool out of place, read by nothing after) is not */
    add_op(b, PYNN_OP_ACTIVATION_BACKWARD, LIST(bn, bn, dbn, dbn), LIST(8, PYNN_ACT_RELU),
           REALS(0.0));
    add_op(b, PYNN_OP_BATCHNORM_TRAIN_BACKWARD, LIST(pool, gm, mean, inv, dbn, dgm, dbt, dbn),
           LIST(8), NO_REALS);
    add_op(b, PYNN_OP_BATCHNORM_TRAIN_BACKWARD, LIST(pool, gm, mean, inv, dbn, -1, -1, dpool),
           LIST(8), NO_REALS);
    add_op(b, PYNN_OP_MAXPOOL2D_BACKWARD, LIST(y2, pool, dbn, dy2), LIST(GP), NO_REALS);
    add_op(b, PYNN_OP_CONV2D_BACKWARD, LIST(y1, k2, z2, y2, dy2, cols2, wk2, dk2, db2, dy1),
           LIST(G2), REALS(0.0));
    add_op(b, PYNN_OP_CONV2D_BACKWARD, LIST(x, k1, z1, y1, dy1, cols1, wk1, dk1, db1, -1),
           LIST(G1), REALS(0.0));
    add_op(b, PYNN_OP_OPTIMIZER, LIST(pa, ga, mo, -1, -1), LIST(PYNN_OPT_SGD), SGD_MOM, PYNN_HYPER_COUNT);
    b->inputs[0] = x; b->targets[0] = labels; b->classes[0] = CO;
    b->plan.n_inputs = 1; b->plan.n_targets = 1; b->plan.n_outputs = 0;
    b->plan.n_losses = 1; b->plan.n_metrics = 1;
}

static void cnn_free(cnn_net *n) {
    builder_free(&n->b);
    free(n->params); free(n->grads); free(n->mom); free(n->mm); free(n->mv); free(n->mean);
    free(n->inv); free(n->work1); free(n->work2);
}

typedef struct {
    float *params, *grads, *mom, *mm, *mv, *mean, *inv, *work1, *work2;
    float *xb, *cols1, *z1, *y1, *cols2, *z2, *y2, *pool, *bn, *z3, *grad, *dbn, *dpool, *dy2, *dy1;
    int64_t *lb, work1_size, work2_size;
} cnn_direct;

static void cnn_direct_init(cnn_direct *r) {
    int64_t i;
    r->params = floats(P_CNN); r->grads = floats(P_CNN); r->mom = floats(P_CNN);
    r->mm = floats(8); r->mv = floats(8); r->mean = floats(8); r->inv = floats(8);
    init_params(r->params, P_CNN, 5, 0.5f);
    for (i = 0; i < 8; i++) { r->params[GAMMA + i] = 1.0f; r->params[BETA + i] = 0.0f; r->mv[i] = 1.0f; }
    r->work1_size = pynn_conv2d_backward_work(BATCH, 8, 8, 1, 3, 3, 1, 1, 6, 6, 8);
    r->work2_size = pynn_conv2d_backward_work(BATCH, 6, 6, 8, 3, 3, 1, 1, 4, 4, 8);
    r->work1 = floats(r->work1_size); r->work2 = floats(r->work2_size);
    r->xb = floats(BATCH * CI); r->cols1 = floats(BATCH * 324); r->z1 = floats(BATCH * 288);
    r->y1 = floats(BATCH * 288); r->cols2 = floats(BATCH * 1152); r->z2 = floats(BATCH * 128);
    r->y2 = floats(BATCH * 128); r->pool = floats(BATCH * 32); r->bn = floats(BATCH * 32);
    r->z3 = floats(BATCH * CO); r->grad = floats(BATCH * CO); r->dbn = floats(BATCH * 32);
    r->dpool = floats(BATCH * 32); r->dy2 = floats(BATCH * 128); r->dy1 = floats(BATCH * 288);
    r->lb = __real_calloc(BATCH, sizeof(int64_t));
}

static void cnn_direct_free(cnn_direct *r) {
    float *all[] = {r->params, r->grads, r->mom, r->mm, r->mv, r->mean, r->inv, r->work1, r->work2,
                    r->xb, r->cols1, r->z1, r->y1, r->cols2, r->z2, r->y2, r->pool, r->bn, r->z3,
                    r->grad, r->dbn, r->dpool, r->dy2, r->dy1};
    size_t i;
    for (i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(r->lb);
}

static int cnn_direct_step(cnn_direct *r, const float *x, const int64_t *labels,
                           const int64_t *order, int64_t r0, int64_t rows, int64_t step,
                           double *loss, double *metric) {
    float *p = r->params, *g = r->grads;
    int64_t i;
    int s = 0;
    for (i = 0; i < rows; i++) {
        memcpy(r->xb + i * CI, x + order[r0 + i] * CI, CI * sizeof(float));
        r->lb[i] = labels[order[r0 + i]];
    }
    s |= pynn_conv2d_forward(r->z1, r->y1, r->cols1, r->xb, p + K1, p + CB1, rows, G1, 0.0f);
    s |= pynn_conv2d_forward(r->z2, r->y2, r->cols2, r->y1, p + K2, p + CB2, rows, G2, 0.0f);
    s |= pynn_maxpool2d_forward(r->pool, r->y2, rows, GP);
    s |= pynn_batchnorm_forward_train(r->bn, r->mean, r->inv, r->mm, r->mv, r->pool, p + GAMMA,
                                      p + BETA, rows * 4, 8, 0.9f, 1e-3f);
    s |= pynn_activation_forward(r->bn, r->bn, rows * 4, 8, PYNN_ACT_RELU, 0.0f);
    s |= pynn_sgemm_bias_act(r->z3, r->z3, r->bn, p + W3, p + B3, 0, 0, rows, CO, 32,
                             PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_sparse_cce(r->grad, loss, r->z3, r->lb, rows, CO, 1, NULL);
    s |= pynn_metric_sum(metric, r->z3, NULL, r->lb, rows, CO, PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, 1,
                         0.5f, NULL, 1);
    s |= pynn_dense_backward(g + W3, g + B3, r->dbn, r->grad, r->bn, p + W3, r->z3, r->z3, rows,
                             32, CO, PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_activation_backward(r->dbn, r->bn, r->bn, r->dbn, rows * 4, 8, PYNN_ACT_RELU,
                                  0.0f);
    s |= pynn_batchnorm_backward(r->dbn, g + GAMMA, g + BETA, r->pool, p + GAMMA, r->mean,
                                 r->inv, r->dbn, rows * 4, 8);
    s |= pynn_batchnorm_backward(r->dpool, NULL, NULL, r->pool, p + GAMMA, r->mean, r->inv,
                                 r->dbn, rows * 4, 8);
    s |= pynn_maxpool2d_backward(r->dy2, r->y2, r->pool, r->dbn, rows, GP);
    s |= pynn_conv2d_backward(g + K2, g + CB2, r->dy1, r->dy2, r->cols2, r->work2, r->work2_size,
                              r->y1, p + K2, r->z2, r->y2, rows, G2, 0.0f);
    s |= pynn_conv2d_backward(g + K1, g + CB1, NULL, r->dy1, r->cols1, r->work1, r->work1_size,
                              r->xb, p + K1, r->z1, r->y1, rows, G1, 0.0f);
    s |= pynn_optimizer_step(p, (float *[]){r->mom, NULL, NULL}, g, P_CNN, PYNN_OPT_SGD, step, SGD_MOM);
    return s;
}

static int cnn_run(cnn_net *n, const float *x, const int64_t *labels, const int64_t *order,
                   int64_t first_row, int64_t steps, int64_t iterations, double *losses,
                   double *metrics) {
    const void *inputs[1] = {x}, *targets[1] = {labels};
    pynn_plan_feed feed = {inputs, targets, NULL, N, order, N, NULL, NULL};
    return pynn_plan_run(&n->b.plan, &feed, first_row, BATCH, steps, iterations, 0, losses,
                         metrics, NULL);
}

static void test_cnn_plan(const float *x, const int64_t *labels, const int64_t *order) {
    double losses[STEPS], metrics[STEPS], first_loss = 0.0;
    int64_t it, s, epoch;
    cnn_net n, one;
    cnn_direct r;
    long calls;
    int same = 1;
    cnn_build(&n);
    cnn_direct_init(&r);
    CHECK(!pynn_conv2d_direct_supported(3, 3, 8, 8, PYNN_ACT_RELU) &&
          pynn_conv2d_direct_supported(3, 3, 1, 8, PYNN_ACT_RELU), "both convolution paths");
    pynn_set_num_threads(2);
    CHECK(cnn_run(&n, x, labels, order, 0, 1, 0, losses, metrics) == PYNN_OK, "CNN warm-up");
    {
        double l, m;
        CHECK(cnn_direct_step(&r, x, labels, order, 0, BATCH, 1, &l, &m) == PYNN_OK, "direct CNN");
        same &= l == losses[0] && m == metrics[0];
        first_loss = l;
    }
    it = 1;
    calls = alloc_calls;
    for (epoch = 0; epoch < 3; epoch++) {
        const int64_t first = epoch == 0 ? BATCH : 0, steps = epoch == 0 ? STEPS - 1 : STEPS;
        CHECK(cnn_run(&n, x, labels, order, first, steps, it, losses, metrics) == PYNN_OK,
              "CNN epoch %ld", (long)epoch);
        for (s = 0; s < steps; s++) {
            double l, m;
            const int64_t r0 = first + s * BATCH, nr = r0 + BATCH < N ? BATCH : N - r0;
            long before = alloc_calls;
            CHECK(cnn_direct_step(&r, x, labels, order, r0, nr, it + s + 1, &l, &m) == PYNN_OK,
                  "direct CNN step");
            alloc_calls = before;
            same &= l == losses[s] && m == metrics[s];
        }
        it += steps;
    }
    CHECK(alloc_calls == calls, "CNN plan: %ld allocations during training steps", alloc_calls - calls);
    CHECK(same, "CNN plan: losses or metrics differ from the direct kernel calls");
    CHECK(memcmp(n.params, r.params, P_CNN * sizeof(float)) == 0,
          "CNN plan: weights differ from the direct kernel calls");
    CHECK(memcmp(n.mm, r.mm, 8 * sizeof(float)) == 0 && memcmp(n.mv, r.mv, 8 * sizeof(float)) == 0,
          "CNN plan: moving statistics differ");
    CHECK(losses[STEPS - 2] < first_loss, "CNN plan: the loss did not fall (%g -> %g)", first_loss,
          losses[STEPS - 2]);

    /* the same training on one thread: bitwise the same weights */
    cnn_build(&one);
    pynn_set_num_threads(1);
    CHECK(cnn_run(&one, x, labels, order, 0, STEPS, 0, losses, metrics) == PYNN_OK, "1 thread");
    CHECK(cnn_run(&one, x, labels, order, 0, STEPS, STEPS, losses, metrics) == PYNN_OK, "1 thread");
    CHECK(cnn_run(&one, x, labels, order, 0, STEPS, 2 * STEPS, losses, metrics) == PYNN_OK, "1 thread");
    pynn_set_num_threads(2);
    CHECK(memcmp(n.params, one.params, P_CNN * sizeof(float)) == 0, "CNN plan: 1 and 2 threads differ");

    /* the convolution workspace is checked against the step's needs */
    {
        pynn_buffer saved = one.b.bufs[one.b.ops[14].bufs[6]];
        float *snapshot = floats(P_CNN);
        memcpy(snapshot, one.params, P_CNN * sizeof(float));
        one.b.bufs[one.b.ops[14].bufs[6]].size = one.work1_size - 1;
        CHECK(cnn_run(&one, x, labels, order, 0, 1, 0, losses, metrics) == PYNN_EINVAL,
              "a conv workspace too small");
        one.b.bufs[one.b.ops[14].bufs[6]] = saved;
        CHECK(memcmp(snapshot, one.params, P_CNN * sizeof(float)) == 0, "a refused CNN run changed weights");
        free(snapshot);
    }
    cnn_free(&one);
    cnn_free(&n);
    cnn_direct_free(&r);
}

/* ---- a branchy plan: every remaining op kind -----------------------------------------
 * x (4x4x2 images) -> avg pool 2x2 (8) and global avg pool (2) -> concat (10) -> tanh = a;
 * d = dense(a); s = a + d (a residual); batch norm in inference form; scale 0.5; MSE against
 * float targets (weight 2); MAE.  The backward sums the two gradients that reach `a` with a
 * merge in place, and runs down to the input through concat, both poolings and a subtract;
 * RMSprop with momentum updates the dense layer and the normalization's gamma and beta. */
enum { BI = 32, BO = 10 };
enum { BW = 0, BB = 100, BG = 110, BBETA = 120, P_BR = 130 };
static const double RMS[PYNN_HYPER_COUNT] = {0.01, 0.5, 0.0, 0.9, 0.999, 0.9, 1e-7};
#define AP 4, 4, 2, 2, 2, 2, 2, 0, 0, 2, 2

typedef struct {
    builder b;
    float *params, *grads, *vel, *mom, *mm, *mv;
} branchy_net;

static void branchy_build(branchy_net *n) {
    builder *b = &n->b;
    int64_t pa, ga, ve, mo, w, bb, gm, bt, dw, db, dgm, dbt, mm, mv;
    int64_t x, t, pool, gap, cat, a, d, sum, bn, out, grad, gbn, gs, ga1, gd, ga2, gcat, gpool,
        ggap, gx1, gx2, gx;
    int64_t i;
    builder_init(b, BATCH);
    n->params = floats(P_BR); n->grads = floats(P_BR); n->vel = floats(P_BR); n->mom = floats(P_BR);
    n->mm = floats(BO); n->mv = floats(BO);
    init_params(n->params, P_BR, 21, 0.8f);
    init_params(n->mm, BO, 22, 0.2f);
    for (i = 0; i < BO; i++) n->mv[i] = 0.5f + 0.1f * (float)i;
    pa = fixed(b, n->params, P_BR); ga = fixed(b, n->grads, P_BR);
    ve = fixed(b, n->vel, P_BR); mo = fixed(b, n->mom, P_BR);
    w = fixed(b, n->params + BW, 100); bb = fixed(b, n->params + BB, BO);
    gm = fixed(b, n->params + BG, BO); bt = fixed(b, n->params + BBETA, BO);
    dw = fixed(b, n->grads + BW, 100); db = fixed(b, n->grads + BB, BO);
    dgm = fixed(b, n->grads + BG, BO); dbt = fixed(b, n->grads + BBETA, BO);
    mm = fixed(b, n->mm, BO); mv = fixed(b, n->mv, BO);
    x = batched(b, BI, PYNN_DTYPE_F32); t = batched(b, BO, PYNN_DTYPE_F32);
    pool = batched(b, 8, PYNN_DTYPE_F32); gap = batched(b, 2, PYNN_DTYPE_F32);
    cat = batched(b, BO, PYNN_DTYPE_F32); a = batched(b, BO, PYNN_DTYPE_F32);
    d = batched(b, BO, PYNN_DTYPE_F32); sum = batched(b, BO, PYNN_DTYPE_F32);
    bn = batched(b, BO, PYNN_DTYPE_F32); out = batched(b, BO, PYNN_DTYPE_F32);
    grad = batched(b, BO, PYNN_DTYPE_F32); gbn = batched(b, BO, PYNN_DTYPE_F32);
    gs = batched(b, BO, PYNN_DTYPE_F32); ga1 = batched(b, BO, PYNN_DTYPE_F32);
    gd = batched(b, BO, PYNN_DTYPE_F32); ga2 = batched(b, BO, PYNN_DTYPE_F32);
    gcat = batched(b, BO, PYNN_DTYPE_F32); gpool = batched(b, 8, PYNN_DTYPE_F32);
    ggap = batched(b, 2, PYNN_DTYPE_F32); gx1 = batched(b, BI, PYNN_DTYPE_F32);
    gx2 = batched(b, BI, PYNN_DTYPE_F32); gx = batched(b, BI, PYNN_DTYPE_F32);
    add_op(b, PYNN_OP_AVGPOOL2D, LIST(x, pool), LIST(AP), NO_REALS);
    add_op(b, PYNN_OP_GLOBAL_AVGPOOL2D, LIST(x, gap), LIST(4, 4, 2), NO_REALS);
    add_op(b, PYNN_OP_CONCAT, LIST(cat, pool, gap), LIST(8, 2), NO_REALS);
    add_op(b, PYNN_OP_ACTIVATION, LIST(cat, a), LIST(BO, PYNN_ACT_TANH), REALS(0.0));
    add_op(b, PYNN_OP_DENSE, LIST(a, w, bb, d, d), LIST(BO, BO, PYNN_ACT_LINEAR), REALS(0.0));
    add_op(b, PYNN_OP_MERGE, LIST(sum, a, d), LIST(PYNN_MERGE_ADD), NO_REALS);
    add_op(b, PYNN_OP_BATCHNORM_INFER, LIST(sum, gm, bt, mm, mv, bn), LIST(BO), REALS(1e-3));
    add_op(b, PYNN_OP_SCALE, LIST(out, bn), NO_INTS, REALS(0.5));
    add_op(b, PYNN_OP_LOSS, LIST(out, t, grad, -1), LIST(PYNN_LOSS_MSE, 0, BO, 0, 0, 0, 0), REALS(2.0, 0.0, 0.0));
    /* the loss weight scales the gradient through an op of its own, as pynn's plans do */
    add_op(b, PYNN_OP_SCALE, LIST(grad, grad), NO_INTS, REALS(2.0));
    add_op(b, PYNN_OP_METRIC, LIST(out, t, -1), LIST(PYNN_METRIC_MAE, BO, 0, 1, 1, 1), REALS(0.5));
    add_op(b, PYNN_OP_SCALE, LIST(gbn, grad), NO_INTS, REALS(0.5));
    add_op(b, PYNN_OP_BATCHNORM_INFER_BACKWARD, LIST(sum, gm, mm, mv, gbn, dgm, dbt, gs), LIST(BO),
           REALS(1e-3));
    add_op(b, PYNN_OP_MERGE_BACKWARD, LIST(ga1, gs, a, d), LIST(PYNN_MERGE_ADD, 0), NO_REALS);
    add_op(b, PYNN_OP_MERGE_BACKWARD, LIST(gd, gs, a, d), LIST(PYNN_MERGE_ADD, 1), NO_REALS);
    add_op(b, PYNN_OP_DENSE_BACKWARD, LIST(a, w, d, d, gd, dw, db, ga2), LIST(BO, BO, PYNN_ACT_LINEAR),
           REALS(0.0));
    add_op(b, PYNN_OP_MERGE, LIST(ga1, ga1, ga2), LIST(PYNN_MERGE_ADD), NO_REALS);
    add_op(b, PYNN_OP_ACTIVATION_BACKWARD, LIST(cat, a, ga1, gcat), LIST(BO, PYNN_ACT_TANH),
           REALS(0.0));
    add_op(b, PYNN_OP_CONCAT_BACKWARD, LIST(gcat, gpool, ggap), LIST(8, 2), NO_REALS);
    add_op(b, PYNN_OP_AVGPOOL2D_BACKWARD, LIST(gpool, gx1), LIST(AP), NO_REALS);
    add_op(b, PYNN_OP_GLOBAL_AVGPOOL2D_BACKWARD, LIST(ggap, gx2), LIST(4, 4, 2), NO_REALS);
    add_op(b, PYNN_OP_MERGE, LIST(gx, gx1, gx2), LIST(PYNN_MERGE_SUBTRACT), NO_REALS);
    add_op(b, PYNN_OP_OPTIMIZER, LIST(pa, ga, ve, mo, -1), LIST(PYNN_OPT_RMSPROP), RMS, PYNN_HYPER_COUNT);
    b->inputs[0] = x; b->targets[0] = t; b->classes[0] = 0; b->outputs[0] = gx;
    b->plan.n_inputs = 1; b->plan.n_targets = 1; b->plan.n_outputs = 1;
    b->plan.n_losses = 1; b->plan.n_metrics = 1;
}

static void branchy_free(branchy_net *n) {
    builder_free(&n->b);
    free(n->params); free(n->grads); free(n->vel); free(n->mom); free(n->mm); free(n->mv);
}

/* The same step by calling the kernels directly; gx_out receives the input's gradient. */
static int branchy_direct_step(branchy_net *r, const float *x, const float *t,
                               const int64_t *order, int64_t r0, int64_t rows, int64_t step,
                               double *loss, double *metric, float *gx_out) {
    static float xb[BATCH * BI], tb[BATCH * BO], pool[BATCH * 8], gap[BATCH * 2], cat[BATCH * BO],
        a[BATCH * BO], d[BATCH * BO], sum[BATCH * BO], bn[BATCH * BO], out[BATCH * BO],
        grad[BATCH * BO], gbn[BATCH * BO], gs[BATCH * BO], ga1[BATCH * BO], gd[BATCH * BO],
        ga2[BATCH * BO], gcat[BATCH * BO], gpool[BATCH * 8], ggap[BATCH * 2], gx1[BATCH * BI],
        gx2[BATCH * BI];
    const int64_t widths[2] = {8, 2};
    const float *p = r->params;
    float *g = r->grads;
    int64_t i;
    int s = 0;
    for (i = 0; i < rows; i++) {
        memcpy(xb + i * BI, x + order[r0 + i] * BI, BI * sizeof(float));
        memcpy(tb + i * BO, t + order[r0 + i] * BO, BO * sizeof(float));
    }
    s |= pynn_avgpool2d_forward(pool, xb, rows, AP);
    s |= pynn_global_avgpool2d_forward(gap, xb, rows, 4, 4, 2);
    s |= pynn_concat(cat, (const float *[]){pool, gap}, widths, 2, rows);
    s |= pynn_activation_forward(a, cat, rows, BO, PYNN_ACT_TANH, 0.0f);
    s |= pynn_sgemm_bias_act(d, d, a, p + BW, p + BB, 0, 0, rows, BO, BO, PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_merge_forward(sum, (const float *[]){a, d}, 2, rows * BO, PYNN_MERGE_ADD);
    s |= pynn_batchnorm_forward_infer(bn, sum, p + BG, p + BBETA, r->mm, r->mv, rows, BO, 1e-3f);
    s |= pynn_scale(out, bn, rows * BO, 0.5f);
    s |= pynn_loss(grad, loss, out, tb, rows, BO, PYNN_LOSS_MSE, 0, NULL);
    s |= pynn_scale(grad, grad, rows * BO, 2.0f);
    s |= pynn_metric_sum(metric, out, tb, NULL, rows, BO, PYNN_METRIC_MAE, 1, 0.5f, NULL, 1);
    s |= pynn_scale(gbn, grad, rows * BO, 0.5f);
    s |= pynn_batchnorm_infer_backward(gs, g + BG, g + BBETA, sum, p + BG, r->mm, r->mv, gbn, rows,
                                       BO, 1e-3f);
    s |= pynn_merge_backward(ga1, gs, (const float *[]){a, d}, 2, rows * BO, PYNN_MERGE_ADD, 0);
    s |= pynn_merge_backward(gd, gs, (const float *[]){a, d}, 2, rows * BO, PYNN_MERGE_ADD, 1);
    s |= pynn_dense_backward(g + BW, g + BB, ga2, gd, a, p + BW, d, d, rows, BO, BO,
                             PYNN_ACT_LINEAR, 0.0f);
    s |= pynn_merge_forward(ga1, (const float *[]){ga1, ga2}, 2, rows * BO, PYNN_MERGE_ADD);
    s |= pynn_activation_backward(gcat, cat, a, ga1, rows, BO, PYNN_ACT_TANH, 0.0f);
    s |= pynn_concat_backward((float *[]){gpool, ggap}, gcat, widths, 2, rows);
    s |= pynn_avgpool2d_backward(gx1, gpool, rows, AP);
    s |= pynn_global_avgpool2d_backward(gx2, ggap, rows, 4, 4, 2);
    s |= pynn_merge_forward(gx_out + r0 * BI, (const float *[]){gx1, gx2}, 2, rows * BI,
                            PYNN_MERGE_SUBTRACT);
    s |= pynn_optimizer_step(r->params, (float *[]){r->vel, r->mom, NULL}, g, P_BR, PYNN_OPT_RMSPROP, step, RMS);
    return s;
}

static void test_branchy_plan(const float *x) {
    static float t[N * BO], gx_plan[N * BI], gx_direct[N * BI];
    static int64_t order[N];
    double losses[STEPS], metrics[STEPS];
    const void *inputs[1] = {x}, *targets[1] = {t};
    void *outputs[1] = {gx_plan};
    pynn_plan_feed feed = {inputs, targets, outputs, N, order, N, NULL, NULL};
    branchy_net n, r;
    int64_t i, s, epoch, it = 0;
    long calls;
    int same = 1;
    rng_state = 31;
    for (i = 0; i < N * BO; i++) t[i] = uniform();
    for (i = 0; i < N; i++) order[i] = N - 1 - i;
    branchy_build(&n);
    branchy_build(&r);   /* the direct calls use its parameters and statistics */
    CHECK(pynn_plan_run(&n.b.plan, &feed, 0, BATCH, 1, 0, 1, losses, metrics, NULL) == PYNN_OK,
          "branchy warm-up");
    {
        double l, m;
        CHECK(branchy_direct_step(&r, x, t, order, 0, BATCH, 1, &l, &m, gx_direct) == PYNN_OK,
              "branchy direct warm-up");
        same &= l == losses[0] && m == metrics[0];
    }
    it = 1;
    calls = alloc_calls;
    for (epoch = 0; epoch < 2; epoch++) {
        const int64_t first = epoch == 0 ? BATCH : 0, steps = epoch == 0 ? STEPS - 1 : STEPS;
        CHECK(pynn_plan_run(&n.b.plan, &feed, first, BATCH, steps, it, 1, losses, metrics, NULL) ==
              PYNN_OK, "branchy epoch %ld", (long)epoch);
        for (s = 0; s < steps; s++) {
            double l, m;
            const int64_t r0 = first + s * BATCH, nr = r0 + BATCH < N ? BATCH : N - r0;
            long before = alloc_calls;
            CHECK(branchy_direct_step(&r, x, t, order, r0, nr, it + s + 1, &l, &m, gx_direct) ==
                  PYNN_OK, "branchy direct step");
            alloc_calls = before;
            same &= l == losses[s] && m == metrics[s];
        }
        it += steps;
    }
    CHECK(alloc_calls == calls, "branchy plan: %ld allocations during training steps",
          alloc_calls - calls);
    CHECK(same, "branchy plan: losses or metrics differ from the direct kernel calls");
    CHECK(memcmp(n.params, r.params, P_BR * sizeof(float)) == 0 &&
          memcmp(n.vel, r.vel, P_BR * sizeof(float)) == 0 &&
          memcmp(n.mom, r.mom, P_BR * sizeof(float)) == 0,
          "branchy plan: weights or RMSprop state differ from the direct kernel calls");
    CHECK(memcmp(gx_plan, gx_direct, sizeof gx_plan) == 0,
          "branchy plan: the input gradients copied out differ");
    branchy_free(&n);
    branchy_free(&r);
}

/* feed->stop: a flag raised before the run ends it after its first step, with that step
 * applied and counted in steps_done; the rest of the epoch run afterwards gives the weights
 * of the whole epoch in one call. */
static void test_stop(const float *x, const int64_t *labels, const int64_t *order) {
    static float probs_a[N * OUT], probs_b[N * OUT];
    double losses[STEPS], metrics[STEPS * 2], lb[STEPS], mb[STEPS * 2];
    int64_t rows[STEPS], rb[STEPS], done = -1, s;
    volatile int stop = 1;
    const void *inputs[1] = {x}, *targets[1] = {labels};
    void *outputs_a[1] = {probs_a}, *outputs_b[1] = {probs_b};
    pynn_plan_feed fa = {inputs, targets, outputs_a, N, order, N, &stop, &done};
    pynn_plan_feed fb = {inputs, targets, outputs_b, N, order, N, NULL, NULL};
    mlp_net a, b;
    mlp_build(&a);
    mlp_build(&b);
    CHECK(pynn_plan_run(&a.b.plan, &fa, 0, BATCH, STEPS, 0, 1, losses, metrics, rows) == PYNN_OK,
          "a stopped run returns PYNN_OK");
    CHECK(done == 1 && rows[0] == BATCH, "a stopped run: %ld steps done, expected 1", (long)done);
    stop = 0;
    CHECK(pynn_plan_run(&a.b.plan, &fa, BATCH, BATCH, STEPS - 1, 1, 1, losses + 1, metrics + 2,
                        rows + 1) == PYNN_OK && done == STEPS - 1,
          "the rest of the epoch: %ld steps done", (long)done);
    CHECK(pynn_plan_run(&b.b.plan, &fb, 0, BATCH, STEPS, 0, 1, lb, mb, rb) == PYNN_OK,
          "the whole epoch");
    for (s = 0; s < STEPS; s++)
        CHECK(losses[s] == lb[s] && rows[s] == rb[s], "step %ld differs after a stop", (long)s);
    CHECK(memcmp(a.params, b.params, P_MLP * sizeof(float)) == 0 &&
          memcmp(a.m, b.m, P_MLP * sizeof(float)) == 0 &&
          memcmp(probs_a, probs_b, sizeof probs_a) == 0,
          "stopped and resumed: weights, moments or predictions differ from one run");
    mlp_free(&a);
    mlp_free(&b);
}

/* ---- OP_GRAD_HOOK: the distributed gradient hand-over ---------------------------------- */
typedef struct {
    int64_t calls, phases[64], offsets[64], counts[64], rows[64], steps[64];
    int64_t fail_at_step;          /* return non-zero at this step's first call (0: never) */
    int zero_grads;                /* phase 1: zero the gradients (the optimizer then sees 0) */
    float *grads;
    int final_seen;                /* phase 0 saw the final last-layer gradients (non-zero) */
} hook_log;

static int record_hook(void *ctx, int64_t phase, int64_t offset, int64_t count, int64_t rows,
                       int64_t step) {
    hook_log *h = (hook_log *)ctx;
    int64_t i;
    if (h->fail_at_step == step) return 1;
    if (h->calls < 64) {
        h->phases[h->calls] = phase; h->offsets[h->calls] = offset; h->counts[h->calls] = count;
        h->rows[h->calls] = rows; h->steps[h->calls] = step;
    }
    h->calls++;
    if (phase == 0 && offset == W2)
        for (i = 0; i < count; i++) h->final_seen |= h->grads[offset + i] != 0.0f;
    if (phase == 1 && h->zero_grads) memset(h->grads, 0, P_MLP * sizeof(float));
    return 0;
}

/* the MLP with buckets [W2, P) after its last layer's backward, [0, W2) after the first's,
 * and the wait before the optimizer (ops 7..: dense_backward, dropout_backward,
 * dense_backward, optimizer) */
static void mlp_build_hooked(mlp_net *n, int64_t bad_count, int64_t bad_phase) {
    builder *b = &n->b;
    pynn_op saved[4];
    int64_t i;
    mlp_build(n);
    for (i = 0; i < 4; i++) saved[i] = b->ops[7 + i];
    b->plan.n_ops = 7;
    b->ops[b->plan.n_ops++] = saved[0];
    add_op(b, PYNN_OP_GRAD_HOOK, LIST(1), LIST(0, W2, P_MLP - W2 + bad_count), NO_REALS);
    b->ops[b->plan.n_ops++] = saved[1];
    b->ops[b->plan.n_ops++] = saved[2];
    add_op(b, PYNN_OP_GRAD_HOOK, LIST(1), LIST(0, 0, W2), NO_REALS);
    add_op(b, PYNN_OP_GRAD_HOOK, LIST(1), LIST(bad_phase, 0, 0), NO_REALS);
    b->ops[b->plan.n_ops++] = saved[3];
}

static void test_grad_hook(const float *x, const int64_t *labels, const int64_t *order) {
    static float probs[N * OUT];
    double losses[STEPS], metrics[STEPS * 2];
    int64_t rows[STEPS], s, k;
    mlp_net plain, hooked;
    hook_log h;
    float *snapshot = floats(P_MLP);
    mlp_build(&plain);
    mlp_build_hooked(&hooked, 0, 1);
    /* without a hook the hook ops change nothing: bitwise the plain plan's weights */
    CHECK(mlp_run(&plain, x, labels, order, probs, 0, STEPS, 0, losses, metrics, rows) == PYNN_OK,
          "plain MLP run");
    CHECK(mlp_run(&hooked, x, labels, order, probs, 0, STEPS, 0, losses, metrics, rows) == PYNN_OK,
          "hooked MLP run without a hook");
    CHECK(memcmp(plain.params, hooked.params, P_MLP * sizeof(float)) == 0,
          "grad_hook without a hook changed the weights");
    /* with a hook: three calls per step, in order, with the step's rows and number */
    memset(&h, 0, sizeof h);
    h.grads = hooked.grads;
    hooked.b.plan.hook = record_hook;
    hooked.b.plan.hook_ctx = &h;
    CHECK(mlp_run(&hooked, x, labels, order, probs, 0, STEPS, 5, losses, metrics, rows) == PYNN_OK,
          "hooked MLP run");
    CHECK(h.calls == 3 * STEPS, "hook calls %ld, expected %d", (long)h.calls, 3 * STEPS);
    for (s = 0; s < STEPS && 3 * s + 2 < 64; s++) {
        const int64_t want_rows = s + 1 < STEPS ? BATCH : N - (STEPS - 1) * BATCH;
        for (k = 0; k < 3; k++) {
            const int64_t c = 3 * s + k;
            CHECK(h.steps[c] == 5 + s + 1 && h.rows[c] == want_rows,
                  "hook call %ld: step %ld rows %ld", (long)c, (long)h.steps[c], (long)h.rows[c]);
        }
        CHECK(h.phases[3 * s] == 0 && h.offsets[3 * s] == W2 && h.counts[3 * s] == P_MLP - W2 &&
              h.phases[3 * s + 1] == 0 && h.offsets[3 * s + 1] == 0 && h.counts[3 * s + 1] == W2 &&
              h.phases[3 * s + 2] == 1, "hook call order of step %ld", (long)s);
    }
    CHECK(h.final_seen, "the first bucket's gradients were not written when it was handed over");
    /* the optimizer reads what the hook leaves: zeroed gradients leave Adam's weights alone */
    memset(hooked.m, 0, P_MLP * sizeof(float));
    memset(hooked.v, 0, P_MLP * sizeof(float));
    memcpy(snapshot, hooked.params, P_MLP * sizeof(float));
    h.zero_grads = 1;
    CHECK(mlp_run(&hooked, x, labels, order, probs, 0, 2, 0, losses, metrics, rows) == PYNN_OK,
          "hooked MLP run (zeroing hook)");
    CHECK(memcmp(snapshot, hooked.params, P_MLP * sizeof(float)) == 0,
          "the optimizer did not read the gradients the hook left");
    /* a failing hook ends the run there: PYNN_EHOOK, the steps before it applied */
    {
        const void *inputs[1] = {x}, *targets[1] = {labels};
        void *outputs[1] = {probs};
        int64_t done = -1;
        pynn_plan_feed feed = {inputs, targets, outputs, N, order, N, NULL, &done};
        h.zero_grads = 0;
        h.fail_at_step = 2;
        CHECK(pynn_plan_run(&hooked.b.plan, &feed, 0, BATCH, 3, 0, 1, losses, metrics, rows) ==
              PYNN_EHOOK, "a failing hook: PYNN_EHOOK");
        CHECK(done == 1, "a failing hook at step 2: %ld steps done", (long)done);
    }
    mlp_free(&plain);
    mlp_free(&hooked);
    /* a bucket beyond the gradients, or an unknown phase: refused, nothing changed */
    for (k = 0; k < 2; k++) {
        mlp_net bad;
        mlp_build_hooked(&bad, k == 0 ? 1 : 0, k == 0 ? 1 : 2);
        memcpy(snapshot, bad.params, P_MLP * sizeof(float));
        CHECK(mlp_run(&bad, x, labels, order, probs, 0, 2, 0, losses, metrics, rows) == PYNN_EINVAL,
              "malformed grad_hook %ld accepted", (long)k);
        CHECK(memcmp(snapshot, bad.params, P_MLP * sizeof(float)) == 0,
              "a refused grad_hook plan changed the weights");
        mlp_free(&bad);
    }
    free(snapshot);
}

/* ---- inputs read in place (plan->input_direct) ------------------------------------- */
/* An inference plan (dense relu -> dense softmax) with and without input_direct: rows in
 * order give bitwise the same predictions, the caller's rows are read where they lie (the
 * plan's input buffer is never written) and never changed; rows in a shuffled order are
 * gathered as before; a NaN in the caller's rows is refused before anything runs; an
 * output that shares the input's memory turns it off (the input is copied out). */
typedef struct {
    builder b;
    float *params;
    int64_t x, probs;
} infer_net;

static void infer_build(infer_net *n, const int64_t *direct, int identity_out) {
    builder *b = &n->b;
    int64_t w1, b1, w2, b2, z1, y1, z2;
    builder_init(b, BATCH);
    n->params = floats(P_MLP);
    init_params(n->params, P_MLP, 99, 0.6f);
    w1 = fixed(b, n->params + W1, IN * HID); b1 = fixed(b, n->params + B1, HID);
    w2 = fixed(b, n->params + W2, HID * OUT); b2 = fixed(b, n->params + B2, OUT);
    n->x = batched(b, IN, PYNN_DTYPE_F32);
    z1 = batched(b, HID, PYNN_DTYPE_F32); y1 = batched(b, HID, PYNN_DTYPE_F32);
    z2 = batched(b, OUT, PYNN_DTYPE_F32); n->probs = batched(b, OUT, PYNN_DTYPE_F32);
    add_op(b, PYNN_OP_DENSE, LIST(n->x, w1, b1, z1, y1), LIST(IN, HID, PYNN_ACT_RELU), REALS(0.0));
    add_op(b, PYNN_OP_DENSE, LIST(y1, w2, b2, z2, n->probs), LIST(HID, OUT, PYNN_ACT_SOFTMAX),
           REALS(0.0));
    b->inputs[0] = n->x;
    b->outputs[0] = n->probs;
    b->outputs[1] = n->x;                  /* the model's input also one of its outputs */
    b->plan.n_inputs = 1;
    b->plan.n_outputs = identity_out ? 2 : 1;
    b->plan.input_direct = direct;
}

static void infer_free(infer_net *n) {
    builder_free(&n->b);
    free(n->params);
}

static int infer_run(infer_net *n, const float *x, const int64_t *order, float *probs,
                     float *x_out, int check) {
    const void *ins[1] = {x};
    void *outs[2] = {probs, x_out};
    pynn_plan_feed feed = {ins, NULL, outs, N, order, N, NULL, NULL};
    return pynn_plan_run(&n->b.plan, &feed, 0, BATCH, STEPS, 0, check, NULL, NULL, NULL);
}

static void test_input_direct(const float *x, const int64_t *order) {
    static const int64_t on[1] = {1}, off[1] = {0};
    static float xs[N * IN], want[N * OUT], got[N * OUT], x_out[N * IN];
    infer_net copied, direct;
    int64_t i, buffer_written = 0;
    memcpy(xs, x, sizeof xs);
    infer_build(&copied, off, 0);
    infer_build(&direct, on, 0);
    /* rows in order: the same predictions, the caller's rows unchanged and the plan's own
     * input buffer never written */
    CHECK(infer_run(&copied, xs, NULL, want, NULL, 1) == PYNN_OK, "copied run failed");
    CHECK(infer_run(&direct, xs, NULL, got, NULL, 1) == PYNN_OK, "direct run failed");
    CHECK(memcmp(want, got, sizeof want) == 0, "direct input: predictions differ");
    CHECK(memcmp(xs, x, sizeof xs) == 0, "direct input: the caller's rows changed");
    for (i = 0; i < BATCH * IN; i++)
        buffer_written |= ((const float *)direct.b.bufs[direct.x].data)[i] != 0.0f;
    CHECK(!buffer_written, "direct input: the plan copied the rows into its buffer");
    /* rows in a shuffled order: gathered, the same predictions as the copying plan */
    CHECK(infer_run(&copied, xs, order, want, NULL, 0) == PYNN_OK, "copied shuffled run failed");
    CHECK(infer_run(&direct, xs, order, got, NULL, 0) == PYNN_OK, "direct shuffled run failed");
    CHECK(memcmp(want, got, sizeof want) == 0, "direct input, shuffled: predictions differ");
    /* a NaN in the caller's rows (the third step's): refused before that step runs */
    xs[2 * BATCH * IN + 5] = NAN;
    memset(got, 0, sizeof got);
    CHECK(infer_run(&direct, xs, NULL, got, NULL, 1) == PYNN_ENONFINITE,
          "direct input: a NaN was not refused");
    for (i = 2 * BATCH * OUT; i < N * OUT; i++)
        if (got[i] != 0.0f) break;
    CHECK(i == N * OUT, "direct input: the step with the NaN wrote predictions");
    xs[2 * BATCH * IN + 5] = x[2 * BATCH * IN + 5];
    infer_free(&copied);
    infer_free(&direct);
    /* the input among the outputs: copied into its buffer, and copied out as it was */
    infer_build(&direct, on, 1);
    memset(x_out, 0, sizeof x_out);
    CHECK(infer_run(&direct, xs, NULL, got, x_out, 0) == PYNN_OK, "identity-output run failed");
    CHECK(memcmp(x_out, xs, sizeof x_out) == 0, "an output sharing the input: rows differ");
    infer_free(&direct);
}

int main(void) {
    static float x_mlp[N * IN], x_cnn[N * CI], x_br[N * BI];
    static int64_t l_mlp[N], l_cnn[N], order[N];
    int64_t i;
    make_data(x_mlp, l_mlp, IN, OUT);
    make_data(x_cnn, l_cnn, CI, CO);
    make_order(order);
    test_mlp_plan(x_mlp, l_mlp, order);
    test_malformed(x_mlp, l_mlp, order);
    test_stop(x_mlp, l_mlp, order);
    test_grad_hook(x_mlp, l_mlp, order);
    test_input_direct(x_mlp, order);
    test_cnn_plan(x_cnn, l_cnn, order);
    rng_state = 17;
    for (i = 0; i < N * BI; i++) x_br[i] = uniform() * 2.0f - 1.0f;
    test_branchy_plan(x_br);
    printf("test_plan: %s (%d failure%s)\n", failures ? "FAILED" : "passed", failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
