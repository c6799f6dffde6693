/* bench_gemm.c -- time pynn_sgemm without Python.
 *
 * For every micro-kernel the CPU supports, prints GFLOP/s (2 M N K / time, the
 * median of several runs after one warm-up) for square sizes, the four transpose
 * cases at 1024, and the Dense-layer products of a 784-512-256-10 MLP at batch
 * 128.  Threads: OMP_NUM_THREADS, or the first argument.
 *
 *   bench_gemm [threads] [kernel: generic|avx2|avx512|all] [shape label substring]
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"

typedef struct {
    const char *label;
    int trans_a, trans_b;
    int64_t m, n, k;
} bench_shape;

static const bench_shape shapes[] = {
    {"square 256", 0, 0, 256, 256, 256},
    {"square 512", 0, 0, 512, 512, 512},
    {"square 1024", 0, 0, 1024, 1024, 1024},
    {"square 1024 A^T", 1, 0, 1024, 1024, 1024},
    {"square 1024 B^T", 0, 1, 1024, 1024, 1024},
    {"square 1024 A^T B^T", 1, 1, 1024, 1024, 1024},
    {"square 2048", 0, 0, 2048, 2048, 2048},
    {"mlp fwd X W (128x784x512)", 0, 0, 128, 512, 784},
    {"mlp dW X^T dZ (784x128x512)", 1, 0, 784, 512, 128},
    {"mlp dX dZ W^T (128x512x784)", 0, 1, 128, 784, 512},
    {"mlp fwd2 (128x512x256)", 0, 0, 128, 256, 512},
    {"mlp fwd3 (128x256x10)", 0, 0, 128, 10, 256},
    /* Dense forward at batch 1, 4, 16: the small-M path (no packing) */
    {"small M 1x784x512", 0, 0, 1, 512, 784},
    {"small M 1x512x256", 0, 0, 1, 256, 512},
    {"small M 1x256x10", 0, 0, 1, 10, 256},
    {"small M 4x784x512", 0, 0, 4, 512, 784},
    {"small M 4x512x256", 0, 0, 4, 256, 512},
    {"small M 4x256x10", 0, 0, 4, 10, 256},
    {"small M 16x784x512", 0, 0, 16, 512, 784},
    {"small M 16x512x256", 0, 0, 16, 256, 512},
    {"small M 16x256x10", 0, 0, 16, 10, 256},
    {"small M 1x784x512 B^T", 0, 1, 1, 512, 784},
    {"small M 4x784x512 B^T", 0, 1, 4, 512, 784},
    {"small M 8x784x512 B^T", 0, 1, 8, 512, 784},
    {"small M 16x784x512 B^T", 0, 1, 16, 512, 784},
    {"small M 4x512x256 B^T", 0, 1, 4, 256, 512},
    {"small M 16x784x512 A^T", 1, 0, 16, 512, 784},
    {"small M 24x784x512", 0, 0, 24, 512, 784},
    {"small M 32x784x512", 0, 0, 32, 512, 784},
};

static void fill(float *x, int64_t n, unsigned *seed) {
    int64_t i;
    for (i = 0; i < n; i++) {                     /* all elements, uniform in [-1, 1) */
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = (float)((*seed >> 8) * (1.0 / 8388608.0)) - 1.0f;
    }
}

/* Median GFLOP/s of pynn_sgemm on one shape; negative on error. */
static double bench_one(const bench_shape *s) {
    enum { MAX_RUNS = 41 };
    const int64_t m = s->m, n = s->n, k = s->k;
    const double flops = 2.0 * (double)m * (double)n * (double)k;
    float *a = malloc((size_t)(m * k) * sizeof(float));
    float *b = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * n) * sizeof(float));
    double times[MAX_RUNS];
    unsigned seed = 12345u;
    int runs, r, reps = 1, status = PYNN_ENOMEM;
    if (a && b && c) {
        fill(a, m * k, &seed);
        fill(b, k * n, &seed);
        /* About 0.3 s per shape, between 5 and MAX_RUNS runs (small products: MAX_RUNS
         * runs of a batch of calls, timed together: a single call is a few microseconds). */
        runs = (int)(0.3 * 200e9 / flops);
        runs = runs < 5 ? 5 : (runs > MAX_RUNS ? MAX_RUNS : runs);
        if (flops < 1e8) reps = (int)(1e8 / flops);
        status = pynn_sgemm(c, a, b, s->trans_a, s->trans_b, m, n, k, 1.0f, 0.0f,
                            s->trans_a ? m : k, s->trans_b ? k : n, n);
        for (r = 0; r < runs && status == PYNN_OK; r++) {   /* timed repetitions */
            double t0 = now_s();
            int rep;
            for (rep = 0; rep < reps && status == PYNN_OK; rep++)   /* calls of one run */
                status = pynn_sgemm(c, a, b, s->trans_a, s->trans_b, m, n, k, 1.0f, 0.0f,
                                    s->trans_a ? m : k, s->trans_b ? k : n, n);
            times[r] = (now_s() - t0) / reps;
        }
    }
    free(a);
    free(b);
    free(c);
    if (status != PYNN_OK) return -1.0;
    qsort(times, (size_t)runs, sizeof(double), cmp_double);
    return flops / times[runs / 2] * 1e-9;
}

int main(int argc, char **argv) {
    static const char *names[] = {"", "generic", "avx2", "avx512"};
    int kernels[3], n_kernels = 0, which, i, s;
    if (argc > 1 && pynn_set_num_threads(atoi(argv[1])) != PYNN_OK) {
        fprintf(stderr, "usage: %s [threads >= 1] [generic|avx2|avx512|all] [shape]\n", argv[0]);
        return 2;
    }
    for (which = PYNN_KERNEL_GENERIC; which <= PYNN_KERNEL_AVX512; which++) {  /* kernels */
        if (argc > 2 && strcmp(argv[2], "all") != 0 && strcmp(argv[2], names[which]) != 0)
            continue;
        if (pynn_gemm_kernel_supported(which)) kernels[n_kernels++] = which;
    }
    printf("pynn_sgemm, %d thread(s), GFLOP/s (median)\n", pynn_get_num_threads());
    printf("%-30s", "shape (M x K x N)");
    for (i = 0; i < n_kernels; i++) printf(" %9s", names[kernels[i]]);  /* kernels */
    printf("\n");
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {   /* shapes */
        if (argc > 3 && strstr(shapes[s].label, argv[3]) == NULL) continue;
        printf("%-30s", shapes[s].label);
        for (i = 0; i < n_kernels; i++) {                              /* kernels */
            pynn_gemm_select_kernel(kernels[i]);
            printf(" %9.1f", bench_one(&shapes[s]));
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}
