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
#include <string.h>
#include "internal.h"

static int act_supported(int act) {
    return act == PYNN_ACT_LINEAR || act == PYNN_ACT_RELU || act == PYNN_ACT_SIGMOID ||
           act == PYNN_ACT_TANH;
}

int pynn_rnn_act_supported(int act) { return act_supported(act); }

int64_t pynn_rnn_gates(int cell) {
    return cell == PYNN_RNN_LSTM ? 4 : cell == PYNN_RNN_GRU ? 3 : cell == PYNN_RNN_SIMPLE ? 1 : 0;
}

/* act'(z) from y = act(z) (every supported activation has one) */
static inline float dact(float y, int act) {
    switch (act) {
    case PYNN_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case PYNN_ACT_SIGMOID: return y * (1.0f - y);
    case PYNN_ACT_TANH: return 1.0f - y * y;
    default: return 1.0f;
    }
}

/* y[0:n] = act(z[0:n]) (y may be z), vectorised: sigmoid as 1 / (1 + expf(-z)) through
 * pynn_exp_span (bitwise act1's), tanh as sign(z) (1 - e) / (1 + e) with e = expf(-2|z|)
 * (an odd polynomial below |z| = 1/16, where that form would cancel: relative error below
 * 1e-7 either way).  Chunks of SPAN floats on the stack: nothing is allocated. */
