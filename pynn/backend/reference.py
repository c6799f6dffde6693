"""The NumPy reference: every kernel of pynn written for legibility, not speed.

This module is the truth the C (and CUDA) kernels are tested against, and it is itself
checked against float64 finite differences (tests/test_reference_gradients.py).

Every function is pure NumPy and dtype-generic: it computes in the dtype of its array
arguments, so the same code runs in float32 (parity with the kernels, which compute in
float32) and in float64 (finite differences).  Python scalars (alpha, lr, beta1, ...)
are cast to that dtype first, because the C kernels receive them as float32 and do all
their arithmetic in float32.  The expressions are spelled in the order the C kernels
evaluate them (see csrc/pynn.h) so the float32 results agree to within a few ulps.

Activation names: "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu".
Loss kinds: "mse", "bce", "cce".  Semantics are Keras 3's (see DESIGN.md).
"""

import math

import numpy as np

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu")
LOSSES = ("mse", "bce", "cce")

# Keras's backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7

# NumPy has no erf; math.erf elementwise is slow but exact enough, and speed does not
# matter here.
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _scalar(value, like):
    """`value` as a scalar of the array's dtype (float32 kernels see float32 scalars)."""
    return like.dtype.type(value)


# ---- GEMM ------------------------------------------------------------------------

def gemm(a, b, transpose_a=False, transpose_b=False, alpha=1.0, beta=0.0, c=None):
    """alpha * op(a) @ op(b) + beta * c, op = transpose when asked; c is not read when
    beta == 0 (it may hold NaN), as in pynn_sgemm."""
    op_a = a.T if transpose_a else a
    op_b = b.T if transpose_b else b
    result = _scalar(alpha, a) * (op_a @ op_b)
    if beta != 0:
        result = result + _scalar(beta, a) * c
    return result


# ---- bias --------------------------------------------------------------------------

def bias_grad(dz):
    """Gradient of y = z + bias with respect to bias: the column sums of dz."""
    return dz.sum(axis=0)


# ---- activations --------------------------------------------------------------------

def _sigmoid(x):
    # exp(-x) overflows to inf for x << 0, giving exactly 0: no NaN, so hush the warning.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _softmax(x):
    """Row-wise softmax over the last axis, max-subtracted so exp never overflows."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _normal_cdf(x64):
    return 0.5 * (1.0 + _erf(x64 / math.sqrt(2.0)))


def _normal_pdf(x64):
    return np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)


def activation_forward(x, activation, alpha=0.2):
    """y = activation(x); alpha is leaky_relu's negative slope."""
    if activation == "linear":
        return x.copy()
    if activation == "relu":
        return np.where(x > 0, x, 0).astype(x.dtype)
    if activation == "leaky_relu":
        return np.where(x > 0, x, _scalar(alpha, x) * x)
    if activation == "sigmoid":
        return _sigmoid(x)
    if activation == "tanh":
        return np.tanh(x)
    if activation == "softmax":
        return _softmax(x)
    if activation == "gelu":
        # exact form x Phi(x), Keras's default approximate=False; erf needs float64
        x64 = x.astype(np.float64)
        return (x64 * _normal_cdf(x64)).astype(x.dtype)
    raise ValueError(f"activation_forward: expected one of {ACTIVATIONS}, "
                     f"received activation={activation!r}")


def activation_backward(x, y, dy, activation, alpha=0.2):
    """dx = d activation(x) / dx applied to dy; y = activation(x) is given because
    sigmoid, tanh and softmax are cheapest written in terms of their output."""
    if activation == "linear":
        return dy.copy()
    if activation == "relu":
        return np.where(x > 0, dy, 0).astype(dy.dtype)
    if activation == "leaky_relu":
        return np.where(x > 0, dy, _scalar(alpha, dy) * dy)
    if activation == "sigmoid":
        return dy * y * (1 - y)
    if activation == "tanh":
        return dy * (1 - y * y)
    if activation == "softmax":
        # Jacobian diag(y) - y y^T applied to dy, one row at a time
        dot = (dy * y).sum(axis=-1, keepdims=True)
        return y * (dy - dot)
    if activation == "gelu":
        # d/dx [x Phi(x)] = Phi(x) + x phi(x)
        x64 = x.astype(np.float64)
        slope = _normal_cdf(x64) + x64 * _normal_pdf(x64)
        return (dy.astype(np.float64) * slope).astype(dy.dtype)
    raise ValueError(f"activation_backward: expected one of {ACTIVATIONS}, "
                     f"received activation={activation!r}")


# ---- losses --------------------------------------------------------------------------
# Each returns (loss, grad): loss = mean over rows of the per-sample loss, as a Python
# float; grad = d loss / d pred, so it already carries the 1/rows of the mean (and the
# 1/cols of the per-sample mean for MSE and BCE).

def _mse(pred, target):
    rows, cols = pred.shape
    diff = pred - target
    per_sample = (diff * diff).mean(axis=-1)
    grad = 2 * diff / (rows * cols)
    return per_sample, grad


def _bce_probs(pred, target):
    rows, cols = pred.shape
    eps = _scalar(EPSILON, pred)
    p = np.clip(pred, eps, 1 - eps)
    per_element = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    # where clipping changed pred the loss is flat in pred: zero gradient there
    inside = (pred >= eps) & (pred <= 1 - eps)
    grad = np.where(inside, (p - target) / (p * (1 - p)), 0) / (rows * cols)
    return per_element.mean(axis=-1), grad.astype(pred.dtype)


