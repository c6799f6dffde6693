/* test_pool.c -- max, average and global average pooling (csrc/pool.c), forward and
 * backward, against plain loops over the window geometry of pynn.h, at every dispatch
 * level and on 1 and 2 threads (ctest.h).
 *
 * Shapes: the unrolled 2x2 / stride 2 case (even and odd sizes, whose last row and column
 * no window reads), padding, overlapping windows (3x3 / 2), strides past the window,
 * windows wholly in the padding, more channels than the 64 of a channel block, empty
 * batches, outputs large enough for a second thread.  The data is quantised (multiples
 * of 1/4, half of it clipped to 0 as after a ReLU) so that windows often hold their
 * maximum twice: the gradient must go to the first position, in row-major order.
 *
 * Bounds (u = 2^-24): max pooling picks and routes values: exact, except where windows
 * overlap and the routed gradients add up (m terms: (m + 1) u sum |terms|).  Averages:
 * a float sum of the window's count values and a divide: (count + 1) u sum |x| / count;
 * the backward's shares dy / count (one rounding) summed over the m windows that cover
 * an element: (m + 1) u sum |shares|.  Global average's backward is one divide: u. */
#include "ctest.h"

typedef struct {
    int64_t n, h, w, c, ph, pw, sh, sw, pt, pl, pb, pr;
} pool_geometry;

static int64_t out_h(const pool_geometry *g) {
    const int64_t span = g->h + g->pt + g->pb - g->ph;
    return span < 0 ? 0 : span / g->sh + 1;
}
static int64_t out_w(const pool_geometry *g) {
    const int64_t span = g->w + g->pl + g->pr - g->pw;
    return span < 0 ? 0 : span / g->sw + 1;
}

typedef struct {
    const pool_geometry *g;
    const float *x, *dy;
} pool_case;

/* out: max y, max dx, average y, average dx */
static void run_pool(void *ctx, unsigned char *out) {
    const pool_case *t = ctx;
    const pool_geometry *g = t->g;
    const int64_t oh = out_h(g), ow = out_w(g), ny = g->n * oh * ow * g->c;
    const int64_t nx = g->n * g->h * g->w * g->c;
    float *ymax = (float *)out, *dxmax = ymax + ny, *yavg = dxmax + nx, *dxavg = yavg + ny;
    int s[4];
    s[0] = pynn_maxpool2d_forward(ymax, t->x, g->n, g->h, g->w, g->c, g->ph, g->pw, g->sh, g->sw,
                                  g->pt, g->pl, oh, ow);
    s[1] = pynn_maxpool2d_backward(dxmax, t->x, ymax, t->dy, g->n, g->h, g->w, g->c, g->ph,
                                   g->pw, g->sh, g->sw, g->pt, g->pl, oh, ow);
    s[2] = pynn_avgpool2d_forward(yavg, t->x, g->n, g->h, g->w, g->c, g->ph, g->pw, g->sh, g->sw,
                                  g->pt, g->pl, oh, ow);
    s[3] = pynn_avgpool2d_backward(dxavg, t->dy, g->n, g->h, g->w, g->c, g->ph, g->pw, g->sh,
                                   g->sw, g->pt, g->pl, oh, ow);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0, "status %d %d %d %d", s[0], s[1],
          s[2], s[3]);
}

static float *quantised(int64_t n) {
    float *x = ctest_new_floats(n);
    int64_t i;
    for (i = 0; i < n; i++) {
        const float v = (float)(int)(ctest_rand() * 16.0f - 8.0f) * 0.25f;
        x[i] = v > 0.0f ? v : 0.0f;
    }
    return x;
}

