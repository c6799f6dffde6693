/* bench_layers.c -- time the layer kernels of two small CNNs' training steps one by one,
 * without Python: the tiny CNN of bench_plan.c (8x8x1, Conv2D(8, 3) relu, Flatten,
 * Dense(10) softmax, batch 32) and LeNet-5 (28x28x1, conv 6@5x5 same, pool, conv 16@5x5,
 * pool, dense 120-84-10, batch 64).  Each figure is the best, over several samples, of the
 * CPU time of the process per call (CLOCK_PROCESS_CPUTIME_ID: on one thread it is not
 * inflated by other processes' time on a shared machine).
 *
 *   bench_layers [threads [case [calls]]]        (PYNN_BENCH_LEVEL=1|2|3: force a level)
 *
 * With a case name (a prefix of the labels printed), only that kernel runs, `calls` times
 * (default 1000) and untimed: the shape of run to count instructions with
 *   valgrind --tool=callgrind ./bench_layers 1 tiny.conv.fwd 1000
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"

/* One convolution layer's operands and gradients. */
typedef struct {
    int64_t n, h, w, c, kh, kw, pad, oh, ow, f;
    float *x, *wgt, *bias, *cols, *z, *y, *dy, *dz, *dw, *db, *dx, *work;
    int64_t work_size;
    int want_dx;
} conv_layer;

/* One Dense layer's. */
typedef struct {
    int64_t m, in, out;
    int act;
    float *x, *w, *b, *z, *y, *dy, *dz, *dw, *db, *dx;
} dense_layer;

static void conv_init(conv_layer *l, int64_t n, int64_t h, int64_t c, int64_t k, int64_t pad,
                      int64_t f, int want_dx, unsigned *seed) {
    memset(l, 0, sizeof *l);
    l->n = n; l->h = l->w = h; l->c = c; l->kh = l->kw = k; l->pad = pad; l->f = f;
    l->oh = l->ow = h + 2 * pad - k + 1;
    l->want_dx = want_dx;
    l->x = filled(n * h * h * c, seed, 1.0f);
    l->wgt = filled(k * k * c * f, seed, 0.2f);
    l->bias = filled(f, seed, 0.1f);
    l->cols = filled(n * l->oh * l->ow * k * k * c, seed, 0.0f);
    l->z = filled(n * l->oh * l->ow * f, seed, 0.0f);
    l->y = filled(n * l->oh * l->ow * f, seed, 0.0f);
    l->dy = filled(n * l->oh * l->ow * f, seed, 0.1f);
    l->dz = filled(n * l->oh * l->ow * f, seed, 0.0f);
    l->dw = filled(k * k * c * f, seed, 0.0f);
    l->db = filled(f, seed, 0.0f);
    l->dx = filled(n * h * h * c, seed, 0.0f);
    l->work_size = pynn_conv2d_backward_work(n, h, h, c, k, k, 1, 1, l->oh, l->ow, f);
    l->work = filled(l->work_size, seed, 0.0f);
}

static void dense_init(dense_layer *l, int64_t m, int64_t in, int64_t out, int act,
                       unsigned *seed) {
    memset(l, 0, sizeof *l);
    l->m = m; l->in = in; l->out = out; l->act = act;
    l->x = filled(m * in, seed, 1.0f);
    l->w = filled(in * out, seed, 0.1f);
    l->b = filled(out, seed, 0.1f);
    l->z = filled(m * out, seed, 0.0f);
    l->y = filled(m * out, seed, 0.0f);
    l->dy = filled(m * out, seed, 0.1f);
    l->dz = filled(m * out, seed, 0.0f);
    l->dw = filled(in * out, seed, 0.0f);
    l->db = filled(out, seed, 0.0f);
    l->dx = filled(m * in, seed, 0.0f);
}

static int conv_fwd(void *p) {
    conv_layer *l = p;
    return pynn_conv2d_forward(l->z, l->y, l->cols, l->x, l->wgt, l->bias, l->n, l->h, l->w,
                               l->c, l->kh, l->kw, 1, 1, l->pad, l->pad, l->oh, l->ow, l->f,
                               PYNN_ACT_RELU, 0.0f);
}

