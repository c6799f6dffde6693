/* rnn.c -- the recurrent layers (SimpleRNN, LSTM, GRU): forward and backpropagation
 * through time (csrc/pynn.h, "recurrent layers").
 *
 * Forward: one GEMM projects the inputs of the whole sequence, (n*T, f) x (f, G*u), into
 * `gates`; then the steps.  A row's steps read only that row's state, so above 16 rows each
 * thread owns a block of rows for the whole sequence and runs every step on them without
 * waiting for the others: per step its rows' product (rows, u) x (u, G*u) of the previous
 * hidden state by the recurrent kernel (packed once), then one fused pass per row (bias,
 * activations, cell update, mask).  Up to 16 rows, each step's product covers all rows.
 * Backward, in reverse, the same way: a fused pass per row gives the gate gradients of the
 * step (the pre-activation gradients, written over nothing the forward needs), then a
 * product gives the gradient reaching the previous hidden state.  The weight gradients are
 * then three GEMMs over the whole sequence (the gate gradients against the inputs and
 * against the hidden states each step read) and one column sum for the bias.  With a
 * dropout mask per gate (gate_masks) each product above runs gate by gate, each gate's
 * block of the kernel through its own mask.
 *
 * Layouts (row-major; n rows, T steps):
 *   x (n, T, f); gates, dgates, dgr (n, T, G*u) and hprev, aux (n, T, u) are indexed by
 *   time t; seq and cs (n, T, u) by output position (the step s, or t when time_order);
 *   step s reads time t = go_backwards ? T - 1 - s : s.
 * Every output element is written by one thread, and every sum runs in an order that does
 * not depend on the thread count (a product's element is summed as in any split of its
 * rows, the GEMMs split M and N only, the bias sums are pynn_bias_grad's fixed chunks), so
 * the results are bitwise the same on 1 or N threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "gemm_internal.h"
#include "rnn_internal.h"

const pynn_rnn_kernels *pynn_rnn_kernels_at(int level) {
    switch (level) {
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

/* The row kernels of the level in use (dispatch.c), taken once per call. */
static const pynn_rnn_kernels *rnn_kernels(void) { return pynn_rnn_kernels_at(pynn_level()); }

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

/* Each thread of the row split owns at least this many rows: a product's tiles are a
 * whole micro-kernel tile tall (MR rows, 12 on AVX-512) however few rows fill them. */
#define RNN_MIN_ROWS_PER_THREAD 8

/* Threads for the row split of n rows (1 for the small path). */
static int rnn_row_threads(int64_t n, int64_t gu, int64_t u) {
    const int64_t most = n / RNN_MIN_ROWS_PER_THREAD;
    int nt;
    if (n <= RNN_SMALL_ROWS) return 1;
    nt = pynn_threads_for(n * gu * u);
    return nt > most ? (int)most : nt;
}

/* Rows [r0, r1) of thread t of nt (a fixed split: the results do not depend on it). */
static void rnn_rows_of(int64_t n, int t, int nt, int64_t *r0, int64_t *r1) {
    *r0 = n * t / nt;
    *r1 = n * (t + 1) / nt;
}

/* ---- the recurrent kernel, packed for the steps' products ------------------------------
 * One packed B for the whole kernel (u x G u; its transpose for the backward), or, with a
 * dropout mask per gate (gate_masks and a rec_mask), each gate's block (u x u) packed on its
 * own, gate after gate, since each gate's product reads the state through its own mask. */
static int64_t packed_floats(int64_t u, int64_t G, int per_gate, int trans) {
    if (per_gate) return G * ((pynn_sgemm_pack_b_floats(u, u) + 15) / 16 * 16);
    return trans ? pynn_sgemm_pack_b_floats(u, G * u) : pynn_sgemm_pack_b_floats(G * u, u);
}

