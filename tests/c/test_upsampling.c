/* test_upsampling.c -- the kernels of Conv2DTranspose, the upsampling backward and the
 * pad/crop window copy (csrc/upsampling.c; issue 16, part C) under ASan/UBSan: each
 * against a plain scatter written here in double on edge geometries (output padding past
 * every window, windows cropped on both sides, 1x1 kernels, one channel), 1 and 2 threads
 * bitwise equal on a larger shape, and refusals (PYNN_EINVAL).  Parity with the NumPy
 * reference and torch is tests/test_layers_upsampling.py's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static float *randoms(int64_t n, unsigned seed) {
    float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    srand(seed);
    for (i = 0; i < n; i++) a[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    return a;
}

static double max_rel_err(const float *got, const double *want, int64_t n) {
    double scale = 1e-30, err = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - want[i]));
    return err / scale;
}

typedef struct {
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f;
} geometry;

/* z, and for dy: dx, dw, db, by scattering over the input positions and the taps */
static void naive(const geometry *g, const float *x, const float *wgt, const float *bias,
                  const float *dy, double *z, double *dx, double *dw, double *db) {
    int64_t img, i, j, a, b, e, ch;
    const int64_t zn = g->n * g->oh * g->ow * g->f;
    for (i = 0; i < zn; i++) z[i] = bias[i % g->f];
    memset(dx, 0, (size_t)(g->n * g->h * g->w * g->c) * sizeof(double));
    memset(dw, 0, (size_t)(g->kh * g->kw * g->f * g->c) * sizeof(double));
    memset(db, 0, (size_t)g->f * sizeof(double));
    for (i = 0; i < zn; i++) db[i % g->f] += dy[i];
    for (img = 0; img < g->n; img++)
        for (i = 0; i < g->h; i++)
            for (j = 0; j < g->w; j++)
                for (a = 0; a < g->kh; a++)
                    for (b = 0; b < g->kw; b++) {
                        const int64_t r = i * g->sh - g->pt + a, q = j * g->sw - g->pl + b;
                        if (r < 0 || r >= g->oh || q < 0 || q >= g->ow) continue;
                        for (e = 0; e < g->f; e++)
                            for (ch = 0; ch < g->c; ch++) {
                                const int64_t xi = ((img * g->h + i) * g->w + j) * g->c + ch;
                                const int64_t wi = ((a * g->kw + b) * g->f + e) * g->c + ch;
                                const int64_t zi = ((img * g->oh + r) * g->ow + q) * g->f + e;
                                z[zi] += (double)x[xi] * wgt[wi];
                                dx[xi] += (double)dy[zi] * wgt[wi];
                                dw[wi] += (double)dy[zi] * x[xi];
                            }
                    }
}

static void run_convt(const geometry *g, int threads, float *out[5]) {
    const int64_t xn = g->n * g->h * g->w * g->c, zn = g->n * g->oh * g->ow * g->f;
    const int64_t wn = g->kh * g->kw * g->f * g->c;
    const int64_t work_n = pynn_conv2d_transpose_work(g->n, g->h, g->w, g->c, g->kh, g->kw,
                                                      g->oh, g->ow, g->f);
    float *x = randoms(xn, 1), *wgt = randoms(wn, 2), *bias = randoms(g->f, 3);
    float *dy = randoms(zn, 4), *work = malloc((size_t)(work_n > 0 ? work_n : 1) * sizeof(float));
    out[0] = malloc((size_t)(zn > 0 ? zn : 1) * sizeof(float));            /* z */
    out[1] = malloc((size_t)(xn > 0 ? xn : 1) * sizeof(float));            /* dx */
    out[2] = malloc((size_t)(wn > 0 ? wn : 1) * sizeof(float));            /* dw */
    out[3] = malloc((size_t)(g->f > 0 ? g->f : 1) * sizeof(float));        /* db */
    out[4] = dy;
    pynn_set_num_threads(threads);
    CHECK(work_n >= 1, "work size %lld", (long long)work_n);
    CHECK(pynn_conv2d_transpose_forward(out[0], out[0], work, work_n, x, wgt, bias, g->n, g->h,
                                        g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
                                        g->oh, g->ow, g->f, PYNN_ACT_LINEAR, 0.0f) == PYNN_OK,
          "forward");
    CHECK(pynn_conv2d_transpose_backward(out[2], out[3], out[1], dy, work, work_n, x, wgt,
                                         out[0], out[0], g->n, g->h, g->w, g->c, g->kh, g->kw,
                                         g->sh, g->sw, g->pt, g->pl, g->oh, g->ow, g->f,
                                         PYNN_ACT_LINEAR, 0.0f) == PYNN_OK, "backward");
    /* refusals: too little work, a negative size */
    CHECK(pynn_conv2d_transpose_forward(out[0], out[0], work, work_n - 1, x, wgt, bias, g->n,
                                        g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt,
                                        g->pl, g->oh, g->ow, g->f, PYNN_ACT_LINEAR, 0.0f)
          == PYNN_EINVAL || g->n * g->oh * g->ow * g->f == 0, "short work accepted");
    CHECK(pynn_conv2d_transpose_backward(out[2], out[3], out[1], dy, work, work_n, x, wgt,
                                         out[0], out[0], g->n, g->h, g->w, g->c, g->kh, g->kw,
                                         g->sh, g->sw, -1, g->pl, g->oh, g->ow, g->f,
                                         PYNN_ACT_LINEAR, 0.0f) == PYNN_EINVAL,
          "negative padding accepted");
    free(x);
    free(wgt);
    free(bias);
    free(work);
    pynn_set_num_threads(1);
}

