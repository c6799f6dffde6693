/* test_rnn.c -- the recurrent kernels (csrc/rnn.c) from C under ASan/UBSan: the forward of
 * each cell against a plain double-precision loop (masks and go_backwards included), on
 * few rows and on enough for the rows to be split between threads; forward and backward
 * bitwise the same on 1, 2 and 3 threads, the row kernels of every level bitwise the
 * portable ones, n = 0, and bad arguments refused.  (The Python tests check the backward against the NumPy
 * reference and torch.)  Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"
#include "rnn_internal.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static unsigned long long rng_state = 777;
static float uniform(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0));
}
static float *rand_floats(int64_t n, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t i;
    for (i = 0; i < n; i++) p[i] = (uniform() * 2.0f - 1.0f) * scale;
    return p;
}
static float *zeros(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double sig(double z) { return 1.0 / (1.0 + exp(-z)); }

/* h of the last step, Keras's recurrence in double (tanh, sigmoid) */
static void reference(double *h_out, const float *x, const float *k, const float *rk,
                      const float *b, const float *mask, int64_t n, int64_t T, int64_t f,
                      int64_t u, int cell, int back) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    double *h = calloc((size_t)u, sizeof(double)), *c = calloc((size_t)u, sizeof(double));
    double *xp = malloc((size_t)gu * sizeof(double)), *rp = malloc((size_t)gu * sizeof(double));
    int64_t r, s, j, q;
    for (r = 0; r < n; r++) {
        memset(h, 0, (size_t)u * sizeof(double));
        memset(c, 0, (size_t)u * sizeof(double));
        for (s = 0; s < T; s++) {
            const int64_t t = back ? T - 1 - s : s;
            if (mask && mask[r * T + t] == 0.0f) continue;
            for (j = 0; j < gu; j++) {
                xp[j] = 0; rp[j] = 0;
                for (q = 0; q < f; q++) xp[j] += (double)x[(r * T + t) * f + q] * k[q * gu + j];
                for (q = 0; q < u; q++) rp[j] += h[q] * rk[q * gu + j];
            }
            for (j = 0; j < u; j++) {
                if (cell == PYNN_RNN_LSTM) {
                    double i_ = sig(xp[j] + rp[j] + b[j]), f_ = sig(xp[u + j] + rp[u + j] + b[u + j]);
                    double g_ = tanh(xp[2 * u + j] + rp[2 * u + j] + b[2 * u + j]);
                    double o_ = sig(xp[3 * u + j] + rp[3 * u + j] + b[3 * u + j]);
                    c[j] = f_ * c[j] + i_ * g_;
                    xp[j] = o_ * tanh(c[j]);          /* the new h, kept until the loop ends */
                } else if (cell == PYNN_RNN_GRU) {
                    double z = sig(xp[j] + b[j] + rp[j] + b[gu + j]);
                    double rg = sig(xp[u + j] + b[u + j] + rp[u + j] + b[gu + u + j]);
                    double hh = tanh(xp[2 * u + j] + b[2 * u + j] + rg * (rp[2 * u + j] + b[gu + 2 * u + j]));
                    xp[j] = z * h[j] + (1 - z) * hh;
                } else {
                    xp[j] = tanh(xp[j] + rp[j] + b[j]);
                }
            }
            for (j = 0; j < u; j++) h[j] = xp[j];
        }
        for (j = 0; j < u; j++) h_out[r * u + j] = h[j];
    }
    free(h); free(c); free(xp); free(rp);
}

typedef struct { float *seq, *cs, *gates, *hprev, *aux, *rec, *hl, *cl; } fwd_bufs;

static fwd_bufs alloc_fwd(int64_t n, int64_t T, int64_t u, int64_t G) {
    fwd_bufs o;
    o.seq = zeros(n * T * u); o.cs = zeros(n * T * u); o.gates = zeros(n * T * G * u);
    o.hprev = zeros(n * T * u); o.aux = zeros(n * T * u); o.rec = zeros(n * G * u);
    o.hl = zeros(n * u); o.cl = zeros(n * u);
    return o;
}
static void free_fwd(fwd_bufs *o) {
    free(o->seq); free(o->cs); free(o->gates); free(o->hprev); free(o->aux); free(o->rec);
    free(o->hl); free(o->cl);
}

/* n <= 16 takes the small path (all rows each step); above, the rows are split between
 * the threads for the whole sequence (rnn.c) */