static int pack_recurrent(float *bp, const float *rkernel, int64_t u, int64_t G, int per_gate,
                          int trans) {
    const int64_t gu = G * u, gate = packed_floats(u, 1, 1, trans);
    int64_t g;
    int status = PYNN_OK;
    if (!per_gate)
        return trans ? pynn_sgemm_pack_b(bp, rkernel, 1, u, gu, gu)
                     : pynn_sgemm_pack_b(bp, rkernel, 0, gu, u, gu);
    for (g = 0; g < G && status == PYNN_OK; g++)      /* gates: block g, columns g u .. */
        status = pynn_sgemm_pack_b(bp + g * gate, rkernel + g * u, trans, u, u, gu);
    return status;
}

/* dst[r][j] = src[r * lds + j] * m[r * ldm + j] for r < rows, j < u (a masked copy; ldm 0:
 * one mask for every row). */
static void masked_rows(float *dst, const float *src, int64_t lds, const float *m, int64_t ldm,
                        int64_t rows, int64_t u) {
    int64_t r, j;
    for (r = 0; r < rows; r++)                        /* rows */
        for (j = 0; j < u; j++)                       /* along the row */
            dst[r * u + j] = src[r * lds + j] * m[r * ldm + j];
}

/* The operands of a forward pass (pynn_rnn_forward's arguments). */
typedef struct {
    float *seq, *cs, *gates, *hprev, *aux, *rec, *out;
    const float *rkernel, *bias, *mask, *rec_mask, *bp;
    int64_t n, T, u, gu, G;
    int cell, act, rec_act, go_backwards, time_order;
    int per_gate;               /* a recurrent dropout mask per gate (rec_mask (n, G, u)) */
    const pynn_rnn_kernels *kr;
} rnn_fwd;

/* The recurrent products of rows [r0, r1) at time tt into rec: the state read at tt (hprev)
 * by the recurrent kernel, or with per-gate masks gate by gate, each through its own mask.
 * a_buf: the thread's packing buffer (NULL on the small path: all rows, pynn_sgemm_prepacked);
 * hm: (r1 - r0) x u floats of scratch for the masked state (per-gate masks only). */
static int fwd_product(const rnn_fwd *a, int64_t r0, int64_t r1, int64_t tt, float *a_buf,
                       float *hm) {
    const int64_t T = a->T, u = a->u, gu = a->gu, rows = r1 - r0;
    const int64_t gate = packed_floats(u, 1, 1, 0);
    const float *h = a->hprev + (r0 * T + tt) * u;
    int64_t g;
    int status = PYNN_OK;
    if (!a->per_gate) {
        if (a_buf != NULL)
            pynn_sgemm_rows(a->rec + r0 * gu, h, a->bp, 0, rows, gu, u, 0.0f, T * u, gu, a_buf);
        else
            status = pynn_sgemm_prepacked(a->rec, h, a->rkernel, a->bp, 0, 0, rows, gu, u,
                                          1.0f, 0.0f, T * u, gu, gu);
        return status;
    }
    for (g = 0; g < a->G && status == PYNN_OK; g++) {   /* gates, each through its mask */
        masked_rows(hm, h, T * u, a->rec_mask + (r0 * a->G + g) * u, a->G * u, rows, u);
        if (a_buf != NULL)
            pynn_sgemm_rows(a->rec + r0 * gu + g * u, hm, a->bp + g * gate, 0, rows, u, u,
                            0.0f, u, gu, a_buf);
        else
            status = pynn_sgemm_prepacked(a->rec + g * u, hm, a->rkernel + g * u,
                                          a->bp + g * gate, 0, 0, rows, u, u, 1.0f, 0.0f, u,
                                          gu, gu);
    }
    return status;
}

/* Every step of the forward pass on rows [r0, r1): each step's recurrent product, then the
 * rows' cell update.  A row's steps read only that row's state, so a thread that owns some
 * rows runs the whole sequence on them without waiting for the others.  a_buf: the
 * thread's packing buffer for pynn_sgemm_rows, or NULL on the small path (all rows, each
 * product by pynn_sgemm_prepacked). */
