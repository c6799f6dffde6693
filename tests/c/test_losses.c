/* test_losses.c -- pynn_loss (MSE, BCE, CCE; probabilities and logits) and
 * pynn_sparse_cce against plain loops in double, at every dispatch level and on 1 and 2
 * threads (ctest.h); the loss without a gradient bitwise equal to the loss with one;
 * labels out of range refused with PYNN_ELABEL before anything is written.
 *
 * Shapes: 1 x 1, primes, rows around the 256-row chunks the loss is summed in, more than
 * 64 chunks (the chunk sums leave the stack), element counts past the 32768 where a
 * second thread starts, and wide rows (the vectorised softmax).
 *
 * Bounds (u = 2^-24): the reference follows Keras's formulas in double; each bound adds
 * up u times the magnitude of every float operation's result in the kernel's formula
 * (losses.c), as spelled out in each *_reference below.  Where the kernel's float
 * intermediates decide a branch (probabilities clipped to [1e-7, 1 - 1e-7]) the
 * reference computes those intermediates the kernel's way, exactly, so both branch
 * alike.  The per-row losses are summed in double: that adds nothing measurable.
 */
#include <float.h>
#include "ctest.h"

#define EPS 1e-7f
#define PMAX (1.0f - EPS)
/* the options of a call that sets only param (Huber's delta) */
#define PARAM(x) (&(pynn_loss_options){(x), 0.0f, 0, 0, NULL, 1, 0})

static float clip(float p) { return p < EPS ? EPS : (p > PMAX ? PMAX : p); }
static int clipped(float p) { return p < EPS || p > PMAX; }

typedef struct {
    const float *pred, *target;     /* target NULL: labels (sparse CCE) */
    const int64_t *labels;
    int64_t rows, cols;
    int kind, from_logits;
    float param;                    /* Huber's delta */
} loss_case;

