"""The recurrent layers on the GPU (engineer H): csrc/pynn.h's pynn_rnn_forward and
pynn_rnn_backward with Numba kernels.

The input projections of the whole sequence, the weight gradients and the input gradient
are the existing CUDA GEMM (gemm.matmul) over (n*T)-row matrices; each step is one kernel
with a thread per (row, unit): it forms that unit's G recurrent dot products (the state
row times the recurrent kernel's columns, in a fixed order), the gates, the cell update and
the mask, and the backward's per-step kernels do the same for the gate gradients and the
gradient reaching the previous state.  Every output element is written by one thread and
each sum runs in a fixed order: no atomics.

With gate_masks (Keras 3's per-gate dropout), gate g reads x * in_mask[:, g] and
h * rec_mask[:, g]: the per-step kernels index the (n, G u) mask view by gate, and the GEMMs
run gate by gate over column blocks, on masked copies of x / hprev where a mask applies.
"""
from numba import cuda

from ...ids import ACTIVATIONS
from . import elementwise
from .elementwise import act as _act
from .runtime import F0, F1, elementwise_config

_RELU, _SIGMOID, _TANH = ACTIVATIONS["relu"], ACTIVATIONS["sigmoid"], ACTIVATIONS["tanh"]
_GATES = {0: 1, 1: 4, 2: 3}


@cuda.jit(device=True, inline=True)
def _dact(y, act_id):
    """act'(z) from y = act(z)."""
    if act_id == _RELU:
        return F1 if y > F0 else F0
    if act_id == _SIGMOID:
        return y * (F1 - y)
    if act_id == _TANH:
        return F1 - y * y
    return F1


@cuda.jit
def _step_forward(seq, cs, gates, hprev, aux, bias, mask, rec_mask, rk, out, n, T, u, s, t, o,
                  op, cell, act_id, rec_id, has_bias, has_mask, has_rm, has_out, gm):
    """gm (gate masks): rec_mask is (n, G u), gate g's mask at [r, g u + k]; hprev holds
    the state unmasked."""
    i = cuda.grid(1)
    if i >= n * u:
        return
    r = i // u
    j = i - r * u
    gu = rk.shape[1]
    # the state this step reads (recurrent dropout applied), and its recurrent projections
    h0 = F0
    if op >= 0:
        h0 = seq[r, op, j]
    m0 = rec_mask[r, j] if has_rm and not gm else F1
    hprev[r, t, j] = h0 * m0
    r0 = F0
    r1 = F0
    r2 = F0
    r3 = F0
    if op >= 0:
        for k in range(u):
            hk = seq[r, op, k]
            if has_rm and gm:       # each gate its own mask
                r0 += hk * rec_mask[r, k] * rk[k, j]
                if cell >= 1:
                    r1 += hk * rec_mask[r, u + k] * rk[k, u + j]
                    r2 += hk * rec_mask[r, 2 * u + k] * rk[k, 2 * u + j]
                if cell == 1:
                    r3 += hk * rec_mask[r, 3 * u + k] * rk[k, 3 * u + j]
            else:
                if has_rm:
                    hk = hk * rec_mask[r, k]
                r0 += hk * rk[k, j]
                if cell >= 1:
                    r1 += hk * rk[k, u + j]
                    r2 += hk * rk[k, 2 * u + j]
                if cell == 1:
                    r3 += hk * rk[k, 3 * u + j]
    keep = has_mask and mask[r, t] == F0
    if cell == 1:
        zi = gates[r, t, j] + r0
        zf = gates[r, t, u + j] + r1
        zc = gates[r, t, 2 * u + j] + r2
        zo = gates[r, t, 3 * u + j] + r3
        if has_bias:
            zi += bias[j]
            zf += bias[u + j]
            zc += bias[2 * u + j]
            zo += bias[3 * u + j]
        gi = _act(zi, rec_id, F0)
        gf = _act(zf, rec_id, F0)
        gc = _act(zc, act_id, F0)
        go = _act(zo, rec_id, F0)
        gates[r, t, j] = gi
        gates[r, t, u + j] = gf
        gates[r, t, 2 * u + j] = gc
        gates[r, t, 3 * u + j] = go
        cp = cs[r, op, j] if op >= 0 else F0
        cn = gf * cp + gi * gc
        if keep:
            cs[r, o, j] = cp
            seq[r, o, j] = h0
        else:
            cs[r, o, j] = cn
            seq[r, o, j] = go * _act(cn, act_id, F0)
    elif cell == 2:
        xz = gates[r, t, j]
        xr = gates[r, t, u + j]
        xh = gates[r, t, 2 * u + j]
        if has_bias:
            xz += bias[j]
            xr += bias[u + j]
            xh += bias[2 * u + j]
            r0 += bias[gu + j]
            r1 += bias[gu + u + j]
            r2 += bias[gu + 2 * u + j]
        z = _act(xz + r0, rec_id, F0)
        rg = _act(xr + r1, rec_id, F0)
        hh = _act(xh + rg * r2, act_id, F0)
        gates[r, t, j] = z
        gates[r, t, u + j] = rg
        gates[r, t, 2 * u + j] = hh
        aux[r, t, j] = r2
        seq[r, o, j] = h0 if keep else z * h0 + (F1 - z) * hh
    else:
        zz = gates[r, t, j] + r0
        if has_bias:
            zz += bias[j]
        hn = _act(zz, act_id, F0)
        gates[r, t, j] = hn
        seq[r, o, j] = h0 if keep else hn
    if has_out:                     # zero_output_for_mask's output
        out[r, o, j] = F0 if keep else seq[r, o, j]


