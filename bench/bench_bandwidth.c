/* bench_bandwidth.c -- pooling and batch normalization against memory bandwidth, without
 * Python.  These kernels do almost no arithmetic per byte, so their yardstick is a copy:
 * each kernel's bytes moved per second beside those of a parallel copy that moves the same
 * number of bytes (half read, half written, contiguous chunks, OpenMP, the same thread
 * count), timed interleaved with the kernel in this process, and the ratio of the two.
 *
 * The layers, batch 64:
 *   VGG-style 32x32x3: conv32 conv32 pool2 conv64 conv64 pool2
 *     -> max pool 2x2/2 on 64x32x32x32 and on 64x16x16x64 (and average pool on the first)
 *   AlexNet-style 64x64x3: conv48 5x5/2 valid (30x30x48), max pool 3x3/2 (14x14), conv96
 *     same, pool2 (7x7), conv128, conv128, pool2 (3x3)
 *     -> max pool 3x3/2 on 64x30x30x48, 2x2/2 on 64x14x14x96 and on 64x7x7x128
 *   ResNet-style 32x32x3, 3x3 convs of 32 channels with BatchNormalization
 *     -> batch norm (training and inference) on 64x32x32x32 = 65536 rows x 32 columns, and
 *        the global average pool at its end
 *
 * Bytes counted: every array a pass must read or write, once each, at the fewest passes
 * the computation allows (per-channel vectors are negligible and not counted):
 *   max pool forward:   x read, y written
 *   max pool backward:  x and dy read, dx written (the window maxima are recomputed from
 *                       x: reading the forward's y as well is not needed)
 *   avg pool forward:   x read, y written;  backward: dy read, dx written
 *   batch norm training forward: x read twice (the statistics must be complete before
 *                       any y), y written
 *   batch norm inference forward: x read, y written
 *   batch norm backward: x and dy read twice (the two column sums must be complete before
 *                       any dx), dx written
 * A kernel "meets" the bar when its GB/s is at least 70% of the copy's.
 *
 *   bench_bandwidth [threads [runs [case]]]     (defaults: 2 threads, 41 runs, all cases)
 *                                               (PYNN_BENCH_LEVEL=1|2|3: force a level)
 *
 * Two measurements of each pass:
 *   memory  the caches are evicted (a 256 MB read of clean lines) before every call of the
 *           kernel and of the copy: both move their bytes from and to memory, as in a
 *           training step, whose arrays are many times the L3 (the ResNet-style net's
 *           step touches ~100 MB of activations and gradients).  "met" is judged here.
 *   L3      the calls back to back: on a machine with a large L3 (32 MB on Zen 4) the
 *           smaller cases' arrays and copy stay there, and the copy runs at the L3's
 *           bandwidth, 3-5x memory's; printed beside it.
 * Each figure is the median over `runs` of wall-clock time (CLOCK_MONOTONIC: the threads
 * run at once); the kernel and its copy alternate, one call each per run, after a warm-up.
 * With `case` (a prefix of a label), only the cases it names run.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* filled(), with the negative values zeroed when relu (a ReLU's output: half zeros, ties
 * in the pooling windows as in a real network) */
static float *filled_act(int64_t n, unsigned *seed, float scale, int relu) {
    float *x = filled(n, seed, scale);
    int64_t i;
    for (i = 0; x != NULL && relu && i < n; i++)
        if (x[i] < 0.0f) x[i] = 0.0f;
    return x;
}

/* ---- the yardstick: a parallel copy of n bytes, one contiguous chunk per thread ----- */
typedef struct {
    char *dst;
    const char *src;
    int64_t n;
    int threads;
} copy_pass;

static void run_copy(const copy_pass *p) {
    int t;
#pragma omp parallel for schedule(static) num_threads(p->threads)
    for (t = 0; t < p->threads; t++) {           /* threads: one chunk each, 64-byte aligned */
        const int64_t per = (p->n / p->threads + 63) / 64 * 64;
        const int64_t lo = t * per < p->n ? t * per : p->n;
        const int64_t hi = lo + per < p->n ? lo + per : p->n;
        memcpy(p->dst + lo, p->src + lo, (size_t)(hi - lo));
    }
}

/* ---- the layers -------------------------------------------------------------------- */
enum { POOL_MAX, POOL_AVG, POOL_GLOBAL_AVG };

typedef struct {
    int kind;
    int64_t n, h, w, c, p, s, oh, ow;
    float *x, *y, *dy, *dx;
} pool_layer;

