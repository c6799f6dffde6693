/* bench_conv_gemm_dev.c -- the convolution GEMMs of two CNNs' conv layers, the implicit
 * GEMM (conv_gemm.c) against im2col + GEMM in the same process, interleaved, with the
 * GEMM's 1024^3 figure as the peak.  A development tool for conv_gemm.c; wall-clock
 * medians (the machine may be shared: compare ratios).
 *
 *   bench_conv_gemm_dev [threads [reps]]      (BENCH_CLOCK=wall: wall-clock time;
 *                                             BENCH_LAYER=prefix: those layers only)
 *
 * Per layer and pass: old and new milliseconds, GFLOP/s, % of the 1024^3 GEMM's GFLOP/s
 * (timed in the same repetitions, interleaved: the figure beside each line), and
 * whether new and old agree bitwise. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"
#include "conv_gemm_internal.h"

/* BENCH_CLOCK=wall: wall-clock time; else the process's CPU time (all its threads), which
 * other processes on a shared machine do not inflate; the peak is timed the same way. */
static clockid_t bench_clock = CLOCK_PROCESS_CPUTIME_ID;

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    const char *name;
    int64_t n, h, w, c, kh, kw, s, same, f;
} layer;

typedef struct {
    layer L;
    int64_t oh, ow, pt, pl, rows, k;
    float *x, *wgt, *bias, *cols, *z, *y, *z2, *y2, *dz, *dw, *dw2, *dwt, *part;
} conv;

static void conv_init(conv *cv, layer L, unsigned *seed) {
    memset(cv, 0, sizeof *cv);
    cv->L = L;
    if (L.same) {
        const int64_t oh = (L.h + L.s - 1) / L.s, ow = (L.w + L.s - 1) / L.s;
        const int64_t th = (oh - 1) * L.s + L.kh - L.h, tw = (ow - 1) * L.s + L.kw - L.w;
        cv->oh = oh; cv->ow = ow;
        cv->pt = th > 0 ? th / 2 : 0; cv->pl = tw > 0 ? tw / 2 : 0;
    } else {
        cv->oh = (L.h - L.kh) / L.s + 1; cv->ow = (L.w - L.kw) / L.s + 1;
    }
    cv->rows = L.n * cv->oh * cv->ow;
    cv->k = L.kh * L.kw * L.c;
    cv->x = filled(L.n * L.h * L.w * L.c, seed, 1.0f);
    cv->wgt = filled(cv->k * L.f, seed, 0.2f);
    cv->bias = filled(L.f, seed, 0.1f);
    cv->cols = filled(cv->rows * cv->k, seed, 0.0f);
    cv->z = filled(cv->rows * L.f, seed, 0.0f);
    cv->y = filled(cv->rows * L.f, seed, 0.0f);
    cv->z2 = filled(cv->rows * L.f, seed, 0.0f);
    cv->y2 = filled(cv->rows * L.f, seed, 0.0f);
    cv->dz = filled(cv->rows * L.f, seed, 1.0f);
    cv->dw = filled(cv->k * L.f, seed, 0.0f);
    cv->dw2 = filled(cv->k * L.f, seed, 0.0f);
    cv->dwt = filled(cv->k * L.f, seed, 0.0f);
    cv->part = filled(cv->k * L.f * (1 + pynn_sgemm_ksplit_chunks(L.f, cv->k, cv->rows)), seed, 0.0f);
}

static void fwd_old(conv *cv) {
    const layer *L = &cv->L;
    pynn_im2col(cv->cols, cv->x, L->n, L->h, L->w, L->c, L->kh, L->kw, L->s, L->s, cv->pt,
                cv->pl, cv->oh, cv->ow);
    pynn_sgemm_bias_act(cv->z, cv->y, cv->cols, cv->wgt, cv->bias, 0, 0, cv->rows, L->f, cv->k,
                        PYNN_ACT_RELU, 0.0f);
}
static void fwd_old_gemm(conv *cv) {
    const layer *L = &cv->L;
    pynn_sgemm_bias_act(cv->z, cv->y, cv->cols, cv->wgt, cv->bias, 0, 0, cv->rows, L->f, cv->k,
                        PYNN_ACT_RELU, 0.0f);
}
static void fwd_new(conv *cv) {
    const layer *L = &cv->L;
    pynn_conv_gemm_forward(cv->z2, cv->y2, cv->x, cv->wgt, cv->bias, L->n, L->h, L->w, L->c,
                           L->kh, L->kw, L->s, L->s, cv->pt, cv->pl, cv->oh, cv->ow, L->f,
                           PYNN_ACT_RELU, 0.0f);
}
/* the old filter gradient: K-split GEMM on cols (filled by im2col), then the transpose */
static void fg_old(conv *cv) {
    const int64_t k = cv->k, f = cv->L.f;
    int64_t p, q;
    pynn_sgemm_ksplit(cv->dwt, cv->part, cv->dz, cv->cols, 1, 0, f, k, cv->rows, f, k, k);
    for (p = 0; p < k; p++)
        for (q = 0; q < f; q++) cv->dw[p * f + q] = cv->dwt[q * k + p];
}
static void fg_new(conv *cv) {
    const layer *L = &cv->L;
    pynn_conv_gemm_filter_grad(cv->dw2, cv->part, cv->dz, cv->x, L->n, L->h, L->w, L->c, L->kh,
                               L->kw, L->s, L->s, cv->pt, cv->pl, cv->oh, cv->ow, L->f);
}

