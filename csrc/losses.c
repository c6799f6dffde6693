/* losses.c -- MSE, binary and categorical cross-entropy (Keras 3 semantics):
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

/* BCE on probabilities: mean_j -(t log p + (1 - t) log(1 - p)), p clipped;
 * grad (p - t) / (p (1 - p)) / (rows cols) where p was not clipped, else 0. */
static double bce_probs_row(float *g, const float *p, const float *t, int64_t cols,
                            float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        float pc = clip_prob(p[j]);
        sum += (double)(-(t[j] * logf(pc) + (1.0f - t[j]) * logf(1.0f - pc)));
        if (g != NULL)
            g[j] = prob_is_clipped(p[j]) ? 0.0f : (pc - t[j]) / (pc * (1.0f - pc)) / size;
    }
    return sum / (double)cols;
}

/* BCE on logits, the stable form: mean_j max(z, 0) - z t + log1p(exp(-|z|));
 * grad (sigmoid(z) - t) / (rows cols). */
static double bce_logits_row(float *g, const float *z, const float *t, int64_t cols,
                             float size) {
    double sum = 0.0;
    int64_t j;
    for (j = 0; j < cols; j++) {
        sum += (double)(fmaxf(z[j], 0.0f) - z[j] * t[j] + log1pf(expf(-fabsf(z[j]))));
        if (g != NULL) g[j] = (1.0f / (1.0f + expf(-z[j])) - t[j]) / size;
    }
    return sum / (double)cols;
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

static double cce_probs_row(float *g, const float *p, const float *t, int64_t label,
                            int64_t cols, float rows) {
    double row_sum = 0.0, loss = 0.0, dot = 0.0;
    float s, dotf, kept[CCE_ROW_KEEP];
    int64_t j;
    for (j = 0; j < cols; j++) row_sum += (double)p[j];
    s = (float)row_sum;
    for (j = 0; j < cols; j++) {
        float q = p[j] / s, qc = clip_prob(q), tj = target_at(t, label, j);
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
                float q = p[j] / s, tj = target_at(t, label, j);
                gq = prob_is_clipped(q) ? 0.0f : -tj / clip_prob(q);
            }
            g[j] = (gq - dotf) / s / rows;
        }
    }
    return loss;
}

/* CCE on logits: with m = max_j z_j and lse = m + log sum_j exp(z_j - m),
 * loss -sum_j t_j (z_j - lse) (right for soft targets that do not sum to 1);
 * grad (softmax(z) sum_j t_j - t) / rows. */
static double cce_logits_row(float *g, const float *z, const float *t, int64_t label,
                             int64_t cols, float rows) {
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
        float tj = target_at(t, label, j);
        loss -= (double)(tj * ((z[j] - m) - log_s));
        t_sum += (double)tj;
    }
    if (g != NULL) {
        t_sumf = (float)t_sum;
        for (j = 0; j < cols; j++)
            g[j] = (g[j] / s * t_sumf - target_at(t, label, j)) / rows;
    }
    return loss;
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

/* Chunk sums of up to this many chunks live on the stack (batches up to 16,384 rows);
 * larger batches allocate one array of chunk sums. */
#define PYNN_LOSS_STACK_CHUNKS 64

/* Runs the row function of (kind, from_logits) over all rows and writes the mean of
 * the per-sample losses.  target is NULL for sparse CCE, labels otherwise.
 * Rows are cut into chunks of PYNN_REDUCE_CHUNK; a chunk's rows are summed in order
 * by one thread, and the chunk sums are added in chunk order, so the loss does not
 * depend on the thread count. */
static int loss_rows(float *grad, double *loss, const float *pred, const float *target,
                     const int64_t *labels, int64_t rows, int64_t cols, int kind,
                     int from_logits) {
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
    *loss = total / (double)rows;
    return PYNN_OK;
}

/* loss = mean over rows of the per-sample loss; grad (may be NULL) = d loss / d pred.
 * MSE has no logits form: from_logits is ignored for it. */
int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
              int64_t rows, int64_t cols, int kind, int from_logits) {
    PYNN_RETURN_IF(rows <= 0 || cols <= 0, PYNN_EINVAL);
    PYNN_RETURN_IF(loss == NULL || pred == NULL || target == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(kind != PYNN_LOSS_MSE && kind != PYNN_LOSS_BCE && kind != PYNN_LOSS_CCE,
                   PYNN_EINVAL);
    return loss_rows(grad, loss, pred, target, NULL, rows, cols, kind, from_logits);
}

/* Sparse CCE: labels (rows,) in [0, cols), checked before anything is written. */
int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                    int64_t rows, int64_t cols, int from_logits) {
    int64_t r;
    PYNN_RETURN_IF(rows <= 0 || cols <= 0, PYNN_EINVAL);
    PYNN_RETURN_IF(loss == NULL || pred == NULL || labels == NULL, PYNN_EINVAL);
    for (r = 0; r < rows; r++)
        PYNN_RETURN_IF(labels[r] < 0 || labels[r] >= cols, PYNN_ELABEL);
    return loss_rows(grad, loss, pred, NULL, labels, rows, cols, PYNN_LOSS_CCE, from_logits);
}