static void pool_init(pool_layer *l, int kind, int64_t n, int64_t h, int64_t c, int64_t p,
                      int64_t s, unsigned *seed) {
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->n = n; l->h = l->w = h; l->c = c; l->p = p; l->s = s;
    l->oh = l->ow = kind == POOL_GLOBAL_AVG ? 1 : (h - p) / s + 1;      /* "valid" */
    l->x = filled_act(n * h * h * c, seed, 1.0f, 1);
    l->dx = filled_act(n * h * h * c, seed, 0.0f, 0);
    l->y = filled_act(n * l->oh * l->ow * c, seed, 0.0f, 0);
    l->dy = filled_act(n * l->oh * l->ow * c, seed, 0.1f, 0);
}

static int pool_fwd(void *p) {
    pool_layer *l = p;
    if (l->kind == POOL_GLOBAL_AVG)
        return pynn_global_avgpool2d_forward(l->y, l->x, l->n, l->h, l->w, l->c);
    if (l->kind == POOL_AVG)
        return pynn_avgpool2d_forward(l->y, l->x, l->n, l->h, l->w, l->c, l->p, l->p, l->s,
                                      l->s, 0, 0, l->oh, l->ow);
    return pynn_maxpool2d_forward(l->y, l->x, l->n, l->h, l->w, l->c, l->p, l->p, l->s, l->s,
                                  0, 0, l->oh, l->ow);
}

static int pool_bwd(void *p) {
    pool_layer *l = p;
    if (l->kind == POOL_GLOBAL_AVG)
        return pynn_global_avgpool2d_backward(l->dx, l->dy, l->n, l->h, l->w, l->c);
    if (l->kind == POOL_AVG)
        return pynn_avgpool2d_backward(l->dx, l->dy, l->n, l->h, l->w, l->c, l->p, l->p, l->s,
                                       l->s, 0, 0, l->oh, l->ow);
    return pynn_maxpool2d_backward(l->dx, l->x, l->y, l->dy, l->n, l->h, l->w, l->c, l->p,
                                   l->p, l->s, l->s, 0, 0, l->oh, l->ow);
}

/* floats a pass must read and write (the header's list) */
static int64_t pool_fwd_floats(const pool_layer *l) {
    return l->n * l->h * l->w * l->c + l->n * l->oh * l->ow * l->c;
}

static int64_t pool_bwd_floats(const pool_layer *l) {
    const int64_t in = l->n * l->h * l->w * l->c, out = l->n * l->oh * l->ow * l->c;
    return l->kind == POOL_MAX ? 2 * in + out : in + out;
}

typedef struct {
    int64_t rows, cols;
    float *x, *y, *dy, *dx, *gamma, *beta, *mean, *inv_std, *mm, *mv, *dgamma, *dbeta;
} bn_layer;

static void bn_init(bn_layer *l, int64_t rows, int64_t cols, unsigned *seed) {
    memset(l, 0, sizeof *l);
    l->rows = rows; l->cols = cols;
    l->x = filled_act(rows * cols, seed, 2.0f, 0);
    l->y = filled_act(rows * cols, seed, 0.0f, 0);
    l->dy = filled_act(rows * cols, seed, 0.1f, 0);
    l->dx = filled_act(rows * cols, seed, 0.0f, 0);
    l->gamma = filled_act(cols, seed, 0.5f, 0);
    l->beta = filled_act(cols, seed, 0.5f, 0);
    l->mean = filled_act(cols, seed, 0.0f, 0);
    l->inv_std = filled_act(cols, seed, 0.0f, 0);
    l->mm = filled_act(cols, seed, 0.1f, 0);
    l->mv = filled_act(cols, seed, 0.0f, 0);
    l->dgamma = filled_act(cols, seed, 0.0f, 0);
    l->dbeta = filled_act(cols, seed, 0.0f, 0);
    for (int64_t j = 0; j < cols; j++) {
        l->gamma[j] += 1.0f;
        l->mv[j] = 1.0f;
    }
}

static int bn_train_fwd(void *p) {
    bn_layer *l = p;
    return pynn_batchnorm_forward_train(l->y, l->mean, l->inv_std, l->mm, l->mv, l->x, l->gamma,
                                        l->beta, l->rows, l->cols, 0.99f, 1e-3f);
}

static int bn_infer_fwd(void *p) {
    bn_layer *l = p;
    return pynn_batchnorm_forward_infer(l->y, l->x, l->gamma, l->beta, l->mm, l->mv, l->rows,
                                        l->cols, 1e-3f);
}

