/* bench_conv.c -- GFLOP/s of every convolution of the VGG-style and AlexNet-style nets of
 * bench/compare.py's convnets section at batch 64, pass by pass, through the public C API,
 * beside pynn's own GEMM on 1024^3 measured in the same process:
 *
 *   forward   pynn_conv2d_forward (im2col + the GEMM with bias and ReLU in its epilogue)
 *   dW        the filter gradient: pynn_conv2d_backward with dx = NULL (dW and db, and the
 *             ReLU's derivative applied to dy)
 *   dX        the input gradient: pynn_conv2d_backward with dw = db = NULL (the ReLU's
 *             derivative, dcols = dz W^T, col2im)
 *
 * The API times the backward as one call; passing NULL for the gradients one does not want
 * splits it, each part carrying the elementwise ReLU derivative (the backward overwrites
 * dy with dz = relu'(z) dy; applied again it gives the same dz, so calls repeat without
 * restoring dy).  Each pass counts 2 M K N flops (M = batch x output positions, K = kh kw
 * c, N = filters); "% peak" is its rate over the 1024^3 GEMM's, "met" at >= 85%.  The
 * peak is timed before the layers and again after them: on a shared machine a drift
 * between the two shows how far the percentages can be trusted.  Each
 * figure is the best over several samples of the wall time per call (the kernels run on
 * several threads: CPU time would add them up).
 *
 * It also runs the edge shapes -- 1x1 images, kernels larger than the input with "same"
 * padding, stride 3, 1 and 65+ channels, batch 1 -- checking that every call returns
 * PYNN_OK with finite outputs and that the forward matches a naive loop; any failure makes
 * it exit 1.  tests/c/CMakeLists.txt builds it with the sanitizers and runs `quick` as a
 * ctest.
 *
 *   bench_conv [threads] [quick]        (threads default 2; PYNN_BENCH_LEVEL=1|2|3 forces
 *                                         a dispatch level)
 *   quick: the edge shapes and one layer (VGG conv3), a few samples: seconds
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pynn.h"
#include "bench_util.h"

#define PEAK_TARGET 0.85

/* One convolution: its geometry, operands, gradients and workspaces. */
typedef struct {
    const char *label;
    int64_t n, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f;
    int first; /* reads the network's input: no input gradient in a training step */
    float *x, *wgt, *bias, *cols, *cols_dx, *z, *y, *dy, *dw, *db, *dx, *work;
    int64_t work_size;
    /* the layers timed write relu(z) over z, as a plan's Conv2D with a ReLU does
     * (pynn/activations.py SHARES_OUTPUT); the edge shapes keep z and y apart */
    int relu_over_z;
} conv_case;

/* Keras's output size and padding: "same" pads max((ceil(in/s) - 1) s + k - in, 0) in
 * total, the smaller half on top / left; "valid" pads nothing. */
static void geometry(int64_t in, int64_t k, int64_t s, int same, int64_t *out, int64_t *pad) {
    if (same) {
        const int64_t o = (in + s - 1) / s, total = (o - 1) * s + k - in;
        *out = o;
        *pad = total > 0 ? total / 2 : 0;
    } else {
        *out = in >= k ? (in - k) / s + 1 : 0;
        *pad = 0;
    }
}

static conv_case make_case(const char *label, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t kh, int64_t kw, int64_t s, int same, int64_t f, int first) {
    conv_case l;
    memset(&l, 0, sizeof l);
    l.label = label;
    l.n = n; l.h = h; l.w = w; l.c = c; l.kh = kh; l.kw = kw; l.sh = l.sw = s; l.f = f;
    l.first = first;
    geometry(h, kh, s, same, &l.oh, &l.pad_top);
    geometry(w, kw, s, same, &l.ow, &l.pad_left);
    return l;
}