@cuda.jit
def _copy_last(dst, src, n, u, o):
    i = cuda.grid(1)
    if i < n * u:
        r = i // u
        j = i - r * u
        dst[r, j] = src[r, o, j]


@cuda.jit
def _init_backward(work, dh_last, dc_last, n, u, has_dh, has_dc):
    i = cuda.grid(1)
    if i < n * u:
        r = i // u
        j = i - r * u
        work[r, j] = dh_last[r, j] if has_dh else F0
        work[r, u + j] = dc_last[r, j] if has_dc else F0


@cuda.jit
def _step_backward(dgates, dgr, work, dseq, seq, cs, gates, aux, mask, n, T, u, t, o, op,
                   cell, act_id, rec_id, has_dseq, has_mask, zero_output):
    """The gate gradients of one step; work[:, 2u:3u] = the gradient reaching h_{s-1}
    other than through the recurrent kernel."""
    i = cuda.grid(1)
    if i >= n * u:
        return
    r = i // u
    j = i - r * u
    d = work[r, j]
    masked = has_mask and mask[r, t] == F0
    if has_dseq and not (zero_output and masked):
        d += dseq[r, o, j]
        work[r, j] = d
    G = 4 if cell == 1 else (3 if cell == 2 else 1)
    if masked:
        for g in range(G):
            dgates[r, t, g * u + j] = F0
            dgr[r, t, g * u + j] = F0
        work[r, 2 * u + j] = d
        return
    if cell == 1:
        gi = gates[r, t, j]
        gf = gates[r, t, u + j]
        gc = gates[r, t, 2 * u + j]
        go = gates[r, t, 3 * u + j]
        tc = _act(cs[r, o, j], act_id, F0)
        cp = cs[r, op, j] if op >= 0 else F0
        dct = work[r, u + j] + d * go * _dact(tc, act_id)
        dgates[r, t, j] = dct * gc * _dact(gi, rec_id)
        dgates[r, t, u + j] = dct * cp * _dact(gf, rec_id)
        dgates[r, t, 2 * u + j] = dct * gi * _dact(gc, act_id)
        dgates[r, t, 3 * u + j] = d * tc * _dact(go, rec_id)
        work[r, u + j] = dct * gf
        work[r, 2 * u + j] = F0
    elif cell == 2:
        z = gates[r, t, j]
        rg = gates[r, t, u + j]
        hh = gates[r, t, 2 * u + j]
        hp = seq[r, op, j] if op >= 0 else F0
        dhh = d * (F1 - z) * _dact(hh, act_id)
        dz = d * (hp - hh) * _dact(z, rec_id)
        dr = dhh * aux[r, t, j] * _dact(rg, rec_id)
        dgates[r, t, j] = dz
        dgates[r, t, u + j] = dr
        dgates[r, t, 2 * u + j] = dhh
        dgr[r, t, j] = dz
        dgr[r, t, u + j] = dr
        dgr[r, t, 2 * u + j] = dhh * rg
        work[r, 2 * u + j] = d * z
    else:
        dgates[r, t, j] = d * _dact(gates[r, t, j], act_id)
        work[r, 2 * u + j] = F0


