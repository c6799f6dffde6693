# ---- recurrent layers (csrc/rnn.c; engineer H): SimpleRNN, LSTM, GRU ------------------
# Arrays are C-contiguous float32 of any shape holding at least the values csrc/pynn.h's
# layouts need; None for an absent operand.

cdef extern from "pynn.h" nogil:
    int64_t pynn_rnn_gates(int cell)
    int pynn_rnn_act_supported(int act)
    int64_t pynn_rnn_backward_work(int64_t n, int64_t u)
    int pynn_rnn_forward(float *seq, float *cs, float *gates, float *hprev, float *aux,
                         float *rec, float *h_last, float *c_last, const float *x,
                         const float *kernel, const float *rkernel, const float *bias,
                         const float *mask, const float *rec_mask, const float *in_mask,
                         int64_t n, int64_t T, int64_t f, int64_t u, int cell, int act,
                         int rec_act, int go_backwards, int time_order, int gate_masks,
                         float *out)
    int pynn_rnn_backward(float *dkernel, float *drkernel, float *dbias, float *dx,
                          float *dgates, float *dgr, float *work, const float *dseq,
                          const float *dh_last, const float *dc_last, const float *x,
                          const float *kernel, const float *rkernel, const float *seq,
                          const float *cs, const float *gates, const float *hprev,
                          const float *aux, const float *mask, const float *rec_mask,
                          const float *in_mask, int64_t n, int64_t T, int64_t f, int64_t u,
                          int cell, int act, int rec_act, int go_backwards, int time_order,
                          int gate_masks, int zero_output)


cdef float *_rnn_ptr(object a, int64_t need, str what, str where, bint out,
                     bint required=False) except? NULL:
    cdef int64_t n
    if a is None:
        if required:
            raise ValueError(f"{where}: {what} is required")
        return NULL
    cdef float *p = _f32_ptr(a, what, where, &n, out)
    if n < need:
        raise ValueError(f"{where}: expected {what} to hold at least {need} values, received {n}")
    return p


cdef const float *_rnn_masks_in(object in_mask, int64_t need, bint gate_masks,
                                str where) except? NULL:
    if in_mask is not None and not gate_masks:
        raise ValueError(f"{where}: in_mask (a dropout mask per gate) needs gate_masks=True")
    return _rnn_ptr(in_mask, need, "in_mask", where, False)


def _rnn_sizes(int64_t n, int64_t T, int64_t f, int64_t u, int cell, int act, int rec_act,
               str where):
    cdef int64_t G = pynn_rnn_gates(cell)
    if G == 0:
        raise ValueError(f"{where}: expected cell 0 (SimpleRNN), 1 (LSTM) or 2 (GRU), received {cell}")
    if not pynn_rnn_act_supported(act) or not pynn_rnn_act_supported(rec_act):
        raise ValueError(f"{where}: the activations must be linear, relu, sigmoid or tanh, "
                         f"received ids {act} and {rec_act}")
    if n < 0 or T < 1 or f < 1 or u < 1:
        raise ValueError(f"{where}: invalid sizes n={n}, T={T}, f={f}, u={u}")
    return G


def rnn_backward_work(int64_t n, int64_t u):
    return pynn_rnn_backward_work(n, u)


def rnn_forward(seq, cs, gates, hprev, aux, rec, h_last, c_last, x, kernel, rkernel, bias,
                mask, rec_mask, int64_t n, int64_t T, int64_t f, int64_t u, int cell, int act,
                int rec_act, bint go_backwards, bint time_order, out=None, in_mask=None,
                bint gate_masks=False):
    """pynn_rnn_forward (csrc/pynn.h); out: zero_output_for_mask's output, or None;
    gate_masks: a dropout mask per gate, rec_mask (n, G, u) and in_mask (n, G, f)."""
    cdef str where = "rnn_forward"
    cdef int64_t G = _rnn_sizes(n, T, f, u, cell, act, rec_act, where)
    cdef int64_t ntu = n * T * u, gu = G * u
    cdef float *p_seq = _rnn_ptr(seq, ntu, "seq", where, True, True)
    cdef float *p_cs = _rnn_ptr(cs, ntu, "cs", where, True, cell == 1)
    cdef float *p_g = _rnn_ptr(gates, ntu * G, "gates", where, True, True)
    cdef float *p_hp = _rnn_ptr(hprev, ntu, "hprev", where, True, True)
    cdef float *p_aux = _rnn_ptr(aux, ntu, "aux", where, True, cell != 0)
    cdef float *p_rec = _rnn_ptr(rec, n * gu, "rec", where, True, True)
    cdef float *p_hl = _rnn_ptr(h_last, n * u, "h_last", where, True)
    cdef float *p_cl = _rnn_ptr(c_last, n * u, "c_last", where, True)
    cdef const float *p_x = _rnn_ptr(x, n * T * f, "x", where, False, True)
    cdef const float *p_k = _rnn_ptr(kernel, f * gu, "kernel", where, False, True)
    cdef const float *p_rk = _rnn_ptr(rkernel, u * gu, "recurrent_kernel", where, False, True)
    cdef const float *p_b = _rnn_ptr(bias, (2 if cell == 2 else 1) * gu, "bias", where, False)
    cdef const float *p_m = _rnn_ptr(mask, n * T, "mask", where, False)
    cdef const float *p_rm = _rnn_ptr(rec_mask, n * u * (G if gate_masks else 1), "rec_mask",
                                      where, False)
    cdef const float *p_im = _rnn_masks_in(in_mask, n * G * f, gate_masks, where)
    cdef float *p_out = _rnn_ptr(out, ntu, "out", where, True)
    cdef int status
    if n == 0:
        return
    with nogil:
        status = pynn_rnn_forward(p_seq, p_cs, p_g, p_hp, p_aux, p_rec, p_hl, p_cl, p_x, p_k,
                                  p_rk, p_b, p_m, p_rm, p_im, n, T, f, u, cell, act,
                                  rec_act, go_backwards, time_order, gate_masks, p_out)
    _check(status, where)


