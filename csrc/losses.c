/* losses.c -- MSE, binary and categorical cross-entropy, MAE, MAPE, Huber, log cosh, KLD,
 * hinge, squared and categorical hinge, Poisson, cosine similarity (Keras 3 semantics):
 * the mean over rows of a per-sample loss, and its gradient with respect to pred.
 *
 * Layers: one function per (loss, input form) computes one row -- its per-sample
 * loss (double) and, if asked, its gradient row (float); loss_rows runs them over
 * the rows in parallel and adds the per-sample losses deterministically: in chunks
 * of PYNN_REDUCE_CHUNK rows, each summed in order in double, the chunk sums added
 * in chunk order.  Elementwise values are float; sums along a row run in index
 * order in double, so no result depends on the thread count.
 *
 * Sparse categorical cross-entropy is categorical cross-entropy with a one-hot
 * target: the row functions take either a target row or, when it is NULL, a label.
 */
#include <math.h>
#include <stdlib.h>
#include "internal.h"

/* Keras's backend.epsilon(): probabilities are clipped to [EPS, 1 - EPS]. */
#define PYNN_PROB_EPS 1e-7f
#define PYNN_PROB_MAX (1.0f - PYNN_PROB_EPS)

static inline float clip_prob(float p) {
    return p < PYNN_PROB_EPS ? PYNN_PROB_EPS : (p > PYNN_PROB_MAX ? PYNN_PROB_MAX : p);
}

/* Where clipping changed p the loss is flat in p, so the gradient there is 0. */
static inline int prob_is_clipped(float p) { return p < PYNN_PROB_EPS || p > PYNN_PROB_MAX; }

/* target[j], or the one-hot row of `label` when target is NULL (sparse CCE). */
static inline float target_at(const float *target, int64_t label, int64_t j) {
    return target != NULL ? target[j] : (j == label ? 1.0f : 0.0f);
}

/* MSE: mean_j (p_j - t_j)^2; grad 2 (p - t) / (rows cols). */
static double mse_row(float *g, const float *p, const float *t, int64_t cols, float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        float d = p[j] - t[j];
        sum += (double)(d * d);
        if (g != NULL) g[j] = 2.0f * d / size;
    }
    return sum / (double)cols;
}

/* Label smoothing (the options path only): the target t is read as t keep + add
 * (BCE: keep = 1 - ls, add = ls / 2; CCE: add = ls / cols).  The BCE and CCE row
 * functions below are written once with a compile-time `smooth` flag; the names without
 * _s are the default path's (smooth = 0: the expression folds to t, so the code and its
 * results are what they were before the options existed). */
#define SMOOTHED(t) (smooth ? (t) * keep + add : (t))

/* BCE on probabilities: mean_j -(t log p + (1 - t) log(1 - p)), p clipped;
 * grad (p - t) / (p (1 - p)) / (rows cols) where p was not clipped, else 0. */
static inline __attribute__((always_inline)) double
bce_probs_row_s(float *g, const float *p, const float *t, int64_t cols, float size,
                const int smooth, float keep, float add) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        float pc = clip_prob(p[j]), tj = SMOOTHED(t[j]);
        sum += (double)(-(tj * logf(pc) + (1.0f - tj) * logf(1.0f - pc)));
        if (g != NULL)
            g[j] = prob_is_clipped(p[j]) ? 0.0f : (pc - tj) / (pc * (1.0f - pc)) / size;
    }
    return sum / (double)cols;
}
static double bce_probs_row(float *g, const float *p, const float *t, int64_t cols,
                            float size) {
    return bce_probs_row_s(g, p, t, cols, size, 0, 1.0f, 0.0f);
}

/* BCE on logits, the stable form: mean_j max(z, 0) - z t + log1p(exp(-|z|));
 * grad (sigmoid(z) - t) / (rows cols). */
static inline __attribute__((always_inline)) double
bce_logits_row_s(float *g, const float *z, const float *t, int64_t cols, float size,
                 const int smooth, float keep, float add) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float tj = SMOOTHED(t[j]);
        sum += (double)(fmaxf(z[j], 0.0f) - z[j] * tj + log1pf(expf(-fabsf(z[j]))));
        if (g != NULL) g[j] = (1.0f / (1.0f + expf(-z[j])) - tj) / size;
    }
    return sum / (double)cols;
}
static double bce_logits_row(float *g, const float *z, const float *t, int64_t cols,
                             float size) {
    return bce_logits_row_s(g, z, t, cols, size, 0, 1.0f, 0.0f);
}

