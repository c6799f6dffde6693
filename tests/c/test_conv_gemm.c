/* test_conv_gemm.c -- the convolution's implicit GEMM (csrc/conv_gemm.c) and Winograd's
 * F(2x2, 3x3) (csrc/conv_winograd.c) through the layer kernels pynn_conv2d_forward and
 * pynn_conv2d_backward (their GEMM path: more than 16 filters or windows of more than 32
 * entries), at every dispatch level, on 1 and 2 threads.
 *
 * For each shape and level:
 *   - z, y (ReLU), dW, db and dx against double-precision loops over the window geometry
 *     (bounds below);
 *   - bitwise the same on 1 and 2 threads;
 *   - z and y bitwise those of im2col + pynn_sgemm_bias_act, and dW bitwise that of
 *     pynn_sgemm_ksplit on the im2col matrix (transposed), where those take the GEMM's
 *     packed path (the implicit GEMM promises the same numbers there: conv_gemm.c).
 * The GEMM's results depend on the level (as the GEMM's do), so levels are not compared
 * with each other.
 *
 * Shapes: 1 x 1 images, windows larger than the image with "same" padding, stride 3, one
 * channel and 67 channels, batch 1, K = kh*kw*c and f off every tile size (f = 17, 20,
 * 33, 35, 50), the 8 x 48 tiles (f = 48), the one-vector tiles (f = 16), more than 64
 * filters (the filter gradient's packed dz, f = 80 and 96), K beyond the
 * GEMM's KC (several K blocks), and outputs large enough for two threads and for several
 * K-split chunks of the filter gradient.
 *
 * Bounds (u = 2^-24): z is a float sum of K products plus the bias: (K + 2) u (sum |x w| +
 * |bias|).  dW and dx: float sums of m products: (m + 1) u sum |terms| (per element).
 *
 * The 3 x 3, stride-1 shapes of at least 8 channels and filters take Winograd's
 * F(2x2, 3x3) instead (conv_winograd.c; pynn_conv2d_winograd_supported) for the forward,
 * and of at least 16, with channels and filters swapped, for dx
 * (pynn_conv_winograd_input_grad_supported).  There the checks are the same but for
 * the comparison with im2col + GEMM, and the bound is Winograd's: each transformed input
 * is a signed sum of entries of the tile's 4 x 4 window, so |V| <= P_c = sum of |x| over
 * the window, and each transformed kernel entry a sum of its 9 entries with weights of at
 * most 1, |U| <= Q_c = sum |w(., ., c, f)|; a point's product, a float sum over the C
 * channels of V U (V and U rounded), is off by at most (C + 5) u sum_c P_c Q_c, and an
 * output adds up to 9 points: 9 (C + 9) u sum_c P_c Q_c (the same for dx, over dz's
 * window and the f filters).  dW takes F(3x3, 2x2) on those shapes: per tile t the
 * transformed dz is a sum of its 2 x 2 block with weights of at most 1, |H| <= R_tf = sum
 * of |dz| over the block, a point is a float sum over the T tiles (in blocks, then
 * chunks: at most T + 21 roundings in a row), and an entry adds up to 9 points:
 * 9 (T + 21) u sum_t P_tc R_tf.
 */
#include "ctest.h"
#include "conv_winograd_internal.h"

typedef struct {
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f;
} geometry;

/* "same" (Keras) or "valid" padding */
static geometry make_geometry(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                              int64_t kw, int64_t s, int same, int64_t f) {
    geometry g;
    memset(&g, 0, sizeof g);
    g.n = n; g.h = h; g.w = w; g.c = c; g.kh = kh; g.kw = kw; g.sh = g.sw = s; g.f = f;
    if (same) {
        const int64_t th = ((h + s - 1) / s - 1) * s + kh - h, tw = ((w + s - 1) / s - 1) * s + kw - w;
        g.oh = (h + s - 1) / s;
        g.ow = (w + s - 1) / s;
        g.pt = th > 0 ? th / 2 : 0;
        g.pl = tw > 0 ? tw / 2 : 0;
    } else {
        g.oh = h >= kh ? (h - kh) / s + 1 : 0;
        g.ow = w >= kw ? (w - kw) / s + 1 : 0;
    }
    return g;
}

