/* optimizers.c -- Keras 3 update rules, elementwise over n parameters.
 *
 * Each rule is written in float32 in the order of the comments in pynn.h (which
 * follow Keras 3's ops), so the NumPy reference, which spells the same expressions
 * in the array's dtype, agrees to the last bit or nearly.  Elementwise: each
 * parameter is updated by one thread, results do not depend on the thread count.
 */
#include <math.h>
#include "internal.h"

/* momentum == 0: w -= lr g.  Otherwise m = momentum m - lr g; w += m, or with
 * nesterov w += momentum m - lr g.  m may be NULL when momentum == 0. */
int pynn_sgd_update(float *w, float *m, const float *g, int64_t n,
                    float lr, float momentum, int nesterov) {
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || g == NULL, PYNN_EINVAL);
    if (momentum == 0.0f) {
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) w[i] -= lr * g[i];);
        return PYNN_OK;
    }
    PYNN_RETURN_IF(m == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] = momentum * m[i] - lr * g[i];
            if (nesterov)
                w[i] += momentum * m[i] - lr * g[i];
            else
                w[i] += m[i];
        });
    return PYNN_OK;
}

/* m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2); w -= lr_t m / (sqrt(v) + eps).
 * The bias correction is folded into lr_t by the caller. */
int pynn_adam_update(float *w, float *m, float *v, const float *g, int64_t n,
                     float lr_t, float beta1, float beta2, float epsilon) {
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || m == NULL || v == NULL || g == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] += (g[i] - m[i]) * one_minus_beta1;
            v[i] += (g[i] * g[i] - v[i]) * one_minus_beta2;
            w[i] -= lr_t * m[i] / (sqrtf(v[i]) + epsilon);
        });
    return PYNN_OK;
}

/* v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + eps);
 * momentum == 0: w -= inc; else mom = momentum mom + inc; w -= mom. */
int pynn_rmsprop_update(float *w, float *v, float *mom, const float *g, int64_t n,
                        float lr, float rho, float momentum, float epsilon) {
    const float one_minus_rho = 1.0f - rho;
    int64_t i;
    PYNN_RETURN_IF(n < 0 || w == NULL || v == NULL || g == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(momentum != 0.0f && mom == NULL, PYNN_EINVAL);
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            float inc;
            v[i] = rho * v[i] + one_minus_rho * (g[i] * g[i]);
            inc = lr * g[i] / sqrtf(v[i] + epsilon);
            if (momentum == 0.0f) {
                w[i] -= inc;
            } else {
                mom[i] = momentum * mom[i] + inc;
                w[i] -= mom[i];
            }
        });
    return PYNN_OK;
}

/* NaN-propagating max (as np.maximum / Keras's ops.maximum): b when b > a or b is NaN. */
static inline float max_nan(float a, float b) { return (b > a || b != b) ? b : a; }

/* sign(x): 1, -1, or x itself for 0, -0 and NaN (as np.sign). */
static inline float sign_nan(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); }

void pynn_nadam_factors(double out[3], double beta_1, double beta_2, int64_t step) {
    const int64_t k = step < 1000 ? step : 1000;
    const double u_t = beta_1 * (1.0 - 0.5 * pow(0.96, (double)step));
    const double u_t1 = beta_1 * (1.0 - 0.5 * pow(0.96, (double)step + 1.0));
    double d = 1.0, q = 1.0, u_product_t, u_product_t1;
    int64_t s;
    for (s = 1; s <= k; s++) {
        d *= 0.96;
        q *= 1.0 - 0.5 * d;
    }
    u_product_t = pow(beta_1, (double)step) * q;
    u_product_t1 = u_product_t * u_t1;
    out[0] = u_t1 / (1.0 - u_product_t1);
    out[1] = (1.0 - u_t) / (1.0 - u_product_t);
    out[2] = 1.0 - pow(beta_2, (double)step);
}