/* CCE on probabilities (Keras 3): q = p / sum(p), clipped; loss -sum_j t_j log q_j.
 * The gradient goes through the normalisation: with g'_j = -t_j / q_j where q_j was
 * not clipped (else 0), grad_i = (g'_i - sum_j g'_j q_j) / s / rows. */
/* Gradient terms g'_j of rows up to this many columns are kept from the loss's pass for
 * the gradient's (wider rows compute them again: the same values). */
#define CCE_ROW_KEEP 64

/* cce_probs_row on NR consecutive rows at once (rows of at most CCE_ROW_KEEP columns),
 * their steps interleaved: a row's sums are chains of dependent double adds with little
 * beside them, several rows' keep the core busy.  Each row's values are computed
 * exactly as cce_probs_row computes them; loss[rr] is row rr's. */
static inline __attribute__((always_inline)) void
cce_probs_rows(double *loss, float *g, const float *p, const float *t, const int64_t *labels,
               int64_t cols, float rows, const int NR) {
    double row_sum[4] = {0.0, 0.0, 0.0, 0.0}, dot[4] = {0.0, 0.0, 0.0, 0.0};
    float s[4], kept[4][CCE_ROW_KEEP];
    int64_t j;
    int rr;
    for (rr = 0; rr < NR; rr++) loss[rr] = 0.0;
    for (j = 0; j < cols; j++)                            /* columns, in order */
        for (rr = 0; rr < NR; rr++) row_sum[rr] += (double)p[rr * cols + j];
    for (rr = 0; rr < NR; rr++) s[rr] = (float)row_sum[rr];
    for (j = 0; j < cols; j++)                            /* columns, in order */
        for (rr = 0; rr < NR; rr++) {
            const float q = p[rr * cols + j] / s[rr], qc = clip_prob(q);
            const float tj = target_at(t != NULL ? t + rr * cols : NULL,
                                       labels != NULL ? labels[rr] : -1, j);
            const float gq = prob_is_clipped(q) ? 0.0f : -tj / qc;
            if (tj != 0.0f || isnan(qc)) loss[rr] -= (double)(tj * logf(qc));
            dot[rr] += (double)(gq * q);
            kept[rr][j] = gq;
        }
    if (g != NULL)
        for (rr = 0; rr < NR; rr++) {                     /* rows */
            const float dotf = (float)dot[rr];
            for (j = 0; j < cols; j++) g[rr * cols + j] = (kept[rr][j] - dotf) / s[rr] / rows;
        }
}

static inline __attribute__((always_inline)) double
cce_probs_row_s(float *g, const float *p, const float *t, int64_t label, int64_t cols,
                float rows, const int smooth, float keep, float add) {
    double row_sum = 0.0, loss = 0.0, dot = 0.0;
    float s, dotf, kept[CCE_ROW_KEEP];
    int64_t j;
    for (j = 0; j < cols; j++) row_sum += (double)p[j];
    s = (float)row_sum;
    for (j = 0; j < cols; j++) {
        float q = p[j] / s, qc = clip_prob(q), tj = SMOOTHED(target_at(t, label, j));
        float gq = prob_is_clipped(q) ? 0.0f : -tj / qc;
        /* t_j log q_j is a zero the sum can skip, where t_j is 0 and the log is not NaN
         * (every sparse target but one): logf only where it counts */
        if (tj != 0.0f || isnan(qc)) loss -= (double)(tj * logf(qc));
        dot += (double)(gq * q);
        if (j < CCE_ROW_KEEP) kept[j] = gq;
    }
    if (g != NULL) {
        dotf = (float)dot;
        for (j = 0; j < cols; j++) {
            float gq;
            if (j < CCE_ROW_KEEP) {
                gq = kept[j];
            } else {
                float q = p[j] / s, tj = SMOOTHED(target_at(t, label, j));
                gq = prob_is_clipped(q) ? 0.0f : -tj / clip_prob(q);
            }
            g[j] = (gq - dotf) / s / rows;
        }
    }
    return loss;
}

static double cce_probs_row(float *g, const float *p, const float *t, int64_t label,
                            int64_t cols, float rows) {
    return cce_probs_row_s(g, p, t, label, cols, rows, 0, 1.0f, 0.0f);
}