/* out: the loss with the gradient (double), the loss without it (double), the gradient */
static void run_loss(void *ctx, unsigned char *out) {
    const loss_case *t = ctx;
    double *loss = (double *)out;
    float *grad = (float *)(loss + 2);
    int s1, s2;
    if (t->target != NULL) {
        s1 = pynn_loss(grad, &loss[0], t->pred, t->target, t->rows, t->cols, t->kind,
                       t->from_logits, PARAM(t->param));
        s2 = pynn_loss(NULL, &loss[1], t->pred, t->target, t->rows, t->cols, t->kind,
                       t->from_logits, PARAM(t->param));
    } else {
        s1 = pynn_sparse_cce(grad, &loss[0], t->pred, t->labels, t->rows, t->cols, t->from_logits, NULL);
        s2 = pynn_sparse_cce(NULL, &loss[1], t->pred, t->labels, t->rows, t->cols, t->from_logits, NULL);
    }
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

/* The target of row r, column j (one-hot of the label for sparse CCE). */
static double target_at(const loss_case *t, int64_t r, int64_t j) {
    return t->target != NULL ? (double)t->target[r * t->cols + j] : (t->labels[r] == j ? 1.0 : 0.0);
}

/* Fills want/bound for the gradient; returns the loss, its bound in *loss_bound. */
static double loss_reference(const loss_case *t, double *want, double *bound,
                             double *loss_bound) {
    const double u = CTEST_U, rows = (double)t->rows, size = (double)(t->rows * t->cols);
    double total = 0.0, total_bound = 0.0;
    int64_t r, j;
    for (r = 0; r < t->rows; r++) {
        const float *p = t->pred + r * t->cols;
        double *w = want + r * t->cols, *b = bound + r * t->cols;
        double row = 0.0, row_bound = 0.0;
        if (t->kind == PYNN_LOSS_MSE) {
            /* d = p - t, d d, 2 d / size: one rounding each */
            for (j = 0; j < t->cols; j++) {
                const double d = (double)p[j] - target_at(t, r, j);
                row += d * d / (double)t->cols;
                row_bound += 3.0 * u * d * d / (double)t->cols;
                w[j] = 2.0 * d / size;
                b[j] = 3.0 * u * fabs(w[j]);
            }
        } else if (t->kind == PYNN_LOSS_BCE && !t->from_logits) {
            /* two logf (2u each: within an ulp), the products, 1 - t, the sum, and 1 - p,
             * an absolute u in its log: 5u of the magnitudes; the gradient's five
             * operations on (pc - t) / (pc (1 - pc)) / size: 6u */
            for (j = 0; j < t->cols; j++) {
                const float pc = clip(p[j]);
                const double tj = target_at(t, r, j);
                const double a = tj * log((double)pc), c = (1.0 - tj) * log(1.0 - (double)pc);
                row += -(a + c) / (double)t->cols;
                row_bound += 5.0 * u * (fabs(a) + fabs(c) + 1.0) / (double)t->cols;
                w[j] = clipped(p[j]) ? 0.0 : ((double)pc - tj) / ((double)pc * (1.0 - pc)) / size;
                b[j] = 6.0 * u * fabs(w[j]);
            }
        } else if (t->kind == PYNN_LOSS_BCE) {
            /* max(z, 0) - z t + log1p(exp(-|z|)): expf and log1pf (2u each), the product
             * and two sums: 6u of the magnitudes; gradient (sigmoid(z) - t) / size with
             * sigmoid's 4u (test_activations.c), the difference's and the divide's */
            for (j = 0; j < t->cols; j++) {
                const double z = p[j], tj = target_at(t, r, j);
                const double l1p = log1p(exp(-fabs(z))), s = 1.0 / (1.0 + exp(-z));
                row += (fmax(z, 0.0) - z * tj + l1p) / (double)t->cols;
                row_bound += 6.0 * u * (fmax(z, 0.0) + fabs(z * tj) + l1p) / (double)t->cols;
                w[j] = (s - tj) / size;
                b[j] = (4.0 * u * s + 2.0 * u * fabs(s - tj) + FLT_MIN) / size;
            }
        } else if (!t->from_logits) {
            /* CCE on probabilities: q = p / s exactly as the kernel forms it (s the double
             * row sum rounded to float), clipped; loss -sum t log qc (logf, 2u, and the
             * product: 3u each term); gradient (gq - dot) / s / rows with gq = -t / qc,
             * dot = sum gq q: u for gq, 2u sum |gq q| + u |dot| for dot, three more
             * roundings */
            double row_sum = 0.0, dot = 0.0, dot_mag = 0.0;
            float s;
            for (j = 0; j < t->cols; j++) row_sum += (double)p[j];
            s = (float)row_sum;
            for (j = 0; j < t->cols; j++) {
                const float q = p[j] / s;
                const double tj = target_at(t, r, j), gq = clipped(q) ? 0.0 : -tj / clip(q);
                row -= tj * log((double)clip(q));
                row_bound += 3.0 * u * fabs(tj * log((double)clip(q)));
                dot += gq * q;
                dot_mag += fabs(gq * q);
            }
            for (j = 0; j < t->cols; j++) {
                const float q = p[j] / s;
                const double tj = target_at(t, r, j), gq = clipped(q) ? 0.0 : -tj / clip(q);
                w[j] = (gq - dot) / s / rows;
                b[j] = u * (fabs(gq) + 2.0 * dot_mag + fabs(dot) + 3.0 * fabs(gq - dot)) / s /
                       rows;
            }
        } else {
            /* CCE on logits: m = max z, lse = log sum exp(z - m); loss -sum t (z - m - lse);
             * gradient (softmax(z) t_sum - t) / rows.  Float errors: z - m (u |z - m|, a
             * relative error of exp), expf (2u), the row sum (u (W + 3), W = sum_k
             * softmax_k |z_k - m|), logf (2u |log s|), the subtraction and the product;
             * for the gradient the divide, t_sum's rounding and product, the difference
             * and / rows. */
            double m = p[0], s = 0.0, t_sum = 0.0, spread = 0.0, lse;
            for (j = 1; j < t->cols; j++) m = p[j] > m ? p[j] : m;
            for (j = 0; j < t->cols; j++) s += exp((double)p[j] - m);
            lse = log(s);
            for (j = 0; j < t->cols; j++) {
                const double tj = target_at(t, r, j), zm = (double)p[j] - m;
                spread += exp(zm) / s * fabs(zm);
                row -= tj * (zm - lse);
                t_sum += tj;
            }
            for (j = 0; j < t->cols; j++) {
                const double tj = target_at(t, r, j), zm = (double)p[j] - m;
                const double sm = exp(zm) / s;
                row_bound += fabs(tj) * u * (2.0 * fabs(zm) + spread + 3.0 + 2.0 * lse +
                                             2.0 * fabs(zm - lse));
                w[j] = (sm * t_sum - tj) / rows;
                b[j] = (sm * t_sum * u * (fabs(zm) + spread + 9.0) +
                        2.0 * u * fabs(sm * t_sum - tj)) / rows + FLT_MIN;
            }
        }
        total += row;
        total_bound += row_bound;
    }
    *loss_bound = total_bound / rows + 1e-12 * fabs(total / rows);
    return total / rows;
}

static const char *kind_names[] = {"mse", "bce", "cce", "sparse cce"};

static void check_loss(int64_t rows, int64_t cols, int kind, int from_logits) {
    const int64_t n = rows * cols;
    float *pred = from_logits ? ctest_floats(n, -8.0f, 8.0f) : ctest_floats(n, 0.02f, 1.0f);
    float *target = ctest_floats(n, 0.0f, 1.0f);
    int64_t *labels = (int64_t *)ctest_alloc((size_t)rows * sizeof(int64_t));
    double *want = ctest_new_doubles(n), *bound = ctest_new_doubles(n), loss_want, loss_bound;
    loss_case t = {pred, kind == PYNN_LOSS_SPARSE_CCE ? NULL : target, labels, rows, cols,
                   kind == PYNN_LOSS_SPARSE_CCE ? PYNN_LOSS_CCE : kind, from_logits, 0.0f};
    unsigned char *out;
    double loss[2];
    int64_t i;
    for (i = 0; i < rows; i++) labels[i] = (int64_t)(ctest_rand() * (float)cols) % cols;
    /* extremes: large logits, clipped probabilities (for CCE a tiny share of a row with
     * other entries: a row of one zero has no distribution, its loss is NaN) */
    for (i = 0; i < n; i += 53) {
        if (from_logits) pred[i] = i % 2 ? 50.0f : -50.0f;
        else if (kind == PYNN_LOSS_MSE || kind == PYNN_LOSS_BCE) pred[i] = i % 2 ? 1.0f : 0.0f;
        else if (cols > 1) pred[i] = i % 2 ? 1e-9f : 0.0f;
    }
    CTEST_CONTEXT("%s%s %lld x %lld", kind_names[kind], from_logits ? " from logits" : "",
                  (long long)rows, (long long)cols);
    out = ctest_everywhere(run_loss, &t, 2 * sizeof(double) + (size_t)n * sizeof(float), "loss");
    memcpy(loss, out, sizeof loss);
    loss_want = loss_reference(&t, want, bound, &loss_bound);
    CHECK(fabs(loss[0] - loss_want) <= loss_bound, "loss %.17g, expected %.17g +- %.3g", loss[0],
          loss_want, loss_bound);
    CHECK(memcmp(&loss[0], &loss[1], sizeof(double)) == 0,
          "the loss without a gradient differs: %.17g vs %.17g", loss[1], loss[0]);
    ctest_close("gradient", (const float *)(out + 2 * sizeof(double)), want, bound, n);
    free(out);
    free(pred);
    free(target);
    free(labels);
    free(want);
    free(bound);
}

/* Labels outside [0, cols): PYNN_ELABEL, and neither loss nor gradient written. */
static void check_bad_labels(void) {
    enum { ROWS = 300, COLS = 5 };
    float *pred = ctest_floats(ROWS * COLS, -1.0f, 1.0f), *grad = ctest_new_floats(ROWS * COLS);
    int64_t labels[ROWS];
    static const int64_t bad[] = {-1, COLS, COLS + 100, INT64_MIN, INT64_MAX};
    size_t b;
    int i, where, logits;
    for (i = 0; i < ROWS; i++) labels[i] = i % COLS;
    for (b = 0; b < sizeof bad / sizeof bad[0]; b++)
        for (where = 0; where < 3; where++)
            for (logits = 0; logits < 2; logits++) {
                const int row = where == 0 ? 0 : (where == 1 ? ROWS / 2 : ROWS - 1);
                double loss = 12345.0;
                int status;
                CTEST_CONTEXT("sparse cce, label %lld at row %d", (long long)bad[b], row);
                for (i = 0; i < ROWS * COLS; i++) grad[i] = -7.0f;
                labels[row] = bad[b];
                status = pynn_sparse_cce(grad, &loss, pred, labels, ROWS, COLS, logits, NULL);
                CHECK(status == PYNN_ELABEL, "status %d, expected PYNN_ELABEL", status);
                CHECK(loss == 12345.0, "loss written: %g", loss);
                for (i = 0; i < ROWS * COLS && grad[i] == -7.0f; i++) continue;
                CHECK(i == ROWS * COLS, "gradient written at %d", i);
                CHECK(pynn_sparse_cce(NULL, &loss, pred, labels, ROWS, COLS, logits, NULL) == PYNN_ELABEL,
                      "without a gradient");
                labels[row] = row % COLS;
            }
    free(pred);
    free(grad);
}

/* A logit of +inf: NaN with and without the gradient (the sparse path's shortcut for
 * one-hot targets must not hide it). */
static void check_non_finite(void) {
    float pred[2 * 3] = {0.5f, INFINITY, -1.0f, 0.1f, 0.2f, 0.3f}, grad[6];
    const int64_t labels[2] = {0, 2};
    double with_grad = 0.0, without = 0.0;
    CTEST_CONTEXT("cce logits with an infinite logit");
    CHECK(pynn_sparse_cce(grad, &with_grad, pred, labels, 2, 3, 1, NULL) == PYNN_OK, "status");
    CHECK(pynn_sparse_cce(NULL, &without, pred, labels, 2, 3, 1, NULL) == PYNN_OK, "status");
    CHECK(isnan(with_grad) && isnan(without), "loss %g and %g, expected NaN", with_grad, without);
}

static void check_refusals(void) {
    float p[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, g[6];
    const int64_t labels[2] = {0, 1};
    double loss;
    CTEST_CONTEXT("refusals");
    CHECK(pynn_loss(g, &loss, p, p, 0, 3, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "rows 0");
    CHECK(pynn_loss(g, &loss, p, p, 2, 0, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "cols 0");
    CHECK(pynn_loss(g, &loss, p, p, -2, 3, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "rows < 0");
    CHECK(pynn_loss(g, NULL, p, p, 2, 3, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "loss NULL");
    CHECK(pynn_loss(g, &loss, NULL, p, 2, 3, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "pred NULL");
    CHECK(pynn_loss(g, &loss, p, NULL, 2, 3, PYNN_LOSS_MSE, 0, NULL) == PYNN_EINVAL, "target NULL");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_SPARSE_CCE, 0, NULL) == PYNN_EINVAL,
          "sparse CCE through pynn_loss");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, -1, 0, NULL) == PYNN_EINVAL, "kind -1");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, 99, 0, NULL) == PYNN_EINVAL, "kind 99");
    CHECK(pynn_sparse_cce(g, &loss, p, labels, 0, 3, 0, NULL) == PYNN_EINVAL, "rows 0");
    CHECK(pynn_sparse_cce(g, &loss, p, labels, 2, 0, 0, NULL) == PYNN_EINVAL, "cols 0");
    CHECK(pynn_sparse_cce(g, NULL, p, labels, 2, 3, 0, NULL) == PYNN_EINVAL, "loss NULL");
    CHECK(pynn_sparse_cce(g, &loss, NULL, labels, 2, 3, 0, NULL) == PYNN_EINVAL, "pred NULL");
    CHECK(pynn_sparse_cce(g, &loss, p, NULL, 2, 3, 0, NULL) == PYNN_EINVAL, "labels NULL");
}

/* Keras 3's other losses (MAE ... cosine similarity): the kernel against the formulas in
 * double, branches (clipping, hinge margins, Huber's regions, the first maximum) decided on
 * the kernel's float intermediates.  Bounds: 64u of each row's magnitudes -- the formulas
 * are a handful of float operations per element, an absent or repeated term is off by the
 * term itself. */
typedef struct { const float *pred, *target; int64_t rows, cols; int kind; float param; } other_case;

static void run_other(void *ctx, unsigned char *out) {
    const other_case *t = ctx;
    double *loss = (double *)out;
    int s1 = pynn_loss((float *)(loss + 2), &loss[0], t->pred, t->target, t->rows, t->cols,
                       t->kind, 0, PARAM(t->param));
    int s2 = pynn_loss(NULL, &loss[1], t->pred, t->target, t->rows, t->cols, t->kind, 0,
                       PARAM(t->param));
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

static double sgn(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

/* per-row value and gradient row (not yet divided by rows) of the formulas */
static double other_reference(const other_case *c, int64_t r, int binary, double *w,
                              double *mag) {
    const float *p = c->pred + r * c->cols, *t = c->target + r * c->cols;
    const int64_t n = c->cols;
    const double d = c->param;
    double v = 0.0, pos = 0.0, pp = 0.0, tt = 0.0, tp = 0.0;
    float neg;
    int64_t j, k = 0;
    *mag = 0.0;
    switch (c->kind) {
    case PYNN_LOSS_CATEGORICAL_HINGE:
        neg = (1.0f - t[0]) * p[0];
        for (j = 0; j < n; j++) pos += (double)t[j] * p[j], *mag += fabs((double)t[j] * p[j]);
        for (j = 1; j < n; j++)
            if ((1.0f - t[j]) * p[j] > neg) neg = (1.0f - t[j]) * p[j], k = j;
        v = (double)neg - pos + 1.0;
        for (j = 0; j < n; j++) w[j] = v > 0 ? -t[j] + (j == k ? 1.0 - t[j] : 0.0) : 0.0;
        *mag += fabs(neg) + 1.0;
        return v > 0 ? v : 0.0;
    case PYNN_LOSS_COSINE_SIMILARITY: {
        double ip, it, cs;
        for (j = 0; j < n; j++) pp += (double)p[j] * p[j], tt += (double)t[j] * t[j],
                                tp += (double)t[j] * p[j];
        ip = 1.0 / sqrt(fmax(pp, 1e-14));
        it = 1.0 / sqrt(fmax(tt, 1e-14));
        cs = it * ip * tp;
        for (j = 0; j < n; j++)
            w[j] = (float)pp >= 1e-14f ? -ip * (t[j] * it - cs * p[j] * ip) : -t[j] * it * ip;
        *mag = 1.0;
        return -cs;
    }
    default: break;
    }
    for (j = 0; j < n; j++) {
        const double e = (double)p[j] - t[j];
        double x, g = 0.0;
        switch (c->kind) {
        case PYNN_LOSS_MAE: x = fabs(e); g = sgn(p[j] - t[j]); break;
        case PYNN_LOSS_MAPE: {
            const double den = fmax(fabs(t[j]), 1e-7f);
            x = 100.0 * fabs(e / den); g = 100.0 * sgn(p[j] - t[j]) / den; break;
        }
        case PYNN_LOSS_HUBER:
            x = fabsf(p[j] - t[j]) <= c->param ? 0.5 * e * e : d * fabs(e) - 0.5 * d * d;
            g = fabsf(p[j] - t[j]) <= c->param ? e : d * sgn(e); break;
        case PYNN_LOSS_LOG_COSH: x = log(cosh(e)); g = tanh(e); break;
        case PYNN_LOSS_KLD: {
            const double tc = fmin(fmax(t[j], 1e-7f), 1.0), pc = fmin(fmax(p[j], 1e-7f), 1.0);
            x = tc * log(tc / pc) * (double)n;       /* a sum: undone by the mean below */
            g = (p[j] < 1e-7f || p[j] > 1.0f) ? 0.0 : -tc / pc * (double)n;
            *mag += fabs(tc * log(tc)) * n + fabs(tc * log(pc)) * n;
            break;
        }
        case PYNN_LOSS_POISSON:
            x = p[j] - t[j] * log((double)(p[j] + 1e-7f)); g = 1.0 - t[j] / (p[j] + 1e-7f);
            *mag += fabs(p[j]) + fabs(t[j] * log((double)(p[j] + 1e-7f))); break;
        default: {   /* hinges */
            const float tf = binary ? 2.0f * t[j] - 1.0f : t[j];
            const float m = 1.0f - tf * p[j];
            const double h = m > 0.0f ? 1.0 - (double)tf * p[j] : 0.0;
            x = c->kind == PYNN_LOSS_HINGE ? h : h * h;
            g = m > 0.0f ? (c->kind == PYNN_LOSS_HINGE ? -tf : -2.0 * tf * h) : 0.0;
            *mag += 1.0 + fabs((double)tf * p[j]);
        }
        }
        v += x / (double)n;
        *mag += fabs(x) / (double)n;
        w[j] = g / (double)n;
    }
    return v;
}

static const char *other_names[] = {"mae", "mape", "huber", "log_cosh", "kld", "hinge",
                                    "squared_hinge", "categorical_hinge", "poisson", "cosine"};

static void check_other(int64_t rows, int64_t cols, int kind, float param) {
    const int64_t n = rows * cols;
    float *pred = ctest_floats(n, kind == PYNN_LOSS_KLD ? -0.1f : (kind == PYNN_LOSS_POISSON ? 0.0f : -3.0f), kind == PYNN_LOSS_KLD ? 1.2f : 3.0f);
    float *target = ctest_floats(n, kind == PYNN_LOSS_KLD || kind == PYNN_LOSS_POISSON ? 0.0f : -2.0f, 2.0f);
    double *want = ctest_new_doubles(n), *bound = ctest_new_doubles(n);
    other_case c = {pred, target, rows, cols, kind, param};
    double total = 0.0, total_mag = 0.0, loss[2];
    unsigned char *out;
    int64_t r, j;
    int binary = 0;
    if (kind == PYNN_LOSS_HINGE || kind == PYNN_LOSS_SQUARED_HINGE || kind == PYNN_LOSS_CATEGORICAL_HINGE) {
        binary = rows % 2 == 1;        /* odd rows: {0, 1} targets (mapped), even: any */
        for (j = 0; j < n; j++) target[j] = binary || kind == PYNN_LOSS_CATEGORICAL_HINGE
                                                ? (float)(ctest_rand() > 0.5f) : target[j];
    }
    if (cols > 1 && rows > 1 && kind == PYNN_LOSS_COSINE_SIMILARITY)
        for (j = 0; j < cols; j++) pred[cols + j] = 0.0f;      /* a zero row: clamped norm */
    if (kind <= PYNN_LOSS_HUBER) pred[0] = target[0];          /* sign(0) */
    for (r = 0; r < rows; r++) {
        double mag, gmax = 0.0;
        total += other_reference(&c, r, binary, want + r * cols, &mag);
        total_mag += mag;
        for (j = 0; j < cols; j++) gmax = fmax(gmax, fabs(want[r * cols + j]));
        if (kind == PYNN_LOSS_COSINE_SIMILARITY) {
            /* the gradient's terms t it ip and c p ip^2 (|c| <= 1) cancel: their size */
            double pp = 0.0, tt = 0.0, pm = 0.0, tm = 0.0, ip, it;
            for (j = 0; j < cols; j++) {
                const double pj = pred[r * cols + j], tj = target[r * cols + j];
                pp += pj * pj, tt += tj * tj, pm = fmax(pm, fabs(pj)), tm = fmax(tm, fabs(tj));
            }
            ip = 1.0 / sqrt(fmax(pp, 1e-14));
            it = 1.0 / sqrt(fmax(tt, 1e-14));
            gmax = ip * (tm * it + pm * ip);
        }
        for (j = 0; j < cols; j++) {
            want[r * cols + j] /= (double)rows;
            bound[r * cols + j] = 64.0 * CTEST_U * gmax / (double)rows + FLT_MIN;
        }
    }
    CTEST_CONTEXT("%s %lld x %lld", other_names[kind - PYNN_LOSS_MAE], (long long)rows,
                  (long long)cols);
    out = ctest_everywhere(run_other, &c, 2 * sizeof(double) + (size_t)n * sizeof(float), "loss");
    memcpy(loss, out, sizeof loss);
    CHECK(fabs(loss[0] - total / rows) <= 64.0 * CTEST_U * total_mag / rows + 1e-300,
          "loss %.17g, expected %.17g", loss[0], total / rows);
    CHECK(memcmp(&loss[0], &loss[1], sizeof(double)) == 0, "the loss without a gradient differs");
    ctest_close("gradient", (const float *)(out + 2 * sizeof(double)), want, bound, n);
    free(out);
    free(pred);
    free(target);
    free(want);
    free(bound);
}

static void check_other_refusals(void) {
    float p[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, g[6];
    double loss;
    CTEST_CONTEXT("huber delta");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_HUBER, 0, PARAM(0.0f)) == PYNN_EINVAL, "delta 0");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_HUBER, 0, PARAM(-1.0f)) == PYNN_EINVAL, "delta < 0");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_HUBER, 0, PARAM(NAN)) == PYNN_EINVAL, "delta NaN");
    CHECK(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_HUBER, 0, PARAM(INFINITY)) == PYNN_EINVAL,
          "delta inf");
}

