/* test_optimizer_options.c -- Keras 3's base-optimizer settings in C: pynn_segment_sumsq,
 * pynn_clip_gradients (clipnorm per segment, global_clipnorm, clipvalue), the EMA
 * (pynn_ema_update, with and without the overwrite) and pynn_optimizer_apply (clip, decay on
 * the flagged segments, the rule, the EMA) against the formulas in double, at every dispatch
 * level on 1 and 2 threads (ctest.h: the same bits everywhere), over segments around the
 * norm chunk (4096) and the 32768 elements where a second thread starts; refusals leave
 * everything as it was, and a plan whose optimizer op is malformed is refused by
 * pynn_plan_check.
 *
 * Bounds (u = 2^-24): the norms are double sums rounded once to float; each float op within
 * u of its result.  A clipped gradient is within 4u of g c / max(N, c); a weight after decay
 * and the SGD step within 8u (|w| + lr |g|); an EMA value within 4u (|ema| + |w|). */
#include "ctest.h"

#define NSEG 6
static const int64_t seg_sizes[NSEG] = {0, 1, 7, 4097, 40000, 3};
static const int64_t seg_flags[NSEG] = {1, 0, 1, 1, 0, 1};

typedef struct {
    const float *w, *g, *ema;
    int64_t n;
    int64_t segments[3 * NSEG];
    double options[PYNN_OPTION_COUNT];
    double hyper[PYNN_HYPER_COUNT];
    int64_t step;
} apply_case;

static void make_segments(int64_t *segments, int64_t *n) {
    int64_t i, off = 0;
    for (i = 0; i < NSEG; i++) {
        segments[3 * i] = off;
        segments[3 * i + 1] = seg_sizes[i];
        segments[3 * i + 2] = seg_flags[i];
        off += seg_sizes[i];
    }
    *n = off;
}

/* out: w, g, ema after one pynn_optimizer_apply (n floats each) */
static void run_apply(void *ctx, unsigned char *out) {
    const apply_case *t = ctx;
    float *w = (float *)out, *g = w + t->n, *ema = g + t->n;
    int status;
    memcpy(w, t->w, (size_t)t->n * sizeof(float));
    memcpy(g, t->g, (size_t)t->n * sizeof(float));
    memcpy(ema, t->ema, (size_t)t->n * sizeof(float));
    status = pynn_optimizer_apply(w, NULL, ema, g, t->n, t->segments, NSEG, PYNN_OPT_SGD,
                                  t->step, t->hyper, t->options);
    CHECK(status == PYNN_OK, "status %d", status);
}

static double sumsq_double(const float *g, int64_t n) {
    long double s = 0.0L;
    int64_t i;
    for (i = 0; i < n; i++) s += (long double)g[i] * g[i];
    return (double)s;
}

/* the formulas in double: want/bound for w, g, ema (3n each) */
static void reference(const apply_case *t, double *want, double *bound) {
    const double u = CTEST_U, lr = t->hyper[PYNN_HYPER_LEARNING_RATE];
    const double wd = t->hyper[PYNN_HYPER_WEIGHT_DECAY];
    const double clipnorm = t->options[PYNN_OPTION_CLIPNORM];
    const double clipvalue = t->options[PYNN_OPTION_CLIPVALUE];
    const double global = t->options[PYNN_OPTION_GLOBAL_CLIPNORM];
    const double m = t->step == 1 ? 0.0 : t->options[PYNN_OPTION_EMA_MOMENTUM];
    const int64_t f = (int64_t)t->options[PYNN_OPTION_EMA_OVERWRITE_FREQUENCY];
    const int64_t n = t->n;
    double total = 0.0;
    int64_t s, i;
    for (s = 0; s < NSEG; s++) total += sumsq_double(t->g + t->segments[3 * s], seg_sizes[s]);
    for (s = 0; s < NSEG; s++) {
        const int64_t off = t->segments[3 * s], size = seg_sizes[s];
        const double norm = sqrt(sumsq_double(t->g + off, size));
        for (i = off; i < off + size; i++) {
            double g = t->g[i], w = t->w[i], e = t->ema[i], gb;
            if (clipnorm > 0) g = g * clipnorm / (norm > clipnorm ? norm : clipnorm);
            else if (global > 0) g = g * (sqrt(total) > global ? global / sqrt(total) : 1.0);
            else if (clipvalue > 0) g = g < -clipvalue ? -clipvalue : (g > clipvalue ? clipvalue : g);
            double wb, eb;
            gb = 4 * u * fabs(g);
            if (seg_flags[s]) w = w - w * wd * lr;
            w = w - lr * g;
            wb = 8 * u * (fabs(w) + lr * fabs(g)) + lr * gb;
            eb = 4 * u * (fabs(m * e) + fabs(w)) + wb;
            e = m * e + (1.0 - m) * w;
            if (f > 0 && t->step % f == 0) {
                w = e;
                wb = eb;
            }
            want[i] = w;
            bound[i] = wb;
            want[n + i] = g;
            bound[n + i] = gb;
            want[2 * n + i] = e;
            bound[2 * n + i] = eb;
        }
    }
}

