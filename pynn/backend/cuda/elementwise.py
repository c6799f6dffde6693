"""Elementwise kernels: the activations and their derivatives (also the GEMM epilogue's, so
fused and unfused agree), softmax rows, the activation backward fused with the bias gradient,
and fill / multiply / scale.

Every output element is written by one thread; the one reduction here (the bias gradient)
adds in an order fixed by the array shape, with no atomics.
"""
import math

import numpy as np
from numba import cuda, float32, float64

from ...ids import ACTIVATIONS
from .runtime import (D0, F0, F1, HALF, as_1d, as_2d, check_float32, check_shape,
                      elementwise_config, pow2_at_least)

# Activation ids, csrc/pynn.h's (through pynn.ids); module globals are compile-time
# constants of the kernels.
ACT_LINEAR = ACTIVATIONS["linear"]
ACT_RELU = ACTIVATIONS["relu"]
ACT_LEAKY_RELU = ACTIVATIONS["leaky_relu"]
ACT_SIGMOID = ACTIVATIONS["sigmoid"]
ACT_TANH = ACTIVATIONS["tanh"]
ACT_SOFTMAX = ACTIVATIONS["softmax"]
ACT_GELU = ACTIVATIONS["gelu"]
# activations (engineer A)
ACT_ELU = ACTIVATIONS["elu"]
ACT_SELU = ACTIVATIONS["selu"]
ACT_SOFTPLUS = ACTIVATIONS["softplus"]
ACT_SOFTSIGN = ACTIVATIONS["softsign"]
ACT_SILU = ACTIVATIONS["silu"]
ACT_HARD_SIGMOID = ACTIVATIONS["hard_sigmoid"]
ACT_HARD_SILU = ACTIVATIONS["hard_silu"]
ACT_RELU6 = ACTIVATIONS["relu6"]
ACT_MISH = ACTIVATIONS["mish"]
ACT_EXPONENTIAL = ACTIVATIONS["exponential"]
ACT_LOG_SOFTMAX = ACTIVATIONS["log_softmax"]
ROWWISE = (ACT_SOFTMAX, ACT_LOG_SOFTMAX)   # need whole rows: not in the GEMM's epilogue
_SELU_ALPHA = np.float32(1.6732632423543772848170429916717)
_SELU_SCALE = np.float32(1.0507009873554804934193349852946)
_F3 = np.float32(3.0)
_F6 = np.float32(6.0)

_SQRT1_2 = np.float32(0.70710678118654752440)
_INV_SQRT_2PI = np.float32(0.39894228040143267794)

BIAS_TX, BIAS_TY = 32, 8     # bias gradient: columns x row lanes per block, at most


def activation_id(where, activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{where}: expected an activation in {tuple(ACTIVATIONS)}, received "
                         f"activation={activation!r}")
    return ACTIVATIONS[activation]


# ---- device functions -----------------------------------------------------------------------

@cuda.jit(device=True, inline=True)
def sigmoid(z):
    """1 / (1 + exp(-z)) as the C core writes it for z >= 0; for z < 0 the equal
    exp(z) / (1 + exp(z)), so exp never overflows (on a GPU the overflow would give the
    right 0, but the simulator's math.exp raises)."""
    if z >= F0:
        return F1 / (F1 + math.exp(-z))
    e = math.exp(z)
    return e / (F1 + e)


@cuda.jit(device=True, inline=True)
def softplus(z):
    """max(z, 0) + log1p(exp(-|z|)), jax.nn.softplus (engineer A)."""
    return max(z, F0) + math.log1p(math.exp(-abs(z)))


@cuda.jit(device=True, inline=True)
def hard_sigmoid(z):
    """relu6(z + 3) / 6, jax.nn.hard_sigmoid (engineer A)."""
    return min(max(z + _F3, F0), _F6) / _F6


@cuda.jit(device=True, inline=True)
def act_more(z, act_id, alpha):
    """activations (engineer A): Keras 3's formulas, as csrc/act_elementwise.h."""
    if act_id == ACT_ELU:
        return z if z > F0 else alpha * math.expm1(min(z, F0))
    if act_id == ACT_SELU:
        return _SELU_SCALE * (z if z > F0 else _SELU_ALPHA * math.expm1(min(z, F0)))
    if act_id == ACT_SOFTPLUS:
        return softplus(z)
    if act_id == ACT_SOFTSIGN:
        return z / (abs(z) + F1)
    if act_id == ACT_SILU:
        return z * sigmoid(z)
    if act_id == ACT_HARD_SIGMOID:
        return hard_sigmoid(z)
    if act_id == ACT_HARD_SILU:
        return z * hard_sigmoid(z)
    if act_id == ACT_RELU6:
        return min(max(z, F0), _F6)
    if act_id == ACT_MISH:
        return z * math.tanh(softplus(z))
    if act_id == ACT_EXPONENTIAL:
        return math.exp(z)
    return z


