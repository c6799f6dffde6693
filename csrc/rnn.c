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
#include "gemm_internal.h"
#include "rnn_internal.h"

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

/* Up to this many rows the steps run on all rows at once, each product on pynn_sgemm's
 * small path (which streams the recurrent kernel and wastes nothing on a row or two);
 * above it the rows are split between the threads for the whole sequence. */
#define RNN_SMALL_ROWS 16

/* Threads for the row split of n rows (1 for the small path). */
static int rnn_row_threads(int64_t n, int64_t gu, int64_t u) {
    int nt;
    if (n <= RNN_SMALL_ROWS) return 1;
    nt = pynn_threads_for(n * gu * u);
    return nt > n ? (int)n : nt;
}

/* Rows [r0, r1) of thread t of nt (a fixed split: the results do not depend on it). */
static void rnn_rows_of(int64_t n, int t, int nt, int64_t *r0, int64_t *r1) {
    *r0 = n * t / nt;
    *r1 = n * (t + 1) / nt;
}

/* The operands of a forward pass (pynn_rnn_forward's arguments). */
typedef struct {
    float *seq, *cs, *gates, *hprev, *aux, *rec, *out;
    const float *rkernel, *bias, *mask, *rec_mask, *bp;
    int64_t n, T, u, gu;
    int cell, act, rec_act, go_backwards, time_order;
    const pynn_rnn_kernels *kr;
} rnn_fwd;

/* Every step of the forward pass on rows [r0, r1): each step's recurrent product, then the
 * rows' cell update.  A row's steps read only that row's state, so a thread that owns some
 * rows runs the whole sequence on them without waiting for the others.  a_buf: the
 * thread's packing buffer for pynn_sgemm_rows, or NULL on the small path (all rows, each
 * product by pynn_sgemm_prepacked). */
static int fwd_steps(const rnn_fwd *a, int64_t r0, int64_t r1, float *a_buf) {
    const int64_t T = a->T, u = a->u, gu = a->gu;
    int64_t s, r;
    for (s = 0; s < T; s++) {
        const int64_t tt = time_of(s, T, a->go_backwards);
        const int64_t o = a->time_order ? tt : s;
        const int64_t op = s == 0 ? -1 : (a->time_order ? time_of(s - 1, T, a->go_backwards)
                                                        : s - 1);
        float *hnext = s + 1 < T ? a->hprev + time_of(s + 1, T, a->go_backwards) * u : NULL;
        /* the state this step reads (recurrent dropout applied): the previous step's row
         * pass wrote it, except the first step's zeros */
        if (op < 0) {
            for (r = r0; r < r1; r++)
                memset(a->hprev + (r * T + tt) * u, 0, (size_t)u * sizeof(float));
            memset(a->rec + r0 * gu, 0, (size_t)((r1 - r0) * gu) * sizeof(float));
        } else if (a_buf != NULL) {
            pynn_sgemm_rows(a->rec + r0 * gu, a->hprev + (r0 * T + tt) * u, a->bp, 0, r1 - r0,
                            gu, u, 0.0f, T * u, gu, a_buf);
        } else {
            const int status = pynn_sgemm_prepacked(a->rec, a->hprev + tt * u, a->rkernel,
                                                    a->bp, 0, 0, a->n, gu, u, 1.0f, 0.0f,
                                                    T * u, gu, gu);
            if (status != PYNN_OK) return status;
        }
        for (r = r0; r < r1; r++)
            a->kr->fwd_row(r, a->seq, a->cs, a->gates, a->aux, a->rec, a->bias, a->mask, T,
                           u, gu, tt, o, op, a->cell, a->act, a->rec_act, a->out, hnext,
                           a->rec_mask);
    }
    return PYNN_OK;
}

/* The steps of a pass on n rows: the small path on the caller's thread, or the rows split
 * between nt threads, each with its own slice of `ws` (per_thread floats) for
 * pynn_sgemm_rows.  steps: fwd_steps or bwd_steps on `args`. */
static int run_steps(int (*steps)(const void *, int64_t, int64_t, float *), const void *args,
                     int64_t n, int nt, float *ws, size_t per_thread) {
    int t;
    if (n <= RNN_SMALL_ROWS) return steps(args, 0, n, NULL);
    if (nt <= 1) return steps(args, 0, n, ws);
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nt)
#endif
    for (t = 0; t < nt; t++) {                          /* rows, one block per thread */
        int64_t r0, r1;
        rnn_rows_of(n, t, nt, &r0, &r1);
        (void)steps(args, r0, r1, ws + (size_t)t * per_thread);   /* cannot fail */
    }
    return PYNN_OK;
}