#define SPAN 256
static void act_span(float *y, const float *z, int64_t n, int act) {
    float tmp[SPAN];
    int64_t i0, i, m;
    switch (act) {
    case PYNN_ACT_RELU:
        for (i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
        return;
    case PYNN_ACT_SIGMOID:
        for (i0 = 0; i0 < n; i0 += SPAN) {
            m = n - i0 < SPAN ? n - i0 : SPAN;
            for (i = 0; i < m; i++) tmp[i] = -z[i0 + i];
            pynn_exp_span(tmp, tmp, m);
            for (i = 0; i < m; i++) y[i0 + i] = 1.0f / (1.0f + tmp[i]);
        }
        return;
    case PYNN_ACT_TANH:
        for (i0 = 0; i0 < n; i0 += SPAN) {
            m = n - i0 < SPAN ? n - i0 : SPAN;
            for (i = 0; i < m; i++) tmp[i] = -2.0f * fabsf(z[i0 + i]);
            pynn_exp_span(tmp, tmp, m);
            for (i = 0; i < m; i++) {
                const float v = z[i0 + i], a = fabsf(v), e = tmp[i], z2 = v * v;
                float t = (1.0f - e) / (1.0f + e);
                const float p = a * (1.0f + z2 * (-0.33333333f + z2 * (0.13333333f +
                                                                      z2 * -0.05396825f)));
                t = a < 0.0625f ? p : t;
                y[i0 + i] = copysignf(t, v);
            }
        }
        return;
    default:
        if (y != z) memcpy(y, z, (size_t)n * sizeof(float));
        return;
    }
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
    int64_t s, r;
    int status;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(seq == NULL || gates == NULL || hprev == NULL || rec == NULL ||
                   x == NULL || kernel == NULL || rkernel == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell != PYNN_RNN_SIMPLE && aux == NULL, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    /* the input projections of the whole sequence */
    status = pynn_sgemm(gates, x, kernel, 0, 0, n * T, gu, f, 1.0f, 0.0f, f, gu, gu);
    if (status != PYNN_OK) return status;
    for (s = 0; s < T; s++) {
        const int64_t tt = time_of(s, T, go_backwards);
        const int64_t o = time_order ? tt : s;
        const int64_t op = s == 0 ? -1 : (time_order ? time_of(s - 1, T, go_backwards) : s - 1);
        /* the state this step reads (recurrent dropout applied) */
        for (r = 0; r < n; r++) {
            float *hp = hprev + (r * T + tt) * u;
            int64_t j;
            if (op < 0) {
                memset(hp, 0, (size_t)u * sizeof(float));
            } else {
                const float *h = seq + (r * T + op) * u;
                if (rec_mask != NULL)
                    for (j = 0; j < u; j++) hp[j] = h[j] * rec_mask[r * u + j];
                else
                    memcpy(hp, h, (size_t)u * sizeof(float));
            }
        }
        if (op < 0) {
            memset(rec, 0, (size_t)(n * gu) * sizeof(float));
        } else {
            status = pynn_sgemm(rec, hprev + tt * u, rkernel, 0, 0, n, gu, u, 1.0f, 0.0f,
                                T * u, gu, gu);
            if (status != PYNN_OK) return status;
        }
        PYNN_PARALLEL_FOR(pynn_threads_for(n * gu * 8),
        for (r = 0; r < n; r++) {
            float *g = gates + (r * T + tt) * gu;
            float *rc = rec + r * gu;          /* the row's scratch once read */
            float *h = seq + (r * T + o) * u;
            const float *h0 = op < 0 ? NULL : seq + (r * T + op) * u;
            const int keep = mask != NULL && mask[r * T + tt] == 0.0f;
            int64_t j;
            if (cell == PYNN_RNN_LSTM) {
                float *c = cs + (r * T + o) * u, *tc = aux + (r * T + tt) * u;
                const float *c0 = op < 0 ? NULL : cs + (r * T + op) * u;
                for (j = 0; j < gu; j++) g[j] = g[j] + rc[j] + (bias ? bias[j] : 0.0f);
                if (rec_act == act) {
                    act_span(g, g, gu, act);
                } else {
                    act_span(g, g, 2 * u, rec_act);
                    act_span(g + 2 * u, g + 2 * u, u, act);
                    act_span(g + 3 * u, g + 3 * u, u, rec_act);
                }
                for (j = 0; j < u; j++) {
                    const float cp = c0 ? c0[j] : 0.0f;
                    c[j] = keep ? cp : g[u + j] * cp + g[j] * g[2 * u + j];
                }
                act_span(tc, c, u, act);
                for (j = 0; j < u; j++)
                    h[j] = keep ? (h0 ? h0[j] : 0.0f) : g[3 * u + j] * tc[j];
            } else if (cell == PYNN_RNN_GRU) {
                float *rh = aux + (r * T + tt) * u;
                if (bias) {
                    for (j = 0; j < gu; j++) {
                        g[j] += bias[j];
                        rc[j] += bias[gu + j];
                    }
                }
                for (j = 0; j < 2 * u; j++) g[j] += rc[j];
                act_span(g, g, 2 * u, rec_act);
                for (j = 0; j < u; j++) {
                    rh[j] = rc[2 * u + j];
                    g[2 * u + j] += g[u + j] * rc[2 * u + j];
                }
                act_span(g + 2 * u, g + 2 * u, u, act);
                for (j = 0; j < u; j++) {
                    const float hp = h0 ? h0[j] : 0.0f, z = g[j];
                    h[j] = keep ? hp : z * hp + (1.0f - z) * g[2 * u + j];
                }
            } else {
                for (j = 0; j < u; j++) g[j] = g[j] + rc[j] + (bias ? bias[j] : 0.0f);
                act_span(g, g, u, act);
                for (j = 0; j < u; j++) h[j] = keep ? (h0 ? h0[j] : 0.0f) : g[j];
            }
            if (out != NULL) {                 /* zero_output_for_mask's output */
                float *y = out + (r * T + o) * u;
                for (j = 0; j < u; j++) y[j] = keep ? 0.0f : h[j];
            }
        });
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
    return PYNN_OK;
}

/* One row of a backward step (the body of pynn_rnn_backward's per-step loop); inlined with
 * constant activations for the default pairs, so that the loops vectorise. */
static inline __attribute__((always_inline)) void bwd_row(
        int64_t r, float *dgates, float *dgr, float *dh, float *dc, float *dn,
        const float *dseq, const float *seq, const float *cs, const float *gates,
        const float *aux, const float *mask, int64_t T, int64_t u, int64_t gu, int64_t tt,
        int64_t o, int64_t op, int cell, int act, int rec_act, int zero_output) {
    float *dgx = dgates + (r * T + tt) * gu, *dgh = dgr + (r * T + tt) * gu;
    const float *g = gates + (r * T + tt) * gu;
    float *dhr = dh + r * u, *dcr = dc + r * u, *dnr = dn + r * u;
    const int keep = mask != NULL && mask[r * T + tt] == 0.0f;
    int64_t j;
    if (dseq != NULL && !(zero_output && keep)) {   /* a zeroed output passes nothing */
        const float *d = dseq + (r * T + o) * u;
        for (j = 0; j < u; j++) dhr[j] += d[j];
    }
    if (keep) {                       /* the state passes through unchanged */
        memset(dgx, 0, (size_t)gu * sizeof(float));
        if (dgh != dgx) memset(dgh, 0, (size_t)gu * sizeof(float));
        memcpy(dnr, dhr, (size_t)u * sizeof(float));
        return;                       /* dc passes through as it is */
    }
    if (cell == PYNN_RNN_LSTM) {
        const float *tca = aux + (r * T + tt) * u;     /* act(c), the forward's */
        const float *c0 = op < 0 ? NULL : cs + (r * T + op) * u;
        for (j = 0; j < u; j++) {
            const float gi = g[j], gf = g[u + j], gc = g[2 * u + j], go = g[3 * u + j];
            const float tc = tca[j], cp = c0 ? c0[j] : 0.0f;
            const float dct = dcr[j] + dhr[j] * go * dact(tc, act);
            dgx[j] = dct * gc * dact(gi, rec_act);
            dgx[u + j] = dct * cp * dact(gf, rec_act);
            dgx[2 * u + j] = dct * gi * dact(gc, act);
            dgx[3 * u + j] = dhr[j] * tc * dact(go, rec_act);
            dcr[j] = dct * gf;
            dnr[j] = 0.0f;
        }
    } else if (cell == PYNN_RNN_GRU) {
        const float *rh = aux + (r * T + tt) * u;
        const float *h0 = op < 0 ? NULL : seq + (r * T + op) * u;
        for (j = 0; j < u; j++) {
            const float z = g[j], rg = g[u + j], hh = g[2 * u + j];
            const float hp = h0 ? h0[j] : 0.0f, d = dhr[j];
            const float dhh = d * (1.0f - z) * dact(hh, act);
            const float dz = d * (hp - hh) * dact(z, rec_act);
            const float dr = dhh * rh[j] * dact(rg, rec_act);
            dgx[j] = dz; dgx[u + j] = dr; dgx[2 * u + j] = dhh;
            dgh[j] = dz; dgh[u + j] = dr; dgh[2 * u + j] = dhh * rg;
            dnr[j] = d * z;
        }
    } else {
        for (j = 0; j < u; j++) {
            dgx[j] = dhr[j] * dact(g[j], act);
            dnr[j] = 0.0f;
        }
    }
}

static void bwd_row_any(int64_t r, float *dgates, float *dgr, float *dh, float *dc, float *dn,
                        const float *dseq, const float *seq, const float *cs,
                        const float *gates, const float *aux, const float *mask, int64_t T,
                        int64_t u, int64_t gu, int64_t tt, int64_t o, int64_t op, int cell,
                        int act, int rec_act, int zero_output) {
    if (act == PYNN_ACT_TANH && rec_act == PYNN_ACT_SIGMOID) {
        if (cell == PYNN_RNN_LSTM)
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_LSTM, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output);
        else if (cell == PYNN_RNN_GRU)
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_GRU, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output);
        else
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_SIMPLE, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output);
        return;
    }
    bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt, o, op,
            cell, act, rec_act, zero_output);
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
    float *dh, *dc, *dn;
    int64_t s, r;
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
            bwd_row_any(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu,
                        tt, o, op, cell, act, rec_act, zero_output);
        );
        if (s == 0) break;                    /* h_{-1} is the constant 0 */
        /* dh = dgr_s rkernel^T (recurrent dropout's mask) + dn */
        status = pynn_sgemm(dh, dgr + tt * gu, rkernel, 0, 1, n, u, gu, 1.0f, 0.0f, T * gu, gu, u);
        if (status != PYNN_OK) return status;
        PYNN_PARALLEL_FOR(pynn_threads_for(n * u * 4),
        for (r = 0; r < n; r++) {
            int64_t j;
            float *d = dh + r * u;
            const float *nr = dn + r * u;
            if (rec_mask != NULL) {
                const float *m = rec_mask + r * u;
                for (j = 0; j < u; j++) d[j] = d[j] * m[j] + nr[j];
            } else {
                for (j = 0; j < u; j++) d[j] += nr[j];
            }
        });
    }
    /* the weight gradients: a few GEMMs over the whole sequence */
    if (dkernel != NULL) {
        status = pynn_sgemm(dkernel, x, dgates, 1, 0, f, gu, n * T, 1.0f, 0.0f, f, gu, gu);
        if (status != PYNN_OK) return status;
    }
    if (drkernel != NULL) {
        status = pynn_sgemm(drkernel, hprev, dgr, 1, 0, u, gu, n * T, 1.0f, 0.0f, u, gu, gu);
        if (status != PYNN_OK) return status;
    }
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