static void test_forward(int cell, int back, int masked, int64_t n) {
    const int64_t T = 5, f = 4, u = 3, G = pynn_rnn_gates(cell);
    float *x = rand_floats(n * T * f, 1.0f), *k = rand_floats(f * G * u, 0.5f);
    float *rk = rand_floats(u * G * u, 0.5f), *b = rand_floats(2 * G * u, 0.3f);
    float *mask = zeros(n * T);
    double *want = malloc((size_t)(n * u) * sizeof(double));
    fwd_bufs o = alloc_fwd(n, T, u, G);
    int64_t i;
    for (i = 0; i < n * T; i++) mask[i] = (i % 4 == 1) ? 0.0f : 1.0f;
    CHECK(pynn_rnn_forward(o.seq, o.cs, o.gates, o.hprev, o.aux, o.rec, o.hl, o.cl, x, k, rk, b,
                           masked ? mask : NULL, NULL, NULL, n, T, f, u, cell, PYNN_ACT_TANH,
                           PYNN_ACT_SIGMOID, back, 0, 0, NULL) == PYNN_OK, "forward cell %d", cell);
    reference(want, x, k, rk, b, masked ? mask : NULL, n, T, f, u, cell, back);
    for (i = 0; i < n * u; i++)
        CHECK(fabs(o.hl[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])),
              "cell %d back %d masked %d: h[%lld] %g vs %g", cell, back, masked, (long long)i,
              o.hl[i], want[i]);
    free(x); free(k); free(rk); free(b); free(mask); free(want); free_fwd(&o);
}

/* Forward and backward on 1, 2 and 3 threads (3: an uneven split of the rows), masks and
 * recurrent dropout's mask included (gate: a mask per gate, for the state and the inputs):
 * every output bitwise the same. */
static void test_threads_bitwise(int cell, int64_t n, int gate) {
    const int64_t T = 6, f = 16, u = 32, G = pynn_rnn_gates(cell), gu = G * u;
    float *x = rand_floats(n * T * f, 1.0f), *k = rand_floats(f * gu, 0.3f);
    float *rk = rand_floats(u * gu, 0.3f), *b = rand_floats(2 * gu, 0.3f);
    float *dseq = rand_floats(n * T * u, 1.0f), *dh = rand_floats(n * u, 1.0f);
    float *mask = zeros(n * T), *rec_mask = rand_floats(n * (gate ? G : 1) * u, 1.0f);
    float *in_mask = gate ? rand_floats(n * G * f, 1.0f) : NULL;
    float *out[3][5];
    int run, q;
    int64_t i;
    for (i = 0; i < n * T; i++) mask[i] = (i % 7 == 3) ? 0.0f : 1.0f;
    for (run = 0; run < 3; run++) {
        fwd_bufs o = alloc_fwd(n, T, u, G);
        float *dg = zeros(n * T * gu), *dgr = zeros(n * T * gu), *work = zeros(pynn_rnn_backward_work(n, u));
        pynn_set_num_threads(run + 1);
        out[run][0] = zeros(f * gu); out[run][1] = zeros(u * gu); out[run][2] = zeros(2 * gu);
        out[run][3] = zeros(n * T * f); out[run][4] = zeros(n * u);
        CHECK(pynn_rnn_forward(o.seq, o.cs, o.gates, o.hprev, o.aux, o.rec, o.hl, o.cl, x, k, rk,
                               b, mask, rec_mask, in_mask, n, T, f, u, cell, PYNN_ACT_TANH,
                               PYNN_ACT_SIGMOID, 1, 0, gate, NULL) == PYNN_OK, "forward");
        memcpy(out[run][4], o.hl, (size_t)(n * u) * sizeof(float));
        CHECK(pynn_rnn_backward(out[run][0], out[run][1], out[run][2], out[run][3], dg, dgr,
                                work, dseq, dh, NULL, x, k, rk, o.seq, o.cs, o.gates, o.hprev,
                                o.aux, mask, rec_mask, in_mask, n, T, f, u, cell, PYNN_ACT_TANH,
                                PYNN_ACT_SIGMOID, 1, 0, gate, 0) == PYNN_OK, "backward");
        free_fwd(&o); free(dg); free(dgr); free(work);
    }
    for (run = 1; run < 3; run++) {
        CHECK(memcmp(out[0][0], out[run][0], (size_t)(f * gu) * sizeof(float)) == 0,
              "cell %d n %lld: dkernel on %d threads", cell, (long long)n, run + 1);
        CHECK(memcmp(out[0][1], out[run][1], (size_t)(u * gu) * sizeof(float)) == 0,
              "cell %d n %lld: drk on %d threads", cell, (long long)n, run + 1);
        CHECK(memcmp(out[0][2], out[run][2], (size_t)(2 * gu) * sizeof(float)) == 0,
              "cell %d n %lld: dbias on %d threads", cell, (long long)n, run + 1);
        CHECK(memcmp(out[0][3], out[run][3], (size_t)(n * T * f) * sizeof(float)) == 0,
              "cell %d n %lld: dx on %d threads", cell, (long long)n, run + 1);
        CHECK(memcmp(out[0][4], out[run][4], (size_t)(n * u) * sizeof(float)) == 0,
              "cell %d n %lld: h_last on %d threads", cell, (long long)n, run + 1);
    }
    for (run = 0; run < 3; run++) for (q = 0; q < 5; q++) free(out[run][q]);
    free(x); free(k); free(rk); free(b); free(dseq); free(dh); free(mask); free(rec_mask);
    free(in_mask);
}