static int bn_bwd(void *p) {
    bn_layer *l = p;
    return pynn_batchnorm_backward(l->dx, l->dgamma, l->dbeta, l->x, l->gamma, l->mean,
                                   l->inv_std, l->dy, l->rows, l->cols);
}

typedef struct {
    const char *label, *pass;
    int (*run)(void *);
    void *layer;
    int64_t bytes;
} bench_case;

/* ---- cold caches: a read of EVICT_BYTES (clean lines: nothing to write back) ---- */
#define EVICT_BYTES ((int64_t)256 << 20)
static const float *evict_buf;
static volatile float evict_sink;

static void evict_caches(int threads) {
    float sum = 0.0f;
    int64_t i;
    const int64_t n = EVICT_BYTES / (int64_t)sizeof(float);
#pragma omp parallel for reduction(+ : sum) schedule(static) num_threads(threads)
    for (i = 0; i < n; i += 16) sum += evict_buf[i];   /* one float per 64-byte line */
    evict_sink = sum;
}

/* median seconds of the kernel and of a copy of the same bytes, alternating; cold: the
 * caches evicted before each call (the arrays come from memory, as in a training step
 * whose working set is many times the L3) */
static int time_case(const bench_case *bc, int threads, int runs, int cold, double *kernel_s,
                     double *copy_s) {
    double *tk = malloc((size_t)runs * sizeof(double)), *tc = malloc((size_t)runs * sizeof(double));
    char *src = bench_alloc((size_t)(bc->bytes / 2 + 64)), *dst = bench_alloc((size_t)(bc->bytes / 2 + 64));
    copy_pass cp = {dst, src, bc->bytes / 2, threads};
    int r, status = PYNN_OK;
    if (tk == NULL || tc == NULL || src == NULL || dst == NULL) status = PYNN_ENOMEM;
    if (status == PYNN_OK) {
        memset(src, 1, (size_t)cp.n);
        memset(dst, 0, (size_t)cp.n);
        for (r = 0; r < 3 && status == PYNN_OK; r++) {      /* warm-up */
            status = bc->run(bc->layer);
            run_copy(&cp);
        }
    }
    for (r = 0; r < runs && status == PYNN_OK; r++) {         /* runs: kernel, then copy */
        double t0;
        if (cold) evict_caches(threads);
        t0 = now_s();
        status = bc->run(bc->layer);
        tk[r] = now_s() - t0;
        if (cold) evict_caches(threads);
        t0 = now_s();
        run_copy(&cp);
        tc[r] = now_s() - t0;
    }
    if (status == PYNN_OK) {
        qsort(tk, (size_t)runs, sizeof(double), cmp_double);
        qsort(tc, (size_t)runs, sizeof(double), cmp_double);
        *kernel_s = tk[runs / 2];
        *copy_s = tc[runs / 2];
    }
    free(tk); free(tc); free(src); free(dst);
    return status;
}

