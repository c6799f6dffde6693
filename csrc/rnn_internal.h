/* rnn_internal.h -- the contract between the recurrent layers' driver (rnn.c: the steps,
 * the GEMMs, threads) and their per-row work (rnn_kernel.h, compiled once per instruction
 * set).  Not installed.
 *
 * fwd_row: row r of a forward step at time tt (output position o, the previous step's
 *   position op or -1): adds the bias and the recurrent product (rec's row, which it then
 *   uses as scratch) to the gate pre-activations, applies the activations, updates the cell
 *   and hidden state (a masked step keeps the previous ones) and writes out's row if any,
 *   and hnext's row (row stride T * u: the next step's hprev) = h * rec_mask (if any).
 * bwd_row: row r of a backward step: the gate gradients of the step into dgates (and dgr,
 *   GRU), dc's row and dn's row (the gradient reaching h_{s-1} other than through the
 *   recurrent GEMM); dh's row first becomes dh * rec_mask (if any) + dn (the previous
 *   call's) when add_dn, then gains dseq's. */
#ifndef PYNN_RNN_INTERNAL_H
#define PYNN_RNN_INTERNAL_H

#include <stdint.h>
#include "internal.h"

typedef struct {
    void (*fwd_row)(int64_t r, float *seq, float *cs, float *gates, float *aux, float *rec,
                    const float *bias, const float *mask, int64_t T, int64_t u, int64_t gu,
                    int64_t tt, int64_t o, int64_t op, int cell, int act, int rec_act,
                    float *out, float *hnext, const float *rec_mask);
    void (*bwd_row)(int64_t r, float *dgates, float *dgr, float *dh, float *dc, float *dn,
                    const float *dseq, const float *seq, const float *cs, const float *gates,
                    const float *aux, const float *mask, int64_t T, int64_t u, int64_t gu,
                    int64_t tt, int64_t o, int64_t op, int cell, int act, int rec_act,
                    int zero_output, const float *rec_mask, int add_dn);
} pynn_rnn_kernels;

extern const pynn_rnn_kernels pynn_rnn_generic;    /* rnn_generic.c */
#ifdef PYNN_HAVE_X86_KERNELS
extern const pynn_rnn_kernels pynn_rnn_avx2;       /* rnn_avx2.c */
extern const pynn_rnn_kernels pynn_rnn_avx512;     /* rnn_avx512.c */
#endif

/* The table of dispatch level `level` (PYNN_LEVEL_*; the portable one for a level this build
 * has no table for): rnn.c's choice, and tests/c/test_rnn.c's comparison of the levels. */
const pynn_rnn_kernels *pynn_rnn_kernels_at(int level);

#endif /* PYNN_RNN_INTERNAL_H */