int pynn_optimizer_slots(int kind, const double *hyper) {
    if (hyper == NULL) return 0;
    switch (kind) {
    case PYNN_OPT_SGD:
        return (float)hyper[PYNN_HYPER_MOMENTUM] != 0.0f ? 1 : 0;
    case PYNN_OPT_ADAM:
        return hyper[PYNN_HYPER_AMSGRAD] != 0.0 ? 7 : 3;
    case PYNN_OPT_RMSPROP:
        return (float)hyper[PYNN_HYPER_MOMENTUM] != 0.0f ? 3 : 1;
    case PYNN_OPT_ADAGRAD: case PYNN_OPT_LION:
        return 1;
    case PYNN_OPT_ADADELTA: case PYNN_OPT_ADAMAX: case PYNN_OPT_NADAM:
        return 3;
    default:
        return 0;
    }
}

/* w -= w * wd * lr, in this order (Keras: variable - variable * wd * lr). */
static int weight_decay(float *w, int64_t n, float wd, float lr) {
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) w[i] = w[i] - w[i] * wd * lr;);
    return PYNN_OK;
}

/* acc += g^2; w -= lr g / sqrt(acc + eps) */
static int adagrad(float *w, float *acc, const float *g, int64_t n, float lr, float eps) {
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            acc[i] += g[i] * g[i];
            w[i] -= lr * g[i] / sqrtf(acc[i] + eps);
        });
    return PYNN_OK;
}

/* ag = rho ag + (1 - rho) g^2; delta = -(sqrt(ad + eps) g) / sqrt(ag + eps);
 * ad = rho ad + (1 - rho) delta^2; w += lr delta */
static int adadelta(float *w, float *ag, float *ad, const float *g, int64_t n, float lr,
                    float rho, float eps) {
    const float one_minus_rho = 1.0f - rho;
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            float delta;
            ag[i] = rho * ag[i] + one_minus_rho * (g[i] * g[i]);
            delta = -(sqrtf(ad[i] + eps) * g[i] / sqrtf(ag[i] + eps));
            ad[i] = rho * ad[i] + one_minus_rho * (delta * delta);
            w[i] += lr * delta;
        });
    return PYNN_OK;
}

/* m += (g - m)(1 - beta1); u = max(beta2 u, |g|); w -= lr m / (bc1 (u + eps)),
 * bc1 = 1 - beta1^t */
static int adamax(float *w, float *m, float *u, const float *g, int64_t n, float lr,
                  float beta1, float beta2, float eps, float bc1) {
    const float one_minus_beta1 = 1.0f - beta1;
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] += (g[i] - m[i]) * one_minus_beta1;
            u[i] = max_nan(beta2 * u[i], fabsf(g[i]));
            w[i] -= lr * m[i] / (bc1 * (u[i] + eps));
        });
    return PYNN_OK;
}

/* m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2); m_hat = c_m m + c_g g;
 * v_hat = v / bc2; w -= m_hat lr / (sqrt(v_hat) + eps)  (pynn_nadam_factors) */
static int nadam(float *w, float *m, float *v, const float *g, int64_t n, float lr,
                 float beta1, float beta2, float eps, float c_m, float c_g, float bc2) {
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            float m_hat, v_hat;
            m[i] += (g[i] - m[i]) * one_minus_beta1;
            v[i] += (g[i] * g[i] - v[i]) * one_minus_beta2;
            m_hat = c_m * m[i] + c_g * g[i];
            v_hat = v[i] / bc2;
            w[i] -= m_hat * lr / (sqrtf(v_hat) + eps);
        });
    return PYNN_OK;
}

/* w -= lr sign(beta1 m + (1 - beta1) g); m = beta2 m + (1 - beta2) g */
static int lion(float *w, float *m, const float *g, int64_t n, float lr, float beta1,
                float beta2) {
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            w[i] -= lr * sign_nan(m[i] * beta1 + g[i] * one_minus_beta1);
            m[i] = m[i] * beta2 + g[i] * one_minus_beta2;
        });
    return PYNN_OK;
}

