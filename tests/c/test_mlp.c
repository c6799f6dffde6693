/* test_mlp.c -- the fused training path (csrc/mlp.c) from C, under ASan/UBSan:
 *   - after the first step, training steps call malloc not at all (the link wraps
 *     malloc/calloc/realloc/posix_memalign/aligned_alloc and counts the calls);
 *   - 1 and 2 threads give bitwise-identical parameters;
 *   - the loss falls on a learnable problem;
 *   - bad labels and bad configurations are refused with a status, nothing crashes.
 * Exits non-zero on any failure. */
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

enum { N = 300, IN = 20, OUT = 4, BATCH = 32 };

static void make_config(pynn_mlp_config *cfg, int optimizer) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layers = 3;
    cfg->sizes[0] = IN; cfg->sizes[1] = 37; cfg->sizes[2] = 9; cfg->sizes[3] = OUT;
    cfg->acts[0] = PYNN_ACT_RELU; cfg->acts[1] = PYNN_ACT_TANH; cfg->acts[2] = PYNN_ACT_LINEAR;
    cfg->use_bias[0] = 1; cfg->use_bias[1] = 0; cfg->use_bias[2] = 1;
    cfg->loss = PYNN_LOSS_SPARSE_CCE; cfg->from_logits = 1; cfg->predict_act = PYNN_ACT_SOFTMAX;
    cfg->n_metrics = 1; cfg->metrics[0] = PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY;
    cfg->optimizer = optimizer;
    cfg->lr = 0.01f; cfg->lr_d = 0.01; cfg->momentum = 0.9f;
    cfg->beta1 = 0.9f; cfg->beta2 = 0.999f; cfg->beta1_d = 0.9; cfg->beta2_d = 0.999;
    cfg->rho = 0.9f; cfg->epsilon = 1e-7f;
}

typedef struct {
    float *params, *grads, *s1, *s2, *ws;
    int64_t *labels_ws;
    double losses[64], metrics[64];
    int64_t n_params;
} net;

static void net_init(net *n, const pynn_mlp_config *cfg) {
    int64_t i;
    n->n_params = pynn_mlp_num_params(cfg);
    n->params = __real_malloc((size_t)n->n_params * sizeof(float));
    n->grads = __real_calloc((size_t)n->n_params, sizeof(float));
    n->s1 = __real_calloc((size_t)n->n_params, sizeof(float));
    n->s2 = __real_calloc((size_t)n->n_params, sizeof(float));
    n->ws = __real_malloc((size_t)pynn_mlp_workspace_size(cfg, BATCH) * sizeof(float));
    n->labels_ws = __real_malloc(BATCH * sizeof(int64_t));
    rng_state = 99;
    for (i = 0; i < n->n_params; i++) n->params[i] = (uniform() - 0.5f) * 0.6f;
}

static void net_free(net *n) {
    free(n->params); free(n->grads); free(n->s1); free(n->s2); free(n->ws); free(n->labels_ws);
}

static int train(net *n, const pynn_mlp_config *cfg, const float *x, const int64_t *labels,
                 int64_t first_row, int64_t steps, int64_t iterations) {
    return pynn_mlp_train(n->params, n->grads, n->s1, n->s2, n->losses, n->metrics, n->ws,
                          n->labels_ws, x, NULL, labels, NULL, N, N, first_row, BATCH, steps,
                          iterations, cfg);
}

