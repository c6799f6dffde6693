"""SGEMM: C (M x N) = op(A) op(B), op(A) M x K and op(B) K x N, with the epilogue
  z = C + bias (bias optional), y = activation(z), z written too when write_z;
and on top of it the Dense layer's forward and backward.

The classic shared-memory design: a block computes a BM x BN tile of C, walking K in
steps of BK.  Each step loads a BM x BK panel of op(A) and a BK x BN panel of op(B)
into shared memory; each of the (BM/TM) x (BN/TN) threads then accumulates a TM x TN
block of C in registers from TM + TN shared loads per k (the register blocking that
makes the kernel compute-bound rather than shared-memory-bound).
  - A thread owns rows ty + (BM/TM) i and columns tx + (BN/TN) j (interleaved, not a
    contiguous TM x TN patch): the 16 threads of a half-warp that share ty then read 16
    consecutive shared words (no bank conflicts, no float4 needed), and each store of
    the epilogue writes 16 consecutive floats of a row of C (coalesced).
  - Transposes are handled by indexing when a panel is loaded: both panels are stored
    k-major (As[k, m], Bs[k, n]) whatever the layout in global memory, and the load
    index runs along the contiguous axis of the global array, so loads stay coalesced
    and no transposed copy is ever made.  The rows of the shared panels are padded by 4
    floats so that the transposing stores do not collide in one bank.
  - Two shared buffers: the next panels are fetched from global memory into registers
    before the current ones are multiplied and stored into the other buffer after, so
    global latency overlaps the arithmetic and one barrier per K step suffices.
  - Edges are guarded: out-of-range panel elements load as 0, out-of-range outputs are
    not stored, so any M, N, K works (K = 0 gives bias + activation of 0).
Tile sizes, thread counts and the transposes are compile-time constants of each kernel
(closures of _make_gemm), so index arithmetic folds and the register arrays unroll.
Checked with ptxas for sm_90 (numba-cuda 0.30, CUDA 13): the large tile uses 198
registers with no spills and keeps the 64 accumulators in registers through the K loop
(they go to local memory once, for the epilogue's loop); the others need 76-126 registers.

The GEMM lets the compiler contract multiply-adds into FMAs (the CPU build does not), so
results agree with the other backends to float32 rounding, not bitwise.
"""
import numpy as np
from numba import cuda, float32

from . import elementwise
from .elementwise import ACT_LINEAR, ACT_SOFTMAX, act, activation_id
from .runtime import F0, check_float32, check_shape, same_array


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
            v = a[gk, gm] if (gm < m and gk < k) else F0
        else:            # a is M x K: run along k (contiguous)
            mm = e // BK
            kk = e % BK
            gm, gk = m0 + mm, k0 + kk
            v = a[gm, gk] if (gm < m and gk < k) else F0
        return v, kk, mm

    @cuda.jit(device=True, inline=True)
    def load_b(b, n, k, n0, k0, tid, l):
        """Element l of this thread's share of the op(B) panel: (value, k index, n index)."""
        e = tid + NT * l
        if TRANS_B:      # b is N x K: run along k (contiguous)
            nn = e // BK
            kk = e % BK
            gn, gk = n0 + nn, k0 + kk
            v = b[gn, gk] if (gn < n and gk < k) else F0
        else:            # b is K x N: run along n (contiguous)
            kk = e // BN
            nn = e % BN
            gn, gk = n0 + nn, k0 + kk
            v = b[gk, gn] if (gn < n and gk < k) else F0
        return v, kk, nn

    def gemm_bias_act(z, y, a, b, bias, m, n, k, has_bias, act_id, alpha, write_z):
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
                acc[i, j] = F0
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
                        y[row, col] = act(v, act_id, alpha)

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


def gemm_config(m, n, sm_count):
    """The largest tile that still gives (nearly) every SM a block; the smallest when even
    that cannot (small products are latency-bound: more, smaller blocks win)."""
    for cfg in GEMM_CONFIGS[:-1]:
        bx, by = cfg.blocks(m, n)
        if 4 * bx * by >= 3 * sm_count:
            return cfg
    return GEMM_TINY


def launch_gemm(z, y, a, b, bias, trans_a, trans_b, act_id, alpha, write_z, sm_count, cfg=None):
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
                                          has_bias, act_id, np.float32(alpha), write_z)


# ---- the backend's GEMM methods ---------------------------------------------------------------

def _check_gemm_shapes(where, a, b, trans_a, trans_b, out):
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if a.ndim != 2 or b.ndim != 2 or k != k2:
        raise ValueError(f"{where}: op(a) is {m} x {k} but op(b) is {k2} x {n}; expected "
                         "matching inner dimensions")
    check_shape(where, "out", out, (m, n))
    check_float32(where, a=a, b=b, out=out)


def matmul(a, b, transpose_a, transpose_b, out, sm_count, cfg=None):
    """out = op(a) @ op(b)."""
    _check_gemm_shapes("matmul", a, b, transpose_a, transpose_b, out)
    launch_gemm(out, out, a, b, None, transpose_a, transpose_b, ACT_LINEAR, 0.0, False,
                sm_count, cfg)


def dense_forward(x, w, b, activation, alpha, z, y, sm_count, cfg=None):
    """z = x @ w + b, y = activation(z) in the GEMM's epilogue (softmax: a row kernel
    after it); y may be z."""
    _check_gemm_shapes("dense_forward", x, w, False, False, z)
    check_shape("dense_forward", "y", y, z.shape)
    if b is not None:
        check_shape("dense_forward", "bias", b, (w.shape[1],))
    act_id = activation_id("dense_forward", activation)
    if act_id in elementwise.ROWWISE:   # row-wise: GEMM + bias into z, then the row kernel
        launch_gemm(z, z, x, w, b, False, False, ACT_LINEAR, 0.0, False, sm_count, cfg)
        elementwise.activation_forward(z, activation, alpha, y)
    else:
        launch_gemm(z, y, x, w, b, False, False, act_id, alpha, not same_array(y, z), sm_count,
                    cfg)


def dense_backward(x, w, z, y, dy, activation, alpha, dw, db, dx, sm_count):
    """dy (overwritten) = dz = act'(z) dy; db = column sums of dz; dw = x^T dz;
    dx = dz w^T.  dw, db and dx may each be None."""
    act_id = activation_id("dense_backward", activation)
    if act_id in elementwise.ROWWISE:   # couples a row: row kernel, then the column sums
        elementwise.activation_backward(z, y, dy, activation, alpha, dy)
        if db is not None:
            elementwise.bias_grad(dy, db)
    elif db is not None or act_id != ACT_LINEAR:
        # the activation derivative and the bias gradient share one pass over dz
        elementwise.backward_bias_grad(dy, db, z, y, dy, act_id, alpha, act_id != ACT_LINEAR)
    if dw is not None:
        matmul(x, dy, True, False, dw, sm_count)      # dW = x^T dz
    if dx is not None:
        matmul(dy, w, False, True, dx, sm_count)      # dx = dz W^T