static void check_convt(geometry g) {
    const int64_t xn = g.n * g.h * g.w * g.c, zn = g.n * g.oh * g.ow * g.f;
    const int64_t wn = g.kh * g.kw * g.f * g.c;
    float *out[5];
    double *z = malloc((size_t)zn * sizeof(double)), *dx = malloc((size_t)xn * sizeof(double));
    double *dw = malloc((size_t)wn * sizeof(double)), *db = malloc((size_t)g.f * sizeof(double));
    float *x = randoms(xn, 1), *wgt = randoms(wn, 2), *bias = randoms(g.f, 3);
    float *dy = randoms(zn, 4);
    naive(&g, x, wgt, bias, dy, z, dx, dw, db);
    run_convt(&g, 1, out);
    CHECK(max_rel_err(out[0], z, zn) < 1e-5, "z, geometry h%lld oh%lld", (long long)g.h,
          (long long)g.oh);
    CHECK(max_rel_err(out[1], dx, xn) < 1e-5, "dx");
    CHECK(max_rel_err(out[2], dw, wn) < 1e-5, "dw");
    CHECK(max_rel_err(out[3], db, g.f) < 1e-5, "db");
    free(out[0]), free(out[1]), free(out[2]), free(out[3]), free(out[4]);
    free(z), free(dx), free(dw), free(db), free(x), free(wgt), free(bias), free(dy);
}

static void check_convt_threads(void) {
    const geometry g = {4, 13, 11, 6, 3, 3, 2, 2, 0, 1, 28, 22, 9};
    const int64_t sizes[4] = {g.n * g.oh * g.ow * g.f, g.n * g.h * g.w * g.c,
                              g.kh * g.kw * g.f * g.c, g.f};
    float *one[5], *two[5];
    int k;
    run_convt(&g, 1, one);
    run_convt(&g, 2, two);
    for (k = 0; k < 4; k++)
        CHECK(memcmp(one[k], two[k], (size_t)sizes[k] * sizeof(float)) == 0,
              "output %d differs between 1 and 2 threads", k);
    for (k = 0; k < 5; k++) free(one[k]), free(two[k]);
}

/* the forward weights of pynn_resize over the whole image, in double */
static void axis(int64_t i, int64_t size, int64_t factor, int interp, int64_t *i0, int64_t *i1,
                 double *t) {
    double s;
    if (interp == PYNN_INTERP_NEAREST) {
        *i0 = *i1 = i / factor;
        *t = 0.0;
        return;
    }
    s = (i + 0.5) / factor - 0.5;
    s = s < 0 ? 0 : (s > size - 1 ? size - 1 : s);
    *i0 = (int64_t)floor(s);
    *i1 = *i0 + 1 < size ? *i0 + 1 : size - 1;
    *t = s - *i0;
}

static void check_upsample(int64_t n, int64_t h, int64_t w, int64_t c, int64_t fh, int64_t fw,
                           int interp) {
    const int64_t oh = h * fh, ow = w * fw, xn = n * h * w * c;
    float *dy = randoms(n * oh * ow * c, 5), *dx = malloc((size_t)xn * sizeof(float));
    float *dx2 = malloc((size_t)xn * sizeof(float));
    double *want = calloc((size_t)xn, sizeof(double));
    int64_t img, i, j, ch, r[2], q[2];
    double t, u;
    for (img = 0; img < n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++) {
                axis(i, h, fh, interp, &r[0], &r[1], &t);
                axis(j, w, fw, interp, &q[0], &q[1], &u);
                for (ch = 0; ch < c; ch++) {
                    const double g = dy[((img * oh + i) * ow + j) * c + ch];
                    const double wr[2] = {1 - t, t}, wq[2] = {1 - u, u};
                    int a, b;
                    for (a = 0; a < 2; a++)
                        for (b = 0; b < 2; b++)
                            want[((img * h + r[a]) * w + q[b]) * c + ch] += g * wr[a] * wq[b];
                }
            }
    pynn_set_num_threads(1);
    CHECK(pynn_upsample2d_backward(dx, dy, n, h, w, c, fh, fw, interp) == PYNN_OK, "upsample");
    CHECK(max_rel_err(dx, want, xn) < 1e-5, "upsample backward %lldx%lld by %lldx%lld interp %d",
          (long long)h, (long long)w, (long long)fh, (long long)fw, interp);
    pynn_set_num_threads(2);
    CHECK(pynn_upsample2d_backward(dx2, dy, n, h, w, c, fh, fw, interp) == PYNN_OK, "upsample");
    CHECK(memcmp(dx, dx2, (size_t)xn * sizeof(float)) == 0, "upsample: 1 vs 2 threads");
    pynn_set_num_threads(1);
    CHECK(pynn_upsample2d_backward(dx, dy, n, h, w, c, 0, fw, interp) == PYNN_EINVAL,
          "factor 0 accepted");
    CHECK(pynn_upsample2d_backward(dx, dy, n, h, w, c, fh, fw, 7) == PYNN_EINVAL,
          "interpolation 7 accepted");
    free(dy), free(dx), free(dx2), free(want);
}