/* Adam with amsgrad: m, v as Adam; vh = max(vh, v); w -= lr_t m / (sqrt(vh) + eps). */
static int adam_amsgrad(float *w, float *m, float *v, float *vh, const float *g, int64_t n,
                        float lr_t, float beta1, float beta2, float eps) {
    const float one_minus_beta1 = 1.0f - beta1, one_minus_beta2 = 1.0f - beta2;
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) {
            m[i] += (g[i] - m[i]) * one_minus_beta1;
            v[i] += (g[i] * g[i] - v[i]) * one_minus_beta2;
            vh[i] = max_nan(vh[i], v[i]);
            w[i] -= lr_t * m[i] / (sqrtf(vh[i]) + eps);
        });
    return PYNN_OK;
}

/* One optimizer step over a flat parameter array: the settings come as doubles (as
 * Python holds them) and reach the update rules as float, except the scalars that
 * depend on the step, computed in double first, term for term as
 * pynn.backend.reference does (adam_lr_t, nadam_factors). */
int pynn_optimizer_step(float *w, float *const *slots, const float *g, int64_t n,
                        int kind, int64_t step, const double *hyper) {
    float *s[PYNN_OPT_SLOTS] = {NULL, NULL, NULL};
    int need, j, status;
    float lr, wd;
    PYNN_RETURN_IF(hyper == NULL || n < 0 || step < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(kind < 0 || kind >= PYNN_OPT_COUNT, PYNN_EINVAL);
    need = pynn_optimizer_slots(kind, hyper);
    if (n == 0) return PYNN_OK;   /* nothing to update (the rules refuse NULL arrays) */
    PYNN_RETURN_IF(w == NULL || g == NULL || (need != 0 && slots == NULL), PYNN_EINVAL);
    for (j = 0; j < PYNN_OPT_SLOTS; j++) {
        if (need & (1 << j)) {
            s[j] = slots[j];
            PYNN_RETURN_IF(s[j] == NULL, PYNN_EINVAL);
        }
    }
    lr = (float)hyper[PYNN_HYPER_LEARNING_RATE];
    wd = (float)hyper[PYNN_HYPER_WEIGHT_DECAY];
    if (wd != 0.0f) {
        status = weight_decay(w, n, wd, lr);
        if (status != PYNN_OK) return status;
    }
    switch (kind) {
    case PYNN_OPT_SGD: {
        const float momentum = (float)hyper[PYNN_HYPER_MOMENTUM];
        return pynn_sgd_update(w, s[0], g, n, lr, momentum, hyper[PYNN_HYPER_NESTEROV] != 0.0);
    }
    case PYNN_OPT_ADAM: {
        const double beta1 = hyper[PYNN_HYPER_BETA_1], beta2 = hyper[PYNN_HYPER_BETA_2];
        const double lr_t = hyper[PYNN_HYPER_LEARNING_RATE] * sqrt(1.0 - pow(beta2, (double)step)) /
                            (1.0 - pow(beta1, (double)step));
        if (s[2] != NULL)
            return adam_amsgrad(w, s[0], s[1], s[2], g, n, (float)lr_t, (float)beta1,
                                (float)beta2, (float)hyper[PYNN_HYPER_EPSILON]);
        return pynn_adam_update(w, s[0], s[1], g, n, (float)lr_t, (float)beta1, (float)beta2,
                                (float)hyper[PYNN_HYPER_EPSILON]);
    }
    case PYNN_OPT_RMSPROP:
        return pynn_rmsprop_update(w, s[0], s[1], g, n, lr, (float)hyper[PYNN_HYPER_RHO],
                                   (float)hyper[PYNN_HYPER_MOMENTUM],
                                   (float)hyper[PYNN_HYPER_EPSILON]);
    case PYNN_OPT_ADAGRAD:
        return adagrad(w, s[0], g, n, lr, (float)hyper[PYNN_HYPER_EPSILON]);
    case PYNN_OPT_ADADELTA:
        return adadelta(w, s[0], s[1], g, n, lr, (float)hyper[PYNN_HYPER_RHO],
                        (float)hyper[PYNN_HYPER_EPSILON]);
    case PYNN_OPT_ADAMAX: {
        const double bc1 = 1.0 - pow(hyper[PYNN_HYPER_BETA_1], (double)step);
        return adamax(w, s[0], s[1], g, n, lr, (float)hyper[PYNN_HYPER_BETA_1],
                      (float)hyper[PYNN_HYPER_BETA_2], (float)hyper[PYNN_HYPER_EPSILON],
                      (float)bc1);
    }
    case PYNN_OPT_NADAM: {
        double f[3];
        pynn_nadam_factors(f, hyper[PYNN_HYPER_BETA_1], hyper[PYNN_HYPER_BETA_2], step);
        return nadam(w, s[0], s[1], g, n, lr, (float)hyper[PYNN_HYPER_BETA_1],
                     (float)hyper[PYNN_HYPER_BETA_2], (float)hyper[PYNN_HYPER_EPSILON],
                     (float)f[0], (float)f[1], (float)f[2]);
    }
    case PYNN_OPT_LION:
        return lion(w, s[0], g, n, lr, (float)hyper[PYNN_HYPER_BETA_1],
                    (float)hyper[PYNN_HYPER_BETA_2]);
    default:
        return PYNN_EINVAL;
    }
}

/* ---- learning-rate schedules (Keras 3's formulas, in double) ------------------------ */
double pynn_schedule_lr(int kind, const double *p, int64_t iteration) {
    const double pi = 3.14159265358979323846;
    double step = (double)iteration, frac;
    if (p == NULL || iteration < 0) return NAN;
    switch (kind) {
    case PYNN_SCHEDULE_EXPONENTIAL_DECAY:   /* lr0 rate^(step / decay_steps) */
        frac = step / p[1];
        if (p[3] != 0.0) frac = floor(frac);
        return p[0] * pow(p[2], frac);
    case PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY: {  /* values[i]: boundaries[i-1] < step <= boundaries[i] */
        const double n = p[0];
        int64_t i, k;
        if (!(n >= 0 && n <= PYNN_SCHEDULE_MAX_BOUNDARIES) || n != (double)(int64_t)n) return NAN;
        k = (int64_t)n;
        for (i = 0; i < k; i++)
            if (step <= p[1 + i]) break;
        return p[1 + k + i];
    }
    case PYNN_SCHEDULE_POLYNOMIAL_DECAY: {  /* (lr0 - end) (1 - step / steps)^power + end */
        double steps = p[1];
        if (p[4] != 0.0) {
            if (step != 0.0) steps *= ceil(step / p[1]);
        } else if (step > steps) {
            step = steps;
        }
        return (p[0] - p[2]) * pow(1.0 - step / steps, p[3]) + p[2];
    }
    case PYNN_SCHEDULE_INVERSE_TIME_DECAY:  /* lr0 / (1 + rate step / decay_steps) */
        frac = step / p[1];
        if (p[3] != 0.0) frac = floor(frac);
        return p[0] / (1.0 + p[2] * frac);
    case PYNN_SCHEDULE_COSINE_DECAY: {
        double from = p[0];
        if (p[3] != 0.0) {                  /* warmup: lr0 -> warmup_target over warmup_steps */
            if (step > p[1] + p[5]) step = p[1] + p[5];
            if (step < p[5]) return (p[4] - p[0]) * (step / p[5]) + p[0];
            step -= p[5];
            from = p[4];
        } else if (step > p[1]) {
            step = p[1];
        }
        return from * ((1.0 - p[2]) * (0.5 * (1.0 + cos(pi * (step / p[1])))) + p[2]);
    }
    case PYNN_SCHEDULE_COSINE_DECAY_RESTARTS: {
        const double t_mul = p[2], m_mul = p[3], alpha = p[4];
        double i_restart;
        frac = step / p[1];
        if (t_mul == 1.0) {
            i_restart = floor(frac);
            frac -= i_restart;
        } else {                            /* restart i lasts first_decay_steps t_mul^i */
            i_restart = floor(log(1.0 - frac * (1.0 - t_mul)) / log(t_mul));
            frac = (frac - (1.0 - pow(t_mul, i_restart)) / (1.0 - t_mul)) / pow(t_mul, i_restart);
        }
        return p[0] * ((1.0 - alpha) * (0.5 * pow(m_mul, i_restart) * (1.0 + cos(pi * frac))) + alpha);
    }
    default:
        return NAN;
    }
}

/* ---- Keras 3's base-optimizer settings: clipping, per-variable decay, EMA ----------- */

/* Segment i of the tiling: offset, size, flags (n_segments == 0: one segment of n, decay). */
static void segment_at(const int64_t *segments, int64_t n_segments, int64_t n, int64_t i,
                       int64_t *offset, int64_t *size, int64_t *flags) {
    if (n_segments == 0) {
        *offset = 0;
        *size = n;
        *flags = PYNN_SEGMENT_DECAY;
        return;
    }
    *offset = segments[3 * i];
    *size = segments[3 * i + 1];
    *flags = segments[3 * i + 2];
}

static int option_ok(double x) { return x >= 0.0 && x <= 3.4e38; }   /* finite, float-sized */

int pynn_optimizer_options_check(int64_t n, const int64_t *segments, int64_t n_segments,
                                 const double *options) {
    int64_t i, end = 0;
    PYNN_RETURN_IF(n < 0 || n_segments < 0 || (n_segments > 0 && segments == NULL), PYNN_EINVAL);
    for (i = 0; i < n_segments; i++) {
        const int64_t off = segments[3 * i], size = segments[3 * i + 1], flags = segments[3 * i + 2];
        PYNN_RETURN_IF(off != end || size < 0 || size > n - end, PYNN_EINVAL);
        PYNN_RETURN_IF(flags & ~(int64_t)(PYNN_SEGMENT_DECAY | PYNN_SEGMENT_SPARSE), PYNN_EINVAL);
        end += size;
    }
    PYNN_RETURN_IF(n_segments > 0 && end != n, PYNN_EINVAL);
    if (options != NULL) {
        const double f = options[PYNN_OPTION_EMA_OVERWRITE_FREQUENCY];
        int clips = 0;
        for (i = 0; i < PYNN_OPTION_COUNT; i++) PYNN_RETURN_IF(!option_ok(options[i]), PYNN_EINVAL);
        clips = (options[PYNN_OPTION_CLIPNORM] != 0.0) + (options[PYNN_OPTION_CLIPVALUE] != 0.0) +
                (options[PYNN_OPTION_GLOBAL_CLIPNORM] != 0.0);
        PYNN_RETURN_IF(clips > 1 || options[PYNN_OPTION_EMA_MOMENTUM] > 1.0, PYNN_EINVAL);
        PYNN_RETURN_IF(f > 9.0e15 || f != (double)(int64_t)f, PYNN_EINVAL);
    }
    return PYNN_OK;
}

/* Chunk sums of this many chunks at a time live on the stack. */
#define NORM_BATCH 256

/* The sum of squares of g[0 .. n) in double: chunks of PYNN_NORM_CHUNK summed in order
 * (one thread each), the chunk sums added in chunk order. */
static double sumsq(const float *g, int64_t n) {
    const int64_t nchunks = (n + PYNN_NORM_CHUNK - 1) / PYNN_NORM_CHUNK;
    double part[NORM_BATCH], total = 0.0;
    int64_t c0, c;
    for (c0 = 0; c0 < nchunks; c0 += NORM_BATCH) {
        const int64_t k = nchunks - c0 < NORM_BATCH ? nchunks - c0 : NORM_BATCH;
        PYNN_PARALLEL_FOR(k > 1 ? pynn_threads_for(k * PYNN_NORM_CHUNK) : 1,
            for (c = 0; c < k; c++) {
                const int64_t i0 = (c0 + c) * PYNN_NORM_CHUNK;
                const int64_t i1 = i0 + PYNN_NORM_CHUNK < n ? i0 + PYNN_NORM_CHUNK : n;
                double acc = 0.0;
                int64_t i;
                for (i = i0; i < i1; i++) acc += (double)g[i] * (double)g[i];
                part[c] = acc;
            });
        for (c = 0; c < k; c++) total += part[c];
    }
    return total;
}

int pynn_segment_sumsq(double *sums, const float *g, int64_t n, const int64_t *segments,
                       int64_t n_segments) {
    int64_t i, off, size, flags;
    int status = pynn_optimizer_options_check(n, segments, n_segments, NULL);
    if (status != PYNN_OK) return status;
    PYNN_RETURN_IF(sums == NULL || (n > 0 && g == NULL), PYNN_EINVAL);
    for (i = 0; i < (n_segments == 0 ? 1 : n_segments); i++) {
        segment_at(segments, n_segments, n, i, &off, &size, &flags);
        sums[i] = sumsq(g + off, size);
    }
    return PYNN_OK;
}

/* g *= c / max(norm, c) over one segment, float32 as Keras: (g c) / max(norm, c). */
static void clip_by_norm(float *g, int64_t n, float norm, float c) {
    const float denom = max_nan(norm, c);
    int64_t i;
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (i = 0; i < n; i++) g[i] = g[i] * c / denom;);
}

