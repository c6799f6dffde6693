/* rnn_kernel.h -- the per-row work of the recurrent layers (rnn.c's steps), compiled once
 * per instruction set: rnn_generic.c, rnn_avx2.c, rnn_avx512.c define RNN_KERNELS (the
 * table's name) and include this file; rnn.c takes the table of the level in use.  Lanes
 * are independent elements and the build has -ffp-contract=off, so every level computes
 * the same bits.  Not installed. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "internal.h"
#include "rnn_internal.h"

/* act'(z) from y = act(z) (every supported activation has one) */
static inline float dact(float y, int act) {
    switch (act) {
    case PYNN_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case PYNN_ACT_SIGMOID: return y * (1.0f - y);
    case PYNN_ACT_TANH: return 1.0f - y * y;
    default: return 1.0f;
    }
}

/* expf(x) for the gates' sigmoid and tanh, in float arithmetic that vectorises: x = k ln2
 * + r (k = x log2(e) rounded to nearest by the 1.5 * 2^23 shift, ln2 in two parts), e^r by
 * Cephes's degree-7 polynomial (within 2 ulp of expf on [-ln2/2, ln2/2]), times 2^k built
 * in the exponent bits.  x is clamped to [-87, 88] first, where 2^k stays a normal float:
 * sigmoid and tanh read only 1 + e and 1 - e there, which the clamp does not change (NaN
 * passes through).  Each operation is a separately rounded IEEE one
 * (no FMA: the build has -ffp-contract=off), so every level's vector code computes the bits
 * the scalar code does.  Several times faster than the glibc-exact pynn_exp_span the other
 * kernels use. */
static inline __attribute__((always_inline)) float rnn_expf(float x) {
    const float shift = 12582912.0f;                  /* 1.5 * 2^23 */
    float t, k, r, p;
    uint32_t bits;
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    t = x * 1.44269504088896341f + shift;
    k = t - shift;
    memcpy(&bits, &t, sizeof bits);                   /* k, as the low bits of t */
    r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r;
    p = p + 1.0f;
    bits = (bits - 0x4B400000u + 127u) << 23;          /* 2^k */
    memcpy(&t, &bits, sizeof t);
    return p * t;
}

/* y[0:n] = act(z[0:n]) (y may be z), one vectorised pass: sigmoid as 1 / (1 + e^-z), tanh
 * as sign(z) (1 - e) / (1 + e) with e = e^(-2|z|) (an odd polynomial below |z| = 1/16,
 * where that form would cancel: relative error below 1e-7 either way), e from rnn_expf. */