@cuda.jit(device=True, inline=True)
def act_grad_more(x, y, dy, act_id, alpha):
    """activations (engineer A): activation'(x) dy, as csrc/act_elementwise.h."""
    if act_id == ACT_ELU:
        return dy if x > F0 else dy * (alpha * math.exp(min(x, F0)))
    if act_id == ACT_SELU:
        return _SELU_SCALE * (dy if x > F0 else dy * (_SELU_ALPHA * math.exp(min(x, F0))))
    if act_id == ACT_SOFTPLUS:
        return dy * sigmoid(x)
    if act_id == ACT_SOFTSIGN:
        d = abs(x) + F1
        return dy / (d * d)
    if act_id == ACT_SILU:
        s = sigmoid(x)
        return dy * (s * (F1 + x * (F1 - s)))
    if act_id == ACT_HARD_SIGMOID:
        return dy / _F6 if x > -_F3 and x < _F3 else F0
    if act_id == ACT_HARD_SILU:
        hs = hard_sigmoid(x)
        return dy * (hs + x / _F6 if x > -_F3 and x < _F3 else hs)
    if act_id == ACT_RELU6:
        return dy if x > F0 and x < _F6 else F0
    if act_id == ACT_MISH:
        t = math.tanh(softplus(x))
        return dy * (t + x * (F1 - t * t) * sigmoid(x))
    if act_id == ACT_EXPONENTIAL:
        return dy * y
    return dy


@cuda.jit(device=True, inline=True)
def act(z, act_id, alpha):
    """activation(z) for every elementwise activation (softmax is row-wise, elsewhere)."""
    if act_id == ACT_RELU:
        return z if z > F0 else F0
    if act_id == ACT_LEAKY_RELU:
        return z if z > F0 else alpha * z
    if act_id == ACT_SIGMOID:
        return sigmoid(z)
    if act_id == ACT_TANH:
        return math.tanh(z)
    if act_id == ACT_GELU:
        # Phi(z) = erfc(-z / sqrt 2) / 2: 1 + erf(z / sqrt 2) would cancel for z << 0
        return HALF * z * math.erfc(-z * _SQRT1_2)
    if act_id >= ACT_ELU:      # activations (engineer A)
        return act_more(z, act_id, alpha)
    return z


@cuda.jit(device=True, inline=True)
def act_grad(x, y, dy, act_id, alpha):
    """activation'(x) dy, x the pre-activation and y = activation(x)."""
    if act_id == ACT_RELU:
        return dy if x > F0 else F0
    if act_id == ACT_LEAKY_RELU:
        return dy if x > F0 else alpha * dy
    if act_id == ACT_SIGMOID:
        return dy * y * (F1 - y)
    if act_id == ACT_TANH:
        return dy * (F1 - y * y)
    if act_id == ACT_GELU:
        # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        cdf = HALF * math.erfc(-x * _SQRT1_2)
        pdf = _INV_SQRT_2PI * math.exp(-HALF * x * x)
        return dy * (cdf + x * pdf)
    if act_id >= ACT_ELU:      # activations (engineer A)
        return act_grad_more(x, y, dy, act_id, alpha)
    return dy


# ---- kernels ---------------------------------------------------------------------------------

@cuda.jit
def _activation_forward_kernel(y, x, rows, cols, act_id, alpha):
    """y = act(x) elementwise over (rows x cols); y may be x."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        c = i - r * cols
        y[r, c] = act(x[r, c], act_id, alpha)


@cuda.jit
def _activation_backward_kernel(dx, x, y, dy, rows, cols, act_id, alpha):
    """dx = act'(x) dy elementwise; dx may be dy."""
    i = cuda.grid(1)
    if i < rows * cols:
        r = i // cols
        c = i - r * cols
        dx[r, c] = act_grad(x[r, c], y[r, c], dy[r, c], act_id, alpha)


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
        s = F0
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
        dot = D0
        for j in range(cols):
            dot += float64(dy[r, j] * y[r, j])
        dotf = float32(dot)
        for j in range(cols):
            dx[r, j] = y[r, j] * (dy[r, j] - dotf)


@cuda.jit
def _log_softmax_rows_kernel(y, x, rows, cols):
    """y[r] = x - max - log(sum exp(x - max)), one thread per row, the sum a float in index
    order (engineer A); y may be x."""
    r = cuda.grid(1)
    if r < rows:
        mx = x[r, 0]
        for j in range(1, cols):
            v = x[r, j]
            if v > mx:
                mx = v
        s = F0
        for j in range(cols):
            s += math.exp(x[r, j] - mx)
        ls = math.log(s)
        for j in range(cols):
            y[r, j] = (x[r, j] - mx) - ls


@cuda.jit
def _log_softmax_backward_rows_kernel(dx, y, dy, rows, cols):
    """dx[r] = dy - exp(y) sum_j dy_j, the sum in double (engineer A); dx may be dy."""
    r = cuda.grid(1)
    if r < rows:
        acc = D0
        for j in range(cols):
            acc += float64(dy[r, j])
        sf = float32(acc)
        for j in range(cols):
            dx[r, j] = dy[r, j] - math.exp(y[r, j]) * sf


