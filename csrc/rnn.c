/* rnn.c -- the recurrent layers (SimpleRNN, LSTM, GRU): forward and backpropagation
 * through time (csrc/pynn.h, "recurrent layers").
 *
 * Forward: one GEMM projects the inputs of the whole sequence, (n*T, f) x (f, G*u), into
 * `gates`; then each step is one GEMM (n, u) x (u, G*u) of the previous hidden state by the
 * recurrent kernel plus one fused pass per row (bias, activations, cell update, mask).
 * Backward, in reverse: a fused pass per row gives the gate gradients of the step (the
 * pre-activation gradients, written over nothing the forward needs), then one GEMM gives
 * the gradient reaching the previous hidden state.  The weight gradients are then three
 * GEMMs over the whole sequence (the gate gradients against the inputs and against the
 * hidden states each step read) and one column sum for the bias.
 *
 * Layouts (row-major; n rows, T steps):
 *   x (n, T, f); gates, dgates, dgr (n, T, G*u) and hprev, aux (n, T, u) are indexed by
 *   time t; seq and cs (n, T, u) by output position (the step s, or t when time_order);
 *   step s reads time t = go_backwards ? T - 1 - s : s.
 * Every output element is written by one thread, and every sum runs in an order that does
 * not depend on the thread count (the GEMM splits M and N only; the bias sums are
 * pynn_bias_grad's fixed chunks), so the results are bitwise the same on 1 or N threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "rnn_internal.h"

/* p rounded up to 64 bytes (the packed panels' alignment, as the GEMM's own buffers) */
static float *align64f(void *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* The row kernels of the level in use (dispatch.c), taken once per call. */
static const pynn_rnn_kernels *rnn_kernels(void) {
    switch (pynn_level()) {
#ifdef PYNN_HAVE_X86_KERNELS
    case PYNN_LEVEL_AVX512:
        return &pynn_rnn_avx512;
    case PYNN_LEVEL_AVX2:
        return &pynn_rnn_avx2;
#endif
    default:
        return &pynn_rnn_generic;
    }
}

static int act_supported(int act) {
    return act == PYNN_ACT_LINEAR || act == PYNN_ACT_RELU || act == PYNN_ACT_SIGMOID ||
           act == PYNN_ACT_TANH;
}

int pynn_rnn_act_supported(int act) { return act_supported(act); }

int64_t pynn_rnn_gates(int cell) {
    return cell == PYNN_RNN_LSTM ? 4 : cell == PYNN_RNN_GRU ? 3 : cell == PYNN_RNN_SIMPLE ? 1 : 0;
}

static int args_ok(int64_t n, int64_t t, int64_t f, int64_t u, int cell, int act, int rec_act) {
    return n >= 0 && t >= 1 && f >= 1 && u >= 1 && pynn_rnn_gates(cell) > 0 &&
           act_supported(act) && act_supported(rec_act) && n <= INT32_MAX && t <= INT32_MAX &&
           f <= INT32_MAX && u <= INT32_MAX;
}

static inline int64_t time_of(int64_t s, int64_t t, int go_backwards) {
    return go_backwards ? t - 1 - s : s;
}

int pynn_rnn_forward(float *seq, float *cs, float *gates, float *hprev, float *aux, float *rec,
                     float *h_last, float *c_last, const float *x, const float *kernel,
                     const float *rkernel, const float *bias, const float *mask,
                     const float *rec_mask, int64_t n, int64_t T, int64_t f, int64_t u,
                     int cell, int act, int rec_act, int go_backwards, int time_order,
                     float *out) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    const pynn_rnn_kernels *kr = rnn_kernels();
    int64_t s, r, bp_floats;
    float *bp = NULL;
    void *bp_raw = NULL;
    int status;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(seq == NULL || gates == NULL || hprev == NULL || rec == NULL ||
                   x == NULL || kernel == NULL || rkernel == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell != PYNN_RNN_SIMPLE && aux == NULL, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    /* the recurrent kernel, packed once for the T - 1 products with it (none: each packs) */
    bp_floats = T > 2 ? pynn_sgemm_pack_b_floats(gu, u) : 0;
    if (bp_floats > 0) {
        bp_raw = malloc((size_t)(bp_floats + 16) * sizeof(float));
        if (bp_raw == NULL) return PYNN_ENOMEM;
        bp = align64f(bp_raw);
        status = pynn_sgemm_pack_b(bp, rkernel, 0, gu, u, gu);
        if (status != PYNN_OK) { free(bp_raw); return status; }
    }
    /* the input projections of the whole sequence */
    status = pynn_sgemm(gates, x, kernel, 0, 0, n * T, gu, f, 1.0f, 0.0f, f, gu, gu);
    if (status != PYNN_OK) { free(bp_raw); return status; }
    for (s = 0; s < T; s++) {
        const int64_t tt = time_of(s, T, go_backwards);
        const int64_t o = time_order ? tt : s;
        const int64_t op = s == 0 ? -1 : (time_order ? time_of(s - 1, T, go_backwards) : s - 1);
        float *hnext = s + 1 < T ? hprev + time_of(s + 1, T, go_backwards) * u : NULL;
        /* the state this step reads (recurrent dropout applied): the previous step's row
         * pass wrote it, except the first step's zeros */
        if (op < 0)
            for (r = 0; r < n; r++)
                memset(hprev + (r * T + tt) * u, 0, (size_t)u * sizeof(float));
        if (op < 0) {
            memset(rec, 0, (size_t)(n * gu) * sizeof(float));
        } else {
            status = pynn_sgemm_prepacked(rec, hprev + tt * u, rkernel, bp, 0, 0, n, gu, u,
                                          1.0f, 0.0f, T * u, gu, gu);
            if (status != PYNN_OK) { free(bp_raw); return status; }
        }
        PYNN_PARALLEL_FOR(pynn_threads_for(n * gu * 8),
        for (r = 0; r < n; r++)
            kr->fwd_row(r, seq, cs, gates, aux, rec, bias, mask, T, u, gu, tt, o, op, cell,
                        act, rec_act, out, hnext, rec_mask);
        );
    }
    {
        const int64_t last = time_order ? time_of(T - 1, T, go_backwards) : T - 1;
        for (r = 0; r < n; r++) {
            if (h_last != NULL)
                memcpy(h_last + r * u, seq + (r * T + last) * u, (size_t)u * sizeof(float));
            if (c_last != NULL && cell == PYNN_RNN_LSTM)
                memcpy(c_last + r * u, cs + (r * T + last) * u, (size_t)u * sizeof(float));
        }
    }
    free(bp_raw);
    return PYNN_OK;
}

int64_t pynn_rnn_backward_work(int64_t n, int64_t u) { return n * 4 * u; }

int pynn_rnn_backward(float *dkernel, float *drkernel, float *dbias, float *dx, float *dgates,
                      float *dgr, float *work, const float *dseq, const float *dh_last,
                      const float *dc_last, const float *x, const float *kernel,
                      const float *rkernel, const float *seq, const float *cs,
                      const float *gates, const float *hprev, const float *aux,
                      const float *mask, const float *rec_mask, int64_t n, int64_t T,
                      int64_t f, int64_t u, int cell, int act, int rec_act, int go_backwards,
                      int time_order, int zero_output) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    const pynn_rnn_kernels *kr = rnn_kernels();
    float *dh, *dc, *dn, *bp = NULL;
    void *bp_raw = NULL;
    int64_t s, r, bp_floats;
    int status;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(dgates == NULL || work == NULL || x == NULL || kernel == NULL ||
                   rkernel == NULL || seq == NULL || gates == NULL || hprev == NULL,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && aux == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_GRU && (aux == NULL || dgr == NULL), PYNN_EINVAL);
    if (cell != PYNN_RNN_GRU) dgr = dgates;
    if (n == 0) {
        if (dkernel) memset(dkernel, 0, (size_t)(f * gu) * sizeof(float));
        if (drkernel) memset(drkernel, 0, (size_t)(u * gu) * sizeof(float));
        if (dbias) memset(dbias, 0, (size_t)((cell == PYNN_RNN_GRU ? 2 : 1) * gu) * sizeof(float));
        return PYNN_OK;
    }
    /* the recurrent kernel, packed once for the T - 1 products with its transpose */
    bp_floats = T > 2 ? pynn_sgemm_pack_b_floats(u, gu) : 0;
    if (bp_floats > 0) {
        bp_raw = malloc((size_t)(bp_floats + 16) * sizeof(float));
        if (bp_raw == NULL) return PYNN_ENOMEM;
        bp = align64f(bp_raw);
        status = pynn_sgemm_pack_b(bp, rkernel, 1, u, gu, gu);
        if (status != PYNN_OK) { free(bp_raw); return status; }
    }
    dh = work;
    dc = work + n * u;
    dn = work + 2 * n * u;
    if (dh_last) memcpy(dh, dh_last, (size_t)(n * u) * sizeof(float));
    else memset(dh, 0, (size_t)(n * u) * sizeof(float));
    if (dc_last && cell == PYNN_RNN_LSTM) memcpy(dc, dc_last, (size_t)(n * u) * sizeof(float));
    else memset(dc, 0, (size_t)(n * u) * sizeof(float));
    for (s = T - 1; s >= 0; s--) {
        const int64_t tt = time_of(s, T, go_backwards);
        const int64_t o = time_order ? tt : s;
        const int64_t op = s == 0 ? -1 : (time_order ? time_of(s - 1, T, go_backwards) : s - 1);
        /* gate gradients; dn = the gradient reaching h_{s-1} other than through the GEMM */
        PYNN_PARALLEL_FOR(pynn_threads_for(n * gu * 8),
        for (r = 0; r < n; r++)
            kr->bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu,
                        tt, o, op, cell, act, rec_act, zero_output, rec_mask, s < T - 1);
        );
        if (s == 0) break;                    /* h_{-1} is the constant 0 */
        /* dh = dgr_s rkernel^T; the next rows' pass applies the mask and adds dn */
        status = pynn_sgemm_prepacked(dh, dgr + tt * gu, rkernel, bp, 0, 1, n, u, gu, 1.0f,
                                      0.0f, T * gu, gu, u);
        if (status != PYNN_OK) { free(bp_raw); return status; }
    }
    free(bp_raw);
    /* the weight gradients: a few GEMMs over the whole sequence; where both read the same
     * dgates (not GRU), its panels are packed once for the two (bitwise the same GEMMs) */
    bp_raw = NULL;
    bp = NULL;
    if (dkernel != NULL && drkernel != NULL && dgr == dgates) {
        bp_floats = pynn_sgemm_pack_b_floats(gu, n * T);
        if (bp_floats > 0) {
            bp_raw = malloc((size_t)(bp_floats + 16) * sizeof(float));
            if (bp_raw == NULL) return PYNN_ENOMEM;
            bp = align64f(bp_raw);
            status = pynn_sgemm_pack_b(bp, dgates, 0, gu, n * T, gu);
            if (status != PYNN_OK) { free(bp_raw); return status; }
        }
    }
    if (dkernel != NULL) {
        status = pynn_sgemm_prepacked(dkernel, x, dgates, bp, 1, 0, f, gu, n * T, 1.0f, 0.0f,
                                      f, gu, gu);
        if (status != PYNN_OK) { free(bp_raw); return status; }
    }
    if (drkernel != NULL) {
        status = pynn_sgemm_prepacked(drkernel, hprev, dgr, bp, 1, 0, u, gu, n * T, 1.0f, 0.0f,
                                      u, gu, gu);
        if (status != PYNN_OK) { free(bp_raw); return status; }
    }
    free(bp_raw);
    if (dbias != NULL) {
        status = pynn_bias_grad(dbias, dgates, n * T, gu);
        if (status != PYNN_OK) return status;
        if (cell == PYNN_RNN_GRU) {
            status = pynn_bias_grad(dbias + gu, dgr, n * T, gu);
            if (status != PYNN_OK) return status;
        }
    }
    if (dx != NULL) {
        status = pynn_sgemm(dx, dgates, kernel, 0, 1, n * T, f, gu, 1.0f, 0.0f, gu, gu, f);
        if (status != PYNN_OK) return status;
    }
    return PYNN_OK;
}