static void check_apply(const char *label, int clip, double c, double momentum, int64_t freq,
                        int64_t step) {
    apply_case t;
    double *want, *bound;
    unsigned char *out;
    float *w, *g, *ema;
    memset(&t, 0, sizeof t);
    make_segments(t.segments, &t.n);
    if (clip >= 0) t.options[clip] = c;
    t.options[PYNN_OPTION_EMA_MOMENTUM] = momentum;
    t.options[PYNN_OPTION_EMA_OVERWRITE_FREQUENCY] = (double)freq;
    t.hyper[PYNN_HYPER_LEARNING_RATE] = 0.01;
    t.hyper[PYNN_HYPER_WEIGHT_DECAY] = 0.5;
    t.step = step;
    w = ctest_floats(t.n, -1.0f, 1.0f);
    g = ctest_floats(t.n, -0.05f, 0.05f);
    ema = ctest_floats(t.n, -1.0f, 1.0f);
    t.w = w;
    t.g = g;
    t.ema = ema;
    CTEST_CONTEXT("%s", label);
    out = ctest_everywhere(run_apply, &t, (size_t)(3 * t.n) * sizeof(float), label);
    want = ctest_new_doubles(3 * t.n);
    bound = ctest_new_doubles(3 * t.n);
    reference(&t, want, bound);
    ctest_close("w", (const float *)out, want, bound, t.n);
    ctest_close("g", (const float *)out + t.n, want + t.n, bound + t.n, t.n);
    ctest_close("ema", (const float *)out + 2 * t.n, want + 2 * t.n, bound + 2 * t.n, t.n);
    free(out);
    free(want);
    free(bound);
    free(w);
    free(g);
    free(ema);
}

/* pynn_segment_sumsq: within a few ulps of the exact sums, the same bits on every run */
typedef struct {
    const float *g;
    int64_t n, segments[3 * NSEG];
} sumsq_case;

static void run_sumsq(void *ctx, unsigned char *out) {
    const sumsq_case *t = ctx;
    CHECK(pynn_segment_sumsq((double *)out, t->g, t->n, t->segments, NSEG) == PYNN_OK,
          "segment_sumsq");
}

static void check_sumsq(void) {
    sumsq_case t;
    double *got;
    int64_t s;
    make_segments(t.segments, &t.n);
    t.g = ctest_floats(t.n, -2.0f, 2.0f);
    CTEST_CONTEXT("segment_sumsq");
    got = (double *)ctest_everywhere(run_sumsq, &t, NSEG * sizeof(double), "segment_sumsq");
    for (s = 0; s < NSEG; s++) {
        const double exact = sumsq_double(t.g + t.segments[3 * s], seg_sizes[s]);
        CHECK(fabs(got[s] - exact) <= 1e-12 * exact, "segment %lld: %.17g vs %.17g",
              (long long)s, got[s], exact);
    }
    free(got);
    free((void *)t.g);
}

