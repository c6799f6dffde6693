/* test_optimizers.c -- pynn_sgd_update (plain, momentum, Nesterov), pynn_adam_update and
 * pynn_rmsprop_update (plain and with momentum) against the Keras 3 rules in double, at
 * every dispatch level and on 1 and 2 threads (ctest.h), over sizes around the 32768
 * elements where a second thread starts; slots a rule does not use are neither needed
 * nor touched; bad arguments are refused.
 *
 * Bounds (u = 2^-24): each rule's float operations, counted in the comments below, each
 * within u of its result; a value computed from an earlier rounded one carries that
 * error along (scaled by the factor it is multiplied with).  sqrtf is correctly
 * rounded.  The inputs keep v and g^2 away from 0 so that no division amplifies much. */
#include "ctest.h"

enum { SGD, SGD_MOMENTUM, SGD_NESTEROV, ADAM, RMSPROP, RMSPROP_MOMENTUM, N_RULES };
static const char *rule_names[] = {"sgd", "sgd momentum", "sgd nesterov", "adam", "rmsprop",
                                   "rmsprop momentum"};

#define LR 0.01f
#define MOMENTUM 0.9f
#define BETA1 0.9f
#define BETA2 0.999f
#define RHO 0.9f
#define EPSILON 1e-7f

typedef struct {
    const float *w, *s1, *s2, *g;  /* initial parameters, slots, gradient */
    int64_t n;
    int rule;
} opt_case;

/* out: w, slot1, slot2 after one update (n floats each; a slot the rule leaves alone is
 * passed as NULL, or kept as given, and must stay as given). */
static void run_update(void *ctx, unsigned char *out) {
    const opt_case *t = ctx;
    float *w = (float *)out, *s1 = w + t->n, *s2 = s1 + t->n;
    int status;
    memcpy(w, t->w, (size_t)t->n * sizeof(float));
    memcpy(s1, t->s1, (size_t)t->n * sizeof(float));
    memcpy(s2, t->s2, (size_t)t->n * sizeof(float));
    switch (t->rule) {
    case SGD: status = pynn_sgd_update(w, NULL, t->g, t->n, LR, 0.0f, 0); break;
    case SGD_MOMENTUM: status = pynn_sgd_update(w, s1, t->g, t->n, LR, MOMENTUM, 0); break;
    case SGD_NESTEROV: status = pynn_sgd_update(w, s1, t->g, t->n, LR, MOMENTUM, 1); break;
    case ADAM: status = pynn_adam_update(w, s1, s2, t->g, t->n, LR, BETA1, BETA2, EPSILON); break;
    case RMSPROP: status = pynn_rmsprop_update(w, s1, NULL, t->g, t->n, LR, RHO, 0.0f,
                                               EPSILON); break;
    default: status = pynn_rmsprop_update(w, s1, s2, t->g, t->n, LR, RHO, MOMENTUM, EPSILON); break;
    }
    CHECK(status == PYNN_OK, "status %d", status);
}