def _bce_logits(logits, target):
    rows, cols = logits.shape
    # log(1 + exp(-|z|)) never overflows; equals -(t log s(z) + (1-t) log(1-s(z)))
    per_element = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    grad = (_sigmoid(logits) - target) / (rows * cols)
    return per_element.mean(axis=-1), grad


def _cce_probs(pred, target):
    # Keras 3: normalise each row to sum 1, clip, then -sum t log q.
    rows = pred.shape[0]
    eps = _scalar(EPSILON, pred)
    s = pred.sum(axis=-1, keepdims=True)
    q = pred / s
    q_clipped = np.clip(q, eps, 1 - eps)
    per_sample = -(target * np.log(q_clipped)).sum(axis=-1)
    # d loss / d q, zero where clipping made the loss flat; then through q = p / s:
    # d q_j / d p_i = (delta_ij - q_j) / s
    inside = (q >= eps) & (q <= 1 - eps)
    grad_q = np.where(inside, -target / q_clipped, 0).astype(pred.dtype)
    grad = (grad_q - (grad_q * q).sum(axis=-1, keepdims=True)) / s / rows
    return per_sample, grad


def _cce_logits(logits, target):
    rows = logits.shape[0]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(s)
    # -sum t (z - lse) stays right for soft targets that do not sum to 1
    per_sample = -(target * log_softmax).sum(axis=-1)
    grad = (e / s * target.sum(axis=-1, keepdims=True) - target) / rows
    return per_sample, grad


def loss(pred, target, kind, from_logits=False):
    """(mean over rows of the per-sample loss, d loss / d pred) for kind "mse", "bce" or
    "cce".  from_logits: pred holds logits (sigmoid for bce, softmax for cce); MSE has
    no logits form and ignores it."""
    if pred.ndim != 2 or pred.shape != target.shape or pred.shape[0] == 0:
        raise ValueError(f"loss: expected pred and target of the same shape (rows >= 1, "
                         f"cols), received {pred.shape} and {target.shape}")
    if kind == "mse":
        per_sample, grad = _mse(pred, target)
    elif kind == "bce":
        per_sample, grad = (_bce_logits if from_logits else _bce_probs)(pred, target)
    elif kind == "cce":
        per_sample, grad = (_cce_logits if from_logits else _cce_probs)(pred, target)
    else:
        raise ValueError(f"loss: expected kind in {LOSSES}, received kind={kind!r}")
    return float(per_sample.mean()), grad


def one_hot(labels, classes, dtype=np.float32):
    """(rows, classes) array with a 1 at each row's label; labels must be in range."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: expected a 1-D integer array of labels, received "
                         f"dtype {labels.dtype} and shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"one_hot: expected labels in [0, {classes}), received values "
                         f"from {labels.min()} to {labels.max()}")
    target = np.zeros((labels.shape[0], classes), dtype=dtype)
    target[np.arange(labels.shape[0]), labels] = 1
    return target


def sparse_cce(pred, labels, from_logits=False):
    """Categorical cross-entropy with integer labels: CCE against their one-hot rows."""
    if pred.ndim != 2 or np.shape(labels) != (pred.shape[0],):
        raise ValueError(f"sparse_cce: expected labels of shape ({pred.shape[0]},) for "
                         f"pred of shape {pred.shape}, received {np.shape(labels)}")
    return loss(pred, one_hot(labels, pred.shape[1], pred.dtype), "cce", from_logits)


# ---- optimizers (Keras 3 update rules, in place) ------------------------------------------

def sgd_update(w, m, g, lr, momentum, nesterov):
    """momentum == 0: w -= lr g (m unused, may be None).  Otherwise
    m = momentum m - lr g, then w += m, or with nesterov w += momentum m - lr g."""
    lr, momentum = _scalar(lr, w), _scalar(momentum, w)
    if momentum == 0:
        w -= lr * g
        return
    m[...] = momentum * m - lr * g
    if nesterov:
        w += momentum * m - lr * g
    else:
        w += m


def adam_update(w, m, v, g, lr_t, beta1, beta2, epsilon):
    """One Adam step as Keras 3 writes it: the bias correction is folded into lr_t
    (see adam_lr_t) and epsilon is added to the square root of the *uncorrected*
    second moment."""
    lr_t, beta1, beta2, epsilon = (_scalar(s, w) for s in (lr_t, beta1, beta2, epsilon))
    m += (g - m) * (1 - beta1)
    v += (g * g - v) * (1 - beta2)
    w -= lr_t * m / (np.sqrt(v) + epsilon)


def adam_lr_t(lr, beta1, beta2, step):
    """Adam's bias-corrected step size lr sqrt(1 - beta2^step) / (1 - beta1^step) for
    step >= 1 (the first update is step 1).

    Computed in float64 from the Python scalars and then rounded to float32, the
    precision the kernels take it in.  (Keras 3 evaluates it in the variable's dtype,
    float32, so the two can differ in the last bit or so of lr_t.)  Both pynn backends
    use this one function, so they see the same lr_t."""
    if step < 1:
        raise ValueError(f"adam_lr_t: expected step >= 1, received step={step}")
    value = lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
    return float(np.float32(value))


def rmsprop_update(w, v, mom, g, lr, rho, momentum, epsilon):
    """v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + epsilon); momentum == 0:
    w -= inc (mom unused, may be None); else mom = momentum mom + inc, w -= mom."""
    lr, rho, momentum, epsilon = (_scalar(s, w) for s in (lr, rho, momentum, epsilon))
    v[...] = rho * v + (1 - rho) * (g * g)
    increment = lr * g / np.sqrt(v + epsilon)
    if momentum == 0:
        w -= increment
    else:
        mom[...] = momentum * mom + increment
        w -= mom
