/* bench_plan.c -- time training steps run by the plan runner (csrc/plan.c), without Python:
 * ReLU MLPs with softmax cross-entropy on logits and SGD (64-32-10 and 784-512-256-10), and
 * a tiny CNN (8x8x1 images, Conv2D(8, 3) relu, Flatten, Dense(10) softmax, sparse CCE, SGD).
 * Each model is built as a plan, as pynn/models/plan.py compiles one.  Two figures per model:
 * one step per pynn_plan_run call (the plan is checked on every call, as train_on_batch
 * would run it) and a whole epoch of steps per call (fit).  Each figure is the median of
 * several runs after a warm-up.
 *
 *   bench_plan [threads [model]]
 *
 * With `model` (a prefix of a label: "MLP 64", "CNN"), only the models it names run.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"

static void fill(float *x, int64_t n, unsigned *seed, float scale) {
    int64_t i;
    for (i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = ((float)((*seed >> 8) * (1.0 / 8388608.0)) - 1.0f) * scale;
    }
}

/* ---- a plan under construction (the buffers' memory is owned here) ----------------- */
#define MAX_BUFS 48
#define MAX_OPS 24

typedef struct {
    pynn_buffer bufs[MAX_BUFS];
    pynn_op ops[MAX_OPS];
    int64_t pool[512];
    double reals[128];
    int64_t n_pool, n_reals;
    void *owned[MAX_BUFS];
    int n_owned;
    pynn_plan plan;
    int64_t input, target, classes;
} builder;

static void builder_init(builder *b, int64_t capacity) {
    memset(b, 0, sizeof *b);
    b->plan.bufs = b->bufs;
    b->plan.ops = b->ops;
    b->plan.capacity = capacity;
    b->plan.input_bufs = &b->input;
    b->plan.target_bufs = &b->target;
    b->plan.target_classes = &b->classes;
    b->plan.n_inputs = b->plan.n_targets = 1;
    b->plan.n_losses = b->plan.n_metrics = 1;
}

static int64_t buffer(builder *b, void *data, int64_t row_size, int64_t size, int32_t dtype) {
    pynn_buffer *buf = &b->bufs[b->plan.n_bufs];
    if (data == NULL) {
        data = calloc((size_t)(size > 0 ? size : 1), dtype == PYNN_DTYPE_I64 ? 8 : 4);
        b->owned[b->n_owned++] = data;
    }
    buf->data = data;
    buf->row_size = row_size;
    buf->size = size;
    buf->dtype = dtype;
    return b->plan.n_bufs++;
}

static int64_t batched(builder *b, int64_t row_size) {
    return buffer(b, NULL, row_size, b->plan.capacity * row_size, PYNN_DTYPE_F32);
}

static int64_t fixed(builder *b, float *data, int64_t size) {
    return buffer(b, data, 0, size, PYNN_DTYPE_F32);
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
    memcpy(b->pool + b->n_pool, ints, (size_t)ni * sizeof(int64_t));
    b->n_pool += ni;
    op->reals = b->reals + b->n_reals;
    if (nr > 0) memcpy(b->reals + b->n_reals, reals, (size_t)nr * sizeof(double));
    b->n_reals += nr;
}

#define LIST(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define ALPHA (const double[]){0.0}, 1

static const double SGD[PYNN_HYPER_COUNT] = {0.01, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7};