static int conv_bwd(void *p) {
    conv_layer *l = p;
    /* the backward overwrites its dy with dz: start from the same dy every call */
    memcpy(l->dz, l->dy, (size_t)(l->n * l->oh * l->ow * l->f) * sizeof(float));
    return pynn_conv2d_backward(l->dw, l->db, l->want_dx ? l->dx : NULL, l->dz, l->cols,
                                l->work, l->work_size, l->x, l->wgt, l->z, l->y, l->n, l->h,
                                l->w, l->c, l->kh, l->kw, 1, 1, l->pad, l->pad, l->oh, l->ow,
                                l->f, PYNN_ACT_RELU, 0.0f);
}

static int dense_fwd(void *p) {
    dense_layer *l = p;
    return pynn_sgemm_bias_act(l->z, l->y, l->x, l->w, l->b, 0, 0, l->m, l->out, l->in, l->act,
                               0.0f);
}

static int dense_bwd(void *p) {
    dense_layer *l = p;
    memcpy(l->dz, l->dy, (size_t)(l->m * l->out) * sizeof(float));
    return pynn_dense_backward(l->dw, l->db, l->dx, l->dz, l->x, l->w, l->z, l->y, l->m, l->in,
                               l->out, l->act, 0.0f);
}

/* The rest of the tiny CNN's step: its loss on the softmax's probabilities, its metric,
 * and the SGD update of its 2970 parameters. */
typedef struct {
    int64_t rows, cols, n_params;
    float *probs, *grad, *params, *grads;
    int64_t *labels;
    double loss, metric;
} head_ops;

static int head_loss(void *p) {
    head_ops *h = p;
    return pynn_sparse_cce(h->grad, &h->loss, h->probs, h->labels, h->rows, h->cols, 0, NULL);
}

static int head_metric(void *p) {
    head_ops *h = p;
    return pynn_metric_sum(&h->metric, h->probs, NULL, h->labels, h->rows, h->cols,
                           PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, 1, 0.5f, NULL, 1);
}

static int head_sgd(void *p) {
    head_ops *h = p;
    static const double sgd[PYNN_HYPER_COUNT] = {0.01, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7};
    return pynn_optimizer_step(h->params, NULL, h->grads, h->n_params, PYNN_OPT_SGD, 1,
                               sgd);
}

typedef struct {
    const char *label;
    int (*run)(void *);
    void *layer;
} bench_case;

