/* regularizers.c -- the weight and activity penalties (Keras 3's L1, L2, L1L2) and the
 * weight constraints (MaxNorm, MinMaxNorm, NonNeg, UnitNorm); engineer F.
 *
 * Determinism: the penalty's sum runs over fixed chunks of x (their bounds depend on n
 * only), each summed in index order by one thread, the chunk sums then added in order; the
 * gradient and the constraints write each element from one thread. */
#include <math.h>
#include "internal.h"

/* at most this many chunks, of at least PENALTY_MIN_CHUNK values each */
#define PENALTY_CHUNKS 256
#define PENALTY_MIN_CHUNK 4096

static float sign_of(float v) { return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); }

int pynn_penalty(double *value, float *dx, const float *x, int64_t n, double l1, double l2,
                 double scale, int accumulate) {
    double partial[PENALTY_CHUNKS];
    int64_t chunks, chunk, c, i;
    double total = 0.0;
    PYNN_RETURN_IF(value == NULL || n < 0 || (x == NULL && n > 0), PYNN_EINVAL);
    PYNN_RETURN_IF(!(l1 >= 0.0 && l2 >= 0.0 && isfinite(l1) && isfinite(l2) && isfinite(scale)),
                   PYNN_EINVAL);
    chunks = (n + PENALTY_MIN_CHUNK - 1) / PENALTY_MIN_CHUNK;
    if (chunks > PENALTY_CHUNKS) chunks = PENALTY_CHUNKS;
    if (chunks < 1) chunks = 1;
    chunk = (n + chunks - 1) / chunks;
    /* chunks: each summed by one thread, in index order */
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (c = 0; c < chunks; c++) {
            const int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
            double s1 = 0.0, s2 = 0.0;
            int64_t j;
            for (j = lo; j < hi; j++) {
                const double v = (double)x[j];
                s1 += fabs(v);
                s2 += v * v;
            }
            partial[c] = l1 * s1 + l2 * s2;
        });
    for (c = 0; c < chunks; c++) total += partial[c];
    *value = scale * total;
    if (dx != NULL) {
        const float a = (float)(scale * l1), b = (float)(2.0 * scale * l2);
        /* elements: each written by one thread */
        if (accumulate) {
            PYNN_PARALLEL_FOR(pynn_threads_for(n),
                for (i = 0; i < n; i++) dx[i] += a * sign_of(x[i]) + b * x[i];);
        } else {
            PYNN_PARALLEL_FOR(pynn_threads_for(n),
                for (i = 0; i < n; i++) dx[i] = a * sign_of(x[i]) + b * x[i];);
        }
    }
    return PYNN_OK;
}

int pynn_constraint(float *w, int64_t outer, int64_t red, int64_t inner, int kind, double a,
                    double b, double rate) {
    const float eps = 1e-7f;
    int64_t col, cols, n;
    PYNN_RETURN_IF(outer < 0 || red < 0 || inner < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(kind < 0 || kind >= PYNN_CONSTRAINT_KINDS, PYNN_EINVAL);
    PYNN_RETURN_IF(outer > 0 && red > INT64_MAX / outer, PYNN_EINVAL);
    PYNN_RETURN_IF(inner > 0 && outer * red > INT64_MAX / inner, PYNN_EINVAL);
    n = outer * red * inner;
    PYNN_RETURN_IF(w == NULL && n > 0, PYNN_EINVAL);
    PYNN_RETURN_IF(a != a || b != b || rate != rate, PYNN_EINVAL);
    if (kind == PYNN_CONSTRAINT_NON_NEG) {
        int64_t i;
        /* elements: each written by one thread */
        PYNN_PARALLEL_FOR(pynn_threads_for(n),
            for (i = 0; i < n; i++) w[i] = w[i] > 0.0f ? w[i] : 0.0f;);
        return PYNN_OK;
    }
    cols = outer * inner;
    /* columns: each read and written by one thread, its sum in order */
    PYNN_PARALLEL_FOR(pynn_threads_for(n),
        for (col = 0; col < cols; col++) {
            const int64_t o = col / (inner > 0 ? inner : 1), in = col % (inner > 0 ? inner : 1);
            float *base = w + o * red * inner + in;
            double s = 0.0;
            float norm, factor;
            int64_t r;
            for (r = 0; r < red; r++) s += (double)base[r * inner] * (double)base[r * inner];
            norm = (float)sqrt(s);
            if (kind == PYNN_CONSTRAINT_UNIT_NORM) {
                const float d = eps + norm;
                for (r = 0; r < red; r++) base[r * inner] = base[r * inner] / d;
                continue;
            }
            if (kind == PYNN_CONSTRAINT_MAX_NORM) {
                const float hi = (float)a;
                const float desired = norm < 0.0f ? 0.0f : (norm > hi ? hi : norm);
                factor = desired / (eps + norm);
            } else {
                const float lo = (float)a, hi = (float)b, rt = (float)rate;
                const float clipped = norm < lo ? lo : (norm > hi ? hi : norm);
                const float desired = rt * clipped + (1.0f - rt) * norm;
                factor = desired / (eps + norm);
            }
            for (r = 0; r < red; r++) base[r * inner] = base[r * inner] * factor;
        });
    return PYNN_OK;
}
