/* test_conv.c -- im2col / col2im (csrc/conv.c), the direct convolution (csrc/conv_direct*.c:
 * forward, and the filter gradient with its work buffer, without it and with one too
 * small) and the input gradient (csrc/conv_dx*.c) against plain loops over the window
 * geometry of pynn.h, at every dispatch level and on 1 and 2 threads (ctest.h).
 *
 * Shapes: empty batches and outputs, 1 x 1 images, windows larger than the image and
 * windows entirely in the padding, strides, primes; for the direct convolution both of
 * its routes (one channel at column stride 1, lanes over positions and filters, at and
 * just past its 192-lane limit, each of its specialised loops -- 3x3 and 5x5 windows with
 * 8 or 16 filters, filter counts that divide a vector, rows ending inside a vector, dz
 * made in the first pass for ReLU and linear --; and the patch route) with rows just
 * under, at and over its 64-position blocks, and outputs large enough for a second
 * thread.
 *
 * Bounds (u = 2^-24): im2col copies (bitwise).  col2im and the gradients are float sums
 * of m products or terms: (m + 1) u sum |terms|, m the number of terms of the element.
 * The forward is a float sum of K = kh kw c products plus the bias: (K + 2) u (sum |x w|
 * + |bias|).  The activations the kernels apply are those of act_elementwise.h on the
 * kernel's own z: bitwise. */
#include "ctest.h"
#include "act_elementwise.h"

typedef struct {
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, pb, pr, f;
} geometry;

static int64_t out_h(const geometry *g) {
    const int64_t span = g->h + g->pt + g->pb - g->kh;
    return span < 0 ? 0 : span / g->sh + 1;
}
static int64_t out_w(const geometry *g) {
    const int64_t span = g->w + g->pl + g->pr - g->kw;
    return span < 0 ? 0 : span / g->sw + 1;
}

/* x at (img, r, q, ch), 0 outside the image (padding) */
static double x_at(const geometry *g, const float *x, int64_t img, int64_t r, int64_t q,
                   int64_t ch) {
    if (r < 0 || r >= g->h || q < 0 || q >= g->w) return 0.0;
    return x[((img * g->h + r) * g->w + q) * g->c + ch];
}

/* ---- im2col and col2im -------------------------------------------------------- */

typedef struct {
    const geometry *g;
    const float *x, *cols;
} cols_case;

static void run_im2col(void *ctx, unsigned char *out) {
    const cols_case *t = ctx;
    const geometry *g = t->g;
    const int status = pynn_im2col((float *)out, t->x, g->n, g->h, g->w, g->c, g->kh, g->kw,
                                   g->sh, g->sw, g->pt, g->pl, out_h(g), out_w(g));
    CHECK(status == PYNN_OK, "im2col status %d", status);
}

static void run_col2im(void *ctx, unsigned char *out) {
    const cols_case *t = ctx;
    const geometry *g = t->g;
    const int status = pynn_col2im((float *)out, t->cols, g->n, g->h, g->w, g->c, g->kh, g->kw,
                                   g->sh, g->sw, g->pt, g->pl, out_h(g), out_w(g));
    CHECK(status == PYNN_OK, "col2im status %d", status);
}