def rnn_backward(dkernel, drkernel, dbias, dx, dgates, dgr, work, dseq, dh_last, dc_last, x,
                 kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask, int64_t n,
                 int64_t T, int64_t f, int64_t u, int cell, int act, int rec_act,
                 bint go_backwards, bint time_order, bint zero_output=False, in_mask=None,
                 bint gate_masks=False):
    """pynn_rnn_backward (csrc/pynn.h); masks as rnn_forward's."""
    cdef str where = "rnn_backward"
    cdef int64_t G = _rnn_sizes(n, T, f, u, cell, act, rec_act, where)
    cdef int64_t ntu = n * T * u, gu = G * u
    cdef float *p_dk = _rnn_ptr(dkernel, f * gu, "dkernel", where, True)
    cdef float *p_drk = _rnn_ptr(drkernel, u * gu, "drecurrent_kernel", where, True)
    cdef float *p_db = _rnn_ptr(dbias, (2 if cell == 2 else 1) * gu, "dbias", where, True)
    cdef float *p_dx = _rnn_ptr(dx, n * T * f, "dx", where, True)
    cdef float *p_dg = _rnn_ptr(dgates, ntu * G, "dgates", where, True, True)
    cdef float *p_dgr = _rnn_ptr(dgr, ntu * G, "dgr", where, True, cell == 2)
    cdef float *p_w = _rnn_ptr(work, pynn_rnn_backward_work(n, u), "work", where, True, True)
    cdef const float *p_dseq = _rnn_ptr(dseq, ntu, "dseq", where, False)
    cdef const float *p_dhl = _rnn_ptr(dh_last, n * u, "dh_last", where, False)
    cdef const float *p_dcl = _rnn_ptr(dc_last, n * u, "dc_last", where, False)
    cdef const float *p_x = _rnn_ptr(x, n * T * f, "x", where, False, True)
    cdef const float *p_k = _rnn_ptr(kernel, f * gu, "kernel", where, False, True)
    cdef const float *p_rk = _rnn_ptr(rkernel, u * gu, "recurrent_kernel", where, False, True)
    cdef const float *p_seq = _rnn_ptr(seq, ntu, "seq", where, False, True)
    cdef const float *p_cs = _rnn_ptr(cs, ntu, "cs", where, False, cell == 1)
    cdef const float *p_g = _rnn_ptr(gates, ntu * G, "gates", where, False, True)
    cdef const float *p_hp = _rnn_ptr(hprev, ntu, "hprev", where, False, True)
    cdef const float *p_aux = _rnn_ptr(aux, ntu, "aux", where, False, cell != 0)
    cdef const float *p_m = _rnn_ptr(mask, n * T, "mask", where, False)
    cdef const float *p_rm = _rnn_ptr(rec_mask, n * u * (G if gate_masks else 1), "rec_mask",
                                      where, False)
    cdef const float *p_im = _rnn_masks_in(in_mask, n * G * f, gate_masks, where)
    cdef int status
    if n == 0:
        for a in (dkernel, drkernel, dbias):
            if a is not None:
                a[...] = 0
        return
    with nogil:
        status = pynn_rnn_backward(p_dk, p_drk, p_db, p_dx, p_dg, p_dgr, p_w, p_dseq, p_dhl,
                                   p_dcl, p_x, p_k, p_rk, p_seq, p_cs, p_g, p_hp, p_aux, p_m,
                                   p_rm, p_im, n, T, f, u, cell, act, rec_act, go_backwards,
                                   time_order, gate_masks, zero_output)
    _check(status, where)