static int fwd_steps(const rnn_fwd *a, int64_t r0, int64_t r1, float *a_buf, float *hm) {
    const int64_t T = a->T, u = a->u, gu = a->gu;
    const float *hnext_mask = a->per_gate ? NULL : a->rec_mask;   /* per gate: at the product */
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
        } else {
            const int status = fwd_product(a, r0, r1, tt, a_buf, hm);
            if (status != PYNN_OK) return status;
        }
        for (r = r0; r < r1; r++)
            a->kr->fwd_row(r, a->seq, a->cs, a->gates, a->aux, a->rec, a->bias, a->mask, T,
                           u, gu, tt, o, op, a->cell, a->act, a->rec_act, a->out, hnext,
                           hnext_mask);
    }
    return PYNN_OK;
}

/* The steps of a pass on n rows: the small path on the caller's thread, or the rows split
 * between nt threads.  Each gets its slice of `ws`: per_thread floats, a pynn_sgemm_rows
 * packing buffer (a_floats; none on the small path) and then scratch for the steps (per-gate
 * masks).  steps: fwd_steps or bwd_steps on `args`. */
typedef int (*rnn_steps_fn)(const void *, int64_t, int64_t, float *, float *);

static int run_steps(rnn_steps_fn steps, const void *args, int64_t n, int nt, float *ws,
                     size_t per_thread, size_t a_floats) {
    int t;
    if (n <= RNN_SMALL_ROWS) return steps(args, 0, n, NULL, ws);
    if (nt <= 1) return steps(args, 0, n, ws, ws + a_floats);
#ifdef _OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nt)
#endif
    for (t = 0; t < nt; t++) {                          /* rows, one block per thread */
        float *mine = ws + (size_t)t * per_thread;
        int64_t r0, r1;
        rnn_rows_of(n, t, nt, &r0, &r1);
        (void)steps(args, r0, r1, mine, mine + a_floats);   /* cannot fail */
    }
    return PYNN_OK;
}

static int fwd_steps_any(const void *a, int64_t r0, int64_t r1, float *a_buf, float *hm) {
    return fwd_steps((const rnn_fwd *)a, r0, r1, a_buf, hm);
}

/* `floats` floats at a 64-byte boundary, allocated for this call (*owned: what to free),
 * or NULL. */
static float *malloc_aligned(size_t floats, void **owned) {
    *owned = malloc((floats + 16) * sizeof(float));
    return *owned != NULL ? pynn_align64f(*owned) : NULL;
}

/* The buffer of a pass's stepping, 64-byte aligned: the recurrent kernel packed
 * (bp_floats), then nt threads' slices of *per_thread floats: a packing buffer for k-deep
 * products of the thread's rows (*a_floats) and `scratch` floats per row (the small path:
 * one slice, scratch for all n rows).  The row split's products take no workspace, so its
 * buffer is the GEMM's cached one (pynn_gemm_workspace_acquire: a training loop allocates
 * nothing); the small path's products are pynn_sgemm's, which want that cache each step,
 * so its buffer is allocated (*owned; pynn_gemm_workspace_release frees it). */
static int steps_buffer(float **bp, float **ws, void **owned, int64_t bp_floats, int64_t n,
                        int nt, int64_t k, int64_t scratch, size_t *per_thread,
                        size_t *a_floats) {
    const size_t head = (size_t)((bp_floats + 15) / 16 * 16);
    const int64_t rows = n <= RNN_SMALL_ROWS ? n : (n + nt - 1) / nt;
    size_t floats;
    *a_floats = n <= RNN_SMALL_ROWS ? 0 : (size_t)pynn_sgemm_rows_floats(rows, k);
    *per_thread = *a_floats + (size_t)((rows * scratch + 15) / 16 * 16);
    floats = head + (size_t)nt * *per_thread;
    if (n > RNN_SMALL_ROWS) {
        const int status = pynn_gemm_workspace_acquire(bp, owned, floats);
        if (status != PYNN_OK) return status;
    } else {
        *bp = malloc_aligned(floats, owned);
        if (*bp == NULL) return PYNN_ENOMEM;
    }
    *ws = *bp + head;
    return PYNN_OK;
}