int pynn_clip_gradients(float *g, int64_t n, const int64_t *segments, int64_t n_segments,
                        const double *options) {
    int64_t i, off, size, flags;
    const int64_t count = n_segments == 0 ? 1 : n_segments;
    int status = pynn_optimizer_options_check(n, segments, n_segments, options);
    if (status != PYNN_OK) return status;
    PYNN_RETURN_IF(options == NULL || (n > 0 && g == NULL), PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    if (options[PYNN_OPTION_CLIPNORM] > 0.0) {
        const float c = (float)options[PYNN_OPTION_CLIPNORM];
        for (i = 0; i < count; i++) {
            segment_at(segments, n_segments, n, i, &off, &size, &flags);
            if (size > 0) clip_by_norm(g + off, size, (float)sqrt(sumsq(g + off, size)), c);
        }
    } else if (options[PYNN_OPTION_GLOBAL_CLIPNORM] > 0.0) {
        const float c = (float)options[PYNN_OPTION_GLOBAL_CLIPNORM];
        double total = 0.0;
        float norm, inv, scale;
        for (i = 0; i < count; i++) {
            segment_at(segments, n_segments, n, i, &off, &size, &flags);
            total += sumsq(g + off, size);
        }
        norm = (float)sqrt(total);
        inv = 1.0f / norm;
        /* Keras: c * min(1 / N, 1 / c) + (N - N): NaN for an infinite or NaN norm */
        scale = c * (inv < 1.0f / c ? inv : 1.0f / c) + (norm - norm);
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) g[i] = g[i] * scale;);
    } else if (options[PYNN_OPTION_CLIPVALUE] > 0.0) {
        const float c = (float)options[PYNN_OPTION_CLIPVALUE];
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) {
                const float x = g[i];
                g[i] = x < -c ? -c : (x > c ? c : x);   /* NaN stays NaN */
            });
    }
    return PYNN_OK;
}