/* CCE on logits: with m = max_j z_j and lse = m + log sum_j exp(z_j - m),
 * loss -sum_j t_j (z_j - lse) (right for soft targets that do not sum to 1);
 * grad (softmax(z) sum_j t_j - t) / rows. */
static inline __attribute__((always_inline)) double
cce_logits_row_s(float *g, const float *z, const float *t, int64_t label, int64_t cols,
                 float rows, const int smooth, float keep, float add) {
    double exp_sum = 0.0, loss = 0.0, t_sum = 0.0;
    float m = z[0], s, log_s, t_sumf;
    int64_t j;
    for (j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;
    /* exp(z_j - m) is needed twice: keep it in the gradient row when there is one */
    for (j = 0; j < cols; j++) {
        float e = expf(z[j] - m);
        if (g != NULL) g[j] = e;
        exp_sum += (double)e;
    }
    s = (float)exp_sum;
    log_s = logf(s);
    for (j = 0; j < cols; j++) {
        float tj = SMOOTHED(target_at(t, label, j));
        loss -= (double)(tj * ((z[j] - m) - log_s));
        t_sum += (double)tj;
    }
    if (g != NULL) {
        t_sumf = (float)t_sum;
        for (j = 0; j < cols; j++)
            g[j] = (g[j] / s * t_sumf - SMOOTHED(target_at(t, label, j))) / rows;
    }
    return loss;
}
static double cce_logits_row(float *g, const float *z, const float *t, int64_t label,
                             int64_t cols, float rows) {
    return cce_logits_row_s(g, z, t, label, cols, rows, 0, 1.0f, 0.0f);
}


/* CCE on logits for the rows [r0, r1) with their gradient (g != NULL): the values
 * of cce_logits_row, row for row, computed in passes over the block so that the
 * exponentials run vectorised (exp_span) and no call sits inside a dependency
 * chain.  Returns the sum of the rows' losses, added in row order. */
static double cce_logits_block(float *grad, const float *pred, const float *target,
                               const int64_t *labels, int64_t r0, int64_t r1, int64_t cols,
                               float rows) {
    /* per row of the block (at most PYNN_REDUCE_CHUNK): max, sum of exps, t_sum */
    float ms[PYNN_REDUCE_CHUNK], ss[PYNN_REDUCE_CHUNK], ts[PYNN_REDUCE_CHUNK];
    double sum = 0.0;
    int64_t r, j;
    /* rows: the maximum, then z - m into the gradient rows */
    for (r = r0; r < r1; r++) {
        const float *z = pred + r * cols;
        float *g = grad + r * cols;
        float m = z[0];
        for (j = 1; j < cols; j++) m = z[j] > m ? z[j] : m;   /* N: the row's maximum */
        for (j = 0; j < cols; j++) g[j] = z[j] - m;           /* N: shifted logits */
        ms[r - r0] = m;
    }
    pynn_exp_span(grad + r0 * cols, grad + r0 * cols, (r1 - r0) * cols);
    /* rows: the sums and the loss, as cce_logits_row computes them */
    for (r = r0; r < r1; r++) {
        const float *z = pred + r * cols;
        const float *t = target != NULL ? target + r * cols : NULL;
        const int64_t label = labels != NULL ? labels[r] : -1;
        const float *g = grad + r * cols;
        const float m = ms[r - r0];
        double exp_sum = 0.0, loss = 0.0, t_sum = 0.0;
        float s, log_s, finite = 0.0f;
        for (j = 0; j < cols; j++) exp_sum += (double)g[j];  /* N: in order, in double */
        s = (float)exp_sum;
        log_s = logf(s);
        if (t == NULL) {
            /* One-hot target: the terms t_j (...) of the other columns are +-0, which
             * leave the sum as it is, and t_sum is 1 -- unless a term is NaN or inf
             * (0 inf = NaN): then the full loop below gives the NaN as before. */
            for (j = 0; j < cols; j++) finite += 0.0f * z[j];  /* N: NaN if any z is inf/NaN */
            finite += 0.0f * log_s;
        }
        if (t == NULL && finite == 0.0f) {
            loss = 0.0 - (double)(1.0f * ((z[label] - m) - log_s));
            t_sum = 1.0;
        } else {
            for (j = 0; j < cols; j++) {                      /* N: in order, in double */
                float tj = target_at(t, label, j);
                loss -= (double)(tj * ((z[j] - m) - log_s));
                t_sum += (double)tj;
            }
        }
        ss[r - r0] = s;
        ts[r - r0] = (float)t_sum;
        sum += loss;
    }
    /* rows: the gradient (at AVX-512, 16 lanes at a time: the same operations) */
#ifdef PYNN_HAVE_X86_KERNELS
    if (pynn_level() == PYNN_LEVEL_AVX512) {
        pynn_cce_grad_rows_avx512(grad, target, labels, ss, ts, r0, r1, cols, rows);
        return sum;
    }
#endif
    for (r = r0; r < r1; r++) {
        const float *t = target != NULL ? target + r * cols : NULL;
        const int64_t label = labels != NULL ? labels[r] : -1;
        const float s = ss[r - r0], t_sumf = ts[r - r0];
        float *g = grad + r * cols;
        for (j = 0; j < cols; j++)                            /* N: the gradient row */
            g[j] = (g[j] / s * t_sumf - target_at(t, label, j)) / rows;
    }
    return sum;
}

/* ---- the regression, hinge, Poisson, KL and cosine losses (Keras 3's definitions) ----
 * Each row function: per-sample loss (double; sums along the row in index order) and, when
 * g != NULL, its gradient row, divided by size = rows cols for the per-row means (by rows
 * for the per-row sums: KLD, categorical hinge, cosine similarity).  No logits forms. */

static inline float sign_of(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

/* MAE: mean_j |p - t|; grad sign(p - t) / size (0 where p = t) */
static double mae_row(float *g, const float *p, const float *t, int64_t cols, float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float d = p[j] - t[j];
        sum += (double)fabsf(d);
        if (g != NULL) g[j] = sign_of(d) / size;
    }
    return sum / (double)cols;
}

/* MAPE: 100 mean_j |(t - p) / max(|t|, eps)|; grad 100 sign(p - t) / max(|t|, eps) / size */
static double mape_row(float *g, const float *p, const float *t, int64_t cols, float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float den = fmaxf(fabsf(t[j]), PYNN_PROB_EPS);
        sum += (double)fabsf((t[j] - p[j]) / den);
        if (g != NULL) g[j] = 100.0f * sign_of(p[j] - t[j]) / den / size;
    }
    return 100.0 * (sum / (double)cols);
}