@cuda.jit
def _propagate(work, dgr, rk, rec_mask, n, u, t, has_rm, gm):
    """dh_{s-1} = (dgr_s rk^T) * rec_mask + the direct part; with gate masks (gm) the sum
    over the gates in order of (dgr_s[:, g] rk[:, g]^T) * rec_mask[:, g]."""
    i = cuda.grid(1)
    if i >= n * u:
        return
    r = i // u
    j = i - r * u
    acc = F0
    if gm:
        for g in range(rk.shape[1] // u):
            part = F0
            for k in range(g * u, (g + 1) * u):
                part += dgr[r, t, k] * rk[j, k]
            if has_rm:
                part = part * rec_mask[r, g * u + j]
            acc += part
    else:
        for k in range(rk.shape[1]):
            acc += dgr[r, t, k] * rk[j, k]
        if has_rm:
            acc = acc * rec_mask[r, j]
    work[r, j] = acc + work[r, 2 * u + j]


@cuda.jit
def _mask_gate(dst, src, mask, n, rest, w, g):
    """dst = src * mask[:, g] (flat (n, rest) arrays; mask (n, G w), every rest/w rows of
    w read gate g's block)."""
    i = cuda.grid(1)
    if i < n * rest:
        r = i // rest
        k = i % w
        dst[i] = src[i] * mask[r, g * w + k]


@cuda.jit
def _add_masked(dst, src, mask, n, rest, w, g, first):
    """dst (+)= src * mask[:, g], as _mask_gate; first: dst = the product."""
    i = cuda.grid(1)
    if i < n * rest:
        r = i // rest
        k = i % w
        v = src[i] * mask[r, g * w + k]
        dst[i] = v if first else dst[i] + v


def _gate_rows(a, mask, g, tmp, n, T, w):
    """a (n, T, w) as gate g reads it, as (n T, w) rows: a * mask[:, g] in tmp, or a itself
    where mask is None."""
    if mask is None:
        return a.reshape(n * T, w)
    blocks, threads = elementwise_config(n * T * w)
    _mask_gate[blocks, threads](tmp.reshape(-1), a.reshape(-1), mask, n, T * w, w, g)
    return tmp.reshape(n * T, w)


def _rows3(a, n, T, width):
    return a.reshape(n, T, width)


def rnn_forward(x, kernel, rkernel, bias, mask, rec_mask, seq, cs, gates, hprev, aux, work,
                h_last, c_last, *, T, f, u, cell, act, rec_act, go_backwards, time_order,
                sm_count, zero_output=False, out=None, in_mask=None, gate_masks=False):
    from .gemm import matmul
    if in_mask is not None and not gate_masks:
        raise ValueError("rnn_forward: in_mask needs gate_masks")
    n = x.shape[0]
    if n == 0:
        return
    G = _GATES[cell]
    x2 = x.reshape(n * T, f)
    g3 = _rows3(gates, n, T, G * u)
    if gate_masks:      # gate by gate: x * in_mask[:, g] times the kernel's block g
        g2 = g3.reshape(n * T, G * u)
        k2 = kernel.reshape(f, G * u)
        im2 = in_mask.reshape(n, G * f) if in_mask is not None else None
        tmp = cuda.device_array((n * T, f), dtype=x.dtype) if in_mask is not None else None
        for g in range(G):
            b = slice(g * u, (g + 1) * u)
            matmul(_gate_rows(x, im2, g, tmp, n, T, f), k2[:, b], False, False, g2[:, b],
                   sm_count)
    else:
        matmul(x2, kernel, False, False, g3.reshape(n * T, G * u), sm_count)
    seq3 = _rows3(seq, n, T, u)
    cs3 = _rows3(cs, n, T, u) if cs is not None else seq3
    hp3 = _rows3(hprev, n, T, u)
    aux3 = _rows3(aux, n, T, u) if aux is not None else seq3
    b1 = bias.reshape(-1) if bias is not None else rkernel.reshape(-1)
    m2 = mask.reshape(n, T) if mask is not None else seq3.reshape(n, T * u)
    rm2 = rec_mask.reshape(n, G * u if gate_masks else u) if rec_mask is not None \
        else seq3.reshape(n, T * u)
    blocks, threads = elementwise_config(n * u)
    out3 = _rows3(out, n, T, u) if zero_output and out is not None else seq3
    order = [T - 1 - s if go_backwards else s for s in range(T)]
    a, ra = ACTIVATIONS[act], ACTIVATIONS[rec_act]
    for s in range(T):
        t = order[s]
        o = t if time_order else s
        op = -1 if s == 0 else (order[s - 1] if time_order else s - 1)
        _step_forward[blocks, threads](seq3, cs3, g3, hp3, aux3, b1, m2, rm2, rkernel, out3, n,
                                       T, u, s, t, o, op, cell, a, ra, bias is not None,
                                       mask is not None, rec_mask is not None,
                                       zero_output and out is not None, gate_masks)
    last = order[T - 1] if time_order else T - 1
    if h_last is not None:
        _copy_last[blocks, threads](h_last.reshape(n, u), seq3, n, u, last)
    if c_last is not None and cell == 1:
        _copy_last[blocks, threads](c_last.reshape(n, u), cs3, n, u, last)


def rnn_backward(x, kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask, dseq, dh_last,
                 dc_last, dgates, dgr, work, dkernel, drkernel, dbias, dx, *, T, f, u, cell,
                 act, rec_act, go_backwards, time_order, sm_count, zero_output=False,
                 in_mask=None, gate_masks=False):
    from .gemm import matmul
    if in_mask is not None and not gate_masks:
        raise ValueError("rnn_backward: in_mask needs gate_masks")
    n = x.shape[0]
    G = _GATES[cell]
    if n == 0:
        for out in (dkernel, drkernel, dbias):
            if out is not None:
                elementwise.fill(out, 0)
        return
    seq3 = _rows3(seq, n, T, u)
    cs3 = _rows3(cs, n, T, u) if cs is not None else seq3
    g3 = _rows3(gates, n, T, G * u)
    aux3 = _rows3(aux, n, T, u) if aux is not None else seq3
    dg3 = _rows3(dgates, n, T, G * u)
    dgr3 = _rows3(dgr, n, T, G * u) if cell == 2 else dg3
    w2 = work.reshape(n, -1)
    m2 = mask.reshape(n, T) if mask is not None else seq3.reshape(n, T * u)
    rm2 = rec_mask.reshape(n, G * u if gate_masks else u) if rec_mask is not None \
        else seq3.reshape(n, T * u)
    dseq3 = _rows3(dseq, n, T, u) if dseq is not None else seq3
    dhl = dh_last.reshape(n, u) if dh_last is not None else w2
    dcl = dc_last.reshape(n, u) if dc_last is not None and cell == 1 else w2
    blocks, threads = elementwise_config(n * u)
    _init_backward[blocks, threads](w2, dhl, dcl, n, u, dh_last is not None,
                                    dc_last is not None and cell == 1)
    order = [T - 1 - s if go_backwards else s for s in range(T)]
    a, ra = ACTIVATIONS[act], ACTIVATIONS[rec_act]
    for s in range(T - 1, -1, -1):
        t = order[s]
        o = t if time_order else s
        op = -1 if s == 0 else (order[s - 1] if time_order else s - 1)
        _step_backward[blocks, threads](dg3, dgr3, w2, dseq3, seq3, cs3, g3, aux3, m2, n, T, u,
                                        t, o, op, cell, a, ra, dseq is not None,
                                        mask is not None, zero_output)
        if s > 0:
            _propagate[blocks, threads](w2, dgr3, rkernel, rm2, n, u, t, rec_mask is not None,
                                        gate_masks)
    dg2 = dg3.reshape(n * T, G * u)
    dgr2 = dgr3.reshape(n * T, G * u)
    if gate_masks:
        _gate_masked_grads(x, kernel, hprev, in_mask, rm2 if rec_mask is not None else None,
                           dg2, dgr2, dkernel, drkernel, dx, n, T, f, u, G, sm_count)
    if dkernel is not None and not gate_masks:
        matmul(x.reshape(n * T, f), dg2, True, False, dkernel, sm_count)
    if drkernel is not None and not gate_masks:
        matmul(hprev.reshape(n * T, u), dgr2, True, False, drkernel, sm_count)
    if dbias is not None:
        if cell == 2:
            db2 = dbias.reshape(2, G * u)
            elementwise.bias_grad(dg2, db2[0])
            elementwise.bias_grad(dgr2, db2[1])
        else:
            elementwise.bias_grad(dg2, dbias.reshape(G * u))
    if dx is not None and not gate_masks:
        matmul(dg2, kernel, False, True, dx.reshape(n * T, f), sm_count)


def _gate_masked_grads(x, kernel, hprev, in_mask, rm2, dg2, dgr2, dkernel, drkernel, dx, n, T,
                       f, u, G, sm_count):
    """The weight and input gradients with per-gate masks, gate by gate over column blocks:
    dkernel[:, g] = (x * in_mask[:, g])^T dg[:, g], drkernel[:, g] = (hprev * rec_mask[:, g])^T
    dgr[:, g], dx = the sum over g of (dg[:, g] kernel[:, g]^T) * in_mask[:, g]."""
    from .gemm import matmul
    im2 = in_mask.reshape(n, G * f) if in_mask is not None else None
    xtmp = cuda.device_array((n * T, f), dtype=x.dtype) if im2 is not None else None
    htmp = cuda.device_array((n * T, u), dtype=x.dtype) if rm2 is not None else None
    k2 = kernel.reshape(f, G * u)
    dk2 = dkernel.reshape(f, G * u) if dkernel is not None else None
    drk2 = drkernel.reshape(u, G * u) if drkernel is not None else None
    for g in range(G):
        b = slice(g * u, (g + 1) * u)
        if dk2 is not None:
            matmul(_gate_rows(x, im2, g, xtmp, n, T, f), dg2[:, b], True, False, dk2[:, b],
                   sm_count)
        if drk2 is not None:
            matmul(_gate_rows(hprev, rm2, g, htmp, n, T, u), dgr2[:, b], True, False,
                   drk2[:, b], sm_count)
    if dx is None:
        return
    dx2 = dx.reshape(n * T, f)
    if im2 is None:     # the gates' products summed: one GEMM over all the columns
        matmul(dg2, k2, False, True, dx2, sm_count)
        return
    part = cuda.device_array((n * T, f), dtype=x.dtype)
    blocks, threads = elementwise_config(n * T * f)
    for g in range(G):
        b = slice(g * u, (g + 1) * u)
        matmul(dg2[:, b], k2[:, b], False, True, part, sm_count)
        _add_masked[blocks, threads](dx2.reshape(-1), part.reshape(-1), im2, n, T * f, f, g,
                                     g == 0)