static void check_pool(const pool_geometry *g) {
    const int64_t oh = out_h(g), ow = out_w(g), ny = g->n * oh * ow * g->c;
    const int64_t nx = g->n * g->h * g->w * g->c;
    float *x = quantised(nx), *dy = ctest_floats(ny, -1.0f, 1.0f);
    float *ymax_want = ctest_new_floats(ny), *got;
    double *want = ctest_new_doubles(nx + ny), *bound = ctest_new_doubles(nx + ny);
    double *terms = ctest_new_doubles(nx);
    pool_case t = {g, x, dy};
    int64_t img, i, j, r, q, e, ch;
    CTEST_CONTEXT("pool n%lld %lldx%lldx%lld window %lldx%lld s%lldx%lld pad %lld,%lld,%lld,%lld",
                  (long long)g->n, (long long)g->h, (long long)g->w, (long long)g->c,
                  (long long)g->ph, (long long)g->pw, (long long)g->sh, (long long)g->sw,
                  (long long)g->pt, (long long)g->pl, (long long)g->pb, (long long)g->pr);
    got = (float *)ctest_everywhere(run_pool, &t, (size_t)(2 * ny + 2 * nx) * sizeof(float),
                                    "pooling");

    /* max: forward exact; backward: dy to the first maximum, counted terms per input */
    for (e = 0; e < nx; e++) want[e] = bound[e] = terms[e] = 0.0;
    for (img = 0; img < g->n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (ch = 0; ch < g->c; ch++) {
                    const int64_t o = ((img * oh + i) * ow + j) * g->c + ch;
                    int64_t arg = -1;
                    float m = 0.0f;
                    for (r = i * g->sh - g->pt; r < i * g->sh - g->pt + g->ph; r++)
                        for (q = j * g->sw - g->pl; q < j * g->sw - g->pl + g->pw; q++) {
                            const int64_t at = ((img * g->h + r) * g->w + q) * g->c + ch;
                            if (r < 0 || r >= g->h || q < 0 || q >= g->w) continue;
                            if (arg < 0 || x[at] > m) {
                                m = x[at];
                                arg = at;
                            }
                        }
                    ymax_want[o] = m;
                    if (arg >= 0) {
                        want[arg] += dy[o];
                        bound[arg] += fabs((double)dy[o]);
                        terms[arg] += 1.0;
                    }
                }
    for (e = 0; e < nx; e++) bound[e] *= (terms[e] > 1.0 ? terms[e] + 1.0 : 0.0) * CTEST_U;
    ctest_same_bits("max forward", got, ymax_want, ny);
    ctest_close("max backward", got + ny, want, bound, nx);

    /* average: forward; backward through the shares dy / count */
    for (e = 0; e < nx; e++) want[e] = bound[e] = terms[e] = 0.0;
    for (img = 0; img < g->n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++) {
                int64_t count = 0;
                for (r = i * g->sh - g->pt; r < i * g->sh - g->pt + g->ph; r++)
                    for (q = j * g->sw - g->pl; q < j * g->sw - g->pl + g->pw; q++)
                        count += r >= 0 && r < g->h && q >= 0 && q < g->w;
                for (ch = 0; ch < g->c; ch++) {
                    const int64_t o = ((img * oh + i) * ow + j) * g->c + ch;
                    double s = 0.0, mag = 0.0;
                    for (r = i * g->sh - g->pt; r < i * g->sh - g->pt + g->ph; r++)
                        for (q = j * g->sw - g->pl; q < j * g->sw - g->pl + g->pw; q++) {
                            const int64_t at = ((img * g->h + r) * g->w + q) * g->c + ch;
                            if (r < 0 || r >= g->h || q < 0 || q >= g->w) continue;
                            s += x[at];
                            mag += fabs((double)x[at]);
                            want[at] += (double)dy[o] / (double)count;
                            bound[at] += fabs((double)dy[o]) / (double)count;
                            terms[at] += 1.0;
                        }
                    want[nx + o] = count > 0 ? s / (double)count : 0.0;
                    bound[nx + o] =
                        count > 0 ? (double)(count + 1) * CTEST_U * mag / (double)count : 0.0;
                }
            }
    for (e = 0; e < nx; e++) bound[e] *= (terms[e] + 1.0) * CTEST_U;
    ctest_close("average forward", got + ny + nx, want + nx, bound + nx, ny);
    ctest_close("average backward", got + 2 * ny + nx, want, bound, nx);
    free(got);
    free(x);
    free(dy);
    free(ymax_want);
    free(want);
    free(bound);
    free(terms);
}

/* ---- max pooling with NaNs ------------------------------------------------------------
 * pool.c's max keeps a running maximum m = x > m ? x : m from the window's first position,
 * so a NaN wins only when it comes first, and the backward routes dy to the first position
 * equal to y: nowhere when y is NaN.  The backward recomputes y from x: these NaNs check
 * that it matches the forward there too, at every level (channels past the last whole
 * vector included) and on every path (2x2/2, disjoint, overlapping windows).  The wanted
 * values are the same float operations in the same order: the same bits. */
static void check_max_nan(const pool_geometry *g) {
    const int64_t oh = out_h(g), ow = out_w(g), ny = g->n * oh * ow * g->c;
    const int64_t nx = g->n * g->h * g->w * g->c;
    float *x = quantised(nx), *dy = ctest_floats(ny, -1.0f, 1.0f), *got;
    float *ywant = ctest_new_floats(ny), *dxwant = ctest_new_floats(nx);
    pool_case t = {g, x, dy};
    int64_t img, i, j, r, q, e, ch;
    CTEST_CONTEXT("max pool with NaNs n%lld %lldx%lldx%lld window %lldx%lld s%lldx%lld pad %lld",
                  (long long)g->n, (long long)g->h, (long long)g->w, (long long)g->c,
                  (long long)g->ph, (long long)g->pw, (long long)g->sh, (long long)g->sw,
                  (long long)g->pt);
    for (e = 0; e < nx; e += 5) x[e] = nanf("");  /* 21 channels: every window position */
    got = (float *)ctest_everywhere(run_pool, &t, (size_t)(2 * ny + 2 * nx) * sizeof(float),
                                    "max pooling with NaNs");
    for (e = 0; e < nx; e++) dxwant[e] = 0.0f;
    for (img = 0; img < g->n; img++)
        for (i = 0; i < oh; i++)
            for (j = 0; j < ow; j++)
                for (ch = 0; ch < g->c; ch++) {
                    const int64_t o = ((img * oh + i) * ow + j) * g->c + ch;
                    int64_t first = -1;
                    float m = 0.0f;
                    for (r = i * g->sh - g->pt; r < i * g->sh - g->pt + g->ph; r++)
                        for (q = j * g->sw - g->pl; q < j * g->sw - g->pl + g->pw; q++) {
                            const int64_t at = ((img * g->h + r) * g->w + q) * g->c + ch;
                            if (r < 0 || r >= g->h || q < 0 || q >= g->w) continue;
                            if (first < 0) {
                                first = at;
                                m = x[at];
                            } else {
                                m = x[at] > m ? x[at] : m;
                            }
                        }
                    ywant[o] = m;
                    for (r = i * g->sh - g->pt; first >= 0 && r < i * g->sh - g->pt + g->ph; r++)
                        for (q = j * g->sw - g->pl; q < j * g->sw - g->pl + g->pw; q++) {
                            const int64_t at = ((img * g->h + r) * g->w + q) * g->c + ch;
                            if (r < 0 || r >= g->h || q < 0 || q >= g->w || x[at] != m) continue;
                            dxwant[at] += dy[o];
                            first = -1;                   /* routed: stop */
                            break;
                        }
                }
    ctest_same_bits("max forward", got, ywant, ny);
    ctest_same_bits("max backward", got + ny, dxwant, nx);
    free(got);
    free(x);
    free(dy);
    free(ywant);
    free(dxwant);
}

/* ---- global average pooling --------------------------------------------------------- */

typedef struct {
    int64_t n, h, w, c;
    const float *x, *dy;
} global_case;

/* out: y (n c), dx (n h w c) */
static void run_global(void *ctx, unsigned char *out) {
    const global_case *t = ctx;
    float *y = (float *)out, *dx = y + t->n * t->c;
    const int s1 = pynn_global_avgpool2d_forward(y, t->x, t->n, t->h, t->w, t->c);
    const int s2 = pynn_global_avgpool2d_backward(dx, t->dy, t->n, t->h, t->w, t->c);
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

static void check_global(int64_t n, int64_t h, int64_t w, int64_t c) {
    const int64_t hw = h * w, ny = n * c, nx = n * hw * c;
    float *x = ctest_floats(nx, -1.0f, 1.0f), *dy = ctest_floats(ny, -1.0f, 1.0f), *got;
    double *want = ctest_new_doubles(ny + nx), *bound = ctest_new_doubles(ny + nx);
    global_case t = {n, h, w, c, x, dy};
    int64_t img, p, ch;
    CTEST_CONTEXT("global average pool n%lld %lldx%lldx%lld", (long long)n, (long long)h,
                  (long long)w, (long long)c);
    got = (float *)ctest_everywhere(run_global, &t, (size_t)(ny + nx) * sizeof(float),
                                    "global average pooling");
    for (img = 0; img < n; img++)
        for (ch = 0; ch < c; ch++) {
            double s = 0.0, mag = 0.0;
            for (p = 0; p < hw; p++) {
                const double v = x[(img * hw + p) * c + ch];
                s += v;
                mag += fabs(v);
                want[ny + (img * hw + p) * c + ch] = (double)dy[img * c + ch] / (double)hw;
                bound[ny + (img * hw + p) * c + ch] =
                    CTEST_U * fabs((double)dy[img * c + ch]) / (double)hw;
            }
            want[img * c + ch] = s / (double)hw;
            bound[img * c + ch] = (double)(hw + 1) * CTEST_U * mag / (double)hw;
        }
    ctest_close("forward", got, want, bound, ny);
    ctest_close("backward", got + ny, want + ny, bound + ny, nx);
    free(got);
    free(x);
    free(dy);
    free(want);
    free(bound);
}

static void check_refusals(void) {
    float a[16] = {0}, b[16] = {0}, c[16] = {0}, d[16] = {0};
    CTEST_CONTEXT("refusals");
    /* y x n h w c ph pw sh sw pt pl oh ow */
    CHECK(pynn_maxpool2d_forward(a, b, -1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "n < 0");
    CHECK(pynn_maxpool2d_forward(a, b, 1, 2, 2, 1, 0, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL, "ph 0");
    CHECK(pynn_maxpool2d_forward(a, b, 1, 2, 2, 1, 2, 2, 2, 0, 0, 0, 1, 1) == PYNN_EINVAL, "sw 0");
    CHECK(pynn_maxpool2d_forward(a, b, 1, 2, 2, 1, 2, 2, 2, 2, 0, -1, 1, 1) == PYNN_EINVAL,
          "pad < 0");
    CHECK(pynn_maxpool2d_forward(a, b, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, -1) == PYNN_EINVAL,
          "ow < 0");
    CHECK(pynn_maxpool2d_forward(NULL, b, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "y NULL");
    CHECK(pynn_maxpool2d_forward(a, NULL, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "x NULL");
    CHECK(pynn_maxpool2d_forward(NULL, NULL, 0, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_OK,
          "empty batch");
    CHECK(pynn_maxpool2d_backward(NULL, b, c, d, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "dx NULL");
    CHECK(pynn_maxpool2d_backward(a, NULL, c, d, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "x NULL");
    CHECK(pynn_maxpool2d_backward(a, b, NULL, d, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "y NULL");
    CHECK(pynn_maxpool2d_backward(a, b, c, NULL, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "dy NULL");
    CHECK(pynn_maxpool2d_backward(a, b, c, d, 1, 2, -2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "w < 0");
    CHECK(pynn_avgpool2d_forward(NULL, b, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "avg y NULL");
    CHECK(pynn_avgpool2d_forward(a, b, 1, 2, 2, 1, 2, 2, 0, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "avg sh 0");
    CHECK(pynn_avgpool2d_backward(NULL, b, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "avg dx NULL");
    CHECK(pynn_avgpool2d_backward(a, NULL, 1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "avg dy NULL");
    CHECK(pynn_avgpool2d_backward(a, b, 1, 2, 2, -1, 2, 2, 2, 2, 0, 0, 1, 1) == PYNN_EINVAL,
          "avg c < 0");
    CHECK(pynn_global_avgpool2d_forward(a, b, 1, 0, 2, 1) == PYNN_EINVAL, "global h 0");
    CHECK(pynn_global_avgpool2d_forward(a, b, 1, 2, 0, 1) == PYNN_EINVAL, "global w 0");
    CHECK(pynn_global_avgpool2d_forward(a, b, -1, 2, 2, 1) == PYNN_EINVAL, "global n < 0");
    CHECK(pynn_global_avgpool2d_forward(NULL, b, 1, 2, 2, 1) == PYNN_EINVAL, "global y NULL");
    CHECK(pynn_global_avgpool2d_forward(a, NULL, 1, 2, 2, 1) == PYNN_EINVAL, "global x NULL");
    CHECK(pynn_global_avgpool2d_backward(NULL, b, 1, 2, 2, 1) == PYNN_EINVAL, "global dx NULL");
    CHECK(pynn_global_avgpool2d_backward(a, NULL, 1, 2, 2, 1) == PYNN_EINVAL, "global dy NULL");
    CHECK(pynn_global_avgpool2d_backward(a, b, 1, 2, 2, -1) == PYNN_EINVAL, "global c < 0");
    CHECK(pynn_global_avgpool2d_forward(NULL, NULL, 0, 2, 2, 3) == PYNN_OK, "global empty batch");
}

int main(void) {
    /* n h w c ph pw sh sw pad top, left, bottom, right */
    static const pool_geometry shapes[] = {
        {2, 8, 8, 3, 2, 2, 2, 2, 0, 0, 0, 0},     /* 2x2 / 2, unrolled */
        {2, 9, 7, 5, 2, 2, 2, 2, 0, 0, 0, 0},     /* odd: a last row and column unread */
        {16, 28, 28, 6, 2, 2, 2, 2, 0, 0, 0, 0},  /* 2 threads */
        {2, 7, 7, 3, 2, 2, 2, 2, 0, 0, 1, 1},     /* "same": padding at the end */
        {3, 11, 10, 4, 3, 3, 2, 2, 1, 1, 1, 1},   /* overlapping windows */
        {8, 32, 32, 16, 3, 3, 2, 2, 1, 1, 1, 1},  /* overlapping, 2 threads */
        {2, 10, 10, 2, 2, 2, 3, 3, 0, 0, 0, 0},   /* strides past the window */
        {2, 13, 11, 3, 3, 2, 3, 2, 1, 0, 1, 1},
        {1, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1},     /* windows wholly in the padding */
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0},
        {2, 6, 6, 70, 3, 3, 3, 3, 0, 0, 0, 0},    /* two channel blocks, disjoint */
        {1, 5, 5, 70, 3, 3, 1, 1, 1, 1, 1, 1},    /* two channel blocks, overlapping */
        {3, 12, 11, 17, 9, 9, 1, 2, 4, 4, 4, 4},  /* overlapping windows of 81 positions */
        {2, 30, 30, 48, 3, 3, 2, 2, 0, 0, 0, 0},  /* AlexNet-style 3x3/2, 2 threads */
        {8, 15, 15, 20, 3, 3, 2, 2, 0, 0, 0, 0},  /* 3x3/2, several images a thread (their
                                                     index shared by the threads once
                                                     skipped some), a vector and a rest */
        {0, 4, 4, 3, 2, 2, 2, 2, 0, 0, 0, 0},     /* no images */
        {2, 4, 4, 0, 2, 2, 2, 2, 0, 0, 0, 0},     /* no channels */
        {1, 2, 2, 3, 3, 3, 1, 1, 0, 0, 0, 0},     /* window larger than the image: no output */
    };
    /* 21 channels: a whole vector of 16 (or 4 or 8) and a rest, at every level */
    static const pool_geometry nan_shapes[] = {
        {2, 8, 8, 21, 2, 2, 2, 2, 0, 0, 0, 0},    /* 2x2 / 2 */
        {2, 9, 9, 21, 3, 3, 3, 3, 0, 0, 0, 0},    /* disjoint windows */
        {2, 9, 9, 21, 3, 3, 2, 2, 0, 0, 0, 0},    /* overlapping windows */
        {2, 8, 8, 21, 3, 3, 2, 2, 1, 1, 1, 1},    /* overlapping, padding */
        {2, 11, 11, 21, 9, 9, 1, 2, 4, 4, 4, 4},  /* overlapping, 81 positions (scalar) */
    };
    /* n h w c */
    static const int64_t globals[][4] = {{0, 3, 3, 2}, {1, 1, 1, 1}, {3, 7, 5, 11},
                                         {64, 8, 8, 16}, {2, 1, 37, 3}, {5, 4, 4, 0}};
    size_t s;
    ctest_seed(5);
    check_refusals();
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) check_pool(&shapes[s]);
    for (s = 0; s < sizeof nan_shapes / sizeof nan_shapes[0]; s++) check_max_nan(&nan_shapes[s]);
    for (s = 0; s < sizeof globals / sizeof globals[0]; s++)
        check_global(globals[s][0], globals[s][1], globals[s][2], globals[s][3]);
    return ctest_finish("test_pool");
}
