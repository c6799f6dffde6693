/* bench_conv_dx_dev.c -- a convolution's input gradient, the old way (pynn_sgemm of
 * dz W^T into cols, then pynn_col2im) against pynn_conv2d_input_grad (conv_dx.c), on
 * the conv layers of a VGG-style and an AlexNet-style network at batch 64, in the same
 * process, interleaved (old, new, old, new, ...), medians.  The GEMM's 1024^3 rate is
 * measured in the same process, one run after each old/new pair: the peak to compare with.
 * FLOPs: 2 N OH OW KH KW C F, the forward's count.  Also prints the largest difference
 * between the two results relative to the largest |dx| (float rounding only).
 *
 * Times: wall clock; on one thread the thread's CPU time (see now_s).
 *
 *   bench_conv_dx_dev [threads] [layer label substring] [runs]
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"

typedef struct {
    const char *label;
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f;
} layer;

/* n h w c kh kw sh sw pad_top pad_left oh ow f */
static const layer layers[] = {
    {"vgg conv1 32x32x3->32 (first)", 64, 32, 32, 3, 3, 3, 1, 1, 1, 1, 32, 32, 32},
    {"vgg conv2 32x32x32->32", 64, 32, 32, 32, 3, 3, 1, 1, 1, 1, 32, 32, 32},
    {"vgg conv3 16x16x32->64", 64, 16, 16, 32, 3, 3, 1, 1, 1, 1, 16, 16, 64},
    {"vgg conv4 16x16x64->64", 64, 16, 16, 64, 3, 3, 1, 1, 1, 1, 16, 16, 64},
    {"alex conv48 64x64x3 5x5/2 (first)", 64, 64, 64, 3, 5, 5, 2, 2, 0, 0, 30, 30, 48},
    {"alex conv96 14x14x48->96", 64, 14, 14, 48, 3, 3, 1, 1, 1, 1, 14, 14, 96},
    {"alex conv128a 7x7x96->128", 64, 7, 7, 96, 3, 3, 1, 1, 1, 1, 7, 7, 128},
    {"alex conv128b 7x7x128->128", 64, 7, 7, 128, 3, 3, 1, 1, 1, 1, 7, 7, 128},
    {"s2 3x3 same 32x32x64->64", 64, 32, 32, 64, 3, 3, 2, 2, 0, 0, 16, 16, 64},
    {"s2 5x5 same 32x32x32->64", 64, 32, 32, 32, 5, 5, 2, 2, 1, 1, 16, 16, 64},
    {"s3 3x3 valid 33x33x32->32", 64, 33, 33, 32, 3, 3, 3, 3, 0, 0, 11, 11, 32},
    {"direct lenet1 28x28x1 5x5->6", 64, 28, 28, 1, 5, 5, 1, 1, 2, 2, 28, 28, 6},
    {"direct 32x32x3 3x3->16", 64, 32, 32, 3, 3, 3, 1, 1, 1, 1, 32, 32, 16},
};

/* On one thread, the thread's CPU time: on a shared, loaded machine the time it was
 * scheduled out does not count (wall time otherwise). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static void fill(float *x, int64_t n, unsigned *seed) {
    int64_t i;
    for (i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = (float)((*seed >> 8) * (1.0 / 8388608.0)) - 1.0f;
    }
}

static float *alloc_floats(int64_t n) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (size_t)(n > 0 ? n : 1) * sizeof(float)) != 0) return NULL;
    return p;
}

/* the 1024^3 GEMM, the peak: operands made once */
enum { PEAK_N = 1024 };
static float *peak_a, *peak_b, *peak_c;

static double gemm_peak_once(void) {
    const double t0 = now_s();
    pynn_sgemm(peak_c, peak_a, peak_b, 0, 0, PEAK_N, PEAK_N, PEAK_N, 1.0f, 0.0f, PEAK_N, PEAK_N,
               PEAK_N);
    return now_s() - t0;
}

/* median GFLOP/s of the 1024^3 GEMM */
static double gemm_peak(void) {
    enum { RUNS = 9 };
    double t[RUNS];
    int r;
    for (r = 0; r < RUNS; r++) t[r] = gemm_peak_once();
    qsort(t, RUNS, sizeof(double), cmp_double);
    return 2.0 * PEAK_N * PEAK_N * PEAK_N / t[RUNS / 2] * 1e-9;
}

static int old_way(const layer *l, float *dx, float *cols, const float *dz, const float *wg) {
    const int64_t k = l->kh * l->kw * l->c;
    int s = pynn_sgemm(cols, dz, wg, 0, 1, l->n * l->oh * l->ow, k, l->f, 1.0f, 0.0f, l->f, l->f, k);
    if (s != PYNN_OK) return s;
    return pynn_col2im(dx, cols, l->n, l->h, l->w, l->c, l->kh, l->kw, l->sh, l->sw, l->pt, l->pl,
                       l->oh, l->ow);
}

static int new_way(const layer *l, float *dx, float *work, int64_t work_size, const float *dz,
                   const float *wg) {
    return pynn_conv2d_input_grad(dx, dz, wg, work, work_size, l->n, l->h, l->w, l->c, l->kh,
                                  l->kw, l->sh, l->sw, l->pt, l->pl, l->oh, l->ow, l->f);
}