int main(void) {
    static float x[N * IN];
    static int64_t labels[N];
    pynn_mlp_config cfg;
    int64_t i, j;
    int opt;

    /* a learnable problem: the label is the argmax of the first four inputs */
    rng_state = 7;
    for (i = 0; i < N; i++) {
        int64_t best = 0;
        for (j = 0; j < IN; j++) x[i * IN + j] = uniform() * 2.0f - 1.0f;
        for (j = 1; j < OUT; j++) best = x[i * IN + j] > x[i * IN + best] ? j : best;
        labels[i] = best;
    }

    for (opt = PYNN_OPT_SGD; opt <= PYNN_OPT_RMSPROP; opt++) {
        net a, b;
        double first = 0.0, last = 0.0;
        int64_t it = 0, epoch;
        long calls;
        make_config(&cfg, opt);
        net_init(&a, &cfg);
        net_init(&b, &cfg);

        /* warm-up step (the GEMM may size its packing workspace), then no allocation */
        pynn_set_num_threads(2);
        CHECK(train(&a, &cfg, x, labels, 0, 1, it) == PYNN_OK, "warm-up step, optimizer %d", opt);
        it = 1;
        calls = alloc_calls;
        for (epoch = 0; epoch < 10; epoch++) {
            int64_t steps = (N - BATCH + BATCH - 1) / BATCH; /* 9 full batches + a partial */
            CHECK(train(&a, &cfg, x, labels, BATCH, steps, it) == PYNN_OK, "epoch %ld", (long)epoch);
            it += steps;
            if (epoch == 0) first = a.losses[0];
            last = a.losses[steps - 1];
        }
        CHECK(alloc_calls == calls, "optimizer %d: %ld allocations during training steps", opt,
              alloc_calls - calls);
        CHECK(last < 0.8 * first, "optimizer %d: loss did not fall (%g -> %g)", opt, first, last);

        /* the same training on one thread: bitwise the same parameters */
        pynn_set_num_threads(1);
        CHECK(train(&b, &cfg, x, labels, 0, 1, 0) == PYNN_OK, "1-thread warm-up");
        for (epoch = 0, it = 1; epoch < 10; epoch++) {
            int64_t steps = (N - BATCH + BATCH - 1) / BATCH;
            CHECK(train(&b, &cfg, x, labels, BATCH, steps, it) == PYNN_OK, "1-thread epoch");
            it += steps;
        }
        CHECK(memcmp(a.params, b.params, (size_t)a.n_params * sizeof(float)) == 0,
              "optimizer %d: 1 and 2 threads differ", opt);
        net_free(&a);
        net_free(&b);
    }

    /* refusals: a bad label, bad sizes, a bad configuration */
    {
        net a;
        make_config(&cfg, PYNN_OPT_ADAM);
        net_init(&a, &cfg);
        labels[5] = OUT;
        CHECK(train(&a, &cfg, x, labels, 0, 1, 0) == PYNN_ELABEL, "label == classes accepted");
        labels[5] = -1;
        CHECK(train(&a, &cfg, x, labels, 0, 1, 0) == PYNN_ELABEL, "negative label accepted");
        labels[5] = 0;
        CHECK(train(&a, &cfg, x, labels, N, 1, 0) == PYNN_EINVAL, "empty batch accepted");
        CHECK(pynn_mlp_train(a.params, a.grads, a.s1, a.s2, a.losses, a.metrics, a.ws, a.labels_ws,
                             x, NULL, labels, NULL, N, N, 0, 0, 1, 0, &cfg) == PYNN_EINVAL,
              "batch 0 accepted");
        CHECK(pynn_mlp_train(a.params, a.grads, NULL, a.s2, a.losses, a.metrics, a.ws, a.labels_ws,
                             x, NULL, labels, NULL, N, N, 0, BATCH, 1, 0, &cfg) == PYNN_EINVAL,
              "Adam without its state accepted");
        cfg.sizes[2] = 0;
        CHECK(pynn_mlp_workspace_size(&cfg, BATCH) == PYNN_EINVAL, "zero-width layer accepted");
        cfg.sizes[2] = 9;
        cfg.acts[1] = 99;
        CHECK(train(&a, &cfg, x, labels, 0, 1, 0) == PYNN_EINVAL, "unknown activation accepted");
        cfg.acts[1] = PYNN_ACT_TANH;
        cfg.n_layers = PYNN_MLP_MAX_LAYERS + 1;
        CHECK(pynn_mlp_num_params(&cfg) == PYNN_EINVAL, "too many layers accepted");
        CHECK(pynn_mlp_num_params(NULL) == PYNN_EINVAL, "NULL configuration accepted");
        net_free(&a);
    }

    printf("test_mlp: %s (%d failure%s)\n", failures ? "FAILED" : "passed", failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