/* Huber: e = p - t; mean_j (|e| <= delta ? e^2 / 2 : delta |e| - delta^2 / 2);
 * grad (|e| <= delta ? e : delta sign(e)) / size */
static double huber_row(float *g, const float *p, const float *t, int64_t cols, float size,
                        float delta) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float e = p[j] - t[j], a = fabsf(e);
        const int quad = a <= delta;
        sum += (double)(quad ? 0.5f * e * e : delta * a - 0.5f * delta * delta);
        if (g != NULL) g[j] = (quad ? e : delta * sign_of(e)) / size;
    }
    return sum / (double)cols;
}

/* log cosh, Keras's stable form: e + softplus(-2 e) - log 2, softplus(x) =
 * max(x, 0) + log1p(exp(-|x|)); grad tanh(e) / size */
static double log_cosh_row(float *g, const float *p, const float *t, int64_t cols, float size) {
    const float log2f_ = 0.693147180559945309f;
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float e = p[j] - t[j], x = -2.0f * e;
        sum += (double)(e + (fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)))) - log2f_);
        if (g != NULL) g[j] = tanhf(e) / size;
    }
    return sum / (double)cols;
}

static inline float clip_unit(float x) {   /* clip to [EPS, 1] (KLD) */
    return x < PYNN_PROB_EPS ? PYNN_PROB_EPS : (x > 1.0f ? 1.0f : x);
}

/* KLD: t, p clipped to [eps, 1]; sum_j t log(t / p); grad -t / p / rows where p was not
 * clipped, else 0 */
static double kld_row(float *g, const float *p, const float *t, int64_t cols, float rows) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float tc = clip_unit(t[j]), pc = clip_unit(p[j]);
        sum += (double)(tc * logf(tc / pc));
        if (g != NULL)
            g[j] = (p[j] < PYNN_PROB_EPS || p[j] > 1.0f) ? 0.0f : -tc / pc / rows;
    }
    return sum;
}

/* hinge (squared = 0) and squared hinge (squared = 1): with tt = 2t - 1 when `binary`
 * (every target of the call is 0 or 1), else t, and h = max(1 - tt p, 0):
 * mean_j h (or h^2); grad -tt / size where 1 - tt p > 0 (or -2 tt h / size) */