/* A ReLU MLP: sizes[0] inputs, hidden layers, sizes[n_layers] logits. */
static void build_mlp(builder *b, const int64_t *sizes, int n_layers, int64_t batch,
                      float *params, float *grads) {
    int64_t w[4], bias[4], dw[4], db[4], z[4], y[4], dx[4], x, labels, grad, probs, at = 0;
    int l;
    builder_init(b, batch);
    for (l = 0; l < n_layers; l++) {
        const int64_t nw = sizes[l] * sizes[l + 1];
        w[l] = fixed(b, params + at, nw);
        dw[l] = fixed(b, grads + at, nw);
        at += nw;
        bias[l] = fixed(b, params + at, sizes[l + 1]);
        db[l] = fixed(b, grads + at, sizes[l + 1]);
        at += sizes[l + 1];
    }
    x = batched(b, sizes[0]);
    labels = buffer(b, NULL, 1, batch, PYNN_DTYPE_I64);
    for (l = 0; l < n_layers; l++) {
        z[l] = batched(b, sizes[l + 1]);
        y[l] = l + 1 < n_layers ? batched(b, sizes[l + 1]) : z[l];
        dx[l] = l > 0 ? batched(b, sizes[l]) : -1;
    }
    grad = batched(b, sizes[n_layers]);
    probs = batched(b, sizes[n_layers]);
    for (l = 0; l < n_layers; l++)
        add_op(b, PYNN_OP_DENSE, LIST(l ? y[l - 1] : x, w[l], bias[l], z[l], y[l]),
               LIST(sizes[l], sizes[l + 1], l + 1 < n_layers ? PYNN_ACT_RELU : PYNN_ACT_LINEAR),
               ALPHA);
    add_op(b, PYNN_OP_LOSS, LIST(z[n_layers - 1], labels, grad, -1),
           LIST(PYNN_LOSS_SPARSE_CCE, 1, sizes[n_layers], 0, 0, 0, 0), (const double[]){1.0, 0.0, 0.0}, 3);
    add_op(b, PYNN_OP_ACTIVATION, LIST(z[n_layers - 1], probs), LIST(sizes[n_layers], PYNN_ACT_SOFTMAX),
           ALPHA);
    add_op(b, PYNN_OP_METRIC, LIST(probs, labels, -1),
           LIST(PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, sizes[n_layers], 0, 1, 1, 1),
           (const double[]){0.5}, 1);
    for (l = n_layers - 1; l >= 0; l--)
        add_op(b, PYNN_OP_DENSE_BACKWARD,
               LIST(l ? y[l - 1] : x, w[l], z[l], y[l], l + 1 < n_layers ? dx[l + 1] : grad, dw[l],
                    db[l], dx[l]),
               LIST(sizes[l], sizes[l + 1], l + 1 < n_layers ? PYNN_ACT_RELU : PYNN_ACT_LINEAR),
               ALPHA);
    add_op(b, PYNN_OP_OPTIMIZER, LIST(fixed(b, params, at), fixed(b, grads, at), -1, -1, -1),
           LIST(PYNN_OPT_SGD), SGD, PYNN_HYPER_COUNT);
    b->input = x;
    b->target = labels;
    b->classes = sizes[n_layers];
}

/* 8x8x1 -> Conv2D(8, 3) relu -> Flatten -> Dense(10) softmax; sparse CCE on probabilities. */
static void build_cnn(builder *b, int64_t batch, float *params, float *grads) {
    enum { K = 0, CB = 72, W = 80, DB = W + 288 * 10, P = DB + 10 };
    const int64_t work_size = pynn_conv2d_backward_work(batch, 8, 8, 1, 3, 3, 1, 1, 6, 6, 8);
    int64_t k, cb, w, db, dk, dcb, dw, ddb, x, labels, cols, z1, y1, z2, y2, grad, dy1, work;
    builder_init(b, batch);
    k = fixed(b, params + K, 72); cb = fixed(b, params + CB, 8);
    w = fixed(b, params + W, 2880); db = fixed(b, params + DB, 10);
    dk = fixed(b, grads + K, 72); dcb = fixed(b, grads + CB, 8);
    dw = fixed(b, grads + W, 2880); ddb = fixed(b, grads + DB, 10);
    work = buffer(b, NULL, 0, work_size, PYNN_DTYPE_F32);
    x = batched(b, 64);
    labels = buffer(b, NULL, 1, batch, PYNN_DTYPE_I64);
    cols = batched(b, 36 * 9); z1 = batched(b, 288); y1 = batched(b, 288);
    z2 = batched(b, 10); y2 = batched(b, 10); grad = batched(b, 10); dy1 = batched(b, 288);
#define GEOMETRY 8, 8, 1, 3, 3, 1, 1, 0, 0, 6, 6, 8, PYNN_ACT_RELU
    add_op(b, PYNN_OP_CONV2D, LIST(x, k, cb, cols, z1, y1), LIST(GEOMETRY), ALPHA);
    add_op(b, PYNN_OP_DENSE, LIST(y1, w, db, z2, y2), LIST(288, 10, PYNN_ACT_SOFTMAX), ALPHA);
    add_op(b, PYNN_OP_LOSS, LIST(y2, labels, grad, -1), LIST(PYNN_LOSS_SPARSE_CCE, 0, 10, 0, 0, 0, 0),
           (const double[]){1.0, 0.0, 0.0}, 3);
    add_op(b, PYNN_OP_METRIC, LIST(y2, labels, -1),
           LIST(PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, 10, 0, 1, 1, 1), (const double[]){0.5}, 1);
    add_op(b, PYNN_OP_DENSE_BACKWARD, LIST(y1, w, z2, y2, grad, dw, ddb, dy1),
           LIST(288, 10, PYNN_ACT_SOFTMAX), ALPHA);
    add_op(b, PYNN_OP_CONV2D_BACKWARD, LIST(x, k, z1, y1, dy1, cols, work, dk, dcb, -1),
           LIST(GEOMETRY), ALPHA);
#undef GEOMETRY
    add_op(b, PYNN_OP_OPTIMIZER, LIST(fixed(b, params, P), fixed(b, grads, P), -1, -1, -1),
           LIST(PYNN_OPT_SGD), SGD, PYNN_HYPER_COUNT);
    b->input = x;
    b->target = labels;
    b->classes = 10;
}