/* The input projections of the whole sequence into gates (n T x G u): x by the kernel, or
 * with per-gate input masks gate by gate, x * in_mask[:, g] by the gate's block; xm holds
 * n T f floats of scratch for that. */
static int project_inputs(float *gates, float *xm, const float *x, const float *kernel,
                          const float *in_mask, int64_t n, int64_t T, int64_t f, int64_t u,
                          int64_t G) {
    const int64_t gu = G * u;
    int64_t g, r;
    int status = PYNN_OK;
    if (in_mask == NULL)
        return pynn_sgemm(gates, x, kernel, 0, 0, n * T, gu, f, 1.0f, 0.0f, f, gu, gu);
    for (g = 0; g < G && status == PYNN_OK; g++) {    /* gates, each through its mask */
        for (r = 0; r < n; r++)                       /* rows: one mask for every step */
            masked_rows(xm + r * T * f, x + r * T * f, f, in_mask + (r * G + g) * f, 0, T, f);
        status = pynn_sgemm(gates + g * u, xm, kernel + g * u, 0, 0, n * T, u, f, 1.0f, 0.0f,
                            f, gu, gu);
    }
    return status;
}

int pynn_rnn_forward(float *seq, float *cs, float *gates, float *hprev, float *aux, float *rec,
                     float *h_last, float *c_last, const float *x, const float *kernel,
                     const float *rkernel, const float *bias, const float *mask,
                     const float *rec_mask, const float *in_mask, int64_t n, int64_t T,
                     int64_t f, int64_t u, int cell, int act, int rec_act, int go_backwards,
                     int time_order, int gate_masks, float *out) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    const int per_gate = gate_masks && rec_mask != NULL;
    rnn_fwd a;
    int64_t r;
    int nt, status;
    size_t per_thread, a_floats;
    float *bp, *ws, *xm = NULL;
    void *owned;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(seq == NULL || gates == NULL || hprev == NULL || rec == NULL ||
                   x == NULL || kernel == NULL || rkernel == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell != PYNN_RNN_SIMPLE && aux == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(in_mask != NULL && !gate_masks, PYNN_EINVAL);
    if (n == 0) return PYNN_OK;
    /* the input projections of the whole sequence */
    if (in_mask != NULL) {
        xm = malloc((size_t)(n * T * f) * sizeof(float));
        if (xm == NULL) return PYNN_ENOMEM;
    }
    status = project_inputs(gates, xm, x, kernel, in_mask, n, T, f, u, G);
    free(xm);
    if (status != PYNN_OK) return status;
    /* the recurrent kernel, packed once for the T - 1 products with it */
    nt = rnn_row_threads(n, gu, u);
    status = steps_buffer(&bp, &ws, &owned, packed_floats(u, G, per_gate, 0), n, nt, u,
                          per_gate ? u : 0, &per_thread, &a_floats);
    if (status != PYNN_OK) return status;
    status = pack_recurrent(bp, rkernel, u, G, per_gate, 0);
    a.seq = seq; a.cs = cs; a.gates = gates; a.hprev = hprev; a.aux = aux; a.rec = rec;
    a.out = out; a.rkernel = rkernel; a.bias = bias; a.mask = mask; a.rec_mask = rec_mask;
    a.bp = bp; a.n = n; a.T = T; a.u = u; a.gu = gu; a.G = G; a.cell = cell; a.act = act;
    a.rec_act = rec_act; a.go_backwards = go_backwards; a.time_order = time_order;
    a.per_gate = per_gate; a.kr = rnn_kernels();
    if (status == PYNN_OK)
        status = run_steps(fwd_steps_any, &a, n, nt, ws, per_thread, a_floats);
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
    int64_t n, T, u, gu, G;
    int cell, act, rec_act, go_backwards, time_order, zero_output, per_gate;
    const pynn_rnn_kernels *kr;
} rnn_bwd;

/* dh of rows [r0, r1) = the gradient reaching the state read at time tt through the
 * recurrent products: dgr_tt by the kernel's transpose, or with per-gate masks the sum over
 * the gates, in order, of each block's product times the gate's mask (tmp: rows x u floats
 * of scratch).  a_buf as fwd_product's. */