static int alloc_case(conv_case *l, unsigned *seed) {
    const int64_t rows = l->n * l->oh * l->ow, k = l->kh * l->kw * l->c;
    l->x = filled(l->n * l->h * l->w * l->c, seed, 1.0f);
    l->wgt = filled(k * l->f, seed, 0.2f);
    l->bias = filled(l->f, seed, 0.1f);
    l->cols = filled(rows * k, seed, 0.0f);
    l->cols_dx = filled(rows * k, seed, 0.0f);
    l->z = filled(rows * l->f, seed, 0.0f);
    l->y = filled(rows * l->f, seed, 0.0f);
    l->dy = filled(rows * l->f, seed, 0.1f);
    l->dw = filled(k * l->f, seed, 0.0f);
    l->db = filled(l->f, seed, 0.0f);
    l->dx = filled(l->n * l->h * l->w * l->c, seed, 0.0f);
    l->work_size = pynn_conv2d_backward_work(l->n, l->h, l->w, l->c, l->kh, l->kw, l->sh, l->sw,
                                             l->oh, l->ow, l->f);
    l->work = l->work_size > 0 ? filled(l->work_size, seed, 0.0f) : NULL;
    return l->x && l->wgt && l->bias && l->cols && l->cols_dx && l->z && l->y && l->dy &&
           l->dw && l->db && l->dx && l->work;
}