static int fwd_steps_any(const void *a, int64_t r0, int64_t r1, float *a_buf) {
    return fwd_steps((const rnn_fwd *)a, r0, r1, a_buf);
}

/* The buffer of a pass's stepping: the recurrent kernel packed (bp_floats) and then nt
 * threads' packing buffers (per_thread floats each), 64-byte aligned; from the GEMM's
 * workspace cache (pynn_gemm_workspace_acquire), so a training loop allocates nothing. */
static int steps_buffer(float **bp, float **ws, void **owned, int64_t bp_floats, int nt,
                        size_t per_thread) {
    const size_t head = (size_t)((bp_floats + 15) / 16 * 16);
    int status = pynn_gemm_workspace_acquire(bp, owned, head + (size_t)nt * per_thread);
    if (status != PYNN_OK) return status;
    *ws = *bp + head;
    return PYNN_OK;
}

int pynn_rnn_forward(float *seq, float *cs, float *gates, float *hprev, float *aux, float *rec,
                     float *h_last, float *c_last, const float *x, const float *kernel,
                     const float *rkernel, const float *bias, const float *mask,
                     const float *rec_mask, int64_t n, int64_t T, int64_t f, int64_t u,
                     int cell, int act, int rec_act, int go_backwards, int time_order,
                     float *out) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    rnn_fwd a;
    int64_t r;
    int nt, status;
    size_t per_thread;
    float *bp, *ws;
    void *owned;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(seq == NULL || gates == NULL || hprev == NULL || rec == NULL ||
                   x == NULL || kernel == NULL || rkernel == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell != PYNN_RNN_SIMPLE && aux == NULL, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    /* the input projections of the whole sequence */
    status = pynn_sgemm(gates, x, kernel, 0, 0, n * T, gu, f, 1.0f, 0.0f, f, gu, gu);
    if (status != PYNN_OK) return status;
    /* the recurrent kernel, packed once for the T - 1 products with it */
    nt = rnn_row_threads(n, gu, u);
    per_thread = (size_t)pynn_sgemm_rows_floats((n + nt - 1) / nt, u);
    status = steps_buffer(&bp, &ws, &owned, pynn_sgemm_pack_b_floats(gu, u), nt, per_thread);
    if (status != PYNN_OK) return status;
    status = pynn_sgemm_pack_b(bp, rkernel, 0, gu, u, gu);
    a.seq = seq; a.cs = cs; a.gates = gates; a.hprev = hprev; a.aux = aux; a.rec = rec;
    a.out = out; a.rkernel = rkernel; a.bias = bias; a.mask = mask; a.rec_mask = rec_mask;
    a.bp = bp; a.n = n; a.T = T; a.u = u; a.gu = gu; a.cell = cell; a.act = act;
    a.rec_act = rec_act; a.go_backwards = go_backwards; a.time_order = time_order;
    a.kr = rnn_kernels();
    if (status == PYNN_OK) status = run_steps(fwd_steps_any, &a, n, nt, ws, per_thread);
    pynn_gemm_workspace_release(bp, owned);
    if (status != PYNN_OK) return status;
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

int64_t pynn_rnn_backward_work(int64_t n, int64_t u) { return n * 4 * u; }

/* The operands of a backward pass (pynn_rnn_backward's arguments). */
typedef struct {
    float *dgates, *dgr, *dh, *dc, *dn;
    const float *dseq, *seq, *cs, *gates, *aux, *mask, *rec_mask, *rkernel, *bp;
    int64_t n, T, u, gu;
    int cell, act, rec_act, go_backwards, time_order, zero_output;
    const pynn_rnn_kernels *kr;
} rnn_bwd;

/* Every step of backpropagation through time on rows [r0, r1), from the last: the rows'
 * gate gradients, then the gradient reaching their previous hidden state (a product with
 * the recurrent kernel's transpose).  As fwd_steps: rows are independent, a_buf NULL on
 * the small path. */
static int bwd_steps(const rnn_bwd *a, int64_t r0, int64_t r1, float *a_buf) {
    const int64_t T = a->T, u = a->u, gu = a->gu;
    int64_t s, r;
    for (s = T - 1; s >= 0; s--) {
        const int64_t tt = time_of(s, T, a->go_backwards);
        const int64_t o = a->time_order ? tt : s;
        const int64_t op = s == 0 ? -1 : (a->time_order ? time_of(s - 1, T, a->go_backwards)
                                                        : s - 1);
        /* gate gradients; dn = the gradient reaching h_{s-1} other than through the GEMM */
        for (r = r0; r < r1; r++)
            a->kr->bwd_row(r, a->dgates, a->dgr, a->dh, a->dc, a->dn, a->dseq, a->seq, a->cs,
                           a->gates, a->aux, a->mask, T, u, gu, tt, o, op, a->cell, a->act,
                           a->rec_act, a->zero_output, a->rec_mask, s < T - 1);
        if (s == 0) break;                    /* h_{-1} is the constant 0 */
        /* dh = dgr_s rkernel^T; the next step's row pass applies the mask and adds dn */
        if (a_buf != NULL) {
            pynn_sgemm_rows(a->dh + r0 * u, a->dgr + (r0 * T + tt) * gu, a->bp, 0, r1 - r0,
                            u, gu, 0.0f, T * gu, u, a_buf);
        } else {
            const int status = pynn_sgemm_prepacked(a->dh, a->dgr + tt * gu, a->rkernel,
                                                    a->bp, 0, 1, a->n, u, gu, 1.0f, 0.0f,
                                                    T * gu, gu, u);
            if (status != PYNN_OK) return status;
        }
    }
    return PYNN_OK;
}

static int bwd_steps_any(const void *a, int64_t r0, int64_t r1, float *a_buf) {
    return bwd_steps((const rnn_bwd *)a, r0, r1, a_buf);
}

int pynn_rnn_backward(float *dkernel, float *drkernel, float *dbias, float *dx, float *dgates,
                      float *dgr, float *work, const float *dseq, const float *dh_last,
                      const float *dc_last, const float *x, const float *kernel,
                      const float *rkernel, const float *seq, const float *cs,
                      const float *gates, const float *hprev, const float *aux,
                      const float *mask, const float *rec_mask, int64_t n, int64_t T,
                      int64_t f, int64_t u, int cell, int act, int rec_act, int go_backwards,
                      int time_order, int zero_output) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    rnn_bwd a;
    float *bp, *ws;
    void *owned;
    size_t per_thread;
    int64_t bp_floats;
    int nt, status;
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
    a.dgates = dgates; a.dgr = dgr; a.dh = work; a.dc = work + n * u; a.dn = work + 2 * n * u;
    a.dseq = dseq; a.seq = seq; a.cs = cs; a.gates = gates; a.aux = aux; a.mask = mask;
    a.rec_mask = rec_mask; a.rkernel = rkernel; a.n = n; a.T = T; a.u = u; a.gu = gu;
    a.cell = cell; a.act = act; a.rec_act = rec_act; a.go_backwards = go_backwards;
    a.time_order = time_order; a.zero_output = zero_output; a.kr = rnn_kernels();
    if (dh_last) memcpy(a.dh, dh_last, (size_t)(n * u) * sizeof(float));
    else memset(a.dh, 0, (size_t)(n * u) * sizeof(float));
    if (dc_last && cell == PYNN_RNN_LSTM) memcpy(a.dc, dc_last, (size_t)(n * u) * sizeof(float));
    else memset(a.dc, 0, (size_t)(n * u) * sizeof(float));
    /* the recurrent kernel's transpose, packed once for the T - 1 products with it */
    nt = rnn_row_threads(n, gu, u);
    per_thread = (size_t)pynn_sgemm_rows_floats((n + nt - 1) / nt, gu);
    status = steps_buffer(&bp, &ws, &owned, pynn_sgemm_pack_b_floats(u, gu), nt, per_thread);
    if (status != PYNN_OK) return status;
    status = pynn_sgemm_pack_b(bp, rkernel, 1, u, gu, gu);
    a.bp = bp;
    if (status == PYNN_OK) status = run_steps(bwd_steps_any, &a, n, nt, ws, per_thread);
    pynn_gemm_workspace_release(bp, owned);
    if (status != PYNN_OK) return status;
    /* the weight gradients: a few GEMMs over the whole sequence; where both read the same
     * dgates (not GRU), its panels are packed once for the two (bitwise the same GEMMs) */
    bp = NULL;
    owned = NULL;
    if (dkernel != NULL && drkernel != NULL && dgr == dgates) {
        bp_floats = pynn_sgemm_pack_b_floats(gu, n * T);
        status = pynn_gemm_workspace_acquire(&bp, &owned, (size_t)bp_floats);
        if (status != PYNN_OK) return status;
        status = pynn_sgemm_pack_b(bp, dgates, 0, gu, n * T, gu);
    }
    if (status == PYNN_OK && dkernel != NULL)
        status = pynn_sgemm_prepacked(dkernel, x, dgates, bp, 1, 0, f, gu, n * T, 1.0f, 0.0f,
                                      f, gu, gu);
    if (status == PYNN_OK && drkernel != NULL)
        status = pynn_sgemm_prepacked(drkernel, hprev, dgr, bp, 1, 0, u, gu, n * T, 1.0f,
                                      0.0f, u, gu, gu);
    if (bp != NULL) pynn_gemm_workspace_release(bp, owned);
    if (status != PYNN_OK) return status;
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