/* index into x of (img, r, q, ch), or -1 for padding */
static int64_t x_index(const geometry *g, int64_t img, int64_t r, int64_t q, int64_t ch) {
    if (r < 0 || r >= g->h || q < 0 || q >= g->w) return -1;
    return ((img * g->h + r) * g->w + q) * g->c + ch;
}

typedef struct {
    const geometry *g;
    const float *x, *wgt, *bias, *dy;   /* dy: the incoming gradient (copied: dz in place) */
} conv_case;

/* forward then backward: out = z | y | dw | db | dx | dz */
static int64_t out_floats(const geometry *g) {
    const int64_t rows = g->n * g->oh * g->ow, k = g->kh * g->kw * g->c;
    return 3 * rows * g->f + k * g->f + g->f + g->n * g->h * g->w * g->c;
}

static void run_conv(const conv_case *t, float *out) {
    const geometry *g = t->g;
    const int64_t rows = g->n * g->oh * g->ow, k = g->kh * g->kw * g->c;
    float *z = out, *y = z + rows * g->f, *dw = y + rows * g->f, *db = dw + k * g->f;
    float *dx = db + g->f, *dz = dx + g->n * g->h * g->w * g->c;
    const int64_t work_size = pynn_conv2d_backward_work(g->n, g->h, g->w, g->c, g->kh, g->kw,
                                                        g->sh, g->sw, g->oh, g->ow, g->f);
    float *cols = ctest_floats(rows * k, -1.0f, 1.0f);   /* garbage: the forward must not read it */
    float *work = ctest_new_floats(work_size > 0 ? work_size : 1);
    int status;
    CHECK(work_size >= 1, "work size %lld", (long long)work_size);
    status = pynn_conv2d_forward(z, y, cols, t->x, t->wgt, t->bias, g->n, g->h, g->w, g->c,
                                 g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->oh, g->ow, g->f,
                                 PYNN_ACT_RELU, 0.0f);
    CHECK(status == PYNN_OK, "forward status %d", status);
    memcpy(dz, t->dy, (size_t)(rows * g->f) * sizeof(float));
    status = pynn_conv2d_backward(dw, db, dx, dz, cols, work, work_size, t->x, t->wgt, z, y,
                                  g->n, g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt,
                                  g->pl, g->oh, g->ow, g->f, PYNN_ACT_RELU, 0.0f);
    CHECK(status == PYNN_OK, "backward status %d", status);
    free(cols);
    free(work);
}

/* Winograd's bound (above) on out (n, oh, ow, f), a forward over in (n, h, w, c) padded
 * pt, pl, with the kernel wgt (3, 3, c, f) or, turned, the kernel (3, 3, f, c) of the
 * forward whose input gradient this is: 9 (c + 9) u sum_c P_c Q_c, added to `bound`. */