/* Best-of-samples CPU seconds per call; each sample repeats the call for >= 20 ms. */
static double time_case(const bench_case *bc) {
    enum { SAMPLES = 15 };
    double best = 1e30;
    int64_t calls = 1, i;
    int s;
    for (;;) {                                            /* calls per sample */
        const double t0 = cpu_s();
        for (i = 0; i < calls; i++) bc->run(bc->layer);
        if (cpu_s() - t0 > 0.02) break;
        calls *= 2;
    }
    for (s = 0; s < SAMPLES; s++) {                       /* samples */
        const double t0 = cpu_s();
        double t;
        for (i = 0; i < calls; i++) bc->run(bc->layer);
        t = (cpu_s() - t0) / (double)calls;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    unsigned seed = 7;
    conv_layer tiny_conv, lenet_conv1, lenet_conv2;
    head_ops head;
    dense_layer tiny_dense, lenet_d1, lenet_d2, lenet_d3;
    size_t i, ncases;
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    const char *only = argc > 2 ? argv[2] : NULL;
    const long calls = argc > 3 ? atol(argv[3]) : 1000;
    bench_case cases[17];
    if (threads < 1 || pynn_set_num_threads(threads) != PYNN_OK) {
        fprintf(stderr, "bench_layers: expected a positive thread count, received %s\n", argv[1]);
        return 2;
    }
    if (getenv("PYNN_BENCH_LEVEL") != NULL &&
        pynn_select_level(atoi(getenv("PYNN_BENCH_LEVEL"))) != PYNN_OK) {
        fprintf(stderr, "bench_layers: level %s is not available\n", getenv("PYNN_BENCH_LEVEL"));
        return 2;
    }
    conv_init(&tiny_conv, 32, 8, 1, 3, 0, 8, 0, &seed);
    dense_init(&tiny_dense, 32, 288, 10, PYNN_ACT_SOFTMAX, &seed);
    conv_init(&lenet_conv1, 64, 28, 1, 5, 2, 6, 0, &seed);
    conv_init(&lenet_conv2, 64, 14, 6, 5, 0, 16, 1, &seed);
    dense_init(&lenet_d1, 64, 400, 120, PYNN_ACT_RELU, &seed);
    dense_init(&lenet_d2, 64, 120, 84, PYNN_ACT_RELU, &seed);
    dense_init(&lenet_d3, 64, 84, 10, PYNN_ACT_SOFTMAX, &seed);
    head.rows = 32;
    head.cols = 10;
    head.n_params = 72 + 8 + 2880 + 10;
    head.probs = filled(32 * 10, &seed, 0.0f);
    head.grad = filled(32 * 10, &seed, 0.0f);
    head.params = filled(head.n_params, &seed, 0.1f);
    head.grads = filled(head.n_params, &seed, 0.01f);
    head.labels = malloc(32 * sizeof(int64_t));
    for (i = 0; i < 32 * 10; i++) head.probs[i] = 0.1f;     /* a softmax's output */
    for (i = 0; i < 32; i++) head.labels[i] = (int64_t)(i % 10);
    ncases = 0;
#define CASE(label, fn, layer) cases[ncases++] = (bench_case){label, fn, layer}
    CASE("tiny.conv.fwd  8x8x1 3x3 f8 n32", conv_fwd, &tiny_conv);
    CASE("tiny.conv.bwd  (dW, db)", conv_bwd, &tiny_conv);
    CASE("tiny.dense.fwd 32x288 @ 288x10 softmax", dense_fwd, &tiny_dense);
    CASE("tiny.dense.bwd (dW, db, dx)", dense_bwd, &tiny_dense);
    CASE("tiny.loss sparse CCE on probabilities", head_loss, &head);
    CASE("tiny.metric sparse accuracy", head_metric, &head);
    CASE("tiny.sgd 2970 parameters", head_sgd, &head);
    CASE("lenet.conv1.fwd 28x28x1 5x5 same f6 n64", conv_fwd, &lenet_conv1);
    CASE("lenet.conv1.bwd (dW, db)", conv_bwd, &lenet_conv1);
    CASE("lenet.conv2.fwd 14x14x6 5x5 f16", conv_fwd, &lenet_conv2);
    CASE("lenet.conv2.bwd (dW, db, dx)", conv_bwd, &lenet_conv2);
    CASE("lenet.dense1.fwd 64x400 @ 400x120", dense_fwd, &lenet_d1);
    CASE("lenet.dense1.bwd", dense_bwd, &lenet_d1);
    CASE("lenet.dense2.fwd 64x120 @ 120x84", dense_fwd, &lenet_d2);
    CASE("lenet.dense2.bwd", dense_bwd, &lenet_d2);
    CASE("lenet.dense3.fwd 64x84 @ 84x10 softmax", dense_fwd, &lenet_d3);
    CASE("lenet.dense3.bwd", dense_bwd, &lenet_d3);
#undef CASE
    if (only != NULL) {                                   /* one kernel, for callgrind */
        int found = 0;
        for (i = 0; i < ncases; i++) {
            long r;
            if (strncmp(cases[i].label, only, strlen(only)) != 0) continue;
            found = 1;
            for (r = 0; r < calls; r++)
                if (cases[i].run(cases[i].layer) != PYNN_OK) return 1;
        }
        return found ? 0 : 2;
    }
    printf("pynn layer kernels, %d threads, level %d: best CPU time per call\n", threads,
           pynn_level());
    for (i = 0; i < ncases; i++) {
        if (cases[i].run(cases[i].layer) != PYNN_OK) {
            fprintf(stderr, "bench_layers: %s failed\n", cases[i].label);
            return 1;
        }
        printf("%-42s %10.2f us\n", cases[i].label, time_case(&cases[i]) * 1e6);
    }
    return 0;
}