/* want/bound for w, slot1, slot2 (3n each) */
static void reference(const opt_case *t, double *want, double *bound) {
    const double u = CTEST_U, lr = LR, mu = MOMENTUM, b1 = BETA1, b2 = BETA2, rho = RHO;
    const double eps = EPSILON;
    const int64_t n = t->n;
    int64_t i;
    for (i = 0; i < n; i++) {
        /* m, v: the slots as given (for RMSprop slot1 is its v, slot2 its momentum) */
        const double w = t->w[i], m = t->s1[i], v = t->s2[i], g = t->g[i];
        double *ww = want + i, *w1 = want + n + i, *w2 = want + 2 * n + i;
        double *bw = bound + i, *b1_ = bound + n + i, *b2_ = bound + 2 * n + i;
        *w1 = m;                   /* slots the rule leaves alone */
        *w2 = v;
        *b1_ = *b2_ = 0.0;
        switch (t->rule) {
        case SGD:                  /* w - lr g: the product, the difference */
            *ww = w - lr * g;
            *bw = u * (fabs(lr * g) + fabs(*ww));
            break;
        case SGD_MOMENTUM:         /* m' = mu m - lr g (3 roundings); w + m' */
        case SGD_NESTEROV: {       /* w + (mu m' - lr g) (3 more, from the rounded m') */
            const double m1 = mu * m - lr * g;
            const double m1_err = u * (fabs(mu * m) + fabs(lr * g) + fabs(m1));
            *w1 = m1;
            *b1_ = m1_err;
            if (t->rule == SGD_MOMENTUM) {
                *ww = w + m1;
                *bw = m1_err + u * fabs(*ww);
            } else {
                const double step = mu * m1 - lr * g;
                *ww = w + step;
                *bw = mu * m1_err + u * (fabs(mu * m1) + fabs(lr * g) + fabs(step)) +
                      u * fabs(*ww);
            }
            break;
        }
        case ADAM: {
            /* m' = m + (g - m)(1 - b1): g - m, the product, the sum (1 - b1 rounds too);
             * v' = v + (g g - v)(1 - b2): one more for g g;
             * w' = w - lr m' / (sqrt(v') + eps): the sqrt halves v's relative error,
             * then the sum, product, quotient, difference */
            const double m1 = m + (g - m) * (1.0 - b1), v1 = v + (g * g - v) * (1.0 - b2);
            const double m_err = u * (2.0 * fabs((g - m) * (1.0 - b1)) + fabs(m1));
            const double v_err = u * (3.0 * fabs((g * g - v) * (1.0 - b2)) +
                                      fabs(g * g) * (1.0 - b2) + fabs(v1));
            const double den = sqrt(v1) + eps, step = lr * m1 / den;
            *w1 = m1;
            *w2 = v1;
            *b1_ = m_err;
            *b2_ = v_err;
            *ww = w - step;
            *bw = lr * m_err / den + fabs(step) * (0.5 * v_err / v1 + 5.0 * u) + u * fabs(*ww);
            break;
        }
        default: {
            /* slot1 = v, slot2 = mom.  v' = rho v + (1 - rho) g g: g g, the two products
             * and the sum (1 - rho is exact); inc = lr g / sqrt(v' + eps): v's error halved
             * by the sqrt, the sum, sqrt, product and quotient; with momentum mom' =
             * mu mom + inc (2 more); then w - inc or w - mom' */
            const double v1 = rho * m + (1.0 - rho) * g * g;
            const double v_err = u * (2.0 * (1.0 - rho) * g * g + fabs(rho * m) + fabs(v1));
            const double inc = lr * g / sqrt(v1 + eps);
            const double inc_err = fabs(inc) * (0.5 * v_err / (v1 + eps) + 4.0 * u);
            *w1 = v1;
            *b1_ = v_err;
            if (t->rule == RMSPROP) {
                *ww = w - inc;
                *bw = inc_err + u * fabs(*ww);
            } else {
                const double mom = mu * v + inc;
                *w2 = mom;
                *b2_ = inc_err + u * (fabs(mu * v) + fabs(mom));
                *ww = w - mom;
                *bw = *b2_ + u * fabs(*ww);
            }
            break;
        }
        }
    }
}

static void check_rule(int64_t n, int rule) {
    const int rms = rule == RMSPROP || rule == RMSPROP_MOMENTUM;
    float *w = ctest_floats(n, -1.0f, 1.0f), *m = ctest_floats(n, -0.1f, 0.1f);
    float *v = ctest_floats(n, 0.001f, 0.1f), *g = ctest_floats(n, -1.0f, 1.0f);
    double *want = ctest_new_doubles(3 * n), *bound = ctest_new_doubles(3 * n);
    /* slots: a momentum (any sign) and a mean square (positive), in the rule's order */
    opt_case t = {w, rms ? v : m, rms ? m : v, g, n, rule};
    float *out;
    int64_t i;
    for (i = 0; i < n; i += 101) g[i] = g[i] < 0 ? -0.05f : 0.05f;   /* small gradients */
    CTEST_CONTEXT("%s, n = %lld", rule_names[rule], (long long)n);
    out = (float *)ctest_everywhere(run_update, &t, (size_t)(3 * n) * sizeof(float), "update");
    reference(&t, want, bound);
    ctest_close("parameters", out, want, bound, n);
    ctest_close("slot 1", out + n, want + n, bound + n, n);
    ctest_close("slot 2", out + 2 * n, want + 2 * n, bound + 2 * n, n);
    free(out);
    free(w);
    free(m);
    free(v);
    free(g);
    free(want);
    free(bound);
}