static void free_case(conv_case *l) {
    float *p[] = {l->x, l->wgt, l->bias, l->cols, l->cols_dx, l->z, l->y, l->dy, l->dw,
                  l->db, l->dx, l->work};
    size_t i;
    for (i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

static int conv_forward(conv_case *l) {
    return pynn_conv2d_forward(l->z, l->relu_over_z ? l->z : l->y, l->cols, l->x, l->wgt, l->bias, l->n, l->h, l->w,
                               l->c, l->kh, l->kw, l->sh, l->sw, l->pad_top, l->pad_left, l->oh,
                               l->ow, l->f, PYNN_ACT_RELU, 0.0f);
}

/* want: 1 the filter gradient (dw, db), 2 the input gradient (dx, into its own copy of
 * cols, which it clobbers, so the forward's cols stay for dW), 3 both (into cols). */
static int conv_backward(conv_case *l, int want) {
    return pynn_conv2d_backward(want & 1 ? l->dw : NULL, want & 1 ? l->db : NULL,
                                want & 2 ? l->dx : NULL, l->dy, want == 2 ? l->cols_dx : l->cols,
                                l->work, l->work_size, l->x, l->wgt, l->z,
                                l->relu_over_z ? l->z : l->y, l->n, l->h,
                                l->w, l->c, l->kh, l->kw, l->sh, l->sw, l->pad_top, l->pad_left,
                                l->oh, l->ow, l->f, PYNN_ACT_RELU, 0.0f);
}

typedef struct {
    conv_case *l;
    int pass; /* 0 forward, 1 dW, 2 dX */
} timed_call;

static int run_call(const timed_call *t) {
    return t->pass == 0 ? conv_forward(t->l) : conv_backward(t->l, t->pass);
}

/* Best-of-`samples` seconds per call; each sample repeats the call for >= min_s; -1 when a
 * call fails. */
static double time_call(int (*fn)(const void *), const void *arg, int samples, double min_s) {
    double best = 1e30;
    int64_t calls = 1, i;
    int s;
    for (;;) {                                             /* calls per sample */
        const double t0 = now_s();
        for (i = 0; i < calls; i++)
            if (fn(arg) != PYNN_OK) return -1.0;
        if (now_s() - t0 >= min_s) break;
        calls *= 2;
    }
    for (s = 0; s < samples; s++) {                        /* samples */
        const double t0 = now_s();
        double t;
        for (i = 0; i < calls; i++)
            if (fn(arg) != PYNN_OK) return -1.0;
        t = (now_s() - t0) / (double)calls;
        if (t < best) best = t;
    }
    return best;
}

static int call_conv(const void *p) { return run_call((const timed_call *)p); }

typedef struct {
    float *a, *b, *c;
    int64_t n;
} gemm_args;

static int call_gemm(const void *p) {
    const gemm_args *g = p;
    return pynn_sgemm(g->c, g->a, g->b, 0, 0, g->n, g->n, g->n, 1.0f, 0.0f, g->n, g->n, g->n);
}

/* ---- the edge shapes -------------------------------------------------------------------- */

static int all_finite(const float *v, int64_t count) {
    int64_t i;
    for (i = 0; i < count; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* z against a double-precision loop over the window, padding skipped; the tolerance
 * scales with the sum of the products' magnitudes (float32 sums in another order). */
static int forward_matches_naive(const conv_case *l, double *worst) {
    int64_t img, i, j, q, a, b, e;
    *worst = 0.0;
    for (img = 0; img < l->n; img++)
        for (i = 0; i < l->oh; i++)
            for (j = 0; j < l->ow; j++)
                for (q = 0; q < l->f; q++) {
                    double sum = l->bias[q], mag = fabs((double)l->bias[q]), err;
                    const int64_t at = ((img * l->oh + i) * l->ow + j) * l->f + q;
                    for (a = 0; a < l->kh; a++)
                        for (b = 0; b < l->kw; b++) {
                            const int64_t r = i * l->sh - l->pad_top + a;
                            const int64_t s = j * l->sw - l->pad_left + b;
                            if (r < 0 || r >= l->h || s < 0 || s >= l->w) continue;
                            for (e = 0; e < l->c; e++) {
                                const double t = (double)l->x[((img * l->h + r) * l->w + s) * l->c + e] *
                                                 (double)l->wgt[((a * l->kw + b) * l->c + e) * l->f + q];
                                sum += t;
                                mag += fabs(t);
                            }
                        }
                    err = fabs((double)l->z[at] - sum) / (mag + 1e-30);
                    if (err > *worst) *worst = err;
                    if (fabs((double)l->z[at] - sum) > 1e-5 * mag + 1e-30) return 0;
                    if (l->y[at] != (l->z[at] > 0.0f ? l->z[at] : 0.0f)) return 0;
                }
    return 1;
}

static int run_edges(unsigned *seed) {
    conv_case edges[] = {
        make_case("1x1 image, 3x3 same, c2 f3, n2", 2, 1, 1, 2, 3, 3, 1, 1, 3, 0),
        make_case("1x1 image, 1x1 valid, c67 f70, n3", 3, 1, 1, 67, 1, 1, 1, 0, 70, 0),
        make_case("3x3 image, 5x5 same (kernel > input)", 2, 3, 3, 4, 5, 5, 1, 1, 6, 0),
        make_case("2x5 image, 7x3 same, c20 f18", 2, 2, 5, 20, 7, 3, 1, 1, 18, 0),
        make_case("10x11 image, 3x3 stride 3 valid", 2, 10, 11, 5, 3, 3, 3, 0, 7, 0),
        make_case("10x11 image, 4x4 stride 3 same", 2, 10, 11, 5, 4, 4, 3, 1, 7, 0),
        make_case("9x9 image, 3x3 same, c1 f1", 2, 9, 9, 1, 3, 3, 1, 1, 1, 0),
        make_case("6x6 image, 3x3 same, c65 f66", 2, 6, 6, 65, 3, 3, 1, 1, 66, 0),
        make_case("8x8 image, 3x3 valid, c3 f16 (direct)", 2, 8, 8, 3, 3, 3, 1, 0, 16, 0),
        make_case("batch 1, 13x13 5x5 stride 2 valid c3 f48", 1, 13, 13, 3, 5, 5, 2, 0, 48, 0),
        make_case("batch 1, 5x5 3x3 same, c96 f130", 1, 5, 5, 96, 3, 3, 1, 1, 130, 0),
    };
    size_t i;
    int failures = 0;
    printf("edge shapes: PYNN_OK, finite outputs, forward vs a naive loop\n");
    for (i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        conv_case *l = &edges[i];
        const int64_t rows = l->n * l->oh * l->ow, k = l->kh * l->kw * l->c;
        const char *why = NULL;
        double worst = 0.0;
        int status = PYNN_OK;
        if (!alloc_case(l, seed)) {
            why = "out of memory";
        } else if ((status = conv_forward(l)) != PYNN_OK) {
            why = "forward status";
        } else if (!all_finite(l->z, rows * l->f) || !all_finite(l->y, rows * l->f)) {
            why = "forward not finite";
        } else if (!forward_matches_naive(l, &worst)) {
            why = "forward differs from the naive loop";
        } else if ((status = conv_backward(l, 1)) != PYNN_OK) {
            why = "backward (dW, db) status";
        } else if ((status = conv_backward(l, 2)) != PYNN_OK) {
            why = "backward (dx) status";
        } else if ((status = conv_forward(l)) != PYNN_OK || (status = conv_backward(l, 3)) != PYNN_OK) {
            why = "backward (dW, db, dx) status";
        } else if (!all_finite(l->dw, k * l->f) || !all_finite(l->db, l->f) ||
                   !all_finite(l->dx, l->n * l->h * l->w * l->c) || !all_finite(l->dy, rows * l->f)) {
            why = "backward not finite";
        }
        printf("  %-44s out %lldx%lld pad %lld,%lld  %s", l->label, (long long)l->oh,
               (long long)l->ow, (long long)l->pad_top, (long long)l->pad_left,
               why == NULL ? "ok" : "FAIL: ");
        if (why != NULL) {
            printf("%s (status %d)\n", why, status);
            failures++;
        } else {
            printf(" (forward max error %.1e of the products' magnitude)\n", worst);
        }
        free_case(l);
    }
    return failures;
}

/* ---- the layers ---------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    static const char *pass_names[] = {"forward", "dW (dx=NULL)", "dX (dw=db=NULL)"};
    conv_case layers[] = {
        /* VGG-style 32x32x3: conv32 conv32 pool conv64 conv64 pool, 3x3 "same" */
        make_case("VGG conv1 32x32x3 3x3 f32", 64, 32, 32, 3, 3, 3, 1, 1, 32, 1),
        make_case("VGG conv2 32x32x32 3x3 f32", 64, 32, 32, 32, 3, 3, 1, 1, 32, 0),
        make_case("VGG conv3 16x16x32 3x3 f64", 64, 16, 16, 32, 3, 3, 1, 1, 64, 0),
        make_case("VGG conv4 16x16x64 3x3 f64", 64, 16, 16, 64, 3, 3, 1, 1, 64, 0),
        /* AlexNet-style 64x64x3: conv48 5x5/2 valid, pool 3/2, conv96, pool, conv128 x2 */
        make_case("Alex conv1 64x64x3 5x5/2 f48", 64, 64, 64, 3, 5, 5, 2, 0, 48, 1),
        make_case("Alex conv2 14x14x48 3x3 f96", 64, 14, 14, 48, 3, 3, 1, 1, 96, 0),
        make_case("Alex conv3 7x7x96 3x3 f128", 64, 7, 7, 96, 3, 3, 1, 1, 128, 0),
        make_case("Alex conv4 7x7x128 3x3 f128", 64, 7, 7, 128, 3, 3, 1, 1, 128, 0),
    };
    const int nlayers = (int)(sizeof layers / sizeof layers[0]);
    int threads = 2, quick = 0, samples, failures, i, pass;
    double min_s, peak_t, peak;
    unsigned seed = 11;
    gemm_args g;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "quick") == 0) {
            quick = 1;
        } else if (atoi(argv[i]) >= 1) {
            threads = atoi(argv[i]);
        } else {
            fprintf(stderr, "usage: bench_conv [threads] [quick]; received %s\n", argv[i]);
            return 2;
        }
    }
    if (pynn_set_num_threads(threads) != PYNN_OK) {
        fprintf(stderr, "bench_conv: cannot use %d threads\n", threads);
        return 2;
    }
    if (getenv("PYNN_BENCH_LEVEL") != NULL &&
        pynn_select_level(atoi(getenv("PYNN_BENCH_LEVEL"))) != PYNN_OK) {
        fprintf(stderr, "bench_conv: level %s is not available\n", getenv("PYNN_BENCH_LEVEL"));
        return 2;
    }
    samples = quick ? 3 : 9;
    min_s = quick ? 0.0 : 0.1;
    printf("pynn convolutions, %d threads, level %d%s\n", threads, pynn_level(),
           quick ? ", quick" : "");
    failures = run_edges(&seed);

    g.n = 1024;
    g.a = filled(g.n * g.n, &seed, 1.0f);
    g.b = filled(g.n * g.n, &seed, 1.0f);
    g.c = filled(g.n * g.n, &seed, 0.0f);
    if (g.a == NULL || g.b == NULL || g.c == NULL) {
        fprintf(stderr, "bench_conv: out of memory\n");
        return 1;
    }
    peak_t = time_call(call_gemm, &g, samples, min_s);
    if (peak_t <= 0.0) {
        fprintf(stderr, "bench_conv: pynn_sgemm failed\n");
        return 1;
    }
    peak = 2.0 * 1024.0 * 1024.0 * 1024.0 / peak_t / 1e9;
    printf("\nGEMM peak: pynn_sgemm 1024^3, %.1f GFLOP/s (best of %d)\n", peak, samples);
    printf("\nbatch 64, ReLU written over z (as a plan does); pass GFLOP = 2 M K N; dW and dX "
           "each include the ReLU derivative (the API's backward split by NULL outputs); "
           "target >= %.0f%% of the GEMM peak\n",
           100.0 * PEAK_TARGET);
    printf("%-30s %-16s %7s %7s %8s %10s %8s %5s\n", "layer", "pass", "M", "K x N", "GFLOP",
           "GFLOP/s", "% peak", "met");
    for (i = 0; i < nlayers; i++) {
        conv_case *l = &layers[i];
        const int64_t m = l->n * l->oh * l->ow, k = l->kh * l->kw * l->c;
        const double flop = 2.0 * (double)m * (double)k * (double)l->f;
        if (quick && i != 2) continue;
        if (!alloc_case(l, &seed)) {
            fprintf(stderr, "bench_conv: out of memory for %s\n", l->label);
            return 1;
        }
        l->relu_over_z = 1;
        if (conv_forward(l) != PYNN_OK) {
            printf("%-30s forward FAILED\n", l->label);
            failures++;
            free_case(l);
            continue;
        }
        for (pass = 0; pass < 3; pass++) {
            timed_call call = {l, pass};
            double t, rate;
            char kn[32];
            if (pass == 2 && l->first) {
                printf("%-30s %-16s   (first layer: no input gradient in a step)\n", l->label,
                       pass_names[pass]);
                continue;
            }
            t = time_call(call_conv, &call, samples, min_s);
            if (t <= 0.0) {
                printf("%-30s %-16s FAILED\n", l->label, pass_names[pass]);
                failures++;
                continue;
            }
            rate = flop / t / 1e9;
            snprintf(kn, sizeof kn, "%lldx%lld", (long long)k, (long long)l->f);
            printf("%-30s %-16s %7lld %7s %8.3f %10.1f %7.0f%% %5s\n", l->label, pass_names[pass],
                   (long long)m, kn, flop / 1e9, rate, 100.0 * rate / peak,
                   rate >= PEAK_TARGET * peak ? "yes" : "no");
        }
        free_case(l);
    }
    peak_t = time_call(call_gemm, &g, samples, min_s);
    if (peak_t > 0.0) {
        const double again = 2.0 * 1024.0 * 1024.0 * 1024.0 / peak_t / 1e9;
        printf("\nGEMM peak again after the layers: %.1f GFLOP/s (%.2fx the first: the "
               "percentages' drift on this machine)\n", again, again / peak);
    }
    free(g.a);
    free(g.b);
    free(g.c);
    if (failures) {
        printf("\n%d FAILED\n", failures);
        return 1;
    }
    return 0;
}