int main(int argc, char **argv) {
    const char *only = argc > 2 ? argv[2] : NULL;
    const int runs = argc > 3 ? atoi(argv[3]) : 15;
    double peak0, peak1, peak;
    size_t s;
    if (argc > 1 && pynn_set_num_threads(atoi(argv[1])) != PYNN_OK) {
        fprintf(stderr, "usage: %s [threads] [label substring] [runs]\n", argv[0]);
        return 2;
    }
    if (pynn_get_num_threads() == 1) bench_clock = CLOCK_THREAD_CPUTIME_ID;
    {
        unsigned seed = 7u;
        peak_a = alloc_floats(PEAK_N * PEAK_N);
        peak_b = alloc_floats(PEAK_N * PEAK_N);
        peak_c = alloc_floats(PEAK_N * PEAK_N);
        fill(peak_a, PEAK_N * PEAK_N, &seed);
        fill(peak_b, PEAK_N * PEAK_N, &seed);
        gemm_peak_once();
    }
    peak0 = gemm_peak();
    printf("threads %d (%s time); GEMM 1024^3: %.1f GFLOP/s\n", pynn_get_num_threads(),
           bench_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU", peak0);
    printf("%-36s %9s %9s %7s %8s %8s %6s %6s %9s\n", "layer (dx of)", "old ms", "new ms", "old/new",
           "old GF/s", "new GF/s", "%peak", "peak", "rel diff");
    for (s = 0; s < sizeof layers / sizeof layers[0]; s++) {          /* layers */
        const layer *l = &layers[s];
        const int64_t k = l->kh * l->kw * l->c, rows = l->n * l->oh * l->ow;
        const int64_t nx = l->n * l->h * l->w * l->c, work_size =
            pynn_conv2d_input_grad_work(l->kh, l->kw, l->c, l->f);
        const double flops = 2.0 * (double)rows * (double)k * (double)l->f;
        float *dz = alloc_floats(rows * l->f), *wg = alloc_floats(k * l->f);
        float *cols = alloc_floats(rows * k), *dx_old = alloc_floats(nx), *dx_new = alloc_floats(nx);
        float *work = alloc_floats(work_size);
        double *t_old = malloc((size_t)runs * sizeof(double));
        double *t_new = malloc((size_t)runs * sizeof(double));
        double *t_peak = malloc((size_t)runs * sizeof(double));
        double diff = 0.0, big = 0.0, m_old, m_new;
        unsigned seed = 99u;
        int64_t e;
        int r, st = 0;
        if (only != NULL && strstr(l->label, only) == NULL) continue;
        fill(dz, rows * l->f, &seed);
        fill(wg, k * l->f, &seed);
        st |= old_way(l, dx_old, cols, dz, wg);
        st |= new_way(l, dx_new, work, work_size, dz, wg);
        for (r = 0; r < runs; r++) {                 /* interleaved timed runs */
            double t0 = now_s();
            st |= old_way(l, dx_old, cols, dz, wg);
            t_old[r] = now_s() - t0;
            t0 = now_s();
            st |= new_way(l, dx_new, work, work_size, dz, wg);
            t_new[r] = now_s() - t0;
            t_peak[r] = gemm_peak_once();
        }
        for (e = 0; e < nx; e++) {
            const double d = fabs((double)dx_old[e] - dx_new[e]);
            if (d > diff || d != d) diff = d;
            if (fabs((double)dx_old[e]) > big) big = fabs((double)dx_old[e]);
        }
        qsort(t_old, (size_t)runs, sizeof(double), cmp_double);
        qsort(t_new, (size_t)runs, sizeof(double), cmp_double);
        qsort(t_peak, (size_t)runs, sizeof(double), cmp_double);
        peak = 2.0 * PEAK_N * PEAK_N * PEAK_N / t_peak[runs / 2] * 1e-9;
        m_old = t_old[runs / 2];
        m_new = t_new[runs / 2];
        printf("%-36s %9.3f %9.3f %7.2f %8.1f %8.1f %5.0f%% %6.0f %9.2e%s\n", l->label, m_old * 1e3,
               m_new * 1e3, m_old / m_new, flops / m_old * 1e-9, flops / m_new * 1e-9,
               100.0 * flops / m_new * 1e-9 / peak, peak, big > 0 ? diff / big : diff,
               st != 0 ? "  ERROR" : "");
        /* the fastest runs: on a shared machine, the closest to an unloaded one */
        peak = 2.0 * PEAK_N * PEAK_N * PEAK_N / t_peak[0] * 1e-9;
        printf("%-36s %9.3f %9.3f %7.2f %8.1f %8.1f %5.0f%% %6.0f\n", "  best of runs", t_old[0] * 1e3,
               t_new[0] * 1e3, t_old[0] / t_new[0], flops / t_old[0] * 1e-9,
               flops / t_new[0] * 1e-9, 100.0 * flops / t_new[0] * 1e-9 / peak, peak);
        fflush(stdout);
        free(dz); free(wg); free(cols); free(dx_old); free(dx_new); free(work);
        free(t_old); free(t_new); free(t_peak);
    }
    peak1 = gemm_peak();
    printf("GEMM 1024^3 again: %.1f GFLOP/s (%%peak: against the 1024^3 GEMM runs\n"
           "interleaved with the layer's, their median in the peak column)\n", peak1);
    return 0;
}