static void check_refusals(void) {
    float w[4] = {0}, m[4] = {0}, v[4] = {1, 1, 1, 1}, g[4] = {1, 1, 1, 1};
    CTEST_CONTEXT("refusals");
    CHECK(pynn_sgd_update(NULL, m, g, 4, LR, 0.0f, 0) == PYNN_EINVAL, "sgd w NULL");
    CHECK(pynn_sgd_update(w, m, NULL, 4, LR, 0.0f, 0) == PYNN_EINVAL, "sgd g NULL");
    CHECK(pynn_sgd_update(w, m, g, -1, LR, 0.0f, 0) == PYNN_EINVAL, "sgd n < 0");
    CHECK(pynn_sgd_update(w, NULL, g, 4, LR, MOMENTUM, 0) == PYNN_EINVAL, "sgd momentum, m NULL");
    CHECK(pynn_adam_update(NULL, m, v, g, 4, LR, BETA1, BETA2, EPSILON) == PYNN_EINVAL,
          "adam w NULL");
    CHECK(pynn_adam_update(w, NULL, v, g, 4, LR, BETA1, BETA2, EPSILON) == PYNN_EINVAL,
          "adam m NULL");
    CHECK(pynn_adam_update(w, m, NULL, g, 4, LR, BETA1, BETA2, EPSILON) == PYNN_EINVAL,
          "adam v NULL");
    CHECK(pynn_adam_update(w, m, v, NULL, 4, LR, BETA1, BETA2, EPSILON) == PYNN_EINVAL,
          "adam g NULL");
    CHECK(pynn_adam_update(w, m, v, g, -4, LR, BETA1, BETA2, EPSILON) == PYNN_EINVAL, "adam n < 0");
    CHECK(pynn_rmsprop_update(NULL, v, m, g, 4, LR, RHO, 0.0f, EPSILON) == PYNN_EINVAL,
          "rmsprop w NULL");
    CHECK(pynn_rmsprop_update(w, NULL, m, g, 4, LR, RHO, 0.0f, EPSILON) == PYNN_EINVAL,
          "rmsprop v NULL");
    CHECK(pynn_rmsprop_update(w, v, m, NULL, 4, LR, RHO, 0.0f, EPSILON) == PYNN_EINVAL,
          "rmsprop g NULL");
    CHECK(pynn_rmsprop_update(w, v, NULL, g, 4, LR, RHO, MOMENTUM, EPSILON) == PYNN_EINVAL,
          "rmsprop momentum, mom NULL");
    CHECK(pynn_rmsprop_update(w, v, m, g, -4, LR, RHO, 0.0f, EPSILON) == PYNN_EINVAL,
          "rmsprop n < 0");
    /* n = 0: nothing to update */
    CHECK(pynn_sgd_update(w, m, g, 0, LR, MOMENTUM, 1) == PYNN_OK, "sgd n = 0");
    CHECK(pynn_adam_update(w, m, v, g, 0, LR, BETA1, BETA2, EPSILON) == PYNN_OK, "adam n = 0");
    CHECK(pynn_rmsprop_update(w, v, m, g, 0, LR, RHO, MOMENTUM, EPSILON) == PYNN_OK,
          "rmsprop n = 0");
}

/* pynn_schedule_lr against Keras 3's formulas written out here, and its refusals. */
static int close_to(double a, double b) { return fabs(a - b) <= 1e-12 * fabs(b) + 1e-15; }