/* Each bad call: PYNN_EINVAL and w, g, ema untouched. */
static void check_refusals(void) {
    int64_t segments[3 * NSEG], n, bad[3 * NSEG];
    double options[PYNN_OPTION_COUNT] = {0}, hyper[PYNN_HYPER_COUNT] = {0}, o[PYNN_OPTION_COUNT];
    float *w, *g, *ema, *w0, *g0, *e0;
    int k;
    make_segments(segments, &n);
    hyper[PYNN_HYPER_LEARNING_RATE] = 0.1;
    hyper[PYNN_HYPER_WEIGHT_DECAY] = 0.1;
    w = ctest_floats(n, -1, 1);
    g = ctest_floats(n, -1, 1);
    ema = ctest_floats(n, -1, 1);
    w0 = ctest_copy(w, n);
    g0 = ctest_copy(g, n);
    e0 = ctest_copy(ema, n);
    CTEST_CONTEXT("refusals");
    for (k = 0; k < 12; k++) {
        int status;
        memcpy(bad, segments, sizeof bad);
        memcpy(o, options, sizeof o);
        o[PYNN_OPTION_CLIPNORM] = 1.0;
        switch (k) {
        case 0: bad[3 * 2] += 1; break;                          /* a gap */
        case 1: bad[3 * 4 + 1] += 1; break;                      /* past the end */
        case 2: bad[3 * 5 + 1] -= 1; break;                      /* short of the end */
        case 3: bad[3 * 3 + 2] = 4; break;                       /* an unknown flag */
        case 4: bad[3 * 1 + 1] = -1; break;                      /* a negative size */
        case 5: o[PYNN_OPTION_CLIPVALUE] = 1.0; break;           /* two clips */
        case 6: o[PYNN_OPTION_CLIPNORM] = -1.0; break;
        case 7: o[PYNN_OPTION_EMA_MOMENTUM] = 1.5; break;
        case 8: o[PYNN_OPTION_EMA_OVERWRITE_FREQUENCY] = 2.5; break;
        case 9: o[PYNN_OPTION_GLOBAL_CLIPNORM] = NAN; o[PYNN_OPTION_CLIPNORM] = 0; break;
        case 10: o[PYNN_OPTION_CLIPVALUE] = INFINITY; o[PYNN_OPTION_CLIPNORM] = 0; break;
        default: break;
        }
        status = k == 11 ? pynn_optimizer_apply(w, NULL, ema, g, n, segments, -1, PYNN_OPT_SGD, 1,
                                                hyper, o)
                         : pynn_optimizer_apply(w, NULL, ema, g, n, bad, NSEG, PYNN_OPT_SGD, 1,
                                                hyper, o);
        CHECK(status == PYNN_EINVAL, "case %d: status %d", k, status);
        ctest_same_bits("w untouched", w, w0, n);
        ctest_same_bits("g untouched", g, g0, n);
        ctest_same_bits("ema untouched", ema, e0, n);
    }
    CHECK(pynn_optimizer_apply(w, NULL, ema, g, n, segments, NSEG, PYNN_OPT_SGD, 0, hyper,
                               options) == PYNN_EINVAL, "step 0");
    CHECK(pynn_optimizer_apply(w, NULL, ema, g, n, NULL, NSEG, PYNN_OPT_SGD, 1, hyper,
                               options) == PYNN_EINVAL, "segments NULL");
    CHECK(pynn_ema_update(ema, w, n, 0, options) == PYNN_EINVAL, "ema step 0");
    CHECK(pynn_clip_gradients(g, n, segments, NSEG, NULL) == PYNN_EINVAL, "clip without options");
    ctest_same_bits("w untouched", w, w0, n);
    ctest_same_bits("g untouched", g, g0, n);
    ctest_same_bits("ema untouched", ema, e0, n);
    free(w); free(g); free(ema); free(w0); free(g0); free(e0);
}

/* A plan of one optimizer op: well-formed it passes pynn_plan_check; each malformed
 * variant (segment count, tiling, options, EMA buffer too small) is refused. */