static double hinge_row(float *g, const float *p, const float *t, int64_t cols, float size,
                        int binary, int squared) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float tt = binary ? 2.0f * t[j] - 1.0f : t[j];
        const float m = 1.0f - tt * p[j], h = fmaxf(m, 0.0f);
        sum += (double)(squared ? h * h : h);
        if (g != NULL)
            g[j] = m > 0.0f ? (squared ? -2.0f * tt * h : -tt) / size : 0.0f;
    }
    return sum / (double)cols;
}

/* categorical hinge: pos = sum_j t p, neg = max_j (1 - t) p (the first maximum, k);
 * max(neg - pos + 1, 0); grad, where neg - pos + 1 > 0: (-t_j + [j = k] (1 - t_k)) / rows */
static double cat_hinge_row(float *g, const float *p, const float *t, int64_t cols,
                            float rows) {
    double pos_sum = 0.0;
    float neg = (1.0f - t[0]) * p[0], l;
    int64_t j, k = 0;
    for (j = 0; j < cols; j++) pos_sum += (double)(t[j] * p[j]);
    for (j = 1; j < cols; j++) {
        const float v = (1.0f - t[j]) * p[j];
        if (v > neg) {
            neg = v;
            k = j;
        }
    }
    l = neg - (float)pos_sum + 1.0f;
    if (g != NULL)
        for (j = 0; j < cols; j++)
            g[j] = l > 0.0f ? (-t[j] + (j == k ? 1.0f - t[j] : 0.0f)) / rows : 0.0f;
    return (double)fmaxf(l, 0.0f);
}

/* Poisson: mean_j p - t log(p + eps); grad (1 - t / (p + eps)) / size */
static double poisson_row(float *g, const float *p, const float *t, int64_t cols, float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        const float pe = p[j] + PYNN_PROB_EPS;
        sum += (double)(p[j] - t[j] * logf(pe));
        if (g != NULL) g[j] = (1.0f - t[j] / pe) / size;
    }
    return sum / (double)cols;
}

/* cosine similarity: with it = 1 / sqrt(max(|t|^2, eps^2)), ip likewise for p and
 * c = it ip (t.p): -c; grad -ip (t_j it - c p_j ip) / rows, or -t_j it ip / rows where
 * |p|^2 < eps^2 (ip constant there) */
#define PYNN_NORM_EPS2 1e-14f
static double cosine_row(float *g, const float *p, const float *t, int64_t cols, float rows) {
    double pp = 0.0, tt = 0.0, tp = 0.0;
    float ppf, ip, it, c;
    int64_t j;
    for (j = 0; j < cols; j++) {
        pp += (double)(p[j] * p[j]);
        tt += (double)(t[j] * t[j]);
        tp += (double)(t[j] * p[j]);
    }
    ppf = (float)pp;
    ip = 1.0f / sqrtf(fmaxf(ppf, PYNN_NORM_EPS2));
    it = 1.0f / sqrtf(fmaxf((float)tt, PYNN_NORM_EPS2));
    c = it * ip * (float)tp;
    if (g != NULL)
        for (j = 0; j < cols; j++)
            g[j] = ppf >= PYNN_NORM_EPS2 ? -ip * (t[j] * it - c * (p[j] * ip)) / rows
                                         : -t[j] * it * ip / rows;
    return -(double)c;
}

/* The row function of one of the kinds above. */
static double other_row(float *g, const float *p, const float *t, int64_t cols, float size,
                        float rows, int kind, float param, int binary) {
    switch (kind) {
    case PYNN_LOSS_MAE: return mae_row(g, p, t, cols, size);
    case PYNN_LOSS_MAPE: return mape_row(g, p, t, cols, size);
    case PYNN_LOSS_HUBER: return huber_row(g, p, t, cols, size, param);
    case PYNN_LOSS_LOG_COSH: return log_cosh_row(g, p, t, cols, size);
    case PYNN_LOSS_KLD: return kld_row(g, p, t, cols, rows);
    case PYNN_LOSS_HINGE: return hinge_row(g, p, t, cols, size, binary, 0);
    case PYNN_LOSS_SQUARED_HINGE: return hinge_row(g, p, t, cols, size, binary, 1);
    case PYNN_LOSS_CATEGORICAL_HINGE: return cat_hinge_row(g, p, t, cols, rows);
    case PYNN_LOSS_POISSON: return poisson_row(g, p, t, cols, size);
    default: return cosine_row(g, p, t, cols, rows);
    }
}