/* ---- the options (pynn_loss_options): weights, label smoothing, ignore_class, reduce_sum
 * Against the kernel without options on targets smoothed here by Keras's formulas (t (1 - ls)
 * + ls / 2 for BCE, + ls / cols for CCE) and on the rows not ignored, compacted: each
 * gradient row is bitwise the plain call's row times its weight (the same float operations,
 * then one multiply), ignored rows are 0; the loss is sum_i w_i l_i / n with l_i each row's
 * own loss (a call on that row alone) and n the rows not ignored, to 1e-12 (the kernel adds
 * in chunks).  With reduce_sum (Keras's "sum") n is 1: each gradient row is bitwise the
 * gradient of the call on that row alone (1 row: nothing divided) times its weight. */
typedef struct {
    const float *pred, *target;
    const int64_t *labels;
    int64_t rows, cols;
    int kind, from_logits;
    pynn_loss_options opt;
} options_case;

static void run_options(void *ctx, unsigned char *out) {
    const options_case *t = ctx;
    double *loss = (double *)out;
    float *grad = (float *)(loss + 2);
    int s1, s2;
    if (t->labels == NULL) {
        s1 = pynn_loss(grad, &loss[0], t->pred, t->target, t->rows, t->cols, t->kind,
                       t->from_logits, &t->opt);
        s2 = pynn_loss(NULL, &loss[1], t->pred, t->target, t->rows, t->cols, t->kind,
                       t->from_logits, &t->opt);
    } else {
        s1 = pynn_sparse_cce(grad, &loss[0], t->pred, t->labels, t->rows, t->cols,
                             t->from_logits, &t->opt);
        s2 = pynn_sparse_cce(NULL, &loss[1], t->pred, t->labels, t->rows, t->cols,
                             t->from_logits, &t->opt);
    }
    CHECK(s1 == PYNN_OK && s2 == PYNN_OK, "status %d %d", s1, s2);
}