static void check_plan(void) {
    enum { N = 10 };
    static float w[N], g[N], ema[N], small[3];
    pynn_buffer bufs[4] = {{w, 0, N, PYNN_DTYPE_F32}, {g, 0, N, PYNN_DTYPE_F32},
                           {ema, 0, N, PYNN_DTYPE_F32}, {small, 0, 3, PYNN_DTYPE_F32}};
    int64_t opbufs[6] = {0, 1, -1, -1, -1, 2};
    int64_t ints[2 + 6] = {PYNN_OPT_SGD, 2, 0, 4, 1, 4, 6, 0};
    double reals[PYNN_OPT_REALS_OPTIONS];
    pynn_op op;
    pynn_plan plan;
    int k;
    memset(reals, 0, sizeof reals);
    reals[PYNN_HYPER_LEARNING_RATE] = 0.1;
    reals[PYNN_OPT_REALS + PYNN_OPTION_CLIPNORM] = 1.0;
    memset(&plan, 0, sizeof plan);
    plan.ops = &op;
    plan.n_ops = 1;
    plan.bufs = bufs;
    plan.n_bufs = 4;
    plan.capacity = 1;
    CTEST_CONTEXT("plan");
    for (k = 0; k < 8; k++) {
        int64_t b2[6], i2[8];
        double r2[PYNN_OPT_REALS_OPTIONS];
        int status, nb = 6, ni = 8, nr = PYNN_OPT_REALS_OPTIONS;
        memcpy(b2, opbufs, sizeof b2);
        memcpy(i2, ints, sizeof i2);
        memcpy(r2, reals, sizeof r2);
        switch (k) {
        case 1: i2[1] = 3; break;                          /* count and ints disagree */
        case 2: i2[6] = 5; break;                          /* the tiling misses an element */
        case 3: r2[PYNN_OPT_REALS + PYNN_OPTION_CLIPVALUE] = 1.0; break;   /* two clips */
        case 4: b2[5] = 3; break;                          /* the EMA buffer is too small */
        case 5: ni = 0; break;                             /* no kind */
        case 6: nr = PYNN_OPT_REALS + 2; break;            /* a cut options block */
        case 7: nb = 7; break;                             /* one operand too many */
        default: break;
        }
        op.kind = PYNN_OP_OPTIMIZER;
        op.n_bufs = nb;
        op.n_ints = ni;
        op.n_reals = nr;
        op.bufs = b2;
        op.ints = i2;
        op.reals = r2;
        {
            int64_t big[7];
            if (nb == 7) {
                memcpy(big, b2, sizeof b2);
                big[6] = 0;
                op.bufs = big;
            }
            status = pynn_plan_check(&plan, 1);
        }
        CHECK(k == 0 ? status == PYNN_OK : status == PYNN_EINVAL, "variant %d: status %d", k,
              status);
    }
}

int main(void) {
    ctest_seed(11);
    check_sumsq();
    check_apply("decay only", -1, 0.0, 0.99, 0, 1);
    check_apply("clipnorm 0.2 (some segments clipped)", PYNN_OPTION_CLIPNORM, 0.2, 0.0, 0, 1);
    check_apply("clipnorm 100 (none clipped)", PYNN_OPTION_CLIPNORM, 100.0, 0.0, 0, 1);
    check_apply("global_clipnorm 1", PYNN_OPTION_GLOBAL_CLIPNORM, 1.0, 0.0, 0, 1);
    check_apply("global_clipnorm 1000", PYNN_OPTION_GLOBAL_CLIPNORM, 1000.0, 0.0, 0, 1);
    check_apply("clipvalue 0.01", PYNN_OPTION_CLIPVALUE, 0.01, 0.0, 0, 1);
    check_apply("ema step 1 (average = weights)", -1, 0.0, 0.9, 0, 1);
    check_apply("ema step 2", PYNN_OPTION_CLIPNORM, 0.2, 0.9, 0, 2);
    check_apply("ema step 4, overwrite every 2", PYNN_OPTION_CLIPVALUE, 0.01, 0.9, 2, 4);
    check_apply("ema step 3, overwrite every 2 (not now)", -1, 0.0, 0.9, 2, 3);
    check_refusals();
    check_plan();
    return ctest_finish("test_optimizer_options");
}
