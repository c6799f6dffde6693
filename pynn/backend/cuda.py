"""The `cuda` backend: pynn's kernels as Numba CUDA kernels, every array resident on the GPU.

This is the only module of pynn that imports numba; pynn.backend imports it lazily, when
backend "cuda" is asked for or `pynn.cuda_available()` is called.  Under Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is imported) the same kernels run as
Python threads, which is how CI tests them on machines without a GPU.

Layers of this file, top to bottom:
  1. constants            activation and loss ids (the C core's numbering), float32 constants
  2. device functions     the elementwise activations and their derivatives, shared by the
                          GEMM epilogue and the stand-alone kernels (fused and unfused agree)
  3. kernels              SGEMM (tiled, register-blocked, transposes by indexing, bias +
                          activation epilogue); softmax rows; elementwise activations;
                          activation backward fused with the bias gradient; losses; optimizers;
                          the CNN kernels: im2col / col2im around that SGEMM, max / average /
                          global-average pooling, batch normalization, dropout
  4. launch helpers       block/grid sizes, the GEMM tile choice, argument checks
  5. CudaBackend          the backend interface of base.py on top of the launch helpers
  6. availability         unavailable_reason(): why the backend cannot run here, or None

Arithmetic is float32 everywhere except where the C core uses double (the loss sums and the
softmax-backward row dot product).  Python float literals would make Numba compute in float64,
so every constant in a kernel is a module-level np.float32 and every scalar argument is passed
as np.float32.  The GEMM lets the compiler contract multiply-adds into FMAs (the CPU build does
not), so results agree with the other backends to float32 rounding, not bitwise.

Determinism: every output element is written by one thread, and every reduction (bias
gradient, loss, batch-norm statistics) adds in an order fixed by the array shapes alone; there
are no atomics, so a run repeats bitwise.  The adjoints of gathers (col2im, the pooling
backwards) are gathers too: each input element sums what reaches it in a fixed order, rather
than each output scattering into its window.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from .base import Backend

SIMULATOR = bool(getattr(cuda, "simulator_enabled", False)) or \
    cuda.__name__.endswith("simulator") or type(cuda).__module__.startswith("numba.cuda.simulator")
try:   # the simulator replaces numba.cuda by numba.cuda.simulator (NUMBA_ENABLE_CUDASIM=1)
    from numba import config as _numba_config
    SIMULATOR = SIMULATOR or bool(_numba_config.ENABLE_CUDASIM)
except ImportError:   # pragma: no cover
    pass

# ==== 1. constants =========================================================================

# Activation ids, as in csrc/pynn.h.
ACT_LINEAR, ACT_RELU, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH, ACT_SOFTMAX, ACT_GELU = range(7)
ACTIVATION_IDS = {"linear": ACT_LINEAR, "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU,
                  "sigmoid": ACT_SIGMOID, "tanh": ACT_TANH, "softmax": ACT_SOFTMAX,
                  "gelu": ACT_GELU}
LOSS_MSE, LOSS_BCE, LOSS_CCE = range(3)
LOSS_IDS = {"mse": LOSS_MSE, "bce": LOSS_BCE, "cce": LOSS_CCE, "scce": LOSS_CCE}

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_HALF = np.float32(0.5)
_SQRT1_2 = np.float32(0.70710678118654752440)
_INV_SQRT_2PI = np.float32(0.39894228040143267794)
_PROB_EPS = np.float32(1e-7)              # Keras's epsilon: probabilities clipped to
_PROB_MAX = np.float32(1.0) - _PROB_EPS   # [EPS, 1 - EPS]
_D0 = np.float64(0.0)
_NEG_INF = np.float32(-np.inf)            # max pooling's padding

# Rows of the loss handled by one block: the loss sum is cut into blocks of this many rows
# (each summed by a fixed-shape tree) whose partial sums are added in block order.
LOSS_ROWS_PER_BLOCK = 1024
LOSS_THREADS = 256           # at most; fewer for small batches
BIAS_TX, BIAS_TY = 32, 8     # bias gradient: columns x row lanes per block, at most
ELEMENTWISE_THREADS = 256    # at most; fewer for tiny arrays
# Batch-norm column sums: rows are cut into chunks of this many rows, one block per chunk
# and group of BN_TX columns; the chunks' partial sums are then added in chunk order.  A
# constant (not derived from the GPU) so the float32 result is the same on every device.
BN_ROWS_PER_CHUNK = 256
BN_TX, BN_TY = 32, 8         # columns x row lanes per block, at most


# ==== 2. device functions ====================================================================

@cuda.jit(device=True, inline=True)
def _sigmoid(z):
    """1 / (1 + exp(-z)) as the C core writes it for z >= 0; for z < 0 the equal
    exp(z) / (1 + exp(z)), so exp never overflows (on a GPU the overflow would give the
    right 0, but the simulator's math.exp raises)."""
    if z >= _F0:
        return _F1 / (_F1 + math.exp(-z))
    e = math.exp(z)
    return e / (_F1 + e)


@cuda.jit(device=True, inline=True)
def _act(z, act, alpha):
    """activation(z) for every elementwise activation (softmax is row-wise, elsewhere)."""
    if act == ACT_RELU:
        return z if z > _F0 else _F0
    if act == ACT_LEAKY_RELU:
        return z if z > _F0 else alpha * z
    if act == ACT_SIGMOID:
        return _sigmoid(z)
    if act == ACT_TANH:
        return math.tanh(z)
    if act == ACT_GELU:
        return _HALF * z * (_F1 + math.erf(z * _SQRT1_2))
    return z


@cuda.jit(device=True, inline=True)
def _act_grad(x, y, dy, act, alpha):
    """activation'(x) dy, x the pre-activation and y = activation(x)."""
    if act == ACT_RELU:
        return dy if x > _F0 else _F0
    if act == ACT_LEAKY_RELU:
        return dy if x > _F0 else alpha * dy
    if act == ACT_SIGMOID:
        return dy * y * (_F1 - y)
    if act == ACT_TANH:
        return dy * (_F1 - y * y)
    if act == ACT_GELU:
        # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        cdf = _HALF * (_F1 + math.erf(x * _SQRT1_2))
        pdf = _INV_SQRT_2PI * math.exp(-_HALF * x * x)
        return dy * (cdf + x * pdf)
    return dy


@cuda.jit(device=True, inline=True)
def _clip_prob(p):
    return _PROB_EPS if p < _PROB_EPS else (_PROB_MAX if p > _PROB_MAX else p)


@cuda.jit(device=True, inline=True)
def _target_at(target, labels, r, j, sparse):
    """target[r, j], or the one-hot row of labels[r] for sparse CCE."""
    if sparse:
        return _F1 if labels[r] == j else _F0
    return target[r, j]


# ==== 3. kernels ===============================================================================

# ---- 3a. SGEMM -------------------------------------------------------------------------------
#
# C (M x N) = op(A) op(B), op(A) M x K and op(B) K x N, with the epilogue
#   z = C + bias (bias optional), y = activation(z), z written too when write_z.
#
# The classic shared-memory design: a block computes a BM x BN tile of C, walking K in
# steps of BK.  Each step loads a BM x BK panel of op(A) and a BK x BN panel of op(B)
# into shared memory; each of the (BM/TM) x (BN/TN) threads then accumulates a TM x TN
# block of C in registers from TM + TN shared loads per k (the register blocking that
# makes the kernel compute-bound rather than shared-memory-bound).
#   - A thread owns rows ty + (BM/TM) i and columns tx + (BN/TN) j (interleaved, not a
#     contiguous TM x TN patch): the 16 threads of a half-warp that share ty then read 16
#     consecutive shared words (no bank conflicts, no float4 needed), and each store of
#     the epilogue writes 16 consecutive floats of a row of C (coalesced).
#   - Transposes are handled by indexing when a panel is loaded: both panels are stored
#     k-major (As[k, m], Bs[k, n]) whatever the layout in global memory, and the load
#     index runs along the contiguous axis of the global array, so loads stay coalesced
#     and no transposed copy is ever made.  The rows of the shared panels are padded by 4
#     floats so that the transposing stores do not collide in one bank.
#   - Two shared buffers: the next panels are fetched from global memory into registers
#     before the current ones are multiplied and stored into the other buffer after, so
#     global latency overlaps the arithmetic and one barrier per K step suffices.
#   - Edges are guarded: out-of-range panel elements load as 0, out-of-range outputs are
#     not stored, so any M, N, K works (K = 0 gives bias + activation of 0).
# Tile sizes, thread counts and the transposes are compile-time constants of each kernel
# (closures of _make_gemm), so index arithmetic folds and the register arrays unroll.
# Checked with ptxas for sm_90 (numba-cuda 0.30, CUDA 13): the large tile uses 198
# registers with no spills and keeps the 64 accumulators in registers through the K loop
# (they go to local memory once, for the epilogue's loop); the others need 76-126 registers.

class GemmConfig:
    def __init__(self, name, bm, bn, bk, tm, tn):
        self.name, self.bm, self.bn, self.bk, self.tm, self.tn = name, bm, bn, bk, tm, tn
        self.threads = (bm // tm) * (bn // tn)
        assert (bm * bk) % self.threads == 0 and (bk * bn) % self.threads == 0

    def blocks(self, m, n):
        return ((n + self.bn - 1) // self.bn, (m + self.bm - 1) // self.bm)

    def __repr__(self):
        return f"<GemmConfig {self.name} {self.bm}x{self.bn}x{self.bk}, {self.tm}x{self.tn}/thread>"


# From the largest tile (best data reuse, for big products) to the smallest (enough blocks
# to occupy the GPU when M x N is small).  gemm_config() picks one by shape.
GEMM_LARGE = GemmConfig("large", 128, 128, 8, 8, 8)     # 256 threads, 64 accumulators each
GEMM_MEDIUM = GemmConfig("medium", 64, 64, 8, 4, 4)     # 256 threads
GEMM_SMALL = GemmConfig("small", 32, 32, 8, 4, 4)       # 64 threads
GEMM_TINY = GemmConfig("tiny", 16, 16, 8, 4, 4)         # 16 threads
GEMM_CONFIGS = (GEMM_LARGE, GEMM_MEDIUM, GEMM_SMALL, GEMM_TINY)

_PAD = 4


def _make_gemm(cfg, trans_a, trans_b):
    BM, BN, BK, TM, TN = cfg.bm, cfg.bn, cfg.bk, cfg.tm, cfg.tn
    THREADS_X = BN // TN          # threads along N
    THREADS_Y = BM // TM          # threads along M
    NT = THREADS_X * THREADS_Y
    A_LOADS = BM * BK // NT       # panel elements each thread fetches per K step
    B_LOADS = BK * BN // NT
    TRANS_A, TRANS_B = bool(trans_a), bool(trans_b)
    A_SHAPE = (2, BK, BM + _PAD)  # shared panels: 2 buffers, k-major, rows padded
    B_SHAPE = (2, BK, BN + _PAD)

    @cuda.jit(device=True, inline=True)
    def load_a(a, m, k, m0, k0, tid, l):
        """Element l of this thread's share of the op(A) panel: (value, k index, m index)."""
        e = tid + NT * l
        if TRANS_A:      # a is K x M: run along m (contiguous)
            kk = e // BM
            mm = e % BM
            gm, gk = m0 + mm, k0 + kk
            v = a[gk, gm] if (gm < m and gk < k) else _F0
        else:            # a is M x K: run along k (contiguous)
            mm = e // BK
            kk = e % BK
            gm, gk = m0 + mm, k0 + kk
            v = a[gm, gk] if (gm < m and gk < k) else _F0
        return v, kk, mm

    @cuda.jit(device=True, inline=True)
    def load_b(b, n, k, n0, k0, tid, l):
        """Element l of this thread's share of the op(B) panel: (value, k index, n index)."""
        e = tid + NT * l
        if TRANS_B:      # b is N x K: run along k (contiguous)
            nn = e // BK
            kk = e % BK
            gn, gk = n0 + nn, k0 + kk
            v = b[gn, gk] if (gn < n and gk < k) else _F0
        else:            # b is K x N: run along n (contiguous)
            kk = e // BN
            nn = e % BN
            gn, gk = n0 + nn, k0 + kk
            v = b[gk, gn] if (gn < n and gk < k) else _F0
        return v, kk, nn

    def gemm_bias_act(z, y, a, b, bias, m, n, k, has_bias, act, alpha, write_z):
        As = cuda.shared.array(A_SHAPE, float32)
        Bs = cuda.shared.array(B_SHAPE, float32)
        acc = cuda.local.array((TM, TN), float32)
        fa = cuda.local.array(TM, float32)
        fb = cuda.local.array(TN, float32)
        ra = cuda.local.array(A_LOADS, float32)
        rb = cuda.local.array(B_LOADS, float32)
        tid = cuda.threadIdx.x
        tx = tid % THREADS_X
        ty = tid // THREADS_X
        m0 = cuda.blockIdx.y * BM
        n0 = cuda.blockIdx.x * BN
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = _F0
        ntiles = (k + BK - 1) // BK

        # first K step's panels -> buffer 0
        if ntiles > 0:
            for l in range(A_LOADS):
                v, kk, mm = load_a(a, m, k, m0, 0, tid, l)
                As[0, kk, mm] = v
            for l in range(B_LOADS):
                v, kk, nn = load_b(b, n, k, n0, 0, tid, l)
                Bs[0, kk, nn] = v
        cuda.syncthreads()

        # K steps: prefetch the next panels into registers, multiply the current ones
        for t in range(ntiles):
            cur = t % 2
            k_next = (t + 1) * BK
            has_next = t + 1 < ntiles
            if has_next:
                for l in range(A_LOADS):
                    v, kk, mm = load_a(a, m, k, m0, k_next, tid, l)
                    ra[l] = v
                for l in range(B_LOADS):
                    v, kk, nn = load_b(b, n, k, n0, k_next, tid, l)
                    rb[l] = v
            for kk in range(BK):
                for i in range(TM):
                    fa[i] = As[cur, kk, ty + THREADS_Y * i]
                for j in range(TN):
                    fb[j] = Bs[cur, kk, tx + THREADS_X * j]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += fa[i] * fb[j]
            if has_next:
                for l in range(A_LOADS):
                    e = tid + NT * l
                    if TRANS_A:
                        As[1 - cur, e // BM, e % BM] = ra[l]
                    else:
                        As[1 - cur, e % BK, e // BK] = ra[l]
                for l in range(B_LOADS):
                    e = tid + NT * l
                    if TRANS_B:
                        Bs[1 - cur, e % BK, e // BK] = rb[l]
                    else:
                        Bs[1 - cur, e // BN, e % BN] = rb[l]
            cuda.syncthreads()

        # epilogue: bias, activation, guarded stores
        for i in range(TM):
            row = m0 + ty + THREADS_Y * i
            if row < m:
                for j in range(TN):
                    col = n0 + tx + THREADS_X * j
                    if col < n:
                        v = acc[i, j]
                        if has_bias:
                            v += bias[col]
                        if write_z:
                            z[row, col] = v
                        y[row, col] = _act(v, act, alpha)

    gemm_bias_act.__name__ = gemm_bias_act.__qualname__ = \
        f"sgemm_{cfg.name}_{'t' if TRANS_A else 'n'}{'t' if TRANS_B else 'n'}"
    return cuda.jit(gemm_bias_act)


_GEMM_KERNELS = {}


def gemm_kernel(cfg, trans_a, trans_b):
    """The compiled SGEMM for a tile config and transposes (built on first use)."""
    key = (cfg.name, bool(trans_a), bool(trans_b))
    if key not in _GEMM_KERNELS:
        _GEMM_KERNELS[key] = _make_gemm(cfg, trans_a, trans_b)
    return _GEMM_KERNELS[key]


# ---- 3b. activations ------------------------------------------------------------------------

@cuda.jit
def _activation_forward_kernel(y, x, rows, cols, act, alpha):
    """y = act(x) elementwise over (rows x cols); y may be x."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        c = i - r * cols
        y[r, c] = _act(x[r, c], act, alpha)


@cuda.jit
def _activation_backward_kernel(dx, x, y, dy, rows, cols, act, alpha):
    """dx = act'(x) dy elementwise; dx may be dy."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        c = i - r * cols
        dx[r, c] = _act_grad(x[r, c], y[r, c], dy[r, c], act, alpha)


@cuda.jit
def _softmax_rows_kernel(y, x, rows, cols):
    """y[r] = softmax(x[r]), one thread per row: max-subtracted exp, a float sum in index
    order, then e / s (the C core's formula); y may be x."""
    r = cuda.grid(1)
    if r < rows:
        mx = x[r, 0]
        for j in range(1, cols):
            v = x[r, j]
            if v > mx:
                mx = v
        s = _F0
        for j in range(cols):
            e = math.exp(x[r, j] - mx)
            y[r, j] = e
            s += e
        for j in range(cols):
            y[r, j] = y[r, j] / s


@cuda.jit
def _softmax_backward_rows_kernel(dx, y, dy, rows, cols):
    """dx[r] = y_i (dy_i - sum_j dy_j y_j), the dot product in double as in the C core
    (dy_i - dot cancels); dx may be dy."""
    r = cuda.grid(1)
    if r < rows:
        dot = _D0
        for j in range(cols):
            dot += float64(dy[r, j] * y[r, j])
        dotf = float32(dot)
        for j in range(cols):
            dx[r, j] = y[r, j] * (dy[r, j] - dotf)


@cuda.jit
def _backward_bias_grad_kernel(dz, db, z, y, dy, rows, cols, act, alpha, apply_act, write_db):
    """dz = act'(z) dy (when apply_act, else dz is dy and unchanged) and db = column sums
    of dz, in one pass over the data.

    Block (TX, TY): TX consecutive columns (coalesced rows), TY row lanes.  Lane q sums rows
    q, q + TY, q + 2 TY, ... in order; the TY lane sums are then added in lane order.  TY
    depends on `rows` alone, so the order -- and the float32 result -- repeat bitwise."""
    part = cuda.shared.array((BIAS_TY, BIAS_TX), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    lanes = cuda.blockDim.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    s = _F0
    if j < cols:
        for r in range(ty, rows, lanes):
            g = dy[r, j]
            if apply_act:
                g = _act_grad(z[r, j], y[r, j], g, act, alpha)
                dz[r, j] = g
            s += g
    part[ty, tx] = s
    cuda.syncthreads()
    if write_db and ty == 0 and j < cols:
        total = part[0, tx]
        for q in range(1, lanes):
            total += part[q, tx]
        db[j] = total


@cuda.jit
def _fill_kernel(a, n, value):
    i = cuda.grid(1)
    if i < n:
        a[i] = value


# ---- 3c. losses ------------------------------------------------------------------------------
# Each row function returns the row's per-sample loss in double (sums along the row in index
# order, as the C core) and writes the row of d loss / d pred when write_grad.

@cuda.jit(device=True, inline=True)
def _mse_row(g, p, t, labels, r, cols, size, sparse, write_grad):
    s = _D0
    for j in range(cols):
        d = p[r, j] - _target_at(t, labels, r, j, sparse)
        s += float64(d * d)
        if write_grad:
            g[r, j] = _F2 * d / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _bce_probs_row(g, p, t, labels, r, cols, size, sparse, write_grad):
    s = _D0
    for j in range(cols):
        pj = p[r, j]
        tj = _target_at(t, labels, r, j, sparse)
        pc = _clip_prob(pj)
        s += float64(-(tj * math.log(pc) + (_F1 - tj) * math.log(_F1 - pc)))
        if write_grad:
            # where clipping changed p the loss is flat in p: zero gradient
            if pj < _PROB_EPS or pj > _PROB_MAX:
                g[r, j] = _F0
            else:
                g[r, j] = (pc - tj) / (pc * (_F1 - pc)) / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _bce_logits_row(g, z, t, labels, r, cols, size, sparse, write_grad):
    s = _D0
    for j in range(cols):
        zj = z[r, j]
        tj = _target_at(t, labels, r, j, sparse)
        # max(z, 0) - z t + log1p(exp(-|z|)): never overflows
        s += float64(max(zj, _F0) - zj * tj + math.log1p(math.exp(-abs(zj))))
        if write_grad:
            g[r, j] = (_sigmoid(zj) - tj) / size
    return s / cols


@cuda.jit(device=True, inline=True)
def _cce_probs_row(g, p, t, labels, r, cols, frows, sparse, write_grad):
    # Keras 3: q = p / sum(p), clipped; loss -sum t log q; the gradient goes through the
    # normalisation: with g'_j = -t_j / q_j where q_j was not clipped (else 0),
    # grad_i = (g'_i - sum_j g'_j q_j) / s / rows
    row_sum = _D0
    for j in range(cols):
        row_sum += float64(p[r, j])
    s = float32(row_sum)
    loss = _D0
    dot = _D0
    for j in range(cols):
        q = p[r, j] / s
        qc = _clip_prob(q)
        tj = _target_at(t, labels, r, j, sparse)
        gq = _F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / qc
        loss -= float64(tj * math.log(qc))
        dot += float64(gq * q)
    if write_grad:
        dotf = float32(dot)
        for j in range(cols):
            q = p[r, j] / s
            tj = _target_at(t, labels, r, j, sparse)
            gq = _F0 if (q < _PROB_EPS or q > _PROB_MAX) else -tj / _clip_prob(q)
            g[r, j] = (gq - dotf) / s / frows
    return loss


@cuda.jit(device=True, inline=True)
def _cce_logits_row(g, z, t, labels, r, cols, frows, sparse, write_grad):
    # loss -sum t (z - lse) (right for soft targets not summing to 1);
    # grad (softmax(z) sum t - t) / rows
    mx = z[r, 0]
    for j in range(1, cols):
        v = z[r, j]
        if v > mx:
            mx = v
    exp_sum = _D0
    for j in range(cols):
        exp_sum += float64(math.exp(z[r, j] - mx))
    s = float32(exp_sum)
    log_s = math.log(s)
    loss = _D0
    t_sum = _D0
    for j in range(cols):
        tj = _target_at(t, labels, r, j, sparse)
        loss -= float64(tj * ((z[r, j] - mx) - log_s))
        t_sum += float64(tj)
    if write_grad:
        t_sumf = float32(t_sum)
        for j in range(cols):
            g[r, j] = (math.exp(z[r, j] - mx) / s * t_sumf - _target_at(t, labels, r, j, sparse)) / frows
    return loss


@cuda.jit
def _loss_kernel(partials, grad, pred, target, labels, rows, cols, kind, from_logits, sparse,
                 write_grad):
    """Per-row losses (and gradient rows) of the LOSS_ROWS_PER_BLOCK rows of this block;
    thread q takes rows q, q + T, ... in order, then the T thread sums are added by a fixed
    tree in shared memory: partials[block] = the block's sum, in double."""
    part = cuda.shared.array(LOSS_THREADS, float64)
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    r0 = cuda.blockIdx.x * LOSS_ROWS_PER_BLOCK
    r1 = min(r0 + LOSS_ROWS_PER_BLOCK, rows)
    size = float32(rows * cols)
    frows = float32(rows)
    s = _D0
    for r in range(r0 + tid, r1, nthreads):
        if kind == LOSS_MSE:
            s += _mse_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
        elif kind == LOSS_BCE:
            if from_logits:
                s += _bce_logits_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
            else:
                s += _bce_probs_row(grad, pred, target, labels, r, cols, size, sparse, write_grad)
        else:
            if from_logits:
                s += _cce_logits_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad)
            else:
                s += _cce_probs_row(grad, pred, target, labels, r, cols, frows, sparse, write_grad)
    part[tid] = s
    cuda.syncthreads()
    half = nthreads // 2
    while half > 0:                  # tree: part[i] += part[i + half], halving
        if tid < half:
            part[tid] += part[tid + half]
        cuda.syncthreads()
        half //= 2
    if tid == 0:
        partials[cuda.blockIdx.x] = part[0]


@cuda.jit
def _sum_in_order_kernel(out, partials, n):
    """out[0] = partials[0] + partials[1] + ... in index order (one thread)."""
    if cuda.grid(1) == 0:
        s = _D0
        for i in range(n):
            s += partials[i]
        out[0] = s


# ---- 3d. optimizers (Keras 3 rules, the float32 order of csrc/optimizers.c) -------------------

@cuda.jit
def _sgd_kernel(w, m, g, n, lr, momentum, use_momentum, nesterov):
    i = cuda.grid(1)
    if i < n:
        if not use_momentum:
            w[i] -= lr * g[i]
        else:
            mi = momentum * m[i] - lr * g[i]
            m[i] = mi
            if nesterov:
                w[i] += momentum * mi - lr * g[i]
            else:
                w[i] += mi


@cuda.jit
def _adam_kernel(w, m, v, g, n, lr_t, one_minus_beta1, one_minus_beta2, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        mi = m[i] + (gi - m[i]) * one_minus_beta1
        vi = v[i] + (gi * gi - v[i]) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        w[i] -= lr_t * mi / (math.sqrt(vi) + epsilon)


@cuda.jit
def _rmsprop_kernel(w, v, mom, g, n, lr, rho, one_minus_rho, momentum, use_momentum, epsilon):
    i = cuda.grid(1)
    if i < n:
        gi = g[i]
        vi = rho * v[i] + one_minus_rho * (gi * gi)
        v[i] = vi
        inc = lr * gi / math.sqrt(vi + epsilon)
        if not use_momentum:
            w[i] -= inc
        else:
            mo = momentum * mom[i] + inc
            mom[i] = mo
            w[i] -= mo


# ---- 3e. convolution and pooling (NHWC) -------------------------------------------------------
# Geometry as pynn/backend/base.py: output (n, i, j) sees input rows i*sh - pt + a, a in
# [0, KH), and columns j*sw - pl + b, b in [0, KW); what falls outside the input is padding.
# A forward kernel has one thread per output element and reads its window.  A backward
# kernel has one thread per INPUT element and gathers from the windows that contain it:
# element row h lies at offset a of window row i exactly when h + pt - a = i*sh, so the
# thread walks a (and b) in increasing order and keeps the offsets that divide evenly and
# land inside the output.  That visits the contributions in the order in which the
# reference's _scatter_windows adds them, writes each element once, and needs no atomics.
# Flat indices are decomposed in NHWC (or row-major (r, q)) order, so consecutive threads
# touch consecutive channels: coalesced loads and stores.

@cuda.jit(device=True, inline=True)
def _nhwc(e, h, w, c):
    """(n, row, col, channel) of flat element e of an (N, h, w, c) array."""
    ch = e % c
    t = e // c
    col = t % w
    t = t // w
    return t // h, t % h, col, ch


@cuda.jit(device=True, inline=True)
def _window_of(pos, pad, offset, stride, out):
    """The output index whose window holds input position `pos` at `offset`, or -1."""
    t = pos + pad - offset
    if t < 0 or t % stride != 0:
        return -1
    o = t // stride
    return o if o < out else -1


@cuda.jit
def _im2col_kernel(cols, x, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow):
    """cols[(n, i, j), (a, b, ch)] = x[n, i*sh - pt + a, j*sw - pl + b, ch], 0 for padding;
    one thread per element of cols, consecutive threads along a row of cols."""
    e = cuda.grid(1)
    if e < total:
        k = kh * kw * c
        r = e // k
        q = e - r * k
        ch = q % c
        b = (q // c) % kw
        a = q // (c * kw)
        j = r % ow
        i = (r // ow) % oh
        n = r // (ow * oh)
        row = i * sh - pt + a
        col = j * sw - pl + b
        v = _F0
        if row >= 0 and row < h and col >= 0 and col < w:
            v = x[n, row, col, ch]
        cols[r, q] = v


@cuda.jit
def _col2im_kernel(dx, cols, total, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum of the cols entries that im2col copied from it, in
    (a, b) order (the adjoint of _im2col_kernel; 0 where no window reaches)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = _nhwc(e, h, w, c)
        s = _F0
        for a in range(kh):
            i = _window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(kw):
                    j = _window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        s += cols[(n * oh + i) * ow + j, (a * kw + b) * c + ch]
        dx[n, row, col, ch] = s


@cuda.jit(device=True, inline=True)
def _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl):
    """(max, p) over window (i, j), padding as -inf: p = a * pw + b is the first maximum in
    row-major window order (np.argmax's ties), and a NaN wins as in np.max / np.argmax.
    Shared by the forward and the backward, so both pick the same element."""
    row0 = i * sh - pt
    col0 = j * sw - pl
    best = _NEG_INF
    p = 0
    for a in range(ph):
        for b in range(pw):
            row = row0 + a
            col = col0 + b
            v = _NEG_INF
            if row >= 0 and row < h and col >= 0 and col < w:
                v = x[n, row, col, ch]
            if v > best or (v != v and best == best):
                best = v
                p = a * pw + b
    return best, p


@cuda.jit
def _maxpool_forward_kernel(y, x, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """y = the window max; 0 where it is -inf (a window of padding only), as the reference."""
    e = cuda.grid(1)
    if e < total:
        n, i, j, ch = _nhwc(e, oh, ow, c)
        best, p = _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl)
        y[n, i, j, ch] = _F0 if best == _NEG_INF else best


@cuda.jit
def _maxpool_backward_kernel(dx, x, dy, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum of dy over the windows whose first maximum is this
    element.  Each candidate window's argmax is recomputed from x (PH*PW reads per window
    containing the element: cheap for pooling-sized windows, and no index buffer)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = _nhwc(e, h, w, c)
        s = _F0
        for a in range(ph):
            i = _window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(pw):
                    j = _window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        best, p = _window_max(x, n, i, j, ch, h, w, ph, pw, sh, sw, pt, pl)
                        if p == a * pw + b:
                            s += dy[n, i, j, ch]
        dx[n, row, col, ch] = s


@cuda.jit(device=True, inline=True)
def _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl):
    """How many input (non-padding) elements window (i, j) holds."""
    row0 = i * sh - pt
    col0 = j * sw - pl
    rows = min(row0 + ph, h) - max(row0, 0)
    cols = min(col0 + pw, w) - max(col0, 0)
    if rows <= 0 or cols <= 0:
        return 0
    return rows * cols


@cuda.jit
def _avgpool_forward_kernel(y, x, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """y = (sum of the window's input elements, row-major) / their count; 0 if none."""
    e = cuda.grid(1)
    if e < total:
        n, i, j, ch = _nhwc(e, oh, ow, c)
        row0 = i * sh - pt
        col0 = j * sw - pl
        s = _F0
        for a in range(ph):
            row = row0 + a
            if row >= 0 and row < h:
                for b in range(pw):
                    col = col0 + b
                    if col >= 0 and col < w:
                        s += x[n, row, col, ch]
        count = _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl)
        y[n, i, j, ch] = s / float32(count) if count > 0 else _F0


@cuda.jit
def _avgpool_backward_kernel(dx, dy, total, h, w, c, ph, pw, sh, sw, pt, pl, oh, ow):
    """dx[n, row, col, ch] = the sum over the windows holding it of dy / that window's
    count (the quotient first, as the reference: same float32 values)."""
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = _nhwc(e, h, w, c)
        s = _F0
        for a in range(ph):
            i = _window_of(row, pt, a, sh, oh)
            if i >= 0:
                for b in range(pw):
                    j = _window_of(col, pl, b, sw, ow)
                    if j >= 0:
                        count = _window_count(i, j, h, w, ph, pw, sh, sw, pt, pl)
                        s += dy[n, i, j, ch] / float32(count)
        dx[n, row, col, ch] = s


@cuda.jit
def _global_avgpool_forward_kernel(y, x, nc, h, w, c, area):
    """y[n, ch] = (sum over rows, then columns, in order) / (h*w); one thread per (n, ch),
    consecutive threads on consecutive channels (coalesced)."""
    e = cuda.grid(1)
    if e < nc:
        n = e // c
        ch = e - n * c
        s = _F0
        for row in range(h):
            for col in range(w):
                s += x[n, row, col, ch]
        y[n, ch] = s / area


@cuda.jit
def _global_avgpool_backward_kernel(dx, dy, total, h, w, c, area):
    e = cuda.grid(1)
    if e < total:
        n, row, col, ch = _nhwc(e, h, w, c)
        dx[n, row, col, ch] = dy[n, ch] / area


# ---- 3f. batch normalization (per column of (rows, C)) and dropout -------------------------------
# The statistics are column sums over many rows (N*H*W) and few columns, so one block per
# column would leave most of the GPU idle.  The rows are cut into chunks of
# BN_ROWS_PER_CHUNK: block (column group, chunk) sums its chunk like the bias gradient does
# (lane q takes rows q, q + TY, ... in order, the lanes are then added in lane order) into a
# (chunks, C) array of partials, and a second kernel adds each column's partials in chunk
# order.  Chunk size and TY depend on nothing but `rows`, so the sums repeat bitwise.  The
# statistic is computed in two passes over x, as the reference does: the mean, then the mean
# of (x - mean)^2, which does not cancel catastrophically as E[x^2] - mean^2 would.

BN_SUM, BN_SQUARED_DEVIATION, BN_GRADIENTS = range(3)


@cuda.jit
def _bn_partials_kernel(p0, p1, x, dy, mean, inv_std, rows, cols, mode):
    """Partial column sums of one chunk of rows (blockIdx.y) for blockDim.x columns:
      BN_SUM: x into p0;  BN_SQUARED_DEVIATION: (x - mean)^2 into p0;
      BN_GRADIENTS: dy into p0 and dy * xhat into p1, xhat = (x - mean) * inv_std."""
    part0 = cuda.shared.array((BN_TY, BN_TX), float32)
    part1 = cuda.shared.array((BN_TY, BN_TX), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    lanes = cuda.blockDim.y
    j = cuda.blockIdx.x * cuda.blockDim.x + tx
    chunk = cuda.blockIdx.y
    r1 = min((chunk + 1) * BN_ROWS_PER_CHUNK, rows)
    s0 = _F0
    s1 = _F0
    if j < cols:
        if mode == BN_SUM:
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                s0 += x[r, j]
        elif mode == BN_SQUARED_DEVIATION:
            m = mean[j]
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                d = x[r, j] - m
                s0 += d * d
        else:
            m = mean[j]
            istd = inv_std[j]
            for r in range(chunk * BN_ROWS_PER_CHUNK + ty, r1, lanes):
                g = dy[r, j]
                s0 += g
                s1 += g * ((x[r, j] - m) * istd)
    part0[ty, tx] = s0
    part1[ty, tx] = s1
    cuda.syncthreads()
    if ty == 0 and j < cols:
        t0 = part0[0, tx]
        t1 = part1[0, tx]
        for q in range(1, lanes):
            t0 += part0[q, tx]
            t1 += part1[q, tx]
        p0[chunk, j] = t0
        if mode == BN_GRADIENTS:
            p1[chunk, j] = t1


@cuda.jit(device=True, inline=True)
def _sum_chunks(p, nchunks, j):
    s = _F0
    for ch in range(nchunks):
        s += p[ch, j]
    return s


@cuda.jit
def _bn_mean_kernel(mean, p0, nchunks, cols, frows):
    j = cuda.grid(1)
    if j < cols:
        mean[j] = _sum_chunks(p0, nchunks, j) / frows


@cuda.jit
def _bn_variance_kernel(inv_std, moving_mean, moving_variance, mean, p0, nchunks, cols, frows,
                        momentum, one_minus_momentum, epsilon):
    """The biased variance -> inv_std, and the moving statistics updated on the device
    (moving = moving * momentum + stat * (1 - momentum), Keras 3)."""
    j = cuda.grid(1)
    if j < cols:
        var = _sum_chunks(p0, nchunks, j) / frows
        inv_std[j] = _F1 / math.sqrt(var + epsilon)
        moving_mean[j] = moving_mean[j] * momentum + mean[j] * one_minus_momentum
        moving_variance[j] = moving_variance[j] * momentum + var * one_minus_momentum


@cuda.jit
def _bn_gradient_sums_kernel(sum_dy, sum_dy_xhat, p0, p1, nchunks, cols):
    j = cuda.grid(1)
    if j < cols:
        sum_dy[j] = _sum_chunks(p0, nchunks, j)
        sum_dy_xhat[j] = _sum_chunks(p1, nchunks, j)


@cuda.jit
def _bn_normalize_kernel(y, x, mean, stat, gamma, beta, rows, cols, stat_is_variance, epsilon,
                         has_gamma, has_beta):
    """y = (x - mean) * inv_std * gamma + beta, inv_std = stat (training), or
    1 / sqrt(stat + epsilon) with stat the moving variance (inference)."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        j = i - r * cols
        s = stat[j]
        if stat_is_variance:
            s = _F1 / math.sqrt(s + epsilon)
        v = (x[r, j] - mean[j]) * s
        if has_gamma:
            v = v * gamma[j]
        if has_beta:
            v = v + beta[j]
        y[r, j] = v


@cuda.jit
def _bn_backward_dx_kernel(dx, x, dy, gamma, mean, inv_std, sum_dy, sum_dy_xhat, rows, cols,
                           frows, has_gamma):
    """dx = gamma * inv_std * (dy - sum(dy) / rows - xhat * sum(dy * xhat) / rows)."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        j = i - r * cols
        istd = inv_std[j]
        xhat = (x[r, j] - mean[j]) * istd
        scale = gamma[j] * istd if has_gamma else istd
        dx[r, j] = scale * (dy[r, j] - sum_dy[j] / frows - xhat * (sum_dy_xhat[j] / frows))


@cuda.jit
def _multiply_kernel(out, a, b, n):
    """out = a * b elementwise (dropout: the mask drawn on the host); out may be a."""
    i = cuda.grid(1)
    if i < n:
        out[i] = a[i] * b[i]


# ==== 4. launch helpers ==========================================================================

def _pow2_at_least(n, cap):
    """The smallest power of two >= n, at most cap: a block no wider than the work (tiny
    arrays get tiny blocks, which also keeps the simulator quick) and a tree-friendly size."""
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def _elementwise_config(n):
    threads = _pow2_at_least(n, ELEMENTWISE_THREADS)
    return (n + threads - 1) // threads, threads


def _as_2d(a):
    return a if a.ndim == 2 else a.reshape(-1, a.shape[-1] if a.ndim else 1)


def _as_1d(a):
    return a if a.ndim == 1 else a.reshape(-1)


def _same_array(a, b):
    if a is b:
        return True
    try:
        return (a.__cuda_array_interface__["data"][0] == b.__cuda_array_interface__["data"][0]
                and a.shape == b.shape)
    except (AttributeError, KeyError, TypeError):
        return False


def _check_shape(where, name, arr, shape):
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{where}: expected {name} of shape {tuple(shape)}, received shape "
                         f"{tuple(arr.shape)}")


def _check_float32(where, **arrays):
    for name, arr in arrays.items():
        if arr is not None and arr.dtype != np.float32:
            raise TypeError(f"{where}: expected {name} as a float32 device array, received "
                            f"dtype {arr.dtype}")


def gemm_config(m, n, sm_count):
    """The largest tile that still gives (nearly) every SM a block; the smallest when even
    that cannot (small products are latency-bound: more, smaller blocks win)."""
    for cfg in GEMM_CONFIGS[:-1]:
        bx, by = cfg.blocks(m, n)
        if 4 * bx * by >= 3 * sm_count:
            return cfg
    return GEMM_TINY


def launch_gemm(z, y, a, b, bias, trans_a, trans_b, act, alpha, write_z, sm_count, cfg=None):
    """y = act(op(a) op(b) + bias) (and z = the pre-activation when write_z); all device
    arrays, shapes already checked.  cfg forces a tile configuration (tests)."""
    m, n = y.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if cfg is None:
        cfg = gemm_config(m, n, sm_count)
    kernel = gemm_kernel(cfg, trans_a, trans_b)
    has_bias = bias is not None
    kernel[cfg.blocks(m, n), cfg.threads](z, y, a, b, bias if has_bias else y[0], m, n, k,
                                          has_bias, act, np.float32(alpha), write_z)


# ==== 5. the backend ===============================================================================

class CudaBackend(Backend):
    """Backend arrays are Numba device arrays; nothing crosses to the host except through
    from_host / copy_from_host (in) and to_host / the loss value (out)."""
    name = "cuda"

    def __init__(self):
        if SIMULATOR:
            self.sm_count = 132        # as an H100, so tile choices match a real GPU's
        else:
            device = cuda.get_current_device()
            self.sm_count = int(device.MULTIPROCESSOR_COUNT)
        self._dummy_labels = cuda.device_array(1, dtype=np.int64)
        self._partials = {}
        self._loss_out = cuda.device_array(1, dtype=np.float64)
        self._loss_host = cuda.pinned_array(1, dtype=np.float64)

    # ---- arrays ----------------------------------------------------------------------------
    def from_host(self, x):
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.int64):
            x = x.astype(np.float32)
        return cuda.to_device(np.ascontiguousarray(x))

    def to_host(self, a):
        return a.copy_to_host()

    def empty(self, shape, dtype=np.float32):
        return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        a = cuda.device_array(shape, dtype=dtype)
        n = int(a.size)
        if n:
            blocks, threads = _elementwise_config(n)
            _fill_kernel[blocks, threads](_as_1d(a), n, a.dtype.type(0))
        return a

    def copy_from_host(self, dst, src):
        src = np.ascontiguousarray(src, dtype=dst.dtype)
        if src.shape != tuple(dst.shape):
            raise ValueError(f"copy_from_host: expected an array of shape {tuple(dst.shape)}, "
                             f"received shape {src.shape}")
        if 0 in src.strides and src.size > 1:
            # a C-contiguous array can still have stride 0 on a length-1 axis (what
            # ascontiguousarray keeps of np.broadcast_to: Dropout's masks); Numba strips such
            # axes before copying, and the simulator then fails on the shape mismatch
            src = src.copy()
        dst.copy_to_device(src)

    # ---- GEMM ----------------------------------------------------------------------------------
    def _gemm_shapes(self, where, a, b, trans_a, trans_b, out):
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if a.ndim != 2 or b.ndim != 2 or k != k2:
            raise ValueError(f"{where}: op(a) is {m} x {k} but op(b) is {k2} x {n}; expected "
                             "matching inner dimensions")
        _check_shape(where, "out", out, (m, n))
        _check_float32(where, a=a, b=b, out=out)

    def matmul(self, a, b, transpose_a, transpose_b, out, cfg=None):
        self._gemm_shapes("matmul", a, b, transpose_a, transpose_b, out)
        launch_gemm(out, out, a, b, None, transpose_a, transpose_b, ACT_LINEAR, 0.0, False,
                    self.sm_count, cfg)

    def dense_forward(self, x, w, b, activation, alpha, z, y, cfg=None):
        self._gemm_shapes("dense_forward", x, w, False, False, z)
        _check_shape("dense_forward", "y", y, z.shape)
        if b is not None:
            _check_shape("dense_forward", "bias", b, (w.shape[1],))
        act = ACTIVATION_IDS[activation]
        same = _same_array(y, z)
        if act == ACT_SOFTMAX:      # row-wise: GEMM + bias into z, then the row kernel
            launch_gemm(z, z, x, w, b, False, False, ACT_LINEAR, 0.0, False, self.sm_count, cfg)
            self._softmax(z, y)
        else:
            launch_gemm(z, y, x, w, b, False, False, act, alpha, not same, self.sm_count, cfg)

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        act = ACTIVATION_IDS[activation]
        if act == ACT_SOFTMAX:      # couples a row: row kernel, then the column sums
            self.activation_backward(z, y, dy, activation, alpha, dy)
            if db is not None:
                self.bias_grad(dy, db)
        elif db is not None or act != ACT_LINEAR:
            self._backward_bias_grad(dy, db, z, y, dy, act, alpha, act != ACT_LINEAR)
        self.matmul(x, dy, True, False, dw)          # dW = x^T dz
        if dx is not None:
            self.matmul(dy, w, False, True, dx)      # dx = dz W^T

    # ---- bias, activations ---------------------------------------------------------------------
    def _backward_bias_grad(self, dz, db, z, y, dy, act, alpha, apply_act):
        rows, cols = dy.shape
        if db is not None:
            _check_shape("bias_grad", "out", db, (cols,))
        if cols == 0:
            return
        if rows == 0:
            if db is not None:
                self._fill(db, 0.0)
            return
        tx = _pow2_at_least(cols, BIAS_TX)
        ty = _pow2_at_least(rows, BIAS_TY)
        blocks = (cols + tx - 1) // tx
        _backward_bias_grad_kernel[blocks, (tx, ty)](
            dz, dy[0] if db is None else db, z, y, dy, rows, cols, act, np.float32(alpha),
            apply_act, db is not None)

    def bias_grad(self, dz, out):
        dz = _as_2d(dz)
        _check_float32("bias_grad", dz=dz, out=out)
        self._backward_bias_grad(dz, out, dz, dz, dz, ACT_LINEAR, 0.0, False)

    def _fill(self, a, value):
        n = int(a.size)
        if n:
            blocks, threads = _elementwise_config(n)
            _fill_kernel[blocks, threads](_as_1d(a), n, np.float32(value))

    def _softmax(self, x, y):
        rows, cols = x.shape
        if rows and cols:
            blocks, threads = _elementwise_config(rows)
            _softmax_rows_kernel[blocks, threads](y, x, rows, cols)

    def activation_forward(self, x, activation, alpha, out):
        x2, out2 = _as_2d(x), _as_2d(out)
        _check_shape("activation_forward", "out", out2, x2.shape)
        act = ACTIVATION_IDS[activation]
        if act == ACT_SOFTMAX:
            self._softmax(x2, out2)
            return
        rows, cols = x2.shape
        if rows * cols:
            blocks, threads = _elementwise_config(rows * cols)
            _activation_forward_kernel[blocks, threads](out2, x2, rows, cols, act, np.float32(alpha))

    def activation_backward(self, x, y, dy, activation, alpha, out):
        x2, y2, dy2, out2 = _as_2d(x), _as_2d(y), _as_2d(dy), _as_2d(out)
        for name, arr in (("y", y2), ("dy", dy2), ("out", out2)):
            _check_shape("activation_backward", name, arr, x2.shape)
        act = ACTIVATION_IDS[activation]
        rows, cols = x2.shape
        if rows * cols == 0:
            return
        if act == ACT_SOFTMAX:
            blocks, threads = _elementwise_config(rows)
            _softmax_backward_rows_kernel[blocks, threads](out2, y2, dy2, rows, cols)
        else:
            blocks, threads = _elementwise_config(rows * cols)
            _activation_backward_kernel[blocks, threads](out2, x2, y2, dy2, rows, cols, act,
                                                         np.float32(alpha))

    # ---- losses ------------------------------------------------------------------------------
    def loss(self, kind, pred, target, from_logits, grad):
        """The mean loss (a float: one double copied back) and, when grad is given, its
        gradient written on the device.  Semantics of reference.loss / sparse_cce."""
        if kind not in LOSS_IDS:
            raise ValueError(f"loss: expected kind in {tuple(LOSS_IDS)}, received kind={kind!r}")
        sparse = kind == "scce"
        if pred.ndim != 2 or pred.shape[0] == 0 or pred.shape[1] == 0:
            raise ValueError(f"loss: expected pred of shape (rows >= 1, cols >= 1), received "
                             f"{tuple(pred.shape)}")
        rows, cols = pred.shape
        if sparse:
            _check_shape("loss", "labels", target, (rows,))
            if target.dtype != np.int64:
                raise TypeError(f"loss: expected int64 labels, received dtype {target.dtype}")
            labels, target2 = target, pred
        else:
            _check_shape("loss", "target", target, pred.shape)
            labels, target2 = self._dummy_labels, target
        if grad is not None:
            _check_shape("loss", "grad", grad, pred.shape)
        nblocks = (rows + LOSS_ROWS_PER_BLOCK - 1) // LOSS_ROWS_PER_BLOCK
        threads = _pow2_at_least(min(rows, LOSS_ROWS_PER_BLOCK), LOSS_THREADS)
        partials = self._partials.get(nblocks)
        if partials is None:
            partials = self._partials[nblocks] = cuda.device_array(nblocks, dtype=np.float64)
        _loss_kernel[nblocks, threads](partials, pred if grad is None else grad, pred, target2,
                                       labels, rows, cols, LOSS_IDS[kind], bool(from_logits),
                                       sparse, grad is not None)
        if nblocks > 1:
            _sum_in_order_kernel[1, 1](self._loss_out, partials, nblocks)
            total = self._loss_out
        else:
            total = partials
        total[0:1].copy_to_host(self._loss_host)
        return float(self._loss_host[0]) / rows

    # ---- optimizers ------------------------------------------------------------------------------
    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        w1, g1 = _as_1d(w), _as_1d(g)
        n = int(w1.shape[0])
        if n == 0:
            return
        use_momentum = momentum != 0.0
        m1 = _as_1d(m) if use_momentum else w1
        blocks, threads = _elementwise_config(n)
        _sgd_kernel[blocks, threads](w1, m1, g1, n, np.float32(lr), np.float32(momentum),
                                     use_momentum, bool(nesterov))

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        w1 = _as_1d(w)
        n = int(w1.shape[0])
        if n == 0:
            return
        blocks, threads = _elementwise_config(n)
        _adam_kernel[blocks, threads](w1, _as_1d(m), _as_1d(v), _as_1d(g), n, np.float32(lr_t),
                                      _F1 - np.float32(beta1), _F1 - np.float32(beta2),
                                      np.float32(epsilon))

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        w1 = _as_1d(w)
        n = int(w1.shape[0])
        if n == 0:
            return
        use_momentum = momentum != 0.0
        blocks, threads = _elementwise_config(n)
        _rmsprop_kernel[blocks, threads](w1, _as_1d(v), _as_1d(mom) if use_momentum else w1,
                                         _as_1d(g), n, np.float32(lr), np.float32(rho),
                                         _F1 - np.float32(rho), np.float32(momentum),
                                         use_momentum, np.float32(epsilon))

    # ---- convolution: im2col into the SGEMM, col2im back ------------------------------------------
    def _conv_geometry(self, where, x, w, cols, out):
        """(kh, kw, c, f, oh, ow) after checking every shape against x and w."""
        if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[3]:
            raise ValueError(f"{where}: expected x (N, H, W, C) and w (KH, KW, C, F), received "
                             f"shapes {tuple(x.shape)} and {tuple(w.shape)}")
        kh, kw, c, f = w.shape
        n, oh, ow = x.shape[0], out.shape[1], out.shape[2]
        _check_shape(where, "output", out, (n, oh, ow, f))
        _check_shape(where, "cols", cols, (n * oh * ow, kh * kw * c))
        _check_float32(where, x=x, w=w, cols=cols, out=out)
        return kh, kw, c, f, oh, ow

    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        kh, kw, c, f, oh, ow = self._conv_geometry("conv2d_forward", x, w, cols, z)
        _check_shape("conv2d_forward", "y", y, z.shape)
        n, h, wd = x.shape[0], x.shape[1], x.shape[2]
        total = int(cols.size)
        if total:
            blocks, threads = _elementwise_config(total)
            _im2col_kernel[blocks, threads](cols, x, total, h, wd, c, kh, kw, strides[0],
                                            strides[1], padding[0], padding[1], oh, ow)
        # z = cols @ W + b and y = act(z): dense_forward's GEMM with its fused epilogue (and its
        # softmax path), on 2-D views sharing the 4-D arrays' memory
        m = n * oh * ow
        self.dense_forward(cols, w.reshape(kh * kw * c, f), b, activation, alpha,
                           z.reshape(m, f), y.reshape(m, f))

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        dw, db, dx):
        kh, kw, c, f, oh, ow = self._conv_geometry("conv2d_backward", x, w, cols, z)
        for name, arr in (("y", y), ("dy", dy)):
            _check_shape("conv2d_backward", name, arr, z.shape)
        _check_shape("conv2d_backward", "dw", dw, w.shape)
        m, k = cols.shape
        # cols still holds im2col(x) from the forward: dz (in dy) and db by the fused
        # activation-backward + column-sum kernel, dW = cols^T dz by the transposed-A SGEMM
        w2 = w.reshape(k, f)
        dz = dy.reshape(m, f)
        self.dense_backward(cols, w2, z.reshape(m, f), y.reshape(m, f), dz, activation, alpha,
                            dw.reshape(k, f), db, None)
        if dx is not None:
            _check_shape("conv2d_backward", "dx", dx, x.shape)
            # dcols = dz W^T overwrites cols (its im2col is no longer needed), then each input
            # element gathers its column entries
            self.matmul(dz, w2, False, True, cols)
            total = int(dx.size)
            if total:
                blocks, threads = _elementwise_config(total)
                _col2im_kernel[blocks, threads](dx, cols, total, x.shape[1], x.shape[2], c, kh, kw,
                                                strides[0], strides[1], padding[0], padding[1],
                                                oh, ow)

    # ---- pooling -------------------------------------------------------------------------------
    def _pool_launch(self, where, kernel, out, x_shape, window, strides, padding, out_hw, *arrays):
        """One thread per element of `out`; the kernel gets the arrays, then the geometry."""
        _check_float32(where, out=out, **{f"input{i}": a for i, a in enumerate(arrays)})
        total = int(out.size)
        if total:
            blocks, threads = _elementwise_config(total)
            kernel[blocks, threads](out, *arrays, total, x_shape[1], x_shape[2], x_shape[3],
                                    window[0], window[1], strides[0], strides[1], padding[0],
                                    padding[1], out_hw[0], out_hw[1])

    @staticmethod
    def _pool_shapes(where, x_shape, y_shape):
        if len(x_shape) != 4 or len(y_shape) != 4 or y_shape[0] != x_shape[0] \
                or y_shape[3] != x_shape[3]:
            raise ValueError(f"{where}: expected input (N, H, W, C) and output (N, OH, OW, C), "
                             f"received shapes {tuple(x_shape)} and {tuple(y_shape)}")
        return tuple(y_shape[1:3])

    def maxpool2d_forward(self, x, pool_size, strides, padding, y):
        out_hw = self._pool_shapes("maxpool2d_forward", x.shape, y.shape)
        self._pool_launch("maxpool2d_forward", _maxpool_forward_kernel, y, x.shape, pool_size,
                          strides, padding, out_hw, x)

    def maxpool2d_backward(self, x, y, dy, pool_size, strides, padding, dx):
        # the argmax is recomputed from x (y is not needed: the forward's kernel shares it)
        out_hw = self._pool_shapes("maxpool2d_backward", x.shape, dy.shape)
        _check_shape("maxpool2d_backward", "dx", dx, x.shape)
        self._pool_launch("maxpool2d_backward", _maxpool_backward_kernel, dx, x.shape, pool_size,
                          strides, padding, out_hw, x, dy)

    def avgpool2d_forward(self, x, pool_size, strides, padding, y):
        out_hw = self._pool_shapes("avgpool2d_forward", x.shape, y.shape)
        self._pool_launch("avgpool2d_forward", _avgpool_forward_kernel, y, x.shape, pool_size,
                          strides, padding, out_hw, x)

    def avgpool2d_backward(self, dy, pool_size, strides, padding, dx):
        out_hw = self._pool_shapes("avgpool2d_backward", dx.shape, dy.shape)
        self._pool_launch("avgpool2d_backward", _avgpool_backward_kernel, dx, dx.shape, pool_size,
                          strides, padding, out_hw, dy)

    def global_avgpool2d_forward(self, x, y):
        if x.ndim != 4:
            raise ValueError(f"global_avgpool2d_forward: expected x (N, H, W, C), received shape "
                             f"{tuple(x.shape)}")
        n, h, w, c = x.shape
        _check_shape("global_avgpool2d_forward", "y", y, (n, c))
        _check_float32("global_avgpool2d_forward", x=x, y=y)
        if n * c:
            blocks, threads = _elementwise_config(n * c)
            _global_avgpool_forward_kernel[blocks, threads](y, x, n * c, h, w, c, np.float32(h * w))

    def global_avgpool2d_backward(self, dy, dx):
        if dx.ndim != 4:
            raise ValueError(f"global_avgpool2d_backward: expected dx (N, H, W, C), received shape "
                             f"{tuple(dx.shape)}")
        n, h, w, c = dx.shape
        _check_shape("global_avgpool2d_backward", "dy", dy, (n, c))
        _check_float32("global_avgpool2d_backward", dy=dy, dx=dx)
        total = int(dx.size)
        if total:
            blocks, threads = _elementwise_config(total)
            _global_avgpool_backward_kernel[blocks, threads](dx, dy, total, h, w, c,
                                                             np.float32(h * w))

    # ---- batch normalization ------------------------------------------------------------------
    def _bn_scratch(self, rows, cols):
        """(nchunks, partials0, partials1, sums0, sums1): the chunk partials (and column sums
        for a backward without dgamma / dbeta), kept per shape like the loss partials."""
        nchunks = (rows + BN_ROWS_PER_CHUNK - 1) // BN_ROWS_PER_CHUNK
        key = ("bn", nchunks, cols)
        if key not in self._partials:
            self._partials[key] = (cuda.device_array((max(nchunks, 1), cols), dtype=np.float32),
                                   cuda.device_array((max(nchunks, 1), cols), dtype=np.float32),
                                   cuda.device_array(cols, dtype=np.float32),
                                   cuda.device_array(cols, dtype=np.float32))
        return (nchunks,) + self._partials[key]

    def _bn_partials(self, p0, p1, x, dy, mean, inv_std, nchunks, mode):
        rows, cols = x.shape
        if nchunks == 0:
            return
        tx = _pow2_at_least(cols, BN_TX)
        ty = _pow2_at_least(min(rows, BN_ROWS_PER_CHUNK), BN_TY)
        _bn_partials_kernel[((cols + tx - 1) // tx, nchunks), (tx, ty)](
            p0, p1, x, dy, mean, inv_std, rows, cols, mode)

    def _bn_check(self, where, x, **per_channel):
        if x.ndim != 2:
            raise ValueError(f"{where}: expected x of shape (rows, C), received {tuple(x.shape)}")
        for name, arr in per_channel.items():
            if arr is not None:
                _check_shape(where, name, arr, (x.shape[1],))
        _check_float32(where, x=x, **per_channel)

    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        where = "batchnorm_forward_train"
        self._bn_check(where, x, gamma=gamma, beta=beta, moving_mean=moving_mean,
                       moving_variance=moving_variance, mean=mean, inv_std=inv_std)
        _check_shape(where, "y", y, x.shape)
        rows, cols = x.shape
        if cols == 0:
            return
        nchunks, p0, p1, _, _ = self._bn_scratch(rows, cols)
        frows = np.float32(rows)
        cblocks, cthreads = _elementwise_config(cols)
        momentum = np.float32(momentum)
        self._bn_partials(p0, p1, x, x, mean, mean, nchunks, BN_SUM)
        _bn_mean_kernel[cblocks, cthreads](mean, p0, nchunks, cols, frows)
        self._bn_partials(p0, p1, x, x, mean, mean, nchunks, BN_SQUARED_DEVIATION)
        _bn_variance_kernel[cblocks, cthreads](inv_std, moving_mean, moving_variance, mean, p0,
                                               nchunks, cols, frows, momentum, _F1 - momentum,
                                               np.float32(epsilon))
        self._bn_normalize(y, x, mean, inv_std, gamma, beta, False, 0.0)

    def _bn_normalize(self, y, x, mean, stat, gamma, beta, stat_is_variance, epsilon):
        rows, cols = x.shape
        if rows * cols:
            blocks, threads = _elementwise_config(rows * cols)
            _bn_normalize_kernel[blocks, threads](
                y, x, mean, stat, stat if gamma is None else gamma, stat if beta is None else beta,
                rows, cols, stat_is_variance, np.float32(epsilon), gamma is not None,
                beta is not None)

    def batchnorm_forward_infer(self, x, gamma, beta, moving_mean, moving_variance, epsilon, y):
        self._bn_check("batchnorm_forward_infer", x, gamma=gamma, beta=beta,
                       moving_mean=moving_mean, moving_variance=moving_variance)
        _check_shape("batchnorm_forward_infer", "y", y, x.shape)
        self._bn_normalize(y, x, moving_mean, moving_variance, gamma, beta, True, epsilon)

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        where = "batchnorm_backward"
        self._bn_check(where, x, gamma=gamma, mean=mean, inv_std=inv_std, dgamma=dgamma,
                       dbeta=dbeta)
        _check_shape(where, "dy", dy, x.shape)
        rows, cols = x.shape
        if cols == 0:
            return
        nchunks, p0, p1, s0, s1 = self._bn_scratch(rows, cols)
        sum_dy = s0 if dbeta is None else dbeta
        sum_dy_xhat = s1 if dgamma is None else dgamma
        self._bn_partials(p0, p1, x, dy, mean, inv_std, nchunks, BN_GRADIENTS)
        blocks, threads = _elementwise_config(cols)
        _bn_gradient_sums_kernel[blocks, threads](sum_dy, sum_dy_xhat, p0, p1, nchunks, cols)
        if dx is not None and rows:
            _check_shape(where, "dx", dx, x.shape)
            blocks, threads = _elementwise_config(rows * cols)
            _bn_backward_dx_kernel[blocks, threads](
                dx, x, dy, inv_std if gamma is None else gamma, mean, inv_std, sum_dy,
                sum_dy_xhat, rows, cols, np.float32(rows), gamma is not None)

    # ---- dropout ---------------------------------------------------------------------------------
    def _multiply(self, where, out, a, mask):
        for name, arr in (("mask", mask), ("output", out)):
            _check_shape(where, name, arr, a.shape)
        out1 = _as_1d(out)
        n = int(out1.shape[0])
        if n:
            blocks, threads = _elementwise_config(n)
            _multiply_kernel[blocks, threads](out1, _as_1d(a), _as_1d(mask), n)

    def dropout_forward(self, x, mask, y):
        self._multiply("dropout_forward", y, x, mask)

    def dropout_backward(self, dy, mask, dx):
        self._multiply("dropout_backward", dx, dy, mask)


# ==== 6. availability ================================================================================

def unavailable_reason():
    """None when kernels can run here (a GPU, or the simulator), else why not."""
    if SIMULATOR:
        return None
    try:
        count = len(cuda.gpus)
    except Exception as exc:     # CudaSupportError: no driver library, driver init failed
        detail = " ".join(str(exc).split()).rstrip(" :")
        return f"the CUDA driver could not be initialised ({detail or type(exc).__name__})"
    if count == 0:
        return "the CUDA driver found no NVIDIA GPU"
    try:
        if not cuda.is_available():
            return "numba-cuda reports no usable GPU (cuda.is_available() is False)"
    except Exception as exc:
        return f"numba-cuda could not use the GPU ({' '.join(str(exc).split())})"
    return None