/* Chunk sums of up to this many chunks live on the stack (batches up to 16,384 rows);
 * larger batches allocate one array of chunk sums. */
#define PYNN_LOSS_STACK_CHUNKS 64

/* The options of a call that has any (pynn_loss_options), resolved: NULL in loss_rows
 * means none (the default path). */
typedef struct {
    const float *weights;   /* NULL or per row group */
    int64_t per_weight;
    int has_ignore;
    int64_t ignore_class;
    int smooth;             /* label smoothing: t -> t keep + add */
    float keep, add;
    int reduce_sum;         /* Keras's "sum": divisor 1 */
    int64_t divisor;        /* the rows the mean is over: rows, or the rows not ignored; 1
                               for reduce_sum */
} loss_opts;

/* One row of the options path: the row functions with smoothing, divided by `divisor`
 * rows instead of all rows, the gradient row scaled by the row's weight.  Rows whose label
 * is the ignore class get a zero gradient and add nothing.  Returns w * loss. */
static double options_row(float *g, const float *p, const float *t, int64_t label, int64_t r,
                          int64_t cols, int kind, int from_logits, float param, int binary,
                          const loss_opts *o) {
    const float frows = (float)o->divisor, size = (float)(o->divisor * cols);
    const float w = o->weights != NULL ? o->weights[r / o->per_weight] : 1.0f;
    double l;
    int64_t j;
    if (o->has_ignore && label == o->ignore_class) {
        if (g != NULL)
            for (j = 0; j < cols; j++) g[j] = 0.0f;
        return 0.0;
    }
    if (kind == PYNN_LOSS_MSE)
        l = mse_row(g, p, t, cols, size);
    else if (kind == PYNN_LOSS_BCE)
        l = o->smooth ? (from_logits ? bce_logits_row_s(g, p, t, cols, size, 1, o->keep, o->add)
                                     : bce_probs_row_s(g, p, t, cols, size, 1, o->keep, o->add))
                      : (from_logits ? bce_logits_row(g, p, t, cols, size)
                                     : bce_probs_row(g, p, t, cols, size));
    else if (kind == PYNN_LOSS_CCE)
        l = o->smooth
                ? (from_logits ? cce_logits_row_s(g, p, t, label, cols, frows, 1, o->keep, o->add)
                               : cce_probs_row_s(g, p, t, label, cols, frows, 1, o->keep, o->add))
                : (from_logits ? cce_logits_row(g, p, t, label, cols, frows)
                               : cce_probs_row(g, p, t, label, cols, frows));
    else
        l = other_row(g, p, t, cols, size, frows, kind, param, binary);
    if (o->weights == NULL) return l;
    if (g != NULL)
        for (j = 0; j < cols; j++) g[j] *= w;
    return (double)w * l;
}

/* Runs the row function of (kind, from_logits) over all rows and writes the mean of
 * the per-sample losses.  target is NULL for sparse CCE, labels otherwise.
 * Rows are cut into chunks of PYNN_REDUCE_CHUNK; a chunk's rows are summed in order
 * by one thread, and the chunk sums are added in chunk order, so the loss does not
 * depend on the thread count.  opts NULL: the default path (no weights, smoothing or
 * ignored rows), with the blocked CCE fast paths; otherwise every row goes through
 * options_row (the per-row functions: the blocked paths are skipped), in the same chunks
 * and the same order, and the sum is divided by opts->divisor. */
