/* bench_rnn.c -- the recurrent layer's kernels without Python: compare.py's LSTM step
 * (batch 64, 50 steps, 64 features, 128 units), pynn_rnn_forward and pynn_rnn_backward
 * timed one by one, each beside the GEMM peak its multiply-adds would take at
 * pynn_sgemm's 1024^3 rate.  Figures are medians of wall-clock times (the threads run in
 * parallel, so CPU time would count them twice).
 *
 *   bench_rnn [threads [n T f u [cell]]]     (cell: 0 SimpleRNN, 1 LSTM, 2 GRU)
 */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"
#include "bench_util.h"

#define REPS 41

static double median_of(double *t, int k) {
    qsort(t, (size_t)k, sizeof(double), cmp_double);
    return t[k / 2];
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 0;
    const int64_t n = argc > 5 ? atoll(argv[2]) : 64, T = argc > 5 ? atoll(argv[3]) : 50;
    const int64_t f = argc > 5 ? atoll(argv[4]) : 64, u = argc > 5 ? atoll(argv[5]) : 128;
    const int cell = argc > 6 ? atoi(argv[6]) : 1;
    const int64_t G = pynn_rnn_gates(cell), gu = G * u, ntu = n * T * u;
    unsigned seed = 1;
    float *x = filled(n * T * f, &seed, 1.0f), *k = filled(f * gu, &seed, 0.1f);
    float *rk = filled(u * gu, &seed, 0.1f), *b = filled(2 * gu, &seed, 0.1f);
    float *seq = filled(ntu, &seed, 0), *cs = filled(ntu, &seed, 0);
    float *gates = filled(ntu * G, &seed, 0), *hp = filled(ntu, &seed, 0);
    float *aux = filled(ntu, &seed, 0), *rec = filled(n * (gu > 4 * u ? gu : 4 * u), &seed, 0);
    float *hl = filled(n * u, &seed, 0), *cl = filled(n * u, &seed, 0);
    float *dseq = filled(ntu, &seed, 0.01f), *dk = filled(f * gu, &seed, 0);
    float *drk = filled(u * gu, &seed, 0), *db = filled(2 * gu, &seed, 0);
    float *dx = filled(n * T * f, &seed, 0), *dg = filled(ntu * G, &seed, 0);
    float *dgr = filled(ntu * G, &seed, 0);
    float *ga = filled(1024 * 1024, &seed, 1.0f), *gb = filled(1024 * 1024, &seed, 1.0f);
    float *gc = filled(1024 * 1024, &seed, 0);
    double tf[REPS], tb[REPS], tg[5], peak, fwd_flop, bwd_flop;
    int i, status = 0;
    if (threads > 0) pynn_set_num_threads(threads);
    for (i = 0; i < 5; i++) {
        const double t0 = now_s();
        status |= pynn_sgemm(gc, ga, gb, 0, 0, 1024, 1024, 1024, 1.0f, 0.0f, 1024, 1024, 1024);
        tg[i] = now_s() - t0;
    }
    peak = 2.0 * 1024 * 1024 * 1024 / median_of(tg, 5) / 1e9;
    for (i = 0; i < REPS; i++) {
        double t0 = now_s();
        status |= pynn_rnn_forward(seq, cs, gates, hp, aux, rec, hl, cl, x, k, rk, b, NULL,
                                   NULL, NULL, n, T, f, u, cell, PYNN_ACT_TANH, PYNN_ACT_SIGMOID,
                                   0, 0, 0, NULL);
        tf[i] = now_s() - t0;
        t0 = now_s();
        status |= pynn_rnn_backward(dk, drk, db, dx, dg, dgr, rec, dseq, NULL, NULL, x, k, rk,
                                    seq, cs, gates, hp, aux, NULL, NULL, NULL, n, T, f, u, cell,
                                    PYNN_ACT_TANH, PYNN_ACT_SIGMOID, 0, 0, 0, 0);
        tb[i] = now_s() - t0;
    }
    if (status != 0) {
        printf("bench_rnn: a kernel returned an error\n");
        return 1;
    }
    /* multiply-adds: forward x K + h U per step; backward dh U^T per step, dK, dU, dx */
    fwd_flop = 2.0 * (double)(n * T) * (double)gu * (double)(f + u);
    bwd_flop = 2.0 * (double)(n * T) * (double)gu * (double)(2 * f + 2 * u);
    printf("rnn cell %d: n=%lld T=%lld f=%lld u=%lld, %d threads; GEMM peak %.0f GFLOP/s\n",
           cell, (long long)n, (long long)T, (long long)f, (long long)u, pynn_get_num_threads(), peak);
    printf("%-9s %9s %9s %8s\n", "pass", "ms", "GFLOP/s", "of peak");
    printf("%-9s %9.3f %9.1f %7.0f%%\n", "forward", median_of(tf, REPS) * 1e3,
           fwd_flop / median_of(tf, REPS) / 1e9, 100 * fwd_flop / median_of(tf, REPS) / 1e9 / peak);
    printf("%-9s %9.3f %9.1f %7.0f%%\n", "backward", median_of(tb, REPS) * 1e3,
           bwd_flop / median_of(tb, REPS) / 1e9, 100 * bwd_flop / median_of(tb, REPS) / 1e9 / peak);
    return 0;
}
