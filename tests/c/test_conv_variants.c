/* test_conv_variants.c -- the dilated, grouped convolution (csrc/conv_variants.c: forward,
 * weight, bias and input gradients, the depthwise special case) and the batched transpose,
 * against plain double loops over pynn.h's geometry, at every dispatch level and on 1 and 2
 * threads (ctest.h: the same bytes every time).
 *
 * Shapes: dilation with same-style padding, groups of several channels, depthwise with
 * depth multiplier 1 (the per-pixel vector loop) and 3, strides, windows reaching into the
 * padding, a batch of 35 images (more than the 32 parts of the weight gradient: parts of
 * 2 images) and an empty batch.  Bounds as test_conv.c: a float sum of m terms is within
 * (m + 1) u sum |terms| of the exact sum.  Refused arguments return PYNN_EINVAL. */
#include "ctest.h"
#include "act_elementwise.h"

typedef struct {
    int64_t n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh, dw, groups;
    int act;
} geo;

typedef struct {
    const geo *g;
    const float *x, *wgt, *bias, *dy;
    int64_t work_n;
} conv_case;

static int64_t sizes(const geo *g, int64_t *xn, int64_t *on, int64_t *kn) {
    *xn = g->n * g->h * g->w * g->c;
    *on = g->n * g->oh * g->ow * g->f;
    *kn = g->kh * g->kw * (g->c / g->groups) * g->f;
    return *xn + 3 * *on + *kn + g->f;
}

/* out: z, y, dz (dy overwritten), dw, db, dx */
static void run_conv(void *ctx, unsigned char *bytes) {
    const conv_case *t = ctx;
    const geo *g = t->g;
    int64_t xn, on, kn;
    float *out = (float *)bytes, *z, *y, *dz, *dwt, *db, *dx, *work;
    int status;
    sizes(g, &xn, &on, &kn);
    z = out, y = z + on, dz = y + on, dwt = dz + on, db = dwt + kn, dx = db + g->f;
    status = pynn_conv2d_general_forward(z, y, t->x, t->wgt, t->bias, g->n, g->h, g->w, g->c,
                                         g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->oh, g->ow,
                                         g->f, g->dh, g->dw, g->groups, g->act, 0.1f);
    CHECK(status == PYNN_OK, "forward status %d", status);
    if (on > 0) memcpy(dz, t->dy, (size_t)on * sizeof(float));
    work = ctest_new_floats(t->work_n);
    status = pynn_conv2d_general_backward(dwt, db, dx, dz, work, t->work_n, t->x, t->wgt, z, y,
                                          g->n, g->h, g->w, g->c, g->kh, g->kw, g->sh, g->sw,
                                          g->pt, g->pl, g->oh, g->ow, g->f, g->dh, g->dw,
                                          g->groups, g->act, 0.1f);
    CHECK(status == PYNN_OK, "backward status %d", status);
    free(work);
}

static double xv(const geo *g, const float *x, int64_t img, int64_t r, int64_t q, int64_t ch) {
    if (r < 0 || r >= g->h || q < 0 || q >= g->w) return 0.0;
    return x[((img * g->h + r) * g->w + q) * g->c + ch];
}