static int loss_rows(float *grad, double *loss, const float *pred, const float *target,
                     const int64_t *labels, int64_t rows, int64_t cols, int kind,
                     int from_logits, float param, int binary, const loss_opts *opts) {
    const float size = (float)(rows * cols), frows = (float)rows;
    const int64_t nchunks = (rows + PYNN_REDUCE_CHUNK - 1) / PYNN_REDUCE_CHUNK;
    double stack_sums[PYNN_LOSS_STACK_CHUNKS], *chunk_sum = stack_sums, total = 0.0;
    int64_t c;

    if (nchunks > PYNN_LOSS_STACK_CHUNKS) {
        chunk_sum = (double *)malloc((size_t)nchunks * sizeof(double));
        PYNN_RETURN_IF(chunk_sum == NULL, PYNN_ENOMEM);
    }

    /* chunks of rows: each chunk's rows (loss and gradient) are handled by one thread */
    PYNN_PARALLEL_FOR(nchunks > 1 ? pynn_threads_for(rows * cols) : 1,
        for (c = 0; c < nchunks; c++) {
            const int64_t r0 = c * PYNN_REDUCE_CHUNK;
            const int64_t r1 = r0 + PYNN_REDUCE_CHUNK < rows ? r0 + PYNN_REDUCE_CHUNK : rows;
            double sum = 0.0;
            int64_t r;
            if (opts != NULL) {
                for (r = r0; r < r1; r++)    /* rows of the chunk, in order */
                    sum += options_row(grad != NULL ? grad + r * cols : NULL, pred + r * cols,
                                       target != NULL ? target + r * cols : NULL,
                                       labels != NULL ? labels[r] : -1, r, cols, kind,
                                       from_logits, param, binary, opts);
                chunk_sum[c] = sum;
                continue;
            }
            if (kind == PYNN_LOSS_CCE && from_logits && grad != NULL) {
                chunk_sum[c] = cce_logits_block(grad, pred, target, labels, r0, r1, cols, frows);
                continue;
            }
            /* CCE on probabilities of narrow rows: 4 rows at a time, their losses added
             * in row order */
            r = r0;
            if (kind == PYNN_LOSS_CCE && !from_logits && cols <= CCE_ROW_KEEP)
                for (; r + 4 <= r1; r += 4) {
                    double four[4];
                    cce_probs_rows(four, grad != NULL ? grad + r * cols : NULL, pred + r * cols,
                                   target != NULL ? target + r * cols : NULL,
                                   labels != NULL ? labels + r : NULL, cols, frows, 4);
                    sum += four[0];
                    sum += four[1];
                    sum += four[2];
                    sum += four[3];
                }
            /* rows of the chunk, in order */
            for (; r < r1; r++) {
                const float *p = pred + r * cols;
                const float *t = target != NULL ? target + r * cols : NULL;
                float *g = grad != NULL ? grad + r * cols : NULL;
                int64_t label = labels != NULL ? labels[r] : -1;
                if (kind == PYNN_LOSS_MSE)
                    sum += mse_row(g, p, t, cols, size);
                else if (kind != PYNN_LOSS_BCE && kind != PYNN_LOSS_CCE)
                    sum += other_row(g, p, t, cols, size, frows, kind, param, binary);
                else if (kind == PYNN_LOSS_BCE)
                    sum += from_logits ? bce_logits_row(g, p, t, cols, size)
                                       : bce_probs_row(g, p, t, cols, size);
                else
                    sum += from_logits ? cce_logits_row(g, p, t, label, cols, frows)
                                       : cce_probs_row(g, p, t, label, cols, frows);
            }
            chunk_sum[c] = sum;
        });

    for (c = 0; c < nchunks; c++) total += chunk_sum[c];   /* chunk order */
    if (chunk_sum != stack_sums) free(chunk_sum);
    *loss = opts != NULL ? total / (double)opts->divisor : total / (double)rows;
    return PYNN_OK;
}

/* The options (NULL: the defaults) checked and resolved for a call of `kind` over `rows`
 * rows: *o filled and *use set to 1 when the call needs the options path.  Checks only
 * (nothing is written but *o and *use).  Ignored rows are counted by the caller. */
static int resolve_options(loss_opts *o, int *use, float *param, const pynn_loss_options *opt,
                           int kind, int64_t rows, int64_t cols) {
    int64_t i, n_w;
    *param = 1.0f;
    *use = 0;
    o->weights = NULL;
    o->per_weight = 1;
    o->has_ignore = 0;
    o->ignore_class = 0;
    o->smooth = 0;
    o->keep = 1.0f;
    o->add = 0.0f;
    o->reduce_sum = 0;
    o->divisor = rows;
    if (opt == NULL) return PYNN_OK;
    *param = opt->param;
    PYNN_RETURN_IF(opt->reduce_sum != 0 && opt->reduce_sum != 1, PYNN_EINVAL);
    /* label smoothing: in [0, 1] (NaN fails), and only for the cross-entropies */
    PYNN_RETURN_IF(!(opt->label_smoothing >= 0.0f && opt->label_smoothing <= 1.0f),
                   PYNN_EINVAL);
    if (opt->label_smoothing != 0.0f) {
        PYNN_RETURN_IF(kind != PYNN_LOSS_BCE && kind != PYNN_LOSS_CCE, PYNN_EINVAL);
        o->smooth = 1;
        o->keep = 1.0f - opt->label_smoothing;
        /* Keras: BCE t (1 - ls) + 0.5 ls; CCE t (1 - ls) + ls / classes */
        o->add = kind == PYNN_LOSS_BCE ? 0.5f * opt->label_smoothing
                                       : opt->label_smoothing / (float)cols;
    }
    if (opt->weights != NULL) {
        PYNN_RETURN_IF(opt->per_weight < 1, PYNN_EINVAL);
        n_w = (rows - 1) / opt->per_weight + 1;
        for (i = 0; i < n_w; i++)
            PYNN_RETURN_IF(!(opt->weights[i] >= 0.0f && isfinite(opt->weights[i])), PYNN_EINVAL);
        o->weights = opt->weights;
        o->per_weight = opt->per_weight;
    }
    o->has_ignore = opt->has_ignore != 0;
    o->ignore_class = opt->ignore_class;
    o->reduce_sum = opt->reduce_sum;
    if (o->reduce_sum) o->divisor = 1;     /* Keras's "sum": nothing divided by the rows */
    *use = o->smooth || o->weights != NULL || o->has_ignore || o->reduce_sum;
    return PYNN_OK;
}