static void winograd_bound(double *bound, const float *in, const float *wgt, int64_t n,
                           int64_t h, int64_t w, int64_t c, int64_t pt, int64_t pl, int64_t oh,
                           int64_t ow, int64_t f, int turned) {
    int64_t img, i, j, o, ch, a, b;
    for (img = 0; img < n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (o = 0; o < f; o++) {
                    const int64_t r0 = i / 2 * 2 - pt, q0 = j / 2 * 2 - pl;
                    double sum = 0.0;
                    for (ch = 0; ch < c; ch++) {
                        double pc = 0.0, qc = 0.0;
                        for (a = 0; a < 4; a++)
                            for (b = 0; b < 4; b++)
                                if (r0 + a >= 0 && r0 + a < h && q0 + b >= 0 && q0 + b < w)
                                    pc += fabs((double)in[((img * h + r0 + a) * w + q0 + b) * c + ch]);
                        for (a = 0; a < 9; a++)
                            qc += fabs((double)(turned ? wgt[(a * f + o) * c + ch]
                                                       : wgt[(a * c + ch) * f + o]));
                        sum += pc * qc;
                    }
                    bound[((img * oh + i) * ow + j) * f + o] += 9.0 * (double)(c + 9) * CTEST_U * sum;
                }
}

/* Winograd's bound on dW (above), added to `bound` (3, 3, c, f). */
static void winograd_dw_bound(double *bound, const geometry *g, const float *x,
                              const double *dz) {
    const int64_t th = (g->oh + 1) / 2, tw = (g->ow + 1) / 2, tiles = g->n * th * tw;
    double *pc = ctest_new_doubles(g->c), *rf = ctest_new_doubles(g->f);
    double *sum = ctest_new_doubles(g->c * g->f);
    int64_t img, ti, tj, ch, o, a, b;
    for (ch = 0; ch < g->c * g->f; ch++) sum[ch] = 0.0;
    for (img = 0; img < g->n; img++)
        for (ti = 0; ti < th; ti++)
            for (tj = 0; tj < tw; tj++) {
                for (ch = 0; ch < g->c; ch++) {
                    pc[ch] = 0.0;
                    for (a = 0; a < 4; a++)
                        for (b = 0; b < 4; b++) {
                            const int64_t xi = x_index(g, img, 2 * ti - g->pt + a,
                                                       2 * tj - g->pl + b, ch);
                            if (xi >= 0) pc[ch] += fabs((double)x[xi]);
                        }
                }
                for (o = 0; o < g->f; o++) {
                    rf[o] = 0.0;
                    for (a = 2 * ti; a < 2 * ti + 2 && a < g->oh; a++)
                        for (b = 2 * tj; b < 2 * tj + 2 && b < g->ow; b++)
                            rf[o] += fabs(dz[((img * g->oh + a) * g->ow + b) * g->f + o]);
                }
                for (ch = 0; ch < g->c; ch++)
                    for (o = 0; o < g->f; o++) sum[ch * g->f + o] += pc[ch] * rf[o];
            }
    for (a = 0; a < 9; a++)
        for (ch = 0; ch < g->c * g->f; ch++)
            bound[a * g->c * g->f + ch] += 9.0 * (double)(tiles + 21) * CTEST_U * sum[ch];
    free(pc); free(rf); free(sum);
}

/* The references and bounds, in double. */
static void check_reference(const conv_case *t, const float *out) {
    const geometry *g = t->g;
    const int64_t rows = g->n * g->oh * g->ow, k = g->kh * g->kw * g->c, nx = g->n * g->h * g->w * g->c;
    const float *z = out, *y = z + rows * g->f, *dw = y + rows * g->f, *db = dw + k * g->f;
    const float *dx = db + g->f;
    double *rz = ctest_new_doubles(rows * g->f), *bz = ctest_new_doubles(rows * g->f);
    double *ry = ctest_new_doubles(rows * g->f), *by = ctest_new_doubles(rows * g->f);
    double *rdz = ctest_new_doubles(rows * g->f);
    double *rdw = ctest_new_doubles(k * g->f), *bdw = ctest_new_doubles(k * g->f);
    double *rdb = ctest_new_doubles(g->f), *bdb = ctest_new_doubles(g->f);
    double *rdx = ctest_new_doubles(nx), *bdx = ctest_new_doubles(nx);
    int64_t *terms_x = (int64_t *)ctest_alloc((size_t)(nx > 0 ? nx : 1) * sizeof(int64_t));
    int64_t img, i, j, a, b, ch, o, e;
    for (e = 0; e < k * g->f; e++) rdw[e] = bdw[e] = 0.0;
    for (e = 0; e < g->f; e++) rdb[e] = bdb[e] = 0.0;
    for (e = 0; e < nx; e++) { rdx[e] = bdx[e] = 0.0; terms_x[e] = 0; }
    for (img = 0; img < g->n; img++)
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++) {
                const int64_t row = (img * g->oh + i) * g->ow + j;
                for (o = 0; o < g->f; o++) {
                    double s = g->f > 0 ? (double)t->bias[o] : 0.0, mag = fabs((double)t->bias[o]);
                    for (a = 0; a < g->kh; a++)
                        for (b = 0; b < g->kw; b++)
                            for (ch = 0; ch < g->c; ch++) {
                                const int64_t xi = x_index(g, img, i * g->sh - g->pt + a,
                                                           j * g->sw - g->pl + b, ch);
                                const double wv = t->wgt[((a * g->kw + b) * g->c + ch) * g->f + o];
                                if (xi < 0) continue;
                                s += (double)t->x[xi] * wv;
                                mag += fabs((double)t->x[xi] * wv);
                            }
                    rz[row * g->f + o] = s;
                    bz[row * g->f + o] = (double)(k + 2) * CTEST_U * mag + 1e-30;
                    /* y = relu(z) of the kernel's own z: the same comparison on the result */
                    ry[row * g->f + o] = z[row * g->f + o] > 0.0f ? z[row * g->f + o] : 0.0;
                    by[row * g->f + o] = 0.0;
                    rdz[row * g->f + o] = z[row * g->f + o] > 0.0f ? t->dy[row * g->f + o] : 0.0;
                }
            }
    for (img = 0; img < g->n; img++)
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++) {
                const int64_t row = (img * g->oh + i) * g->ow + j;
                for (o = 0; o < g->f; o++) {
                    const double d = rdz[row * g->f + o];
                    rdb[o] += d;
                    bdb[o] += fabs(d);
                    for (a = 0; a < g->kh; a++)
                        for (b = 0; b < g->kw; b++)
                            for (ch = 0; ch < g->c; ch++) {
                                const int64_t xi = x_index(g, img, i * g->sh - g->pt + a,
                                                           j * g->sw - g->pl + b, ch);
                                const int64_t wi = ((a * g->kw + b) * g->c + ch) * g->f + o;
                                if (xi < 0) continue;
                                rdw[wi] += (double)t->x[xi] * d;
                                bdw[wi] += fabs((double)t->x[xi] * d);
                                rdx[xi] += (double)t->wgt[wi] * d;
                                bdx[xi] += fabs((double)t->wgt[wi] * d);
                                terms_x[xi]++;
                            }
                }
            }
    for (e = 0; e < k * g->f; e++) bdw[e] = (double)(rows + 1) * CTEST_U * bdw[e] + 1e-30;
    for (e = 0; e < g->f; e++) bdb[e] = (double)(rows + 1) * CTEST_U * bdb[e] + 1e-30;
    /* dx: a sum over the f filters of each window entry (the GEMM) then over the windows
     * (col2im): at most f + windows terms in a row of roundings */
    for (e = 0; e < nx; e++)
        bdx[e] = (double)(terms_x[e] + g->f + 1) * CTEST_U * bdx[e] + 1e-30;
    if (pynn_conv2d_winograd_supported(g->n, g->kh, g->kw, g->sh, g->sw, g->c, g->f, g->oh, g->ow,
                                       PYNN_ACT_RELU)) {
        winograd_bound(bz, t->x, t->wgt, g->n, g->h, g->w, g->c, g->pt, g->pl, g->oh, g->ow,
                       g->f, 0);
    }
    if (pynn_conv2d_winograd_filter_supported(g->n, g->kh, g->kw, g->sh, g->sw, g->c, g->f, g->oh,
                                              g->ow, PYNN_ACT_RELU))
        winograd_dw_bound(bdw, g, t->x, rdz);
    if (pynn_conv_winograd_input_grad_supported(g->n, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
                                                g->h, g->w, g->c, g->f)) {
        float *fdz = ctest_new_floats(rows * g->f);
        for (e = 0; e < rows * g->f; e++) fdz[e] = (float)rdz[e];
        winograd_bound(bdx, fdz, t->wgt, g->n, g->oh, g->ow, g->f, 2 - g->pt, 2 - g->pl, g->h,
                       g->w, g->c, 1);
        free(fdz);
    }
    ctest_close("z", z, rz, bz, rows * g->f);
    ctest_close("y", y, ry, by, rows * g->f);
    ctest_close("dw", dw, rdw, bdw, k * g->f);
    ctest_close("db", db, rdb, bdb, g->f);
    ctest_close("dx", dx, rdx, bdx, nx);
    free(rz); free(bz); free(ry); free(by); free(rdz); free(rdw); free(bdw); free(rdb);
    free(bdb); free(rdx); free(bdx); free(terms_x);
}