static void check_options(int64_t rows, int64_t cols, int kind, int from_logits, int per_weight,
                          float smoothing, int ignore_mode, int reduce_sum) {
    const int64_t n = rows * cols, n_w = (rows - 1) / per_weight + 1;
    const int sparse = kind == PYNN_LOSS_SPARSE_CCE, ce = sparse ? PYNN_LOSS_CCE : kind;
    const int64_t ignore = ignore_mode == 2 ? -1 : 1;    /* outside [0, cols), or a class */
    float *pred = from_logits || kind == PYNN_LOSS_MSE ? ctest_floats(n, -6.0f, 6.0f)
                                                       : ctest_floats(n, 0.02f, 1.0f);
    float *target = ctest_floats(n, 0.0f, 1.0f), *weights = ctest_floats(n_w, 0.0f, 2.0f);
    float *smooth = ctest_new_floats(n), *cp = ctest_new_floats(n), *ct = ctest_new_floats(n);
    float *plain = ctest_new_floats(n), *row_grad = ctest_new_floats(cols);
    int64_t *labels = (int64_t *)ctest_alloc((size_t)rows * sizeof(int64_t));
    const float keep = 1.0f - smoothing;
    const float add = ce == PYNN_LOSS_BCE ? 0.5f * smoothing : smoothing / (float)cols;
    options_case t = {pred, sparse ? NULL : target, sparse ? labels : NULL, rows, cols, kind,
                      from_logits, {1.0f, smoothing, ignore_mode != 0, ignore, weights,
                                    per_weight, reduce_sum}};
    unsigned char *out;
    const float *grad;
    double loss[2], want = 0.0, plain_loss;
    int64_t i, j, valid = 0;
    for (i = 0; i < n_w; i += 3) weights[i] = 0.0f;         /* zero weights among them */
    for (i = 0; i < rows; i++) {
        labels[i] = (int64_t)(ctest_rand() * (float)cols) % cols;
        if (ignore_mode != 0 && (i % 3 == 1 || ignore_mode == 3)) labels[i] = ignore;
    }
    CTEST_CONTEXT("options: %s%s %lld x %lld, per_weight %d, smoothing %g, ignore mode %d, "
                  "reduce_sum %d", kind_names[kind], from_logits ? " from logits" : "",
                  (long long)rows, (long long)cols, per_weight, (double)smoothing, ignore_mode,
                  reduce_sum);
    out = ctest_everywhere(run_options, &t, 2 * sizeof(double) + (size_t)n * sizeof(float),
                           "loss options");
    memcpy(loss, out, sizeof loss);
    grad = (const float *)(out + 2 * sizeof(double));
    CHECK(memcmp(&loss[0], &loss[1], sizeof(double)) == 0, "the loss without a gradient differs");
    /* the targets smoothed here, and the rows not ignored compacted */
    for (i = 0; i < rows; i++) {
        if (sparse && ignore_mode != 0 && labels[i] == ignore) continue;
        for (j = 0; j < cols; j++) {
            const float tj = sparse ? (labels[i] == j ? 1.0f : 0.0f) : target[i * cols + j];
            cp[valid * cols + j] = pred[i * cols + j];
            ct[valid * cols + j] = smoothing != 0.0f ? tj * keep + add : tj;
        }
        valid++;
    }
    if (valid == 0) {
        CHECK(loss[0] == 0.0, "every row ignored: loss %g, expected 0", loss[0]);
        for (i = 0; i < n && grad[i] == 0.0f; i++) continue;
        CHECK(i == n, "every row ignored: gradient %g at %lld, expected 0", (double)grad[i],
              (long long)i);
    } else {
        CHECK(pynn_loss(plain, &plain_loss, cp, ct, valid, cols, ce, from_logits, NULL) == PYNN_OK,
              "plain call");
        for (i = 0, valid = 0; i < rows; i++) {
            const float w = weights[i / per_weight];
            double row_loss;
            if (sparse && ignore_mode != 0 && labels[i] == ignore) {
                for (j = 0; j < cols && grad[i * cols + j] == 0.0f; j++) continue;
                CHECK(j == cols, "ignored row %lld has a gradient", (long long)i);
                continue;
            }
            /* the row alone: its gradient is not divided by the rows (reduce_sum's) */
            CHECK(pynn_loss(row_grad, &row_loss, cp + valid * cols, ct + valid * cols, 1, cols,
                            ce, from_logits, NULL) == PYNN_OK, "row call");
            for (j = 0; j < cols; j++) {
                const float base = reduce_sum ? row_grad[j] : plain[valid * cols + j];
                CHECK(memcmp(&grad[i * cols + j], &(float){base * w}, sizeof(float)) == 0,
                      "gradient [%lld, %lld] %.9g, expected %.9g * %.9g", (long long)i,
                      (long long)j, (double)grad[i * cols + j], (double)base, (double)w);
            }
            want += (double)w * row_loss;
            valid++;
        }
        if (!reduce_sum) want /= (double)valid;
        CHECK(fabs(loss[0] - want) <= 1e-12 * fabs(want) + 1e-300, "loss %.17g, expected %.17g",
              loss[0], want);
    }
    free(out);
    free(pred);
    free(target);
    free(weights);
    free(smooth);
    free(cp);
    free(ct);
    free(plain);
    free(row_grad);
    free(labels);
}