/* The row kernels (rnn_kernel.h) of every level this CPU supports give the bits of the
 * portable ones, forward and backward, for each cell and activation pair, on a row length
 * with vector tails and pre-activations from -100 to 100 (the exp clamps) and below 1/16
 * (tanh's polynomial). */
static void test_row_kernels_levels(void) {
    const pynn_rnn_kernels *levels[3];
    int level;
    const int acts[3][2] = {{PYNN_ACT_TANH, PYNN_ACT_SIGMOID}, {PYNN_ACT_RELU, PYNN_ACT_TANH},
                            {PYNN_ACT_LINEAR, PYNN_ACT_SIGMOID}};
    const int64_t n = 2, T = 3, u = 37;
    int nl = 0, cell, a, l;
    for (level = PYNN_LEVEL_GENERIC; level <= pynn_cpu_level() && nl < 3; level++)
        levels[nl++] = pynn_rnn_kernels_at(level);
    CHECK(nl == pynn_cpu_level(), "one table per level");
    for (cell = 0; cell < 3; cell++)
        for (a = 0; a < 3; a++) {
            const int64_t G = pynn_rnn_gates(cell), gu = G * u, ntu = n * T * u;
            float *gates0 = rand_floats(n * T * gu, 1.0f), *rec0 = rand_floats(n * gu, 1.0f);
            float *bias = rand_floats(2 * gu, 0.5f), *rm = rand_floats(n * u, 1.5f);
            float *seq0 = rand_floats(ntu, 1.0f), *cs0 = rand_floats(ntu, 1.0f);
            float *aux0 = rand_floats(ntu, 1.0f), *dh0 = rand_floats(n * 3 * u, 1.0f);
            float *dseq = rand_floats(ntu, 1.0f);
            float *out[3][6];
            int64_t i;
            for (i = 0; i < n * T * gu; i++)          /* the clamps, and tanh's polynomial */
                gates0[i] *= i % 5 == 0 ? 100.0f : i % 5 == 1 ? 0.03f : 4.0f;
            for (l = 0; l < nl; l++) {
                float *gates = malloc((size_t)(n * T * gu) * sizeof(float));
                float *rec = malloc((size_t)(n * gu) * sizeof(float));
                float *seq = malloc((size_t)ntu * sizeof(float)), *cs = malloc((size_t)ntu * sizeof(float));
                float *aux = malloc((size_t)ntu * sizeof(float)), *hn = zeros(ntu);
                float *dg = zeros(n * T * gu), *dgr = zeros(n * T * gu);
                float *dw = malloc((size_t)(n * 3 * u) * sizeof(float));
                int64_t r;
                memcpy(gates, gates0, (size_t)(n * T * gu) * sizeof(float));
                memcpy(rec, rec0, (size_t)(n * gu) * sizeof(float));
                memcpy(seq, seq0, (size_t)ntu * sizeof(float));
                memcpy(cs, cs0, (size_t)ntu * sizeof(float));
                memcpy(aux, aux0, (size_t)ntu * sizeof(float));
                memcpy(dw, dh0, (size_t)(n * 3 * u) * sizeof(float));
                for (r = 0; r < n; r++)
                    levels[l]->fwd_row(r, seq, cs, gates, aux, rec, bias, NULL, T, u, gu, 1, 1,
                                       0, cell, acts[a][0], acts[a][1], NULL, hn, rm);
                for (r = 0; r < n; r++)
                    levels[l]->bwd_row(r, dg, dgr, dw, dw + n * u, dw + 2 * n * u, dseq, seq,
                                       cs, gates, aux, NULL, T, u, gu, 1, 1, 0, cell,
                                       acts[a][0], acts[a][1], 0, rm, 1);
                out[l][0] = gates; out[l][1] = seq; out[l][2] = cs; out[l][3] = aux;
                out[l][4] = dg; out[l][5] = dw;
                free(rec); free(hn); free(dgr);
            }
            for (l = 1; l < nl; l++) {
                CHECK(memcmp(out[0][0], out[l][0], (size_t)(n * T * gu) * sizeof(float)) == 0,
                      "cell %d acts %d: gates differ at level %d", cell, a, l);
                CHECK(memcmp(out[0][1], out[l][1], (size_t)ntu * sizeof(float)) == 0,
                      "cell %d acts %d: states differ at level %d", cell, a, l);
                CHECK(memcmp(out[0][2], out[l][2], (size_t)ntu * sizeof(float)) == 0,
                      "cell %d acts %d: cells differ at level %d", cell, a, l);
                CHECK(memcmp(out[0][3], out[l][3], (size_t)ntu * sizeof(float)) == 0,
                      "cell %d acts %d: aux differs at level %d", cell, a, l);
                CHECK(memcmp(out[0][4], out[l][4], (size_t)(n * T * gu) * sizeof(float)) == 0,
                      "cell %d acts %d: gate gradients differ at level %d", cell, a, l);
                CHECK(memcmp(out[0][5], out[l][5], (size_t)(n * 3 * u) * sizeof(float)) == 0,
                      "cell %d acts %d: state gradients differ at level %d", cell, a, l);
            }
            for (l = 0; l < nl; l++) { int q; for (q = 0; q < 6; q++) free(out[l][q]); }
            free(gates0); free(rec0); free(bias); free(rm); free(seq0); free(cs0); free(aux0);
            free(dh0); free(dseq);
        }
}