/* im2col + the GEMM, where the GEMM takes its packed path: the same bits. */
static void check_against_im2col(const conv_case *t, const float *out) {
    const geometry *g = t->g;
    const int64_t rows = g->n * g->oh * g->ow, k = g->kh * g->kw * g->c;
    const float *z = out, *y = z + rows * g->f, *dw = y + rows * g->f;
    const float *dz = dw + k * g->f + g->f + g->n * g->h * g->w * g->c;
    const int64_t chunks = pynn_sgemm_ksplit_chunks(g->f, k, rows);
    float *cols = ctest_new_floats(rows * k), *z2 = ctest_new_floats(rows * g->f);
    float *y2 = ctest_new_floats(rows * g->f), *dwt = ctest_new_floats(k * g->f);
    float *dw2 = ctest_new_floats(k * g->f), *part = ctest_new_floats((chunks + 1) * k * g->f);
    int64_t p, q;
    CHECK(pynn_im2col(cols, t->x, g->n, g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw, g->pt,
                      g->pl, g->oh, g->ow) == PYNN_OK, "im2col");
    /* the GEMM's packed path: more than 16 rows and more than 64^3 multiply-adds (not
     * where Winograd computes the forward) */
    if (rows > 16 && rows * g->f * k > 64 * 64 * 64 &&
        !pynn_conv2d_winograd_supported(g->n, g->kh, g->kw, g->sh, g->sw, g->c, g->f, g->oh, g->ow,
                                        PYNN_ACT_RELU)) {
        CHECK(pynn_sgemm_bias_act(z2, y2, cols, t->wgt, t->bias, 0, 0, rows, g->f, k,
                                  PYNN_ACT_RELU, 0.0f) == PYNN_OK, "sgemm_bias_act");
        ctest_same_bits("z against im2col + GEMM", z, z2, rows * g->f);
        ctest_same_bits("y against im2col + GEMM", y, y2, rows * g->f);
    }
    if (chunks > 1 && !pynn_conv2d_winograd_filter_supported(g->n, g->kh, g->kw, g->sh, g->sw, g->c,
                                                             g->f, g->oh, g->ow, PYNN_ACT_RELU)) {
        /* the K-split's chunks, each a packed product (not where Winograd computes dW) */
        CHECK(pynn_sgemm_ksplit(dwt, part, dz, cols, 1, 0, g->f, k, rows, g->f, k, k) == PYNN_OK,
              "ksplit");
        for (p = 0; p < k; p++)
            for (q = 0; q < g->f; q++) dw2[p * g->f + q] = dwt[q * k + p];
        ctest_same_bits("dw against im2col + K-split GEMM", dw, dw2, k * g->f);
    }
    free(cols); free(z2); free(y2); free(dwt); free(dw2); free(part);
}