static int bwd_product(const rnn_bwd *a, int64_t r0, int64_t r1, int64_t tt, float *a_buf,
                       float *tmp) {
    const int64_t T = a->T, u = a->u, gu = a->gu, G = a->G, rows = r1 - r0;
    const int64_t gate = packed_floats(u, 1, 1, 1);
    const float *d = a->dgr + (r0 * T + tt) * gu;
    float *dh = a->dh + r0 * u;
    int64_t g, r, j;
    int status = PYNN_OK;
    if (!a->per_gate) {
        if (a_buf != NULL)
            pynn_sgemm_rows(dh, d, a->bp, 0, rows, u, gu, 0.0f, T * gu, u, a_buf);
        else
            status = pynn_sgemm_prepacked(dh, d, a->rkernel, a->bp, 0, 1, rows, u, gu, 1.0f,
                                          0.0f, T * gu, gu, u);
        return status;
    }
    for (g = 0; g < G && status == PYNN_OK; g++) {    /* gates, summed in order */
        if (a_buf != NULL)
            pynn_sgemm_rows(tmp, d + g * u, a->bp + g * gate, 0, rows, u, u, 0.0f, T * gu, u,
                            a_buf);
        else
            status = pynn_sgemm_prepacked(tmp, d + g * u, a->rkernel + g * u, a->bp + g * gate,
                                          0, 1, rows, u, u, 1.0f, 0.0f, T * gu, gu, u);
        for (r = 0; r < rows; r++) {                  /* rows: dh (+)= tmp * the mask */
            const float *m = a->rec_mask + ((r0 + r) * G + g) * u;
            for (j = 0; j < u; j++)
                dh[r * u + j] = g == 0 ? tmp[r * u + j] * m[j]
                                       : dh[r * u + j] + tmp[r * u + j] * m[j];
        }
    }
    return status;
}

/* Every step of backpropagation through time on rows [r0, r1), from the last: the rows'
 * gate gradients, then the gradient reaching their previous hidden state (a product with
 * the recurrent kernel's transpose).  As fwd_steps: rows are independent, a_buf NULL on
 * the small path. */
static int bwd_steps(const rnn_bwd *a, int64_t r0, int64_t r1, float *a_buf, float *tmp) {
    const int64_t T = a->T, u = a->u, gu = a->gu;
    const float *dh_mask = a->per_gate ? NULL : a->rec_mask;   /* per gate: in the product */
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
                           a->rec_act, a->zero_output, dh_mask, s < T - 1);
        if (s == 0) break;                    /* h_{-1} is the constant 0 */
        /* dh = dgr_s rkernel^T; the next step's row pass applies the (shared) mask and
         * adds dn */
        {
            const int status = bwd_product(a, r0, r1, tt, a_buf, tmp);
            if (status != PYNN_OK) return status;
        }
    }
    return PYNN_OK;
}

static int bwd_steps_any(const void *a, int64_t r0, int64_t r1, float *a_buf, float *tmp) {
    return bwd_steps((const rnn_bwd *)a, r0, r1, a_buf, tmp);
}

/* The weight and input gradients with per-gate masks, gate by gate (buf: n T max(f, u)
 * floats of scratch): drkernel's block g = (hprev * rec_mask[:, g])^T dgr_g, dkernel's
 * (x * in_mask[:, g])^T dgates_g, and dx = the sum over the gates, in order, of
 * (dgates_g kernel_g^T) * in_mask[:, g]; without an in_mask dkernel and dx as usual.
 * hprev holds the states unmasked. */