/* loss = sum_i w_i l_i / rows (Keras's sum_over_batch_size; opt->reduce_sum: sum_i w_i l_i,
 * Keras's "sum"); grad (may be NULL) =
 * d loss / d pred.  Only BCE and CCE have a logits form: from_logits is ignored for the
 * others.  opt NULL: no weights, no smoothing, Huber's delta 1. */
int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
              int64_t rows, int64_t cols, int kind, int from_logits,
              const pynn_loss_options *opt) {
    loss_opts o;
    float param;
    int binary = 0, use, status;
    PYNN_RETURN_IF(rows <= 0 || cols <= 0, PYNN_EINVAL);
    PYNN_RETURN_IF(loss == NULL || pred == NULL || target == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(kind < 0 || kind >= PYNN_LOSS_COUNT || kind == PYNN_LOSS_SPARSE_CCE,
                   PYNN_EINVAL);
    status = resolve_options(&o, &use, &param, opt, kind, rows, cols);
    if (status != PYNN_OK) return status;
    PYNN_RETURN_IF(o.has_ignore, PYNN_EINVAL);   /* ignore_class: sparse CCE only */
    PYNN_RETURN_IF(kind == PYNN_LOSS_HUBER && !(param > 0.0f && isfinite(param)), PYNN_EINVAL);
    if (kind == PYNN_LOSS_HINGE || kind == PYNN_LOSS_SQUARED_HINGE) {
        /* Keras: {0, 1} targets become {-1, 1} when every target of the batch is 0 or 1 */
        const int64_t n = rows * cols;
        int64_t i;
        for (i = 0; i < n && (target[i] == 0.0f || target[i] == 1.0f); i++) {}
        binary = i == n;
    }
    return loss_rows(grad, loss, pred, target, NULL, rows, cols, kind, from_logits, param,
                     binary, use ? &o : NULL);
}

/* Sparse CCE: labels (rows,) in [0, cols) -- or equal to the ignore class -- checked
 * before anything is written. */
int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                    int64_t rows, int64_t cols, int from_logits, const pynn_loss_options *opt) {
    loss_opts o;
    float param;
    int use, status;
    int64_t r, valid = 0;
    PYNN_RETURN_IF(rows <= 0 || cols <= 0, PYNN_EINVAL);
    PYNN_RETURN_IF(loss == NULL || pred == NULL || labels == NULL, PYNN_EINVAL);
    status = resolve_options(&o, &use, &param, opt, PYNN_LOSS_CCE, rows, cols);
    if (status != PYNN_OK) return status;
    for (r = 0; r < rows; r++) {
        if (o.has_ignore && labels[r] == o.ignore_class) continue;
        PYNN_RETURN_IF(labels[r] < 0 || labels[r] >= cols, PYNN_ELABEL);
        valid++;
    }
    if (o.has_ignore) {
        /* Keras 3: ignored rows weigh 0 and the others total / valid, so the mean is over
         * the rows not ignored; none left: loss 0 and a zero gradient */
        if (valid == 0) {
            if (grad != NULL)
                for (r = 0; r < rows * cols; r++) grad[r] = 0.0f;
            *loss = 0.0;
            return PYNN_OK;
        }
        if (!o.reduce_sum) o.divisor = valid;
    }
    return loss_rows(grad, loss, pred, NULL, labels, rows, cols, PYNN_LOSS_CCE, from_logits,
                     0.0f, 0, use ? &o : NULL);
}