static void test_refusals(void) {
    float a[64] = {0};
    CHECK(pynn_rnn_forward(a, a, a, a, a, a, NULL, NULL, a, a, a, NULL, NULL, NULL, NULL, 1, 1, 1, 1,
                           7, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, NULL) == PYNN_EINVAL, "cell 7");
    CHECK(pynn_rnn_forward(a, a, a, a, a, a, NULL, NULL, a, a, a, NULL, NULL, NULL, NULL, 1, 1, 1, 1,
                           0, PYNN_ACT_SOFTMAX, PYNN_ACT_SIGMOID, 0, 0, 0, NULL) == PYNN_EINVAL, "softmax");
    CHECK(pynn_rnn_forward(a, NULL, a, a, a, a, NULL, NULL, a, a, a, NULL, NULL, NULL, NULL, 1, 1, 1, 1,
                           PYNN_RNN_LSTM, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, NULL) == PYNN_EINVAL,
          "LSTM without cs");
    CHECK(pynn_rnn_forward(a, a, a, a, a, a, NULL, NULL, a, a, a, NULL, NULL, NULL, NULL, 1, 0, 1, 1,
                           0, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, NULL) == PYNN_EINVAL, "T = 0");
    CHECK(pynn_rnn_forward(a, a, a, a, a, a, NULL, NULL, a, a, a, NULL, NULL, NULL, NULL, 0, 3, 2, 2,
                           1, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, NULL) == PYNN_OK, "n = 0");
    CHECK(pynn_rnn_backward(a, a, a, NULL, a, a, a, NULL, NULL, NULL, a, a, a, a, a, a, a, a,
                            NULL, NULL, NULL, 0, 3, 2, 2, 2, PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, 0)
          == PYNN_OK, "backward n = 0");
    CHECK(a[0] == 0.0f, "n = 0 zeroes the weight gradients");
}

int main(void) {
    int cell;
    for (cell = 0; cell < 3; cell++) {
        test_forward(cell, 0, 0, 3);
        test_forward(cell, 1, 1, 3);
        test_forward(cell, 1, 1, 40);
        test_threads_bitwise(cell, 64, 0);
        test_threads_bitwise(cell, 20, 0);
        test_threads_bitwise(cell, 9, 0);
        test_threads_bitwise(cell, 20, 1);
        test_threads_bitwise(cell, 9, 1);
    }
    test_row_kernels_levels();
    test_refusals();
    if (failures) printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