static void builder_free(builder *b) {
    int i;
    for (i = 0; i < b->n_owned; i++) free(b->owned[i]);
}

typedef struct {
    const char *label;
    int cnn;                 /* else an MLP of `sizes` */
    int n_layers;
    int64_t sizes[5];
    int64_t batch;
    int64_t steps;           /* steps of the epoch; the single-step runs repeat this many */
} model;

static const model models[] = {
    {"MLP 64-32-10, batch 32", 0, 2, {64, 32, 10}, 32, 2000},
    {"MLP 784-512-256-10, batch 128", 0, 3, {784, 512, 256, 10}, 128, 40},
    {"CNN 8x8x1 conv(8,3) dense(10), batch 32", 1, 0, {64, 10}, 32, 1000},
};

/* Median seconds per step: one step per call (per_call 1) or all steps in one call. */
static double bench(const model *m, int per_call) {
    enum { RUNS = 7 };
    const int64_t rows = m->batch * m->steps, in = m->sizes[0];
    int64_t n_params = m->cnn ? 72 + 8 + 2880 + 10 : 0, i, r;
    double times[RUNS], *losses, *metrics;
    float *params, *grads, *x;
    int64_t *labels;
    unsigned seed = 1;
    int status = PYNN_OK;
    builder *b = malloc(sizeof *b);
    for (i = 0; !m->cnn && i < m->n_layers; i++) n_params += m->sizes[i] * m->sizes[i + 1] + m->sizes[i + 1];
    params = malloc((size_t)n_params * sizeof(float));
    grads = malloc((size_t)n_params * sizeof(float));
    x = malloc((size_t)(rows * in) * sizeof(float));
    labels = malloc((size_t)rows * sizeof(int64_t));
    losses = malloc((size_t)m->steps * sizeof(double));
    metrics = malloc((size_t)m->steps * sizeof(double));
    if (!b || !params || !grads || !x || !labels || !losses || !metrics) return -1.0;
    fill(params, n_params, &seed, 0.05f);
    fill(x, rows * in, &seed, 1.0f);
    for (i = 0; i < rows; i++) labels[i] = i % 10;
    if (m->cnn)
        build_cnn(b, m->batch, params, grads);
    else
        build_mlp(b, m->sizes, m->n_layers, m->batch, params, grads);
    {
        const void *inputs[1] = {x}, *targets[1] = {labels};
        pynn_plan_feed feed = {inputs, targets, NULL, rows, NULL, rows, NULL, NULL};
        /* runs: each times `steps` steps, after one run of warm-up */
        for (r = -1; r < RUNS && status == PYNN_OK; r++) {
            double t0 = now_s();
            if (per_call)
                for (i = 0; i < m->steps && status == PYNN_OK; i++)
                    status = pynn_plan_run(&b->plan, &feed, i * m->batch, m->batch, 1, i, 0,
                                           losses, metrics, NULL);
            else
                status = pynn_plan_run(&b->plan, &feed, 0, m->batch, m->steps, 0, 0, losses,
                                       metrics, NULL);
            if (r >= 0) times[r] = (now_s() - t0) / (double)m->steps;
        }
    }
    builder_free(b);
    free(b); free(params); free(grads); free(x); free(labels); free(losses); free(metrics);
    if (status != PYNN_OK) {
        fprintf(stderr, "bench_plan: %s: pynn_plan_run returned %d\n", m->label, status);
        return -1.0;
    }
    qsort(times, RUNS, sizeof(double), cmp_double);
    return times[RUNS / 2];
}

int main(int argc, char **argv) {
    const char *only = argc > 2 ? argv[2] : NULL;
    size_t i;
    if (argc > 1) {
        int threads = atoi(argv[1]);
        if (threads < 1 || pynn_set_num_threads(threads) != PYNN_OK) {
            fprintf(stderr, "bench_plan: expected a positive thread count, received %s\n", argv[1]);
            return 2;
        }
    }
    printf("pynn C benchmark: training steps through pynn_plan_run (SGD), %d threads\n",
           pynn_get_num_threads());
    printf("%-42s %16s %16s\n", "model", "us/step (1/call)", "us/step (epoch)");
    for (i = 0; i < sizeof models / sizeof models[0]; i++) {
        double one, epoch;
        if (only != NULL && strncmp(models[i].label, only, strlen(only)) != 0) continue;
        one = bench(&models[i], 1);
        epoch = bench(&models[i], 0);
        if (one < 0 || epoch < 0) return 1;
        printf("%-42s %16.2f %16.2f\n", models[i].label, one * 1e6, epoch * 1e6);
    }
    return 0;
}
