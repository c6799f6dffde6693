/* bench_mlp.c -- time a full training step of a ReLU MLP with softmax cross-entropy
 * (forward, backward, SGD update: the fused path of csrc/mlp.c) and the activation
 * kernels, without Python.  Each figure is the median of several runs after a warm-up.
 *
 *   bench_mlp [threads]
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *x, int64_t n, unsigned *seed, float scale) {
    int64_t i;
    for (i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = ((float)((*seed >> 8) * (1.0 / 8388608.0)) - 1.0f) * scale;
    }
}

typedef struct {
    const char *label;
    int n_layers;
    int64_t sizes[5];
    int64_t batch;
    int reps;             /* steps per timed run */
} mlp_shape;

static const mlp_shape shapes[] = {
    {"64-32-10, batch 32", 2, {64, 32, 10}, 32, 2000},
    {"784-512-256-10, batch 128", 3, {784, 512, 256, 10}, 128, 40},
    {"1024-2048-2048-10, batch 256", 3, {1024, 2048, 2048, 10}, 256, 4},
};

/* Median seconds per training step; negative on error. */
static double bench_step(const mlp_shape *s) {
    enum { RUNS = 7 };
    pynn_mlp_config cfg;
    double times[RUNS], losses[1], metrics[1];
    float *params, *grads, *ws, *x;
    int64_t *labels, *labels_ws, n_params, i, r;
    unsigned seed = 1;
    int status = PYNN_OK;

    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = s->n_layers;
    for (i = 0; i <= s->n_layers; i++) cfg.sizes[i] = s->sizes[i];
    for (i = 0; i < s->n_layers; i++) {
        cfg.acts[i] = i + 1 < s->n_layers ? PYNN_ACT_RELU : PYNN_ACT_LINEAR;
        cfg.use_bias[i] = 1;
    }
    cfg.loss = PYNN_LOSS_SPARSE_CCE;
    cfg.from_logits = 1;                 /* softmax fused with the loss */
    cfg.predict_act = PYNN_ACT_SOFTMAX;
    cfg.optimizer = PYNN_OPT_SGD;
    cfg.lr = 0.01f;
    cfg.lr_d = 0.01;

    n_params = pynn_mlp_num_params(&cfg);
    params = malloc((size_t)n_params * sizeof(float));
    grads = malloc((size_t)n_params * sizeof(float));
    ws = malloc((size_t)pynn_mlp_workspace_size(&cfg, s->batch) * sizeof(float));
    x = malloc((size_t)(s->batch * s->sizes[0]) * sizeof(float));
    labels = malloc((size_t)s->batch * sizeof(int64_t));
    labels_ws = malloc((size_t)s->batch * sizeof(int64_t));
    if (!params || !grads || !ws || !x || !labels || !labels_ws) return -1.0;
    fill(params, n_params, &seed, 0.05f);
    fill(x, s->batch * s->sizes[0], &seed, 1.0f);
    for (i = 0; i < s->batch; i++) labels[i] = i % s->sizes[s->n_layers];

    /* runs: each times `reps` consecutive steps on the same batch */
    for (r = -1; r < RUNS && status == PYNN_OK; r++) {
        double t0 = now_s();
        for (i = 0; i < s->reps && status == PYNN_OK; i++)
            status = pynn_mlp_train(params, grads, NULL, NULL, losses, metrics, ws, labels_ws, x,
                                    NULL, labels, NULL, s->batch, s->batch, 0, s->batch, 1, 0, &cfg);
        if (r >= 0) times[r] = (now_s() - t0) / (double)s->reps;
    }
    free(params); free(grads); free(ws); free(x); free(labels); free(labels_ws);
    if (status != PYNN_OK) return -1.0;
    qsort(times, RUNS, sizeof(double), cmp_double);
    return times[RUNS / 2];
}

/* Median nanoseconds per element of an activation forward or backward. */
static double bench_activation(int act, int backward, int64_t rows, int64_t cols) {
    enum { RUNS = 7, REPS = 50 };
    const int64_t n = rows * cols;
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    float *dy = malloc((size_t)n * sizeof(float)), *dx = malloc((size_t)n * sizeof(float));
    double times[RUNS];
    unsigned seed = 3;
    int r, i, status = PYNN_OK;
    if (!x || !y || !dy || !dx) return -1.0;
    fill(x, n, &seed, 3.0f);
    fill(dy, n, &seed, 1.0f);
    pynn_activation_forward(y, x, rows, cols, act, 0.2f);
    for (r = -1; r < RUNS; r++) {
        double t0 = now_s();
        for (i = 0; i < REPS; i++)
            status |= backward ? pynn_activation_backward(dx, x, y, dy, rows, cols, act, 0.2f)
                               : pynn_activation_forward(y, x, rows, cols, act, 0.2f);
        if (r >= 0) times[r] = (now_s() - t0) / REPS / (double)n * 1e9;
    }
    free(x); free(y); free(dy); free(dx);
    if (status != PYNN_OK) return -1.0;
    qsort(times, RUNS, sizeof(double), cmp_double);
    return times[RUNS / 2];
}

int main(int argc, char **argv) {
    static const char *act_names[] = {"linear", "relu", "leaky_relu", "sigmoid", "tanh",
                                      "softmax", "gelu"};
    size_t i;
    int act;
    if (argc > 1) {
        int threads = atoi(argv[1]);
        if (threads < 1 || pynn_set_num_threads(threads) != PYNN_OK) {
            fprintf(stderr, "bench_mlp: expected a positive thread count, received %s\n", argv[1]);
            return 2;
        }
    }
    printf("pynn C benchmark: MLP training step (SGD, softmax cross-entropy), %d threads\n",
           pynn_get_num_threads());
    printf("%-32s %14s %12s\n", "model", "us/step", "GFLOP/s");
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const mlp_shape *s = &shapes[i];
        double flops = 0.0, t = bench_step(s);
        int l;
        for (l = 0; l < s->n_layers; l++)     /* forward, dW and dX products */
            flops += 2.0 * (double)s->batch * (double)s->sizes[l] * (double)s->sizes[l + 1] * 3.0;
        if (t < 0) {
            printf("%-32s failed\n", s->label);
            return 1;
        }
        printf("%-32s %14.1f %12.1f\n", s->label, t * 1e6, flops / t * 1e-9);
    }
    printf("\nactivations, 256 x 1024 float32 (ns per element)\n%-12s %10s %10s\n", "activation",
           "forward", "backward");
    for (act = PYNN_ACT_LINEAR; act <= PYNN_ACT_GELU; act++) {
        double f = bench_activation(act, 0, 256, 1024), b = bench_activation(act, 1, 256, 1024);
        if (f < 0 || b < 0) return 1;
        printf("%-12s %10.3f %10.3f\n", act_names[act], f, b);
    }
    return 0;
}