static int gate_gradients(float *dkernel, float *drkernel, float *dx, float *buf,
                          const float *dgates, const float *dgr, const float *x,
                          const float *kernel, const float *hprev, const float *rec_mask,
                          const float *in_mask, int64_t n, int64_t T, int64_t f, int64_t u,
                          int64_t G) {
    const int64_t gu = G * u, nt = n * T;
    int64_t g, r, i;
    int status = PYNN_OK;
    for (g = 0; g < G && status == PYNN_OK; g++) {    /* gates, in order */
        if (drkernel != NULL) {
            const float *h = hprev;
            if (rec_mask != NULL) {
                for (r = 0; r < n; r++)
                    masked_rows(buf + r * T * u, hprev + r * T * u, u,
                                rec_mask + (r * G + g) * u, 0, T, u);
                h = buf;
            }
            status = pynn_sgemm(drkernel + g * u, h, dgr + g * u, 1, 0, u, u, nt, 1.0f, 0.0f,
                                u, gu, gu);
        }
        if (in_mask == NULL) continue;
        if (status == PYNN_OK && dkernel != NULL) {
            for (r = 0; r < n; r++)
                masked_rows(buf + r * T * f, x + r * T * f, f, in_mask + (r * G + g) * f, 0,
                            T, f);
            status = pynn_sgemm(dkernel + g * u, buf, dgates + g * u, 1, 0, f, u, nt, 1.0f,
                                0.0f, f, gu, gu);
        }
        if (status == PYNN_OK && dx != NULL) {
            status = pynn_sgemm(buf, dgates + g * u, kernel + g * u, 0, 1, nt, f, u, 1.0f,
                                0.0f, gu, gu, f);
            for (r = 0; r < n; r++) {                 /* rows: dx (+)= the part * the mask */
                const float *m = in_mask + (r * G + g) * f;
                for (i = 0; i < T * f; i++) {
                    const float v = buf[r * T * f + i] * m[i % f];
                    dx[r * T * f + i] = g == 0 ? v : dx[r * T * f + i] + v;
                }
            }
        }
    }
    if (in_mask == NULL && status == PYNN_OK && dkernel != NULL)   /* x unmasked: at once */
        status = pynn_sgemm(dkernel, x, dgates, 1, 0, f, gu, nt, 1.0f, 0.0f, f, gu, gu);
    if (in_mask == NULL && status == PYNN_OK && dx != NULL)
        status = pynn_sgemm(dx, dgates, kernel, 0, 1, nt, f, gu, 1.0f, 0.0f, gu, gu, f);
    return status;
}