static void check_pad_crop(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow,
                           int64_t top, int64_t left) {
    float *x = randoms(n * h * w * c, 6), *y = malloc((size_t)(n * oh * ow * c) * sizeof(float));
    int64_t img, i, j, ch, bad = 0;
    CHECK(pynn_pad_crop(y, x, n, h, w, c, oh, ow, top, left) == PYNN_OK, "pad_crop");
    for (img = 0; img < n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (ch = 0; ch < c; ch++) {
                    const int64_t r = i - top, q = j - left;
                    const float want = (r >= 0 && r < h && q >= 0 && q < w)
                                           ? x[((img * h + r) * w + q) * c + ch] : 0.0f;
                    bad += y[((img * oh + i) * ow + j) * c + ch] != want;
                }
    CHECK(bad == 0, "pad_crop (%lld, %lld): %lld values differ", (long long)top,
          (long long)left, (long long)bad);
    CHECK(pynn_pad_crop(y, x, n, h, -1, c, oh, ow, top, left) == PYNN_EINVAL, "w -1 accepted");
    free(x), free(y);
}

static void check_kernel_dilate(void) {
    enum { KH = 2, KW = 3, COLS = 5, DH = 3, DW = 2, EH = (KH - 1) * DH + 1, EW = (KW - 1) * DW + 1 };
    float *w = randoms(KH * KW * COLS, 8), wide[EH * EW * COLS], back[KH * KW * COLS];
    int a, b, k, bad = 0;
    CHECK(pynn_kernel_dilate(wide, w, KH, KW, COLS, DH, DW, 0) == PYNN_OK, "dilate");
    for (a = 0; a < EH; a++)
        for (b = 0; b < EW; b++)
            for (k = 0; k < COLS; k++) {
                const int tap = a % DH == 0 && b % DW == 0;
                const float want = tap ? w[((a / DH) * KW + b / DW) * COLS + k] : 0.0f;
                bad += wide[(a * EW + b) * COLS + k] != want;
            }
    CHECK(bad == 0, "dilated kernel: %d values differ", bad);
    CHECK(pynn_kernel_dilate(back, wide, KH, KW, COLS, DH, DW, 1) == PYNN_OK, "gather");
    CHECK(memcmp(back, w, sizeof back) == 0, "gathered taps differ");
    CHECK(pynn_kernel_dilate(back, wide, KH, KW, COLS, 0, DW, 1) == PYNN_EINVAL, "dh 0 accepted");
    CHECK(pynn_kernel_dilate(back, wide, KH, KW, COLS, DH, DW, 2) == PYNN_EINVAL,
          "inverse 2 accepted");
    free(w);
}

int main(void) {
    /* n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f */
    const geometry cases[] = {
        {2, 3, 4, 3, 3, 3, 2, 2, 0, 0, 7, 9, 5},       /* valid */
        {1, 5, 2, 1, 2, 3, 1, 3, 1, 0, 6, 7, 1},       /* output padding past the windows */
        {3, 1, 1, 17, 4, 1, 3, 1, 2, 0, 3, 1, 2},      /* cropped on both sides */
        {1, 7, 3, 2, 1, 1, 2, 2, 0, 0, 14, 6, 33},     /* 1x1 kernel, gaps between taps */
        {2, 4, 4, 3, 3, 3, 2, 2, 0, 0, 8, 8, 4},       /* Keras "same", stride 2 */
        {1, 2, 2, 2, 2, 2, 3, 3, 0, 0, 7, 7, 1},       /* stride > kernel, rows of zeros */
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) check_convt(cases[k]);
    check_convt_threads();
    check_upsample(2, 3, 5, 3, 2, 3, PYNN_INTERP_NEAREST);
    check_upsample(1, 4, 1, 2, 3, 2, PYNN_INTERP_BILINEAR);
    check_upsample(1, 1, 3, 1, 1, 4, PYNN_INTERP_BILINEAR);
    check_upsample(3, 23, 19, 7, 2, 2, PYNN_INTERP_BILINEAR);     /* past the thread threshold */
    check_upsample(3, 23, 19, 7, 3, 2, PYNN_INTERP_NEAREST);
    check_pad_crop(2, 3, 4, 3, 6, 5, 1, 0);
    check_pad_crop(1, 5, 6, 2, 2, 3, -1, -2);
    check_pad_crop(1, 2, 3, 2, 4, 4, 5, 0);
    check_pad_crop(4, 40, 30, 8, 44, 36, 3, 4);
    check_kernel_dilate();
    if (failures) printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