int pynn_ema_update(float *ema, float *w, int64_t n, int64_t step, const double *options) {
    float m, one_minus_m;
    int64_t i, f;
    int status = pynn_optimizer_options_check(n, NULL, 0, options);
    if (status != PYNN_OK) return status;
    PYNN_RETURN_IF(options == NULL || step < 1 || (n > 0 && (ema == NULL || w == NULL)),
                   PYNN_EINVAL);
    /* Keras: momentum = (iterations != 0) * ema_momentum, iterations = step - 1 */
    m = step == 1 ? 0.0f : (float)options[PYNN_OPTION_EMA_MOMENTUM];
    one_minus_m = 1.0f - m;
    f = (int64_t)options[PYNN_OPTION_EMA_OVERWRITE_FREQUENCY];
    if (f > 0 && step % f == 0) {
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) {
                ema[i] = m * ema[i] + one_minus_m * w[i];
                w[i] = ema[i];
            });
    } else {
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) ema[i] = m * ema[i] + one_minus_m * w[i];);
    }
    return PYNN_OK;
}

int pynn_optimizer_sparse_ok(int kind, const double *hyper, const double *options, int has_ema) {
    if (kind != PYNN_OPT_SGD || hyper == NULL || has_ema) return 0;
    if ((float)hyper[PYNN_HYPER_MOMENTUM] != 0.0f || (float)hyper[PYNN_HYPER_WEIGHT_DECAY] != 0.0f)
        return 0;
    return options == NULL || (options[PYNN_OPTION_CLIPNORM] == 0.0 &&
                               options[PYNN_OPTION_CLIPVALUE] == 0.0 &&
                               options[PYNN_OPTION_GLOBAL_CLIPNORM] == 0.0);
}