static void check_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                        int64_t s, int same, int64_t f) {
    const geometry g = make_geometry(n, h, w, c, kh, kw, s, same, f);
    const int64_t rows = g.n * g.oh * g.ow, nout = out_floats(&g);
    conv_case t;
    float *first = ctest_new_floats(nout), *again = ctest_new_floats(nout), *avx2 = NULL;
    int level, threads;
    t.g = &g;
    t.x = ctest_floats(n * h * w * c, -1.0f, 1.0f);
    t.wgt = ctest_floats(kh * kw * c * f, -0.5f, 0.5f);
    t.bias = ctest_floats(f, -0.2f, 0.2f);
    t.dy = ctest_floats(rows * f, -1.0f, 1.0f);
    CHECK(!pynn_conv2d_direct_supported(kh, kw, c, f, PYNN_ACT_RELU),
          "shape takes the direct kernel, not the GEMM");
    for (level = PYNN_LEVEL_GENERIC; level <= pynn_cpu_level(); level++) {
        CHECK(pynn_select_level(level) == PYNN_OK, "select level %d", level);
        CTEST_CONTEXT("n%lld %lldx%lldx%lld k%lldx%lld s%lld %s f%lld level %s", (long long)n,
                      (long long)h, (long long)w, (long long)c, (long long)kh, (long long)kw,
                      (long long)s, same ? "same" : "valid", (long long)f,
                      ctest_level_name(level));
        for (threads = 1; threads <= 2; threads++) {
            float *out = threads == 1 ? first : again;
            pynn_set_num_threads(threads);
            memset(out, threads == 1 ? 0xFE : 0xFF, (size_t)nout * sizeof(float));
            run_conv(&t, out);
        }
        ctest_same_bits("1 against 2 threads", first, again, nout);
        pynn_set_num_threads(1);
        check_reference(&t, first);
        check_against_im2col(&t, first);
        /* Winograd's sums are the same at AVX2 and AVX-512 (conv_winograd_internal.h) */
        if (level == PYNN_LEVEL_AVX2) avx2 = ctest_copy(first, nout);
        if (level == PYNN_LEVEL_AVX512 && avx2 != NULL) {
            const int64_t nx = n * h * w * c, dx_at = 2 * rows * f + kh * kw * c * f + f;
            if (pynn_conv2d_winograd_supported(n, kh, kw, s, s, c, f, g.oh, g.ow, PYNN_ACT_RELU))
                ctest_same_bits("Winograd z, y: avx512 = avx2", first, avx2, 2 * rows * f);
            if (pynn_conv2d_winograd_filter_supported(n, kh, kw, s, s, c, f, g.oh, g.ow,
                                                      PYNN_ACT_RELU))
                ctest_same_bits("Winograd dW: avx512 = avx2", first + 2 * rows * f,
                                avx2 + 2 * rows * f, kh * kw * c * f);
            if (pynn_conv_winograd_input_grad_supported(n, kh, kw, s, s, g.pt, g.pl, h, w, c, f))
                ctest_same_bits("Winograd dx: avx512 = avx2", first + dx_at, avx2 + dx_at, nx);
        }
    }
    free(avx2);
    pynn_select_level(PYNN_LEVEL_AUTO);
    pynn_set_num_threads(1);
    free((void *)t.x); free((void *)t.wgt); free((void *)t.bias); free((void *)t.dy);
    free(first); free(again);
}