static void check_im2col(const geometry *g) {
    const int64_t oh = out_h(g), ow = out_w(g), k = g->kh * g->kw * g->c;
    const int64_t nx = g->n * g->h * g->w * g->c, ncols = g->n * oh * ow * k;
    float *x = ctest_floats(nx, -1.0f, 1.0f), *cols = ctest_floats(ncols, -1.0f, 1.0f);
    float *want_cols = ctest_new_floats(ncols), *got;
    double *want = ctest_new_doubles(nx), *bound = ctest_new_doubles(nx);
    cols_case t = {g, x, cols};
    int64_t img, i, j, a, b, ch, e;
    CTEST_CONTEXT("im2col/col2im n%lld %lldx%lldx%lld k%lldx%lld s%lldx%lld "
                  "pad %lld,%lld,%lld,%lld",
                  (long long)g->n, (long long)g->h, (long long)g->w, (long long)g->c,
                  (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw,
                  (long long)g->pt, (long long)g->pl, (long long)g->pb, (long long)g->pr);
    for (e = 0; e < nx; e++) want[e] = bound[e] = 0.0;
    for (img = 0; img < g->n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (a = 0; a < g->kh; a++)
                    for (b = 0; b < g->kw; b++)
                        for (ch = 0; ch < g->c; ch++) {
                            const int64_t r = i * g->sh - g->pt + a, q = j * g->sw - g->pl + b;
                            const int64_t at = ((img * oh + i) * ow + j) * k +
                                               (a * g->kw + b) * g->c + ch;
                            want_cols[at] = (float)x_at(g, x, img, r, q, ch);
                            if (r >= 0 && r < g->h && q >= 0 && q < g->w) {
                                const int64_t to = ((img * g->h + r) * g->w + q) * g->c + ch;
                                want[to] += cols[at];
                                bound[to] += fabs((double)cols[at]);
                            }
                        }
    /* each input element gets at most kh kw terms */
    for (e = 0; e < nx; e++) bound[e] *= (double)(g->kh * g->kw + 1) * CTEST_U;
    got = (float *)ctest_everywhere(run_im2col, &t, (size_t)ncols * sizeof(float), "im2col");
    ctest_same_bits("im2col", got, want_cols, ncols);
    free(got);
    got = (float *)ctest_everywhere(run_col2im, &t, (size_t)nx * sizeof(float), "col2im");
    ctest_close("col2im", got, want, bound, nx);
    free(got);
    free(x);
    free(cols);
    free(want_cols);
    free(want);
    free(bound);
}

/* ---- the direct convolution ------------------------------------------------------- */

typedef struct {
    const geometry *g;
    const float *x, *wgt, *bias, *dy;
    int act;
} direct_case;

#define ALPHA 0.2f

/* out: z, y, dz (no floats each), dw (kf), db (f), then the same dw, db without a work
 * buffer, dw with one float too little, dz and dw with dz = dy in place and no db, z of
 * a forward with y = z (linear only; else z again) */
static void run_direct(void *ctx, unsigned char *out) {
    const direct_case *t = ctx;
    const geometry *g = t->g;
    const int64_t oh = out_h(g), ow = out_w(g), no = g->n * oh * ow * g->f;
    const int64_t kf = g->kh * g->kw * g->c * g->f;
    const int64_t work_size = pynn_conv2d_direct_filter_work(g->n, g->h, g->w, g->c, g->kh,
                                                             g->kw, g->sh, g->sw, oh, ow, g->f);
    float *z = (float *)out, *y = z + no, *dz = y + no, *dw = dz + no, *db = dw + kf;
    float *dw_nowork = db + g->f, *db_nowork = dw_nowork + kf, *dw_small = db_nowork + g->f;
    float *dz_in_place = dw_small + kf, *dw_in_place = dz_in_place + no;
    float *z_shared = dw_in_place + kf;
    float *work = ctest_new_floats(work_size > 0 ? work_size : 1);
    int s[6];
    CHECK(work_size >= 0, "filter_work %lld", (long long)work_size);
    s[0] = pynn_conv2d_direct_forward(z, y, t->x, t->wgt, t->bias, g->n, g->h, g->w, g->c, g->kh,
                                      g->kw, g->sh, g->sw, g->pt, g->pl, oh, ow, g->f, t->act,
                                      ALPHA);
    s[1] = pynn_conv2d_direct_backward_filter(dw, db, dz, t->x, z, y, t->dy, g->n, g->h, g->w,
                                              g->c, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, oh,
                                              ow, g->f, t->act, ALPHA, work, work_size);
    s[2] = pynn_conv2d_direct_backward_filter(dw_nowork, db_nowork, dz, t->x, z, y, t->dy, g->n,
                                              g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt,
                                              g->pl, oh, ow, g->f, t->act, ALPHA, NULL, 0);
    s[3] = pynn_conv2d_direct_backward_filter(dw_small, NULL, dz, t->x, z, y, t->dy, g->n, g->h,
                                              g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
                                              oh, ow, g->f, t->act, ALPHA, work,
                                              work_size > 0 ? work_size - 1 : 0);
    memcpy(dz_in_place, t->dy, (size_t)no * sizeof(float));
    s[4] = pynn_conv2d_direct_backward_filter(dw_in_place, NULL, dz_in_place, t->x, z, y,
                                              dz_in_place, g->n, g->h, g->w, g->c, g->kh, g->kw,
                                              g->sh, g->sw, g->pt, g->pl, oh, ow, g->f, t->act,
                                              ALPHA, work, work_size);
    if (t->act == PYNN_ACT_LINEAR)
        s[5] = pynn_conv2d_direct_forward(z_shared, z_shared, t->x, t->wgt, t->bias, g->n, g->h,
                                          g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
                                          oh, ow, g->f, t->act, ALPHA);
    else
        s[5] = PYNN_OK, memcpy(z_shared, z, (size_t)no * sizeof(float));
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0,
          "status %d %d %d %d %d %d", s[0], s[1], s[2], s[3], s[4], s[5]);
    free(work);
}

static void check_direct(const geometry *g, int act, int with_bias) {
    const int64_t oh = out_h(g), ow = out_w(g), no = g->n * oh * ow * g->f;
    const int64_t k = g->kh * g->kw * g->c, kf = k * g->f, nx = g->n * g->h * g->w * g->c;
    const int64_t total = 5 * no + 4 * kf + 2 * g->f;
    float *x = ctest_floats(nx, -1.0f, 1.0f), *wgt = ctest_floats(kf, -1.0f, 1.0f);
    float *bias = ctest_floats(g->f, -1.0f, 1.0f), *dy = ctest_floats(no, -1.0f, 1.0f);
    float *got, *dz_want = ctest_new_floats(no), *y_want = ctest_new_floats(no);
    double *want = ctest_new_doubles(no + kf + g->f), *bound = ctest_new_doubles(no + kf + g->f);
    direct_case t = {g, x, wgt, with_bias ? bias : NULL, dy, act};
    int64_t img, i, j, a, b, ch, f, e;
    CTEST_CONTEXT("direct conv n%lld %lldx%lldx%lld k%lldx%lld f%lld s%lldx%lld pad %lld,%lld "
                  "act %d%s", (long long)g->n, (long long)g->h, (long long)g->w, (long long)g->c,
                  (long long)g->kh, (long long)g->kw, (long long)g->f, (long long)g->sh,
                  (long long)g->sw, (long long)g->pt, (long long)g->pl, act,
                  with_bias ? " bias" : "");
    CHECK(pynn_conv2d_direct_supported(g->kh, g->kw, g->c, g->f, act) == 1, "supported");
    got = (float *)ctest_everywhere(run_direct, &t, (size_t)total * sizeof(float), "direct conv");

    /* forward: z against the sum, y = act(z) and dz = act'(z) dy bitwise */
    for (img = 0; img < g->n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (f = 0; f < g->f; f++) {
                    const int64_t at = ((img * oh + i) * ow + j) * g->f + f;
                    double s = with_bias ? bias[f] : 0.0, mag = fabs(s);
                    for (a = 0; a < g->kh; a++)
                        for (b = 0; b < g->kw; b++)
                            for (ch = 0; ch < g->c; ch++) {
                                const double term =
                                    x_at(g, x, img, i * g->sh - g->pt + a, j * g->sw - g->pl + b,
                                         ch) *
                                    wgt[((a * g->kw + b) * g->c + ch) * g->f + f];
                                s += term;
                                mag += fabs(term);
                            }
                    want[at] = s;
                    bound[at] = (double)(k + 2) * CTEST_U * mag;
                }
    ctest_close("z", got, want, bound, no);
    pynn_act_span(y_want, got, no, act, ALPHA);
    ctest_same_bits("y = act(z)", got + no, y_want, no);
    pynn_act_backward_span(dz_want, got, got + no, dy, no, act, ALPHA);
    ctest_same_bits("dz = act'(z) dy", got + 2 * no, dz_want, no);

    /* filter gradient from the kernel's dz */
    {
        const float *dz = got + 2 * no, *dw = dz + no, *db = dw + kf;
        const float *dw_nowork = db + g->f, *db_nowork = dw_nowork + kf;
        const float *dw_small = db_nowork + g->f, *dz_in_place = dw_small + kf;
        const float *dw_in_place = dz_in_place + no, *z_shared = dw_in_place + kf;
        double *wb = want + kf, *bw = bound + kf;   /* db's reference after dw's */
        for (e = 0; e < kf + g->f; e++) want[e] = bound[e] = 0.0;
        for (img = 0; img < g->n; img++)
            for (i = 0; i < oh; i++)
                for (j = 0; j < ow; j++)
                    for (f = 0; f < g->f; f++) {
                        const double d = dz[((img * oh + i) * ow + j) * g->f + f];
                        wb[f] += d;
                        bw[f] += fabs(d);
                        for (a = 0; a < g->kh; a++)
                            for (b = 0; b < g->kw; b++)
                                for (ch = 0; ch < g->c; ch++) {
                                    const int64_t at = ((a * g->kw + b) * g->c + ch) * g->f + f;
                                    const double term = d * x_at(g, x, img, i * g->sh - g->pt + a,
                                                                 j * g->sw - g->pl + b, ch);
                                    want[at] += term;
                                    bound[at] += fabs(term);
                                }
                    }
        for (e = 0; e < kf + g->f; e++) bound[e] *= (double)(g->n * oh * ow + 1) * CTEST_U;
        ctest_close("dw", dw, want, bound, kf);
        ctest_close("db", db, wb, bw, g->f);
        /* the work buffer only holds partial sums: without it, or too small, same bits */
        ctest_same_bits("dw without work", dw_nowork, dw, kf);
        ctest_same_bits("db without work", db_nowork, db, g->f);
        ctest_same_bits("dw with too little work", dw_small, dw, kf);
        ctest_same_bits("dz in place", dz_in_place, dz, no);
        ctest_same_bits("dw in place", dw_in_place, dw, kf);
        ctest_same_bits("z with y = z", z_shared, got, no);
    }
    free(got);
    free(x);
    free(wgt);
    free(bias);
    free(dy);
    free(dz_want);
    free(y_want);
    free(want);
    free(bound);
}

/* ---- the input gradient (conv_dx.c) --------------------------------------------------
 *
 * Not through ctest_everywhere: like the GEMM's, its results depend on the level (the
 * portable tiles round each product; AVX2 and AVX-512 fuse them, in the same order, so
 * those two agree bitwise).  At every level: the reference within its bound, the same
 * bits on 1 and 2 threads and with a work buffer that starts off a 64-byte boundary. */

static int input_grad_of(const geometry *g, float *dx, const float *dz, const float *wgt,
                         float *work, int64_t work_size) {
    return pynn_conv2d_input_grad(dx, dz, wgt, work, work_size, g->n, g->h, g->w, g->c, g->kh,
                                  g->kw, g->sh, g->sw, g->pt, g->pl, out_h(g), out_w(g), g->f);
}

static void check_input_grad(const geometry *g) {
    const int64_t oh = out_h(g), ow = out_w(g), nx = g->n * g->h * g->w * g->c;
    const int64_t no = g->n * oh * ow * g->f, kf = g->kh * g->kw * g->c * g->f;
    const int64_t work_size = pynn_conv2d_input_grad_work(g->kh, g->kw, g->c, g->f);
    float *dz = ctest_floats(no, -1.0f, 1.0f), *wgt = ctest_floats(kf, -1.0f, 1.0f);
    float *work = ctest_new_floats(work_size + 1), *dx = ctest_new_floats(nx);
    float *again = ctest_new_floats(nx), *avx2 = NULL;
    double *want = ctest_new_doubles(nx), *bound = ctest_new_doubles(nx);
    int64_t img, i, j, a, b, ch, e, x;
    int level, threads;
    CTEST_CONTEXT("input grad n%lld %lldx%lldx%lld k%lldx%lld f%lld s%lldx%lld pad %lld,%lld",
                  (long long)g->n, (long long)g->h, (long long)g->w, (long long)g->c,
                  (long long)g->kh, (long long)g->kw, (long long)g->f, (long long)g->sh,
                  (long long)g->sw, (long long)g->pt, (long long)g->pl);
    CHECK(work_size >= 1, "work size %lld", (long long)work_size);
    for (x = 0; x < nx; x++) want[x] = bound[x] = 0.0;
    for (img = 0; img < g->n; img++)                   /* the adjoint of the forward's sum */
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (a = 0; a < g->kh; a++)
                    for (b = 0; b < g->kw; b++) {
                        const int64_t r = i * g->sh - g->pt + a, q = j * g->sw - g->pl + b;
                        if (r < 0 || r >= g->h || q < 0 || q >= g->w) continue;
                        for (ch = 0; ch < g->c; ch++)
                            for (e = 0; e < g->f; e++) {
                                const double term = (double)dz[((img * oh + i) * ow + j) * g->f + e] *
                                                    wgt[((a * g->kw + b) * g->c + ch) * g->f + e];
                                x = ((img * g->h + r) * g->w + q) * g->c + ch;
                                want[x] += term;
                                bound[x] += fabs(term);
                            }
                    }
    /* each element: at most kh kw f products and their sum */
    for (x = 0; x < nx; x++) bound[x] *= (double)(g->kh * g->kw * g->f + 1) * CTEST_U;
    for (level = PYNN_LEVEL_GENERIC; level <= pynn_cpu_level(); level++) {
        CHECK(pynn_select_level(level) == PYNN_OK, "select level %s", ctest_level_name(level));
        for (threads = 1; threads <= 2; threads++) {
            float *out = threads == 1 ? dx : again;
            pynn_set_num_threads(threads);
            for (x = 0; x < nx; x++) out[x] = NAN;
            CHECK(input_grad_of(g, out, dz, wgt, work + threads - 1, work_size) == PYNN_OK,
                  "status at level %s on %d thread(s)", ctest_level_name(level), threads);
        }
        ctest_close(ctest_level_name(level), dx, want, bound, nx);
        ctest_same_bits("2 threads, work off 64 bytes", again, dx, nx);
        if (level == PYNN_LEVEL_AVX2) avx2 = ctest_copy(dx, nx);
        if (level == PYNN_LEVEL_AVX512 && avx2 != NULL) ctest_same_bits("avx512 = avx2", dx, avx2, nx);
    }
    pynn_select_level(PYNN_LEVEL_AUTO);
    pynn_set_num_threads(1);
    CHECK(input_grad_of(g, dx, dz, wgt, work, work_size - 1) == (nx > 0 && no > 0 ? PYNN_EINVAL
                                                                                 : PYNN_OK),
          "one float of work too few");
    free(dz); free(wgt); free(work); free(dx); free(again); free(avx2); free(want); free(bound);
}

/* ---- refusals ------------------------------------------------------------------------ */

/* The arguments of one direct-convolution call on a 1 x h x 4 x 1 input, a 3 x kw kernel
 * and f filters (outputs: forward z, y; backward dw, db, dz). */
typedef struct {
    float *out0, *out1, *out2;
    const float *x, *wgt, *z, *y, *dy;
    int64_t n, h, kw, sh, sw, pad, oh, f;
    int act;
} direct_call;

static int forward_of(direct_call t) {
    return pynn_conv2d_direct_forward(t.out0, t.out1, t.x, t.wgt, NULL, t.n, t.h, 4, 1, 3, t.kw,
                                      t.sh, t.sw, t.pad, 0, t.oh, 2, t.f, t.act, 0.0f);
}

static int backward_of(direct_call t) {
    return pynn_conv2d_direct_backward_filter(t.out0, t.out1, t.out2, t.x, t.z, t.y, t.dy, t.n,
                                              t.h, 4, 1, 3, t.kw, t.sh, t.sw, t.pad, 0, t.oh, 2,
                                              t.f, t.act, 0.0f, NULL, 0);
}

static void check_refusals(void) {
    float a[64] = {0}, b[64] = {0}, c[64] = {0}, d[64] = {0}, e[64] = {0}, f[64] = {0};
    CTEST_CONTEXT("refusals");
    /* im2col / col2im: n h w c kh kw sh sw pt pl oh ow */
    CHECK(pynn_im2col(a, b, -1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "n < 0");
    CHECK(pynn_im2col(a, b, 1, 2, 2, 1, 0, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "kh 0");
    CHECK(pynn_im2col(a, b, 1, 2, 2, 1, 1, 1, 0, 1, 0, 0, 2, 2) == PYNN_EINVAL, "sh 0");
    CHECK(pynn_im2col(a, b, 1, 2, 2, 1, 1, 1, 1, 1, -1, 0, 2, 2) == PYNN_EINVAL, "pad < 0");
    CHECK(pynn_im2col(a, b, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, -2, 2) == PYNN_EINVAL, "oh < 0");
    CHECK(pynn_im2col(NULL, b, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "cols NULL");
    CHECK(pynn_im2col(a, NULL, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "x NULL");
    CHECK(pynn_im2col(NULL, NULL, 0, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_OK, "empty batch");
    CHECK(pynn_col2im(NULL, b, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "dx NULL");
    CHECK(pynn_col2im(a, NULL, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "cols NULL");
    CHECK(pynn_col2im(a, b, 1, 2, 2, 1, 1, -1, 1, 1, 0, 0, 2, 2) == PYNN_EINVAL, "kw < 0");
    CHECK(pynn_col2im(NULL, NULL, 0, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2) == PYNN_OK, "empty batch");

    /* which layers the direct convolution takes */
    CHECK(pynn_conv2d_direct_supported(4, 4, 2, 16, PYNN_ACT_RELU) == 1,
          "32 window values, 16 filters");
    CHECK(pynn_conv2d_direct_supported(3, 11, 1, 4, PYNN_ACT_RELU) == 0, "33 window values");
    CHECK(pynn_conv2d_direct_supported(3, 3, 1, 17, PYNN_ACT_RELU) == 0, "17 filters");
    CHECK(pynn_conv2d_direct_supported(3, 3, 1, 4, PYNN_ACT_SOFTMAX) == 0, "softmax");
    CHECK(pynn_conv2d_direct_supported(3, 3, 1, 4, PYNN_ACT_LOG_SOFTMAX) == 0,
          "log_softmax");   /* row-wise too (engineer A) */
    CHECK(pynn_conv2d_direct_supported(3, 3, 1, 4, -1) == 0 &&
          pynn_conv2d_direct_supported(3, 3, 1, 4, PYNN_ACT_COUNT) == 0, "no such activation");
    CHECK(pynn_conv2d_direct_supported(0, 3, 1, 4, 0) == 0 &&
          pynn_conv2d_direct_supported(3, 3, 0, 4, 0) == 0 &&
          pynn_conv2d_direct_supported(3, 3, 1, 0, 0) == 0, "empty kernel");

    /* the direct convolution: a valid call, changed in one argument per refusal */
    {
        const direct_call ok = {a, b, c, d, e, f, f, f, 1, 4, 3, 1, 1, 0, 2, 1, PYNN_ACT_RELU};
        direct_call t;
        CHECK(forward_of(ok) == PYNN_OK && backward_of(ok) == PYNN_OK, "the valid call");
        t = ok; t.kw = 11;       CHECK(forward_of(t) == PYNN_EINVAL, "forward, 33 window values");
        t = ok; t.f = 17;        CHECK(backward_of(t) == PYNN_EINVAL, "backward, 17 filters");
        t = ok; t.act = PYNN_ACT_SOFTMAX;
        CHECK(forward_of(t) == PYNN_EINVAL && backward_of(t) == PYNN_EINVAL, "softmax");
        t = ok; t.n = -1;        CHECK(forward_of(t) == PYNN_EINVAL, "forward, n < 0");
        t = ok; t.h = -1;        CHECK(backward_of(t) == PYNN_EINVAL, "backward, h < 0");
        t = ok; t.sh = 0;        CHECK(forward_of(t) == PYNN_EINVAL, "forward, sh 0");
        t = ok; t.sw = 0;        CHECK(backward_of(t) == PYNN_EINVAL, "backward, sw 0");
        t = ok; t.pad = -1;      CHECK(forward_of(t) == PYNN_EINVAL, "forward, pad < 0");
        t = ok; t.oh = -2;       CHECK(backward_of(t) == PYNN_EINVAL, "backward, oh < 0");
        t = ok; t.out0 = NULL;   CHECK(forward_of(t) == PYNN_EINVAL, "forward, z NULL");
        t = ok; t.out1 = NULL;   CHECK(forward_of(t) == PYNN_EINVAL, "forward, y NULL");
        t = ok; t.x = NULL;      CHECK(forward_of(t) == PYNN_EINVAL, "forward, x NULL");
        t = ok; t.wgt = NULL;    CHECK(forward_of(t) == PYNN_EINVAL, "forward, kernel NULL");
        t = ok; t.out0 = NULL;   CHECK(backward_of(t) == PYNN_EINVAL, "backward, dw NULL");
        t = ok; t.out2 = NULL;   CHECK(backward_of(t) == PYNN_EINVAL, "backward, dz NULL");
        t = ok; t.x = NULL;      CHECK(backward_of(t) == PYNN_EINVAL, "backward, x NULL");
        t = ok; t.z = NULL;      CHECK(backward_of(t) == PYNN_EINVAL, "backward, z NULL");
        t = ok; t.y = NULL;      CHECK(backward_of(t) == PYNN_EINVAL, "backward, y NULL");
        t = ok; t.dy = NULL;     CHECK(backward_of(t) == PYNN_EINVAL, "backward, dy NULL");
        t = ok; t.out1 = NULL;   CHECK(backward_of(t) == PYNN_OK, "backward, db NULL is fine");
        t = ok; t.n = 0; t.out0 = t.out1 = NULL; t.x = t.wgt = NULL;
        CHECK(forward_of(t) == PYNN_OK, "forward, no images, no pointers");
    }
    /* the input gradient: n h w c kh kw sh sw pt pl oh ow f */
    CHECK(pynn_conv2d_input_grad_work(0, 3, 1, 1) < 0 && pynn_conv2d_input_grad_work(3, 3, -1, 1) < 0,
          "input_grad_work refusals");
    CHECK(pynn_conv2d_input_grad(a, b, c, d, 64, 1, 2, 2, 1, 1, 1, 0, 1, 0, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, stride 0");
    CHECK(pynn_conv2d_input_grad(a, b, c, d, 64, 1, 2, 2, 1, 1, 1, 1, 1, -1, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, pad < 0");
    CHECK(pynn_conv2d_input_grad(NULL, b, c, d, 64, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, dx NULL");
    CHECK(pynn_conv2d_input_grad(a, NULL, c, d, 64, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, dz NULL");
    CHECK(pynn_conv2d_input_grad(a, b, NULL, d, 64, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, kernel NULL");
    CHECK(pynn_conv2d_input_grad(a, b, c, NULL, 64, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1) == PYNN_EINVAL,
          "input grad, work NULL");
    CHECK(pynn_conv2d_input_grad(NULL, NULL, NULL, NULL, 0, 0, 2, 2, 1, 1, 1, 1, 1, 0, 0, 2, 2, 1) ==
              PYNN_OK, "input grad of no images, no pointers");
    CHECK(pynn_conv2d_direct_filter_work(-1, 4, 4, 1, 3, 3, 1, 1, 2, 2, 1) < 0 &&
          pynn_conv2d_direct_filter_work(1, 4, 4, 1, 3, 3, 0, 1, 2, 2, 1) < 0,
          "filter_work refusals");
    /* no images: dw and db are zero */
    a[0] = b[0] = 9.0f;
    CHECK(pynn_conv2d_direct_backward_filter(a, b, c, NULL, e, f, d, 0, 4, 4, 1, 1, 1, 1, 1, 0,
                                             0, 4, 4, 1, 0, 0, NULL, 0) == PYNN_OK &&
          a[0] == 0.0f && b[0] == 0.0f, "backward of an empty batch: zero gradients");
}

int main(void) {
    /* n h w c kh kw sh sw pad top, left, bottom, right; f (direct convolution only) */
    static const geometry cols_shapes[] = {
        {0, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 0},   {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0},
        {2, 5, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1, 0},   {1, 7, 6, 2, 3, 2, 2, 3, 0, 0, 0, 0, 0},
        {3, 13, 11, 5, 5, 5, 2, 2, 2, 2, 2, 2, 0}, {1, 4, 4, 1, 5, 5, 1, 1, 2, 2, 2, 2, 0},
        {2, 6, 5, 2, 2, 3, 1, 2, 3, 2, 3, 2, 0},   {8, 32, 32, 3, 3, 3, 1, 1, 1, 1, 1, 1, 0},
        {4, 28, 28, 1, 5, 5, 1, 1, 2, 2, 2, 2, 0}, {1, 2, 2, 1, 3, 3, 1, 1, 0, 0, 0, 0, 0},
    };
    static const geometry direct_shapes[] = {
        /* one channel, column stride 1: the lane route */
        {4, 28, 28, 1, 5, 5, 1, 1, 2, 2, 2, 2, 6},   /* LeNet's first layer (5x5 special) */
        {3, 15, 12, 1, 5, 5, 2, 1, 2, 2, 2, 2, 4},   /* 5x5 at row stride 2 */
        {2, 9, 30, 1, 3, 3, 1, 1, 1, 1, 1, 1, 5},
        {2, 8, 20, 1, 3, 5, 1, 1, 0, 0, 0, 0, 7},
        {2, 10, 40, 1, 4, 8, 1, 1, 1, 3, 2, 4, 3},
        {5, 7, 7, 1, 1, 1, 1, 1, 0, 0, 0, 0, 16},
        {1, 70, 10, 1, 3, 3, 1, 1, 1, 1, 1, 1, 2},   /* several row blocks per image */
        {2, 12, 12, 1, 3, 3, 1, 1, 1, 1, 1, 1, 16},  /* 192 lanes: the limit */
        {16, 28, 28, 1, 5, 5, 1, 1, 2, 2, 2, 2, 6},  /* enough work for 2 threads */
        /* the patch route */
        {2, 12, 13, 1, 3, 3, 1, 1, 1, 1, 1, 1, 16},  /* 208 lanes: past the limit */
        {2, 16, 16, 3, 3, 3, 1, 1, 1, 1, 1, 1, 16},
        {2, 17, 19, 2, 4, 4, 2, 2, 1, 2, 1, 2, 5},
        {1, 3, 3, 32, 1, 1, 1, 1, 0, 0, 0, 0, 16},
        {2, 10, 10, 1, 5, 5, 1, 2, 2, 2, 2, 2, 7},   /* column stride 2 */
        {1, 3, 63, 2, 3, 3, 1, 1, 1, 1, 1, 1, 4},    /* rows of 63, 64, 65, 131 positions */
        {1, 3, 64, 2, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {3, 3, 65, 2, 3, 3, 1, 1, 1, 1, 1, 1, 4},
        {1, 2, 131, 3, 2, 5, 1, 1, 0, 2, 0, 2, 9},
        {8, 32, 32, 3, 3, 3, 1, 1, 1, 1, 1, 1, 16},  /* enough work for 2 threads */
        /* degenerate */
        {0, 5, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 4},     /* no images */
        {1, 2, 2, 1, 3, 3, 1, 1, 0, 0, 0, 0, 4},     /* window larger than the image: no output */
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},
        {2, 4, 4, 1, 2, 2, 1, 1, 3, 3, 3, 3, 3},     /* windows wholly in the padding */
    };
    /* the lane route's own loops: 3x3 and 5x5 with 8 or 16 filters (constant offsets, the
     * kernel in registers), filters dividing a vector (several columns a permute), rows
     * whose lanes end inside a vector; ReLU and linear make dz in the first pass */
    static const geometry lane_shapes[] = {
        {32, 8, 8, 1, 3, 3, 1, 1, 0, 0, 0, 0, 8},    /* the tiny CNN: several chunks */
        {48, 12, 12, 1, 3, 3, 1, 1, 1, 1, 1, 1, 8},  /* enough work for 2 threads */
        {3, 9, 7, 1, 3, 3, 1, 1, 1, 1, 1, 1, 8},     /* 56 lanes a row */
        {2, 11, 11, 1, 5, 5, 1, 1, 0, 0, 0, 0, 8},   /* 5x5, 8 filters, 56 lanes */
        {5, 10, 10, 1, 5, 5, 1, 1, 2, 2, 2, 2, 16},  /* 5x5, 16 filters */
        {3, 9, 12, 1, 5, 5, 1, 1, 2, 2, 2, 2, 6},    /* 5x5, LeNet's 6 filters (72 lanes) */
        {2, 7, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1, 16},    /* 3x3, 16 filters, 144 lanes */
        {4, 6, 9, 1, 3, 3, 2, 1, 1, 0, 1, 0, 4},     /* 4 filters, row stride 2 */
        {2, 5, 13, 1, 3, 3, 1, 1, 0, 0, 0, 0, 1},    /* one filter */
        {3, 4, 23, 1, 2, 2, 1, 1, 0, 1, 0, 1, 2},    /* two filters, 2x2 */
        {1, 3, 3, 1, 3, 3, 1, 1, 0, 0, 0, 0, 8},     /* one output position */
    };
    /* the input gradient: 1 x 1 images, windows larger than the image ("same"), strides 2
     * and 3 (phases with and without taps), 1 and 65+ channels (panel edges at every
     * level), one filter and many, batch 1, valid and same, asymmetric padding (pad_top,
     * pad_left are what the kernel sees; the bottom and right only change oh, ow), windows
     * wholly in the padding, no output at all, and enough work for 2 threads; both tile
     * kinds (channels in the lanes; filters in the lanes for 1 to 4 channels and F > 1) */
    static const geometry dx_shapes[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},
        {2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 5},     /* 1 x 1 image, 3x3 same */
        {1, 2, 3, 2, 5, 5, 1, 1, 2, 2, 2, 2, 4},     /* 5x5 same on 2 x 3 */
        {1, 3, 3, 1, 7, 4, 1, 1, 3, 1, 3, 2, 3},     /* taller and wider than the image */
        {3, 7, 9, 5, 3, 2, 1, 1, 0, 0, 0, 0, 7},     /* valid */
        {2, 6, 5, 1, 3, 3, 1, 1, 0, 1, 1, 0, 33},    /* asymmetric: top 0 / bottom 1 */
        {2, 9, 8, 3, 3, 3, 2, 2, 0, 0, 1, 1, 6},     /* stride 2 same (TF: pad bottom) */
        {2, 11, 10, 4, 5, 5, 2, 2, 1, 2, 2, 1, 9},   /* 5x5 stride 2 */
        {1, 13, 12, 3, 5, 5, 2, 2, 0, 0, 0, 0, 48},  /* AlexNet's first layer, small */
        {2, 10, 11, 2, 3, 3, 3, 3, 1, 0, 1, 2, 5},   /* stride 3 */
        {1, 10, 10, 3, 2, 2, 3, 3, 0, 0, 0, 0, 4},   /* stride 3 > kernel: rows without taps */
        {1, 9, 7, 2, 1, 3, 3, 1, 0, 1, 0, 1, 3},     /* strides 3 x 1 */
        {2, 5, 6, 67, 3, 3, 1, 1, 1, 1, 1, 1, 3},    /* 67 channels */
        {1, 4, 5, 65, 3, 3, 1, 1, 1, 1, 1, 1, 70},   /* 65 channels, 70 filters */
        {1, 6, 6, 130, 1, 1, 1, 1, 0, 0, 0, 0, 17},  /* 130 channels, 1x1 */
        {2, 5, 5, 48, 3, 3, 1, 1, 1, 1, 1, 1, 16},   /* 48: the 3-vector tile at AVX-512 */
        {2, 4, 4, 1, 2, 2, 1, 1, 3, 3, 3, 3, 3},     /* windows wholly in the padding */
        {1, 2, 2, 3, 3, 3, 1, 1, 0, 0, 0, 0, 4},     /* no output: dx is zero */
        {0, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 4},     /* no images */
        {3, 9, 9, 32, 3, 3, 1, 1, 1, 1, 1, 1, 20},   /* enough work for 2 threads */
        {2, 12, 12, 24, 5, 5, 2, 2, 1, 1, 2, 2, 16}, /* and at stride 2 */
        /* filters in the lanes (1 to 4 channels, F not 1): tails inside a vector, F = 48,
         * and enough work for 2 threads */
        {4, 28, 28, 1, 5, 5, 1, 1, 2, 2, 2, 2, 6},   /* LeNet's first layer */
        {8, 16, 16, 3, 3, 3, 1, 1, 1, 1, 1, 1, 32},
        {2, 9, 9, 2, 3, 3, 2, 2, 1, 1, 1, 1, 17},
        {3, 8, 7, 4, 2, 3, 1, 3, 0, 1, 1, 1, 40},
    };
    static const int acts[] = {PYNN_ACT_LINEAR, PYNN_ACT_RELU, PYNN_ACT_GELU, PYNN_ACT_TANH,
                               PYNN_ACT_LEAKY_RELU, PYNN_ACT_SIGMOID};
    size_t s;
    ctest_seed(4);
    check_refusals();
    for (s = 0; s < sizeof cols_shapes / sizeof cols_shapes[0]; s++) check_im2col(&cols_shapes[s]);
    for (s = 0; s < sizeof dx_shapes / sizeof dx_shapes[0]; s++) check_input_grad(&dx_shapes[s]);
    for (s = 0; s < sizeof direct_shapes / sizeof direct_shapes[0]; s++) {
        check_direct(&direct_shapes[s], acts[s % 6], s % 2 == 0);
        if (s < 2) check_direct(&direct_shapes[s], PYNN_ACT_LINEAR, 1);   /* y = z */
    }
    for (s = 0; s < sizeof lane_shapes / sizeof lane_shapes[0]; s++) {
        check_direct(&lane_shapes[s], PYNN_ACT_RELU, 1);
        check_direct(&lane_shapes[s], PYNN_ACT_LINEAR, s % 2 == 0);
        check_direct(&lane_shapes[s], acts[2 + s % 4], s % 2 == 1);
    }
    return ctest_finish("test_conv");
}