typedef void (*fn)(conv *);
static float *pa_, *pb_, *pc_;   /* the 1024^3 GEMM's operands, timed beside every layer */

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    const int reps = argc > 2 ? atoi(argv[2]) : 7;
    const layer layers[] = {
        {"vgg.conv1 32x32x3->32", 64, 32, 32, 3, 3, 3, 1, 1, 32},
        {"vgg.conv2 32x32x32->32", 64, 32, 32, 32, 3, 3, 1, 1, 32},
        {"vgg.conv3 16x16x32->64", 64, 16, 16, 32, 3, 3, 1, 1, 64},
        {"vgg.conv4 16x16x64->64", 64, 16, 16, 64, 3, 3, 1, 1, 64},
        {"alex.conv1 64x64x3->48 5x5/2", 64, 64, 64, 3, 5, 5, 2, 0, 48},
        {"alex.conv2 14x14x48->96", 64, 14, 14, 48, 3, 3, 1, 1, 96},
        {"alex.conv3 7x7x96->128", 64, 7, 7, 96, 3, 3, 1, 1, 128},
        {"alex.conv4 7x7x128->128", 64, 7, 7, 128, 3, 3, 1, 1, 128},
    };
    const int nl = (int)(sizeof layers / sizeof layers[0]);
    unsigned seed = 12345u;
    double peak, t[16];
    int l, r;
    pynn_set_num_threads(threads);
    if (getenv("BENCH_CLOCK") != NULL && strcmp(getenv("BENCH_CLOCK"), "wall") == 0)
        bench_clock = CLOCK_MONOTONIC;
    {   /* the GEMM's 1024^3 figure */
        const int64_t s = 1024;
        float *a = filled(s * s, &seed, 1.0f), *b = filled(s * s, &seed, 1.0f);
        float *c = filled(s * s, &seed, 0.0f);
        for (r = 0; r < 9; r++) {
            const double t0 = now_s();
            pynn_sgemm(c, a, b, 0, 0, s, s, s, 1.0f, 0.0f, s, s, s);
            t[r] = now_s() - t0;
        }
        peak = 2.0 * s * s * s / median(t, 9) * 1e-9;
        pa_ = a; pb_ = b; pc_ = c;
    }
    printf("threads %d, %s clock, GEMM 1024^3: %.1f GFLOP/s (the peak below)\n", threads,
           bench_clock == CLOCK_MONOTONIC ? "wall" : "process CPU", peak);
    printf("%-30s %-5s %8s %8s %7s %7s %6s %6s %6s %s\n", "layer", "pass", "old ms", "new ms",
           "old GF", "new GF", "old %", "new %", "ratio", "bitwise");
    for (l = 0; l < nl; l++) {
        conv cv;
        const fn olds[2] = {fwd_old, fg_old}, news[2] = {fwd_new, fg_new};
        const char *pass[2] = {"fwd", "dW"};
        const char *only = getenv("BENCH_LAYER");   /* a prefix of the layers' names */
        int ps;
        if (only != NULL && strncmp(layers[l].name, only, strlen(only)) != 0) continue;
        conv_init(&cv, layers[l], &seed);
        fwd_old(&cv);   /* cols filled for the old filter gradient */
        for (ps = 0; ps < 2; ps++) {
            double to[32], tn[32], tg[32], tp[32], lpeak;
            const double flops = 2.0 * cv.rows * cv.k * cv.L.f;
            double mo, mn, mg = 0;
            int same;
            olds[ps](&cv); news[ps](&cv);
            for (r = 0; r < reps; r++) {
                double t0 = now_s();
                olds[ps](&cv);
                to[r] = now_s() - t0;
                t0 = now_s();
                news[ps](&cv);
                tn[r] = now_s() - t0;
                if (ps == 0) {
                    t0 = now_s();
                    fwd_old_gemm(&cv);
                    tg[r] = now_s() - t0;
                }
                t0 = now_s();
                pynn_sgemm(pc_, pa_, pb_, 0, 0, 1024, 1024, 1024, 1.0f, 0.0f, 1024, 1024, 1024);
                tp[r] = now_s() - t0;
            }
            lpeak = 2.0 * 1024 * 1024 * 1024 / median(tp, reps) * 1e-9;
            mo = median(to, reps); mn = median(tn, reps);
            if (ps == 0) mg = median(tg, reps);
            if (ps == 0)
                same = memcmp(cv.z, cv.z2, (size_t)(cv.rows * cv.L.f) * 4) == 0 &&
                       memcmp(cv.y, cv.y2, (size_t)(cv.rows * cv.L.f) * 4) == 0;
            else
                same = memcmp(cv.dw, cv.dw2, (size_t)(cv.k * cv.L.f) * 4) == 0;
            printf("%-30s %-5s %8.3f %8.3f %7.1f %7.1f %5.0f%% %5.0f%% %6.2f %s", layers[l].name,
                   pass[ps], mo * 1e3, mn * 1e3, flops / mo * 1e-9, flops / mn * 1e-9,
                   100 * flops / mo * 1e-9 / lpeak, 100 * flops / mn * 1e-9 / lpeak, mo / mn,
                   same ? "yes" : "no");
            if (ps == 0) printf("  (old GEMM alone %.3f ms, %.0f%%)", mg * 1e3,
                                100 * flops / mg * 1e-9 / lpeak);
            printf("  [peak beside: %.0f]", lpeak);
            printf("\n");
        }
        free(cv.x); free(cv.wgt); free(cv.bias); free(cv.cols); free(cv.z); free(cv.y);
        free(cv.z2); free(cv.y2); free(cv.dz); free(cv.dw); free(cv.dw2); free(cv.dwt);
        free(cv.part);
    }
    return 0;
}