int main(void) {
    ctest_seed(13);
    /*          n   h   w   c  kh kw  s same  f */
    check_shape(3,  1,  1,  5, 3, 3, 1, 1, 33);   /* 1 x 1 images */
    check_shape(2,  2,  2,  4, 5, 5, 1, 1, 20);   /* window larger than the image, same */
    check_shape(2,  3,  2,  3, 7, 7, 1, 1, 17);   /* a window reaching past both sides */
    check_shape(4, 11, 11,  7, 3, 3, 3, 0, 40);   /* stride 3, valid */
    check_shape(2, 10,  9,  6, 3, 3, 3, 1, 35);   /* stride 3, same */
    check_shape(5,  9,  9,  1, 3, 3, 1, 1, 17);   /* one channel */
    check_shape(3,  5,  5, 67, 3, 3, 1, 1, 35);   /* 67 channels: K = 603, 3 K blocks */
    check_shape(1, 20, 20,  8, 3, 3, 1, 1, 64);   /* batch 1, 400 positions: 2 chunks */
    check_shape(3, 12, 12, 13, 3, 3, 2, 1, 50);   /* K = 117, f = 50, stride 2 same */
    check_shape(1, 20, 20, 40, 3, 3, 1, 1, 48);   /* 8 x 48 tiles, K = 360 (100 tiles: under
                                                     Winograd's 128) */
    check_shape(2, 23, 23,  3, 5, 5, 2, 0, 48);   /* 5x5 stride 2 valid, K = 75 */
    check_shape(2, 10, 10,  8, 3, 3, 1, 1, 16);   /* one-vector tiles (K = 72 > 32) */
    check_shape(8, 32, 32,  3, 3, 3, 1, 1, 32);   /* K = 27: VGG's first layer, smaller */
    check_shape(3, 13, 11,  3, 3, 3, 1, 0, 32);   /* K = 27 "valid": windows in x itself */
    check_shape(5, 15, 14,  3, 3, 3, 2, 1, 20);   /* K = 27, stride 2 same: the copy's rows */
    check_shape(4, 12, 12,  1, 3, 3, 1, 1, 32);   /* K = 9: one channel, whole windows */
    check_shape(2,  8,  8, 96, 3, 3, 1, 1, 33);   /* K = 864 */
    check_shape(2,  7,  7, 24, 3, 3, 1, 1, 96);   /* dz packed in 3 panels, K rows padded */
    check_shape(3,  6,  6, 16, 3, 3, 1, 1, 80);   /* packed, the last panel half full (27
                                                     tiles: under Winograd's 128) */
    /* Winograd (all three passes): 80 = 2 x 32 + 16 filters, odd outputs (the last tiles
     * half in z), a 16-filter last chunk, "valid" (dx padded 2), batch 1 (144 tiles), and
     * enough tiles for two threads; then c f past 4096 (dW the GEMM's) and a batch of one
     * 5 x 4 image (6 tiles: all the GEMM's) */
    check_shape(16, 6,  6, 16, 3, 3, 1, 1, 80);
    check_shape(8,  9,  7, 32, 3, 3, 1, 1, 48);
    check_shape(8, 10,  9, 16, 3, 3, 1, 0, 32);
    check_shape(1, 24, 23, 48, 3, 3, 1, 1, 16);
    check_shape(3, 16, 16, 32, 3, 3, 1, 1, 32);
    check_shape(8,  8,  8, 64, 3, 3, 1, 1, 80);
    check_shape(1,  5,  4, 48, 3, 3, 1, 1, 16);
    /* Winograd over counts that are not multiples of 16: the last vector of channels (24,
     * 40, 56, 20, 50, 17) or of filters (24, 40, 72, 50, 20, 33) is partial at AVX-512 (and
     * at AVX2 and the baseline past multiples of 8 and 4) -- loaded with zeros past the
     * end, stored up to it; a last chunk of 8 filters (40, 72), of 24 (24), of 18 (50) and
     * of 1 (33); the filter gradient's last tile of channels past c (20, 50, 17); odd
     * outputs, "valid", and c f under 4096 for the filter gradient */
    check_shape(8,  9,  7, 24, 3, 3, 1, 1, 40);
    check_shape(16, 8,  8, 40, 3, 3, 1, 0, 24);
    check_shape(2, 16, 16, 56, 3, 3, 1, 1, 72);
    check_shape(8,  9,  7, 20, 3, 3, 1, 1, 50);
    check_shape(16, 8,  8, 50, 3, 3, 1, 0, 20);
    check_shape(6, 10, 11, 17, 3, 3, 1, 1, 33);
    /* the forward by Winograd from 8 channels and filters, the gradients by the implicit
     * GEMM (under 16) */
    check_shape(4, 16, 16,  8, 3, 3, 1, 1,  8);
    check_shape(4, 12, 12, 12, 3, 3, 1, 1, 20);
    return ctest_finish("test_conv_gemm");
}