int main(int argc, char **argv) {
    unsigned seed = 11;
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int runs = argc > 2 ? atoi(argv[2]) : 41;
    const char *only = argc > 3 ? argv[3] : NULL;
    pool_layer vgg1, vgg2, vgg1_avg, alex1, alex2, alex3, gap;
    bn_layer bn;
    bench_case cases[24];
    size_t i, ncases = 0;
    int met = 0, met_l3 = 0, counted = 0;
    if (threads < 1 || pynn_set_num_threads(threads) != PYNN_OK || runs < 1) {
        fprintf(stderr, "bench_bandwidth: expected a positive thread count and run count\n");
        return 2;
    }
    if (getenv("PYNN_BENCH_LEVEL") != NULL &&
        pynn_select_level(atoi(getenv("PYNN_BENCH_LEVEL"))) != PYNN_OK) {
        fprintf(stderr, "bench_bandwidth: level %s is not available\n", getenv("PYNN_BENCH_LEVEL"));
        return 2;
    }
    pool_init(&vgg1, POOL_MAX, 64, 32, 32, 2, 2, &seed);
    pool_init(&vgg2, POOL_MAX, 64, 16, 64, 2, 2, &seed);
    pool_init(&vgg1_avg, POOL_AVG, 64, 32, 32, 2, 2, &seed);
    pool_init(&alex1, POOL_MAX, 64, 30, 48, 3, 2, &seed);
    pool_init(&alex2, POOL_MAX, 64, 14, 96, 2, 2, &seed);
    pool_init(&alex3, POOL_MAX, 64, 7, 128, 2, 2, &seed);
    pool_init(&gap, POOL_GLOBAL_AVG, 64, 32, 32, 1, 1, &seed);
    bn_init(&bn, 64 * 32 * 32, 32, &seed);
#define POOL_CASES(label, l)                                                        \
    cases[ncases++] = (bench_case){label, "fwd", pool_fwd, &l, 4 * pool_fwd_floats(&l)}; \
    cases[ncases++] = (bench_case){label, "bwd", pool_bwd, &l, 4 * pool_bwd_floats(&l)}
    POOL_CASES("vgg.pool1 max 2x2/2 64x32x32x32", vgg1);
    POOL_CASES("vgg.pool2 max 2x2/2 64x16x16x64", vgg2);
    POOL_CASES("vgg.pool1 avg 2x2/2 64x32x32x32", vgg1_avg);
    POOL_CASES("alex.pool1 max 3x3/2 64x30x30x48", alex1);
    POOL_CASES("alex.pool2 max 2x2/2 64x14x14x96", alex2);
    POOL_CASES("alex.pool3 max 2x2/2 64x7x7x128", alex3);
    POOL_CASES("resnet.gap global avg 64x32x32x32", gap);
#undef POOL_CASES
    cases[ncases++] = (bench_case){"resnet.bn train 65536x32", "fwd", bn_train_fwd, &bn,
                                   4 * 3 * bn.rows * bn.cols};
    cases[ncases++] = (bench_case){"resnet.bn train 65536x32", "bwd", bn_bwd, &bn,
                                   4 * 5 * bn.rows * bn.cols};
    cases[ncases++] = (bench_case){"resnet.bn infer 65536x32", "fwd", bn_infer_fwd, &bn,
                                   4 * 2 * bn.rows * bn.cols};
    /* the backward reads the forward's statistics: one forward before any backward */
    if (bn_train_fwd(&bn) != PYNN_OK) {
        fprintf(stderr, "bench_bandwidth: batch norm forward failed\n");
        return 1;
    }
    {
        char *buf = malloc((size_t)EVICT_BYTES);
        if (buf == NULL) {
            fprintf(stderr, "bench_bandwidth: no memory for the cache eviction buffer\n");
            return 1;
        }
        memset(buf, 1, (size_t)EVICT_BYTES);      /* real pages, not the shared zero page */
        evict_buf = (const float *)buf;
    }
    printf("pooling and batch norm against a parallel copy of the same bytes: %d threads, "
           "level %d, median of %d runs (wall clock)\n", threads, pynn_level(), runs);
    printf("  memory: the caches evicted before every call (the step's case: its arrays are many\n"
           "          times the L3); L3: the same calls back to back, arrays and copy resident\n"
           "          where they fit (%d MB of eviction reads)\n", (int)(EVICT_BYTES >> 20));
    printf("%-34s %-4s %8s | %9s %7s %7s %6s | %9s %7s %7s %6s\n", "kernel", "pass", "MB",
           "memory us", "GB/s", "copy", "ratio", "L3 us", "GB/s", "copy", "ratio");
    for (i = 0; i < ncases; i++) {
        double tk = 0.0, tc = 0.0, wk = 0.0, wc = 0.0, gk, gc, hk, hc;
        if (only != NULL && strncmp(cases[i].label, only, strlen(only)) != 0) continue;
        if (time_case(&cases[i], threads, runs, 1, &tk, &tc) != PYNN_OK ||
            time_case(&cases[i], threads, runs, 0, &wk, &wc) != PYNN_OK) {
            fprintf(stderr, "bench_bandwidth: %s %s failed\n", cases[i].label, cases[i].pass);
            return 1;
        }
        gk = (double)cases[i].bytes / tk * 1e-9;
        gc = (double)cases[i].bytes / tc * 1e-9;
        hk = (double)cases[i].bytes / wk * 1e-9;
        hc = (double)cases[i].bytes / wc * 1e-9;
        counted++;
        met += gk >= 0.70 * gc;
        met_l3 += hk >= 0.70 * hc;
        printf("%-34s %-4s %8.2f | %9.1f %7.1f %7.1f %6.2f | %9.1f %7.1f %7.1f %6.2f  %s\n",
               cases[i].label, cases[i].pass, (double)cases[i].bytes * 1e-6, tk * 1e6, gk, gc,
               gk / gc, wk * 1e6, hk, hc, hk / hc, gk >= 0.70 * gc ? "met" : "NOT met");
    }
    printf("%d of %d at >= 70%% of the copy's bandwidth from memory (%d of %d with the arrays "
           "in L3 where they fit)\n", met, counted, met_l3, counted);
    free((void *)evict_buf);
    return 0;
}