static void check_case(const geo *g) {
    int64_t xn, on, kn, total, img, i, j, o, a, b, ci, k;
    const int64_t cg = g->c / g->groups, fg = g->f / g->groups;
    float *x, *wgt, *bias, *dy;
    double *zw, *zb, *dzw, *dww, *dwb, *dbw, *dbb, *dxw, *dxb;
    unsigned char *got;
    float *gz, *gdz, *gdw, *gdb, *gdx;
    conv_case t;
    total = sizes(g, &xn, &on, &kn);
    x = ctest_floats(xn, -1, 1);
    wgt = ctest_floats(kn, -1, 1);
    bias = ctest_floats(g->f, -1, 1);
    dy = ctest_floats(on, -1, 1);
    t.g = g, t.x = x, t.wgt = wgt, t.bias = bias, t.dy = dy;
    t.work_n = pynn_conv2d_general_work(g->n, g->c, g->kh, g->kw, g->f, g->groups);
    CHECK(t.work_n >= 1, "work size %lld", (long long)t.work_n);
    got = ctest_everywhere(run_conv, &t, (size_t)total * sizeof(float), "conv_general");
    gz = (float *)got, gdz = gz + 2 * on, gdw = gdz + on, gdb = gdw + kn, gdx = gdb + g->f;
    zw = ctest_new_doubles(on), zb = ctest_new_doubles(on), dzw = ctest_new_doubles(on);
    dww = ctest_new_doubles(kn), dwb = ctest_new_doubles(kn);
    dbw = ctest_new_doubles(g->f), dbb = ctest_new_doubles(g->f);
    dxw = ctest_new_doubles(xn), dxb = ctest_new_doubles(xn);
    memset(dww, 0, (size_t)kn * sizeof(double)), memset(dwb, 0, (size_t)kn * sizeof(double));
    memset(dbw, 0, (size_t)g->f * sizeof(double)), memset(dbb, 0, (size_t)g->f * sizeof(double));
    memset(dxw, 0, (size_t)xn * sizeof(double)), memset(dxb, 0, (size_t)xn * sizeof(double));
    for (img = 0; img < g->n; img++)
        for (i = 0; i < g->oh; i++)
            for (j = 0; j < g->ow; j++)
                for (o = 0; o < g->f; o++) {
                    const int64_t e = ((img * g->oh + i) * g->ow + j) * g->f + o, grp = o / fg;
                    double s = bias[o], m = fabs(bias[o]);
                    const double d = gdz[e];   /* dz as the kernel made it (bitwise: below) */
                    for (a = 0; a < g->kh; a++)
                        for (b = 0; b < g->kw; b++)
                            for (ci = 0; ci < cg; ci++) {
                                const int64_t r = i * g->sh - g->pt + a * g->dh;
                                const int64_t q = j * g->sw - g->pl + b * g->dw;
                                const int64_t wi = ((a * g->kw + b) * cg + ci) * g->f + o;
                                const double v = xv(g, x, img, r, q, grp * cg + ci);
                                s += v * wgt[wi];
                                m += fabs(v * wgt[wi]);
                                dww[wi] += v * d, dwb[wi] += fabs(v * d);
                                if (r >= 0 && r < g->h && q >= 0 && q < g->w) {
                                    const int64_t xi = ((img * g->h + r) * g->w + q) * g->c +
                                                       grp * cg + ci;
                                    dxw[xi] += d * wgt[wi], dxb[xi] += fabs(d * wgt[wi]);
                                }
                            }
                    zw[e] = s;
                    zb[e] = (g->kh * g->kw * cg + 2) * CTEST_U * m;
                    dbw[o] += d, dbb[o] += fabs(d);
                    dzw[e] = d;
                }
    ctest_close("z", gz, zw, zb, on);
    {   /* dz: the activation's derivative of act_elementwise.h on the kernel's own z, y */
        float *want = ctest_new_floats(on > 0 ? on : 1);
        double *w64 = ctest_new_doubles(on > 0 ? on : 1), *zero = ctest_new_doubles(on > 0 ? on : 1);
        pynn_act_backward_span(want, gz, gz + on, dy, on, g->act, 0.1f);
        for (k = 0; k < on; k++) w64[k] = want[k], zero[k] = 0.0;
        ctest_close("dz", gdz, w64, zero, on);
        free(want), free(w64), free(zero);
    }
    for (k = 0; k < kn; k++) dwb[k] = (g->n * g->oh * g->ow + 1) * CTEST_U * dwb[k];
    for (k = 0; k < g->f; k++) dbb[k] = (g->n * g->oh * g->ow + 1) * CTEST_U * dbb[k];
    for (k = 0; k < xn; k++) dxb[k] = (g->kh * g->kw * fg + 1) * CTEST_U * dxb[k];
    ctest_close("dw", gdw, dww, dwb, kn);
    ctest_close("db", gdb, dbw, dbb, g->f);
    ctest_close("dx", gdx, dxw, dxb, xn);
    free(x), free(wgt), free(bias), free(dy), free(got);
    free(zw), free(zb), free(dzw), free(dww), free(dwb), free(dbw), free(dbb), free(dxw),
        free(dxb);
}

/* ---- transpose ---- */
typedef struct {
    const float *x;
    int64_t rows, ndim;
    const int64_t *dims, *perm;
} tr_case;

static void run_transpose(void *ctx, unsigned char *out) {
    const tr_case *t = ctx;
    const int status = pynn_transpose((float *)out, t->x, t->rows, t->ndim, t->dims, t->perm);
    CHECK(status == PYNN_OK, "transpose status %d", status);
}

static void check_transpose(int64_t rows, int64_t ndim, const int64_t *dims, const int64_t *perm) {
    int64_t size = 1, k, e, d;
    float *x;
    unsigned char *got;
    tr_case t;
    for (k = 0; k < ndim; k++) size *= dims[k];
    x = ctest_floats(rows * size, -1, 1);
    t.x = x, t.rows = rows, t.ndim = ndim, t.dims = dims, t.perm = perm;
    got = ctest_everywhere(run_transpose, &t, (size_t)(rows * size) * sizeof(float), "transpose");
    for (e = 0; e < rows * size; e++) {
        /* output index e -> (row, o_0 .. o_{ndim-1}) -> input offset */
        int64_t rem = e % size, off = 0, idx[8];
        for (d = ndim - 1; d >= 0; d--) {
            idx[d] = rem % dims[perm[d]];
            rem /= dims[perm[d]];
        }
        {
            int64_t in_idx[8], stride = 1;
            for (d = 0; d < ndim; d++) in_idx[perm[d]] = idx[d];
            for (d = ndim - 1; d >= 0; d--) {
                off += in_idx[d] * stride;
                stride *= dims[d];
            }
        }
        CHECK(memcmp(got + e * sizeof(float), x + (e / size) * size + off, sizeof(float)) == 0,
              "transpose element %lld", (long long)e);
    }
    free(x), free(got);
}