/* The rule over the runs of segments not flagged PYNN_SEGMENT_SPARSE (plain SGD: elementwise
 * and without slots, so a run at a time gives the bits of the whole at once). */
static int step_dense_runs(float *w, const float *g, int64_t n, const int64_t *segments,
                           int64_t n_segments, int kind, int64_t step, const double *rule) {
    int64_t i, off, size, flags, start = 0, end = 0;
    int status;
    for (i = 0; i <= n_segments; i++) {
        if (i < n_segments) {
            segment_at(segments, n_segments, n, i, &off, &size, &flags);
            if (!(flags & PYNN_SEGMENT_SPARSE)) {
                end = off + size;
                continue;
            }
        } else {
            off = n;
            size = 0;
        }
        if (end > start) {
            status = pynn_optimizer_step(w + start, NULL, g + start, end - start, kind, step, rule);
            if (status != PYNN_OK) return status;
        }
        start = end = off + size;
    }
    return PYNN_OK;
}

int pynn_optimizer_apply(float *w, float *const *slots, float *ema, float *g, int64_t n,
                         const int64_t *segments, int64_t n_segments, int kind, int64_t step,
                         const double *hyper, const double *options) {
    double rule[PYNN_HYPER_COUNT];
    int64_t i, off, size, flags;
    int j, need, status;
    float lr, wd;
    /* everything the calls below rely on, before anything changes */
    PYNN_RETURN_IF(hyper == NULL || n < 0 || step < 1, PYNN_EINVAL);
    PYNN_RETURN_IF(kind < 0 || kind >= PYNN_OPT_COUNT, PYNN_EINVAL);
    status = pynn_optimizer_options_check(n, segments, n_segments, options);
    if (status != PYNN_OK) return status;
    if (n == 0) return PYNN_OK;
    need = pynn_optimizer_slots(kind, hyper);
    PYNN_RETURN_IF(w == NULL || g == NULL || (need != 0 && slots == NULL), PYNN_EINVAL);
    for (j = 0; j < PYNN_OPT_SLOTS; j++)
        PYNN_RETURN_IF((need & (1 << j)) && slots[j] == NULL, PYNN_EINVAL);

    if (options != NULL) {
        status = pynn_clip_gradients(g, n, segments, n_segments, options);
        if (status != PYNN_OK) return status;
    }
    lr = (float)hyper[PYNN_HYPER_LEARNING_RATE];
    wd = (float)hyper[PYNN_HYPER_WEIGHT_DECAY];
    if (wd != 0.0f) {
        for (i = 0; i < (n_segments == 0 ? 1 : n_segments); i++) {
            segment_at(segments, n_segments, n, i, &off, &size, &flags);
            if ((flags & PYNN_SEGMENT_DECAY) && size > 0) weight_decay(w + off, size, wd, lr);
        }
    }
    for (j = 0; j < PYNN_HYPER_COUNT; j++) rule[j] = hyper[j];
    rule[PYNN_HYPER_WEIGHT_DECAY] = 0.0;       /* applied above */
    if (n_segments > 0 && pynn_optimizer_sparse_ok(kind, hyper, options, ema != NULL))
        return step_dense_runs(w, g, n, segments, n_segments, kind, step, rule);
    status = pynn_optimizer_step(w, slots, g, n, kind, step, rule);
    if (status != PYNN_OK || ema == NULL) return status;
    {
        static const double no_options[PYNN_OPTION_COUNT] = {0};
        return pynn_ema_update(ema, w, n, step, options != NULL ? options : no_options);
    }
}