/* Bad options: PYNN_EINVAL (labels: PYNN_ELABEL) with nothing written. */
static void check_option_refusals(void) {
    float p[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, g[6];
    const int64_t labels[2] = {0, 7};
    static const float bad_weights[][2] = {{1.0f, -1.0f}, {NAN, 1.0f}, {1.0f, INFINITY},
                                           {-0.0f, -1e-30f}};
    double loss = 12345.0;
    size_t b;
    int i;
    pynn_loss_options o = {1.0f, 0.0f, 0, 0, NULL, 1, 0};
#define REFUSED(call, status, what)                                                        \
    do {                                                                                   \
        for (i = 0; i < 6; i++) g[i] = -7.0f;                                             \
        CHECK((call) == (status), "%s: not refused", what);                               \
        for (i = 0; i < 6 && g[i] == -7.0f; i++) continue;                                \
        CHECK(i == 6 && loss == 12345.0, "%s: something was written", what);              \
    } while (0)
    CTEST_CONTEXT("option refusals");
    for (b = 0; b < sizeof bad_weights / sizeof bad_weights[0]; b++) {
        o.weights = bad_weights[b];
        REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_BCE, 0, &o), PYNN_EINVAL, "weight");
    }
    o.weights = p;
    o.per_weight = 0;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_BCE, 0, &o), PYNN_EINVAL, "per_weight 0");
    o.per_weight = 1;
    o.weights = NULL;
    o.label_smoothing = 1.5f;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_BCE, 0, &o), PYNN_EINVAL, "smoothing 1.5");
    o.label_smoothing = NAN;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_CCE, 0, &o), PYNN_EINVAL, "smoothing NaN");
    o.label_smoothing = -0.5f;
    REFUSED(pynn_sparse_cce(g, &loss, p, labels, 2, 3, 0, &o), PYNN_EINVAL, "smoothing < 0");
    o.label_smoothing = 0.1f;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_MSE, 0, &o), PYNN_EINVAL, "MSE smoothing");
    o.label_smoothing = 0.0f;
    o.has_ignore = 1;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_CCE, 0, &o), PYNN_EINVAL,
            "ignore_class outside sparse CCE");
    o.ignore_class = -1;              /* 7 is still out of range */
    REFUSED(pynn_sparse_cce(g, &loss, p, labels, 2, 3, 0, &o), PYNN_ELABEL, "label 7");
    o.param = 0.0f;
    o.has_ignore = 0;
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_HUBER, 0, &o), PYNN_EINVAL, "delta 0");
    o.param = 1.0f;
    o.reduce_sum = 2;                 /* 0 or 1 */
    REFUSED(pynn_loss(g, &loss, p, p, 2, 3, PYNN_LOSS_MSE, 0, &o), PYNN_EINVAL, "reduce_sum 2");
    o.reduce_sum = -1;
    REFUSED(pynn_sparse_cce(g, &loss, p, labels, 1, 3, 0, &o), PYNN_EINVAL, "reduce_sum -1");