int main(void) {
    /* n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, dh, dw, groups, act */
    static const geo cases[] = {
        {2, 7, 6, 4, 3, 3, 1, 1, 2, 2, 7, 6, 4, 2, 2, 2, PYNN_ACT_RELU},     /* dilated, grouped */
        {3, 5, 7, 6, 2, 3, 2, 1, 0, 1, 2, 7, 9, 1, 1, 3, PYNN_ACT_TANH},     /* strided groups */
        {35, 6, 5, 8, 3, 3, 1, 1, 1, 1, 6, 5, 8, 1, 1, 8, PYNN_ACT_LINEAR},  /* depthwise dm 1 */
        {2, 6, 6, 3, 3, 2, 2, 2, 1, 0, 3, 3, 9, 1, 1, 3, PYNN_ACT_LEAKY_RELU}, /* dm 3 */
        {1, 4, 9, 2, 2, 3, 1, 1, 0, 2, 2, 9, 2, 2, 2, 2, PYNN_ACT_SIGMOID},  /* depthwise dilated */
        {0, 4, 4, 2, 3, 3, 1, 1, 1, 1, 4, 4, 2, 1, 1, 2, PYNN_ACT_LINEAR},   /* empty batch */
        {2, 3, 3, 2, 2, 2, 1, 1, 0, 0, 1, 1, 4, 3, 3, 1, PYNN_ACT_RELU},     /* window in padding */
    };
    static const int64_t d3[] = {3, 4, 5}, p3[] = {2, 0, 1}, q3[] = {1, 2, 0};
    static const int64_t d4[] = {2, 3, 1, 4}, p4[] = {3, 1, 0, 2}, d1[] = {7}, p1[] = {0};
    size_t k;
    ctest_seed(11);
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        CTEST_CONTEXT("conv case %zu", k);
        check_case(&cases[k]);
    }
    CTEST_CONTEXT("transpose");
    check_transpose(5, 3, d3, p3);
    check_transpose(2000, 3, d3, q3);
    check_transpose(3, 4, d4, p4);
    check_transpose(4, 1, d1, p1);
    check_transpose(0, 3, d3, p3);
    CTEST_CONTEXT("refused arguments");
    {
        float buf[64] = {0}, out[64];
        static const int64_t bad[] = {0, 0, 1}, big[] = {1, 2, 3};
        CHECK(pynn_transpose(out, buf, 1, 3, d3, bad) == PYNN_EINVAL, "repeated axis");
        CHECK(pynn_transpose(out, buf, 1, 3, d3, big) == PYNN_EINVAL, "axis out of range");
        CHECK(pynn_transpose(buf, buf, 1, 3, d3, p3) == PYNN_EINVAL, "in place");
        CHECK(pynn_conv2d_general_forward(out, out, buf, buf, NULL, 1, 2, 2, 3, 1, 1, 1, 1, 0,
                                          0, 2, 2, 4, 1, 1, 2, PYNN_ACT_LINEAR, 0.f) ==
              PYNN_EINVAL, "groups not dividing c");
        CHECK(pynn_conv2d_general_forward(out, out, buf, buf, NULL, 1, 2, 2, 4, 1, 1, 1, 1, 0,
                                          0, 2, 2, 3, 1, 1, 2, PYNN_ACT_LINEAR, 0.f) ==
              PYNN_EINVAL, "groups not dividing f");
        CHECK(pynn_conv2d_general_forward(out, out, buf, buf, NULL, 1, 2, 2, 2, 1, 1, 1, 1, 0,
                                          0, 2, 2, 2, 0, 1, 1, PYNN_ACT_LINEAR, 0.f) ==
              PYNN_EINVAL, "dilation 0");
        CHECK(pynn_conv2d_general_backward(out, out + 8, NULL, buf, out + 16, 1, buf, buf, buf,
                                           buf, 1, 2, 2, 2, 1, 1, 1, 1, 0, 0, 2, 2, 2, 1, 1, 2,
                                           PYNN_ACT_LINEAR, 0.f) == PYNN_EINVAL,
              "work too small");
        CHECK(pynn_conv2d_general_work(1, 3, 1, 1, 4, 2) == -1, "work of bad shapes");
    }
    return ctest_finish("test_conv_variants");
}