int pynn_rnn_backward(float *dkernel, float *drkernel, float *dbias, float *dx, float *dgates,
                      float *dgr, float *work, const float *dseq, const float *dh_last,
                      const float *dc_last, const float *x, const float *kernel,
                      const float *rkernel, const float *seq, const float *cs,
                      const float *gates, const float *hprev, const float *aux,
                      const float *mask, const float *rec_mask, const float *in_mask,
                      int64_t n, int64_t T, int64_t f, int64_t u, int cell, int act,
                      int rec_act, int go_backwards, int time_order, int gate_masks,
                      int zero_output) {
    const int64_t G = pynn_rnn_gates(cell), gu = G * u;
    const int per_gate = gate_masks && rec_mask != NULL;
    rnn_bwd a;
    float *bp, *ws;
    void *owned;
    size_t per_thread, a_floats;
    int64_t bp_floats;
    int nt, status;
    PYNN_RETURN_IF(!args_ok(n, T, f, u, cell, act, rec_act), PYNN_EINVAL);
    PYNN_RETURN_IF(dgates == NULL || work == NULL || x == NULL || kernel == NULL ||
                   rkernel == NULL || seq == NULL || gates == NULL || hprev == NULL,
                   PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && cs == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_LSTM && aux == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cell == PYNN_RNN_GRU && (aux == NULL || dgr == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF(in_mask != NULL && !gate_masks, PYNN_EINVAL);
    if (cell != PYNN_RNN_GRU) dgr = dgates;
    if (n == 0) {
        if (dkernel) memset(dkernel, 0, (size_t)(f * gu) * sizeof(float));
        if (drkernel) memset(drkernel, 0, (size_t)(u * gu) * sizeof(float));
        if (dbias) memset(dbias, 0, (size_t)((cell == PYNN_RNN_GRU ? 2 : 1) * gu) * sizeof(float));
        return PYNN_OK;
    }
    a.dgates = dgates; a.dgr = dgr; a.dh = work; a.dc = work + n * u; a.dn = work + 2 * n * u;
    a.dseq = dseq; a.seq = seq; a.cs = cs; a.gates = gates; a.aux = aux; a.mask = mask;
    a.rec_mask = rec_mask; a.rkernel = rkernel; a.n = n; a.T = T; a.u = u; a.gu = gu; a.G = G;
    a.cell = cell; a.act = act; a.rec_act = rec_act; a.go_backwards = go_backwards;
    a.time_order = time_order; a.zero_output = zero_output; a.per_gate = per_gate;
    a.kr = rnn_kernels();
    if (dh_last) memcpy(a.dh, dh_last, (size_t)(n * u) * sizeof(float));
    else memset(a.dh, 0, (size_t)(n * u) * sizeof(float));
    if (dc_last && cell == PYNN_RNN_LSTM) memcpy(a.dc, dc_last, (size_t)(n * u) * sizeof(float));
    else memset(a.dc, 0, (size_t)(n * u) * sizeof(float));
    /* the recurrent kernel's transpose, packed once for the T - 1 products with it */
    nt = rnn_row_threads(n, gu, u);
    status = steps_buffer(&bp, &ws, &owned, packed_floats(u, G, per_gate, 1), n, nt,
                          per_gate ? u : gu, per_gate ? u : 0, &per_thread, &a_floats);
    if (status != PYNN_OK) return status;
    status = pack_recurrent(bp, rkernel, u, G, per_gate, 1);
    a.bp = bp;
    if (status == PYNN_OK)
        status = run_steps(bwd_steps_any, &a, n, nt, ws, per_thread, a_floats);
    pynn_gemm_workspace_release(bp, owned);
    if (status != PYNN_OK) return status;
    if (dbias != NULL) {
        status = pynn_bias_grad(dbias, dgates, n * T, gu);
        if (status != PYNN_OK) return status;
        if (cell == PYNN_RNN_GRU) {
            status = pynn_bias_grad(dbias + gu, dgr, n * T, gu);
            if (status != PYNN_OK) return status;
        }
    }
    if (gate_masks && (rec_mask != NULL || in_mask != NULL)) {
        /* each gate through its own masks */
        float *buf = malloc((size_t)(n * T * (f > u ? f : u)) * sizeof(float));
        if (buf == NULL) return PYNN_ENOMEM;
        status = gate_gradients(dkernel, drkernel, dx, buf, dgates, dgr, x, kernel, hprev,
                                rec_mask, in_mask, n, T, f, u, G);
        free(buf);
        return status;
    }
    /* the weight gradients: a few GEMMs over the whole sequence; where both read the same
     * dgates (not GRU), its panels are packed once for the two (bitwise the same GEMMs) */
    /* (allocated for the call: the GEMMs want the workspace cache, and the cache would
     * keep a long sequence's n T G u floats for the life of the process) */
    bp = NULL;
    owned = NULL;
    if (dkernel != NULL && drkernel != NULL && dgr == dgates) {
        bp_floats = pynn_sgemm_pack_b_floats(gu, n * T);
        bp = malloc_aligned((size_t)bp_floats, &owned);
        if (bp == NULL) return PYNN_ENOMEM;
        status = pynn_sgemm_pack_b(bp, dgates, 0, gu, n * T, gu);
    }
    if (status == PYNN_OK && dkernel != NULL)
        status = pynn_sgemm_prepacked(dkernel, x, dgates, bp, 1, 0, f, gu, n * T, 1.0f, 0.0f,
                                      f, gu, gu);
    if (status == PYNN_OK && drkernel != NULL)
        status = pynn_sgemm_prepacked(drkernel, hprev, dgr, bp, 1, 0, u, gu, n * T, 1.0f,
                                      0.0f, u, gu, gu);
    free(owned);
    if (status != PYNN_OK) return status;
    if (dx != NULL)
        return pynn_sgemm(dx, dgates, kernel, 0, 1, n * T, f, gu, 1.0f, 0.0f, gu, gu, f);
    return PYNN_OK;
}