@cuda.jit
def _backward_bias_grad_kernel(dz, db, z, y, dy, rows, cols, act_id, alpha, apply_act, write_db):
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
    s = F0
    if j < cols:
        for r in range(ty, rows, lanes):
            g = dy[r, j]
            if apply_act:
                g = act_grad(z[r, j], y[r, j], g, act_id, alpha)
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


@cuda.jit
def _multiply_kernel(out, a, b, n):
    """out = a * b elementwise; out may be a."""
    i = cuda.grid(1)
    if i < n:
        out[i] = a[i] * b[i]


@cuda.jit
def _scale_kernel(y, x, n, alpha):
    """y = alpha * x elementwise (one float32 product: NumPy's bits); y may be x."""
    i = cuda.grid(1)
    if i < n:
        y[i] = x[i] * alpha


# ---- launches --------------------------------------------------------------------------------

def fill(a, value):
    """Every element of a = value (in a's dtype)."""
    n = int(a.size)
    if n:
        blocks, threads = elementwise_config(n)
        _fill_kernel[blocks, threads](as_1d(a), n, a.dtype.type(value))


def copy(dst, src):
    """dst[...] = src, device to device (nothing when they are one array)."""
    if dst is not src and src.size:
        dst.copy_to_device(src)


def softmax(x, y):
    """y = softmax of the rows of the 2-D x; y may be x."""
    rows, cols = x.shape
    if rows and cols:
        blocks, threads = elementwise_config(rows)
        _softmax_rows_kernel[blocks, threads](y, x, rows, cols)


def activation_forward(x, activation, alpha, out):
    x2, out2 = as_2d(x), as_2d(out)
    check_shape("activation_forward", "out", out2, x2.shape)
    act_id = activation_id("activation_forward", activation)
    if act_id == ACT_SOFTMAX:
        softmax(x2, out2)
        return
    if act_id == ACT_LOG_SOFTMAX:      # engineer A
        rows, cols = x2.shape
        if rows and cols:
            blocks, threads = elementwise_config(rows)
            _log_softmax_rows_kernel[blocks, threads](out2, x2, rows, cols)
        return
    rows, cols = x2.shape
    if rows * cols:
        blocks, threads = elementwise_config(rows * cols)
        _activation_forward_kernel[blocks, threads](out2, x2, rows, cols, act_id, np.float32(alpha))


def activation_backward(x, y, dy, activation, alpha, out):
    x2, y2, dy2, out2 = as_2d(x), as_2d(y), as_2d(dy), as_2d(out)
    for name, arr in (("y", y2), ("dy", dy2), ("out", out2)):
        check_shape("activation_backward", name, arr, x2.shape)
    act_id = activation_id("activation_backward", activation)
    rows, cols = x2.shape
    if rows * cols == 0:
        return
    if act_id == ACT_SOFTMAX:
        blocks, threads = elementwise_config(rows)
        _softmax_backward_rows_kernel[blocks, threads](out2, y2, dy2, rows, cols)
    elif act_id == ACT_LOG_SOFTMAX:      # engineer A
        blocks, threads = elementwise_config(rows)
        _log_softmax_backward_rows_kernel[blocks, threads](out2, y2, dy2, rows, cols)
    else:
        blocks, threads = elementwise_config(rows * cols)
        _activation_backward_kernel[blocks, threads](out2, x2, y2, dy2, rows, cols, act_id,
                                                     np.float32(alpha))


def backward_bias_grad(dz, db, z, y, dy, act_id, alpha, apply_act):
    """dz = act'(z) dy when apply_act (dz may be dy) and db (None: not wanted) = the column
    sums of dz; all 2-D but db."""
    rows, cols = dy.shape
    if db is not None:
        check_shape("bias_grad", "out", db, (cols,))
    if cols == 0:
        return
    if rows == 0:
        if db is not None:
            fill(db, 0.0)
        return
    tx = pow2_at_least(cols, BIAS_TX)
    ty = pow2_at_least(rows, BIAS_TY)
    blocks = (cols + tx - 1) // tx
    _backward_bias_grad_kernel[blocks, (tx, ty)](
        dz, dy[0] if db is None else db, z, y, dy, rows, cols, act_id, np.float32(alpha),
        apply_act, db is not None)


def bias_grad(dz, out):
    dz = as_2d(dz)
    check_float32("bias_grad", dz=dz, out=out)
    backward_bias_grad(dz, out, dz, dz, dz, ACT_LINEAR, 0.0, False)


def multiply(where, out, a, b):
    """out = a * b elementwise over arrays of a's shape; out may be a."""
    for name, arr in (("mask", b), ("output", out)):
        check_shape(where, name, arr, a.shape)
    check_float32(where, input=a, mask=b, output=out)
    n = int(a.size)
    if n:
        blocks, threads = elementwise_config(n)
        _multiply_kernel[blocks, threads](as_1d(out), as_1d(a), as_1d(b), n)


def scale(x, alpha, y):
    check_shape("scale", "y", y, x.shape)
    check_float32("scale", x=x, y=y)
    n = int(x.size)
    if n:
        blocks, threads = elementwise_config(n)
        _scale_kernel[blocks, threads](as_1d(y), as_1d(x), n, np.float32(alpha))