#undef REFUSED
}

int main(void) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {2, 3}, {7, 1}, {255, 17}, {256, 10},
                                        {257, 3}, {513, 64}, {300, 200}, {16385, 3},
                                        {64, 1000}, {3, 4099}};
    size_t s;
    int kind, logits;
    ctest_seed(2);
    check_refusals();
    check_bad_labels();
    check_non_finite();
    for (kind = PYNN_LOSS_MSE; kind <= PYNN_LOSS_SPARSE_CCE; kind++)
        for (logits = 0; logits < 2; logits++)
            for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                if (kind == PYNN_LOSS_MSE && logits) continue;   /* MSE has no logits form */
                check_loss(shapes[s][0], shapes[s][1], kind, logits);
            }
    check_other_refusals();
    check_option_refusals();
    {
        /* (rows, cols): a single row, rows past a reduction chunk and two threads' worth */
        static const int64_t oshapes[][2] = {{1, 1}, {6, 5}, {513, 3}, {300, 200}, {258, 64}};
        for (s = 0; s < sizeof oshapes / sizeof oshapes[0]; s++)
            for (kind = PYNN_LOSS_MSE; kind <= PYNN_LOSS_SPARSE_CCE; kind++)
                for (logits = 0; logits < 2; logits++) {
                    const int64_t r = oshapes[s][0], c = oshapes[s][1];
                    const int per = r % 2 == 0 && s % 2 ? 2 : 1;
                    const float ls = kind == PYNN_LOSS_MSE ? 0.0f : (s % 2 ? 0.1f : 0.0f);
                    if (kind == PYNN_LOSS_MSE && logits) continue;
                    check_options(r, c, kind, logits, per, ls, 0, 0);
                    check_options(r, c, kind, logits, per, ls, 0, 1);
                    if (kind == PYNN_LOSS_SPARSE_CCE) {
                        check_options(r, c, kind, logits, per, ls, 1, 0);
                        check_options(r, c, kind, logits, 1, 0.05f, 2, 0);
                        check_options(r, c, kind, logits, per, ls, 3, 0);
                        check_options(r, c, kind, logits, per, ls, 1, 1);
                        check_options(r, c, kind, logits, 1, 0.0f, 2, 1);
                        check_options(r, c, kind, logits, per, ls, 3, 1);
                    }
                }
        check_options(257, 4, PYNN_LOSS_BCE, 1, 1, 1.0f, 0, 0);     /* smoothing 1: all 0.5 */
        check_options(16385, 3, PYNN_LOSS_CCE, 1, 5, 0.2f, 0, 0);   /* chunk sums on the heap */
        check_options(16385, 3, PYNN_LOSS_SPARSE_CCE, 1, 1, 0.0f, 1, 1);
        check_options(64, 1000, PYNN_LOSS_SPARSE_CCE, 0, 4, 0.3f, 2, 0);
    }
    for (kind = PYNN_LOSS_MAE; kind <= PYNN_LOSS_COSINE_SIMILARITY; kind++)
        for (s = 0; s < 10; s++)       /* up to 300 x 200: two threads */
            check_other(shapes[s][0], shapes[s][1], kind, s % 2 ? 0.7f : 1.0f);
    return ctest_finish("test_losses");
}