static inline __attribute__((always_inline)) void act_span(float *y, const float *z, int64_t n, int act) {
    int64_t i;
    switch (act) {
    case PYNN_ACT_RELU:
        for (i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
        return;
    case PYNN_ACT_SIGMOID:
        for (i = 0; i < n; i++) y[i] = 1.0f / (1.0f + rnn_expf(-z[i]));
        return;
    case PYNN_ACT_TANH:
        for (i = 0; i < n; i++) {
            const float v = z[i], a = fabsf(v), e = rnn_expf(-2.0f * a), z2 = v * v;
            float t = (1.0f - e) / (1.0f + e);
            const float p = a * (1.0f + z2 * (-0.33333333f + z2 * (0.13333333f +
                                                                  z2 * -0.05396825f)));
            t = a < 0.0625f ? p : t;
            y[i] = copysignf(t, v);
        }
        return;
    default:
        if (y != z) memcpy(y, z, (size_t)n * sizeof(float));
        return;
    }
}

/* One row of a forward step (the body of pynn_rnn_forward's per-step loop): bias,
 * activations, cell update, mask, for row r at time tt (output position o; op: the previous
 * step's position, or -1). */
static inline __attribute__((always_inline)) void fwd_row(
        int64_t r, float *seq, float *cs, float *gates, float *aux, float *rec,
        const float *bias, const float *mask, int64_t T, int64_t u, int64_t gu, int64_t tt,
        int64_t o, int64_t op, int cell, int act, int rec_act, float *out, float *hnext,
        const float *rec_mask) {
    float *g = gates + (r * T + tt) * gu;
    float *rc = rec + r * gu;          /* the row's scratch once read */
    float *h = seq + (r * T + o) * u;
    const float *h0 = op < 0 ? NULL : seq + (r * T + op) * u;
    const int keep = mask != NULL && mask[r * T + tt] == 0.0f;
    int64_t j;
    if (cell == PYNN_RNN_LSTM) {
        float *c = cs + (r * T + o) * u, *tc = aux + (r * T + tt) * u;
        const float *c0 = op < 0 ? NULL : cs + (r * T + op) * u;
        if (bias != NULL)
            for (j = 0; j < gu; j++) g[j] = g[j] + rc[j] + bias[j];
        else
            for (j = 0; j < gu; j++) g[j] = g[j] + rc[j] + 0.0f;
        if (rec_act == act) {
            act_span(g, g, gu, act);
        } else {
            act_span(g, g, 2 * u, rec_act);
            act_span(g + 2 * u, g + 2 * u, u, act);
            act_span(g + 3 * u, g + 3 * u, u, rec_act);
        }
        /* ivdep: c, g and c0 are distinct rows of distinct buffers (no alias checks) */
#pragma GCC ivdep
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
    if (hnext != NULL) {               /* the state the next step reads */
        float *hn = hnext + r * T * u;
        if (rec_mask != NULL)
            for (j = 0; j < u; j++) hn[j] = h[j] * rec_mask[r * u + j];
        else
            memcpy(hn, h, (size_t)u * sizeof(float));
    }
}

/* fwd_row with constant activations for the default pair (tanh, sigmoid), so that the
 * activation loops are inlined and vectorise. */
static void fwd_row_any(int64_t r, float *seq, float *cs, float *gates, float *aux,
                        float *rec, const float *bias, const float *mask, int64_t T,
                        int64_t u, int64_t gu, int64_t tt, int64_t o, int64_t op, int cell,
                        int act, int rec_act, float *out, float *hnext,
                        const float *rec_mask) {
    if (cell == PYNN_RNN_LSTM && act == PYNN_ACT_TANH && rec_act == PYNN_ACT_SIGMOID) {
        fwd_row(r, seq, cs, gates, aux, rec, bias, mask, T, u, gu, tt, o, op, PYNN_RNN_LSTM,
                PYNN_ACT_TANH, PYNN_ACT_SIGMOID, out, hnext, rec_mask);
        return;
    }
    fwd_row(r, seq, cs, gates, aux, rec, bias, mask, T, u, gu, tt, o, op, cell, act,
            rec_act, out, hnext, rec_mask);
}

/* One row of a backward step (the body of pynn_rnn_backward's per-step loop); inlined with
 * constant activations for the default pairs, so that the loops vectorise. */
static inline __attribute__((always_inline)) void bwd_row(
        int64_t r, float *dgates, float *dgr, float *dh, float *dc, float *dn,
        const float *dseq, const float *seq, const float *cs, const float *gates,
        const float *aux, const float *mask, int64_t T, int64_t u, int64_t gu, int64_t tt,
        int64_t o, int64_t op, int cell, int act, int rec_act, int zero_output,
        const float *rec_mask, int add_dn) {
    float *dgx = dgates + (r * T + tt) * gu, *dgh = dgr + (r * T + tt) * gu;
    const float *g = gates + (r * T + tt) * gu;
    float *dhr = dh + r * u, *dcr = dc + r * u, *dnr = dn + r * u;
    const int keep = mask != NULL && mask[r * T + tt] == 0.0f;
    int64_t j;
    if (add_dn) {    /* dh = the recurrent GEMM's (recurrent dropout's mask) + dn, the step after's */
        if (rec_mask != NULL) {
            const float *m = rec_mask + r * u;
            for (j = 0; j < u; j++) dhr[j] = dhr[j] * m[j] + dnr[j];
        } else {
            for (j = 0; j < u; j++) dhr[j] += dnr[j];
        }
    }
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
        /* ivdep: dgx, dc, dn, dh, g, tca and c0 are rows of distinct buffers; without it
         * GCC gives up on the alias checks and runs this loop one element at a time */
#pragma GCC ivdep
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
                        int act, int rec_act, int zero_output, const float *rec_mask,
                        int add_dn) {
    if (act == PYNN_ACT_TANH && rec_act == PYNN_ACT_SIGMOID) {
        if (cell == PYNN_RNN_LSTM)
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_LSTM, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output, rec_mask,
                    add_dn);
        else if (cell == PYNN_RNN_GRU)
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_GRU, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output, rec_mask,
                    add_dn);
        else
            bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt,
                    o, op, PYNN_RNN_SIMPLE, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, zero_output,
                    rec_mask, add_dn);
        return;
    }
    bwd_row(r, dgates, dgr, dh, dc, dn, dseq, seq, cs, gates, aux, mask, T, u, gu, tt, o, op,
            cell, act, rec_act, zero_output, rec_mask, add_dn);
}

const pynn_rnn_kernels RNN_KERNELS = {fwd_row_any, bwd_row_any};