static void check_schedules(void) {
    const double pi = 3.14159265358979323846;
    double p[PYNN_SCHEDULE_PARAMS];
    int64_t t, i;
    memset(p, 0, sizeof p);
    for (t = 0; t < 100; t++) {
        double e;
        p[0] = 0.1; p[1] = 7; p[2] = 0.5; p[3] = 0;            /* ExponentialDecay */
        e = 0.1 * pow(0.5, t / 7.0);
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_EXPONENTIAL_DECAY, p, t), e), "exp %d", (int)t);
        p[3] = 1;
        e = 0.1 * pow(0.5, (double)(t / 7));
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_EXPONENTIAL_DECAY, p, t), e), "exp stair %d", (int)t);
        e = 0.1 / (1 + 0.5 * (double)(t / 7));                 /* InverseTimeDecay */
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_INVERSE_TIME_DECAY, p, t), e), "inv %d", (int)t);
        p[2] = 0.01; p[3] = 2; p[4] = 0;                         /* PolynomialDecay */
        e = (0.1 - 0.01) * pow(1 - (t < 7 ? t : 7) / 7.0, 2) + 0.01;
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_POLYNOMIAL_DECAY, p, t), e), "poly %d", (int)t);
        p[2] = 0.2; p[3] = 0;                                     /* CosineDecay */
        e = 0.1 * (0.8 * 0.5 * (1 + cos(pi * (t < 7 ? t : 7) / 7.0)) + 0.2);
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_COSINE_DECAY, p, t), e), "cos %d", (int)t);
        p[2] = 1.0; p[3] = 0.5; p[4] = 0;                         /* CosineDecayRestarts, t_mul 1 */
        e = 0.1 * (0.5 * pow(0.5, (double)(t / 7)) * (1 + cos(pi * (t % 7) / 7.0)));
        CHECK(close_to(pynn_schedule_lr(PYNN_SCHEDULE_COSINE_DECAY_RESTARTS, p, t), e), "sgdr %d", (int)t);
        p[0] = 3; p[1] = 2; p[2] = 5; p[3] = 9;                   /* PiecewiseConstantDecay */
        p[4] = 0.4; p[5] = 0.3; p[6] = 0.2; p[7] = 0.1;
        e = t <= 2 ? 0.4 : t <= 5 ? 0.3 : t <= 9 ? 0.2 : 0.1;
        CHECK(pynn_schedule_lr(PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY, p, t) == e, "piecewise %d", (int)t);
    }
    p[0] = PYNN_SCHEDULE_MAX_BOUNDARIES;                          /* the most boundaries */
    for (i = 0; i < PYNN_SCHEDULE_MAX_BOUNDARIES; i++) p[1 + i] = (double)i;
    for (i = 0; i <= PYNN_SCHEDULE_MAX_BOUNDARIES; i++) p[1 + PYNN_SCHEDULE_MAX_BOUNDARIES + i] = i;
    CHECK(pynn_schedule_lr(PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY, p, 1000) == PYNN_SCHEDULE_MAX_BOUNDARIES,
          "last value");
    p[0] = PYNN_SCHEDULE_MAX_BOUNDARIES + 1;
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY, p, 0)), "too many");
    p[0] = 1.5;
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY, p, 0)), "fraction");
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_NONE, p, 0)), "none");
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_COUNT, p, 0)), "unknown kind");
    CHECK(isnan(pynn_schedule_lr(-1, p, 0)), "negative kind");
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_EXPONENTIAL_DECAY, NULL, 0)), "params NULL");
    CHECK(isnan(pynn_schedule_lr(PYNN_SCHEDULE_EXPONENTIAL_DECAY, p, -1)), "negative iteration");
}

int main(void) {
    static const int64_t sizes[] = {0, 1, 7, 4099, 32767, 32768, 32769, 100003};
    size_t s;
    int rule;
    ctest_seed(3);
    check_refusals();
    check_schedules();
    for (rule = 0; rule < N_RULES; rule++)
        for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_rule(sizes[s], rule);
    return ctest_finish("test_optimizers");
}
