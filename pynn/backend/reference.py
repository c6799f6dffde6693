"""The NumPy reference: every kernel of pynn written for legibility, not speed.

This module is the truth the C (and CUDA) kernels are tested against, and it is itself
checked against float64 finite differences (tests/test_reference.py).

Every function is pure NumPy and dtype-generic: it computes in the dtype of its array
arguments, so the same code runs in float32 (parity with the kernels, which compute in
float32) and in float64 (finite differences).  Python scalars (alpha, lr, beta1, ...)
are cast to that dtype first, because the C kernels receive them as float32 and do all
their arithmetic in float32.  The expressions are spelled in the order the C kernels
evaluate them (see csrc/pynn.h) so the float32 results agree to within a few ulps.

Activation names: "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu", and
(engineer A, at the end of the file) "elu", "selu", "softplus", "softsign", "silu",
"hard_sigmoid", "hard_silu", "relu6", "mish", "exponential", "log_softmax".
Loss kinds: LOSSES below.  Semantics are Keras 3's (see DESIGN.md).
"""

import math

import numpy as np

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "gelu",
               # activations (engineer A)
               "elu", "selu", "softplus", "softsign", "silu", "hard_sigmoid", "hard_silu",
               "relu6", "mish", "exponential", "log_softmax")
LOSSES = ("mse", "bce", "cce", "mae", "mape", "huber", "log_cosh", "kld", "hinge",
          "squared_hinge", "categorical_hinge", "poisson", "cosine_similarity")

# Keras's backend.epsilon(): probabilities are clipped to [EPSILON, 1 - EPSILON].
EPSILON = 1e-7

# NumPy has no erfc; math.erfc elementwise is slow but exact enough, and speed does not
# matter here.
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


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
    """Phi(x) = erfc(-x / sqrt 2) / 2, accurate in the left tail, where 1 + erf(x / sqrt 2)
    cancels (even in float64: nothing of it is left below x = -8.3)."""
    return 0.5 * _erfc(-x64 / math.sqrt(2.0))


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
    if activation in _MORE_FORWARD:      # activations (engineer A), at the end of the file
        return _MORE_FORWARD[activation](x, alpha)
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
    if activation in _MORE_BACKWARD:     # activations (engineer A)
        return _MORE_BACKWARD[activation](x, y, dy, alpha)
    raise ValueError(f"activation_backward: expected one of {ACTIVATIONS}, "
                     f"received activation={activation!r}")


# ---- losses --------------------------------------------------------------------------
# Each returns (loss, grad): loss = mean over rows of the per-sample loss, as a Python
# float; grad = d loss / d pred, so it already carries the 1/rows of the mean (and the
# 1/cols of the per-sample mean for MSE and BCE).

def _mse(pred, target, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    diff = pred - target
    per_sample = (diff * diff).mean(axis=-1)
    grad = 2 * diff / (n * cols)
    return per_sample, grad


def _bce_probs(pred, target, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    eps = _scalar(EPSILON, pred)
    p = np.clip(pred, eps, 1 - eps)
    per_element = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    # where clipping changed pred the loss is flat in pred: zero gradient there
    inside = (pred >= eps) & (pred <= 1 - eps)
    grad = np.where(inside, (p - target) / (p * (1 - p)), 0) / (n * cols)
    return per_element.mean(axis=-1), grad.astype(pred.dtype)


def _bce_logits(logits, target, n=None):
    rows, cols = logits.shape
    n = rows if n is None else n
    # log(1 + exp(-|z|)) never overflows; equals -(t log s(z) + (1-t) log(1-s(z)))
    per_element = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    grad = (_sigmoid(logits) - target) / (n * cols)
    return per_element.mean(axis=-1), grad


def _cce_probs(pred, target, n=None):
    # Keras 3: normalise each row to sum 1, clip, then -sum t log q.
    rows = pred.shape[0]
    n = rows if n is None else n
    eps = _scalar(EPSILON, pred)
    s = pred.sum(axis=-1, keepdims=True)
    q = pred / s
    q_clipped = np.clip(q, eps, 1 - eps)
    per_sample = -(target * np.log(q_clipped)).sum(axis=-1)
    # d loss / d q, zero where clipping made the loss flat; then through q = p / s:
    # d q_j / d p_i = (delta_ij - q_j) / s
    inside = (q >= eps) & (q <= 1 - eps)
    grad_q = np.where(inside, -target / q_clipped, 0).astype(pred.dtype)
    grad = (grad_q - (grad_q * q).sum(axis=-1, keepdims=True)) / s / n
    return per_sample, grad


def _cce_logits(logits, target, n=None):
    rows = logits.shape[0]
    n = rows if n is None else n
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(s)
    # -sum t (z - lse) stays right for soft targets that do not sum to 1
    per_sample = -(target * log_softmax).sum(axis=-1)
    grad = (e / s * target.sum(axis=-1, keepdims=True) - target) / n
    return per_sample, grad



# Keras 3's other losses (keras/src/losses/losses.py), no logits forms.  Where a loss is not
# differentiable the gradient takes one side's value: sign(0) = 0, max(m, 0) passes no
# gradient at m = 0, categorical hinge's first maximum wins.

def _mae(pred, target, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    d = pred - target
    return np.abs(d).mean(axis=-1), np.sign(d) / (n * cols)


def _mape(pred, target, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    den = np.maximum(np.abs(target), _scalar(EPSILON, pred))
    per_sample = 100 * np.abs((target - pred) / den).mean(axis=-1)
    return per_sample, _scalar(100, pred) * np.sign(pred - target) / den / (n * cols)


def _huber(pred, target, delta, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    delta = _scalar(delta, pred)
    e = pred - target
    a = np.abs(e)
    quad = a <= delta
    half = _scalar(0.5, pred)
    per_element = np.where(quad, half * e * e, delta * a - half * delta * delta)
    return per_element.mean(axis=-1), np.where(quad, e, delta * np.sign(e)) / (n * cols)


def _log_cosh(pred, target, n=None):
    # Keras's form: e + softplus(-2 e) - log 2, softplus written stably
    rows, cols = pred.shape
    n = rows if n is None else n
    e = pred - target
    x = -2 * e
    softplus = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
    per_element = e + softplus - _scalar(math.log(2.0), pred)
    return per_element.mean(axis=-1), np.tanh(e) / (n * cols)


def _kld(pred, target, n=None):
    # t and p clipped to [EPSILON, 1]; sum_j t log(t / p); flat where p was clipped
    rows = pred.shape[0]
    n = rows if n is None else n
    eps, one = _scalar(EPSILON, pred), _scalar(1, pred)
    t, p = np.clip(target, eps, one), np.clip(pred, eps, one)
    inside = (pred >= eps) & (pred <= one)
    return (t * np.log(t / p)).sum(axis=-1), np.where(inside, -t / p, 0).astype(pred.dtype) / n


def hinge_targets(target):
    """Keras's convert_binary_labels_to_hinge: 2 t - 1 when every target is 0 or 1."""
    if np.all((target == 0) | (target == 1)):
        return 2 * target - 1
    return target


def _hinge(pred, target, squared, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    t = hinge_targets(target)
    m = 1 - t * pred
    h = np.maximum(m, 0)
    if squared:
        return (h * h).mean(axis=-1), np.where(m > 0, -2 * t * h, 0).astype(pred.dtype) / (n * cols)
    return h.mean(axis=-1), np.where(m > 0, -t, 0).astype(pred.dtype) / (n * cols)


def _categorical_hinge(pred, target, n=None):
    rows = pred.shape[0]
    n = rows if n is None else n
    pos = (target * pred).sum(axis=-1)
    negs = (1 - target) * pred
    k = negs.argmax(axis=-1)                      # the first maximum
    margin = negs[np.arange(rows), k] - pos + 1
    grad = -target.copy()
    grad[np.arange(rows), k] += 1 - target[np.arange(rows), k]
    grad = np.where((margin > 0)[:, None], grad, 0).astype(pred.dtype) / n
    return np.maximum(margin, 0), grad


def _poisson(pred, target, n=None):
    rows, cols = pred.shape
    n = rows if n is None else n
    pe = pred + _scalar(EPSILON, pred)
    return (pred - target * np.log(pe)).mean(axis=-1), (1 - target / pe) / (n * cols)


def _cosine_similarity(pred, target, n=None):
    # x / sqrt(max(sum x^2, EPSILON^2)) for each row of t and p; -sum tn pn
    rows = pred.shape[0]
    n = rows if n is None else n
    eps2 = _scalar(EPSILON, pred) * _scalar(EPSILON, pred)
    pp = (pred * pred).sum(axis=-1, keepdims=True)
    ip = 1 / np.sqrt(np.maximum(pp, eps2))
    it = 1 / np.sqrt(np.maximum((target * target).sum(axis=-1, keepdims=True), eps2))
    c = it * ip * (target * pred).sum(axis=-1, keepdims=True)
    # d(-c)/dp = -ip (tn - c pn) where |p|^2 >= eps^2; there ip is constant: -tn ip
    grad = np.where(pp >= eps2, -ip * (target * it - c * (pred * ip)), -target * it * ip)
    return -c[:, 0], grad / n


def smoothed_targets(target, kind, label_smoothing):
    """Keras's label smoothing, in the target's dtype: BCE t (1 - ls) + ls / 2, CCE
    t (1 - ls) + ls / cols (written as the C kernels compute it in float32)."""
    ls = _scalar(label_smoothing, target)
    keep = _scalar(1, target) - ls
    add = _scalar(0.5, target) * ls if kind == "bce" else ls / _scalar(target.shape[-1], target)
    return target * keep + add


def row_weights(weights, rows, dtype):
    """Per-sample weights (k,), k dividing rows, as one weight per row: row i weighs
    weights[i // (rows // k)]; checked finite and >= 0."""
    w = np.asarray(weights)
    if w.ndim != 1 or w.shape[0] < 1 or rows % w.shape[0] != 0:
        raise ValueError(f"loss: expected weights of a length dividing the {rows} rows, "
                         f"received shape {w.shape}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError("loss: expected finite weights >= 0")
    return np.repeat(w.astype(dtype), rows // w.shape[0])


def loss(pred, target, kind, from_logits=False, param=1.0, weights=None, label_smoothing=0.0,
         reduce_sum=False):
    """(sum_i w_i l_i / rows, d loss / d pred) for kind in LOSSES, l_i the per-sample loss
    (w_i = 1 without weights: the mean).  from_logits: pred holds logits (sigmoid for bce,
    softmax for cce); the other kinds have no logits form and ignore it.  param: Huber's
    delta.  weights: None or (k,), k dividing rows (row_weights); the gradient row i is
    scaled by w_i.  label_smoothing: bce and cce only, in [0, 1] (smoothed_targets).
    reduce_sum: Keras 3's reduction "sum", sum_i w_i l_i (nothing divided by the rows, in
    the value or the gradient)."""
    if pred.ndim != 2 or pred.shape != target.shape or pred.shape[0] == 0:
        raise ValueError(f"loss: expected pred and target of the same shape (rows >= 1, "
                         f"cols), received {pred.shape} and {target.shape}")
    if not (0 <= label_smoothing <= 1):
        raise ValueError(f"loss: expected label_smoothing in [0, 1], received "
                         f"{label_smoothing!r}")
    if label_smoothing != 0:
        if kind not in ("bce", "cce"):
            raise ValueError(f"loss: label_smoothing applies to bce and cce, received "
                             f"kind={kind!r}")
        target = smoothed_targets(target, kind, label_smoothing)
    w = None if weights is None else row_weights(weights, pred.shape[0], pred.dtype)
    n = 1 if reduce_sum else pred.shape[0]     # the rows the value and the gradient divide by
    if kind == "mse":
        per_sample, grad = _mse(pred, target, n)
    elif kind == "bce":
        per_sample, grad = (_bce_logits if from_logits else _bce_probs)(pred, target, n)
    elif kind == "cce":
        per_sample, grad = (_cce_logits if from_logits else _cce_probs)(pred, target, n)
    elif kind == "huber":
        if not (param > 0 and math.isfinite(param)):
            raise ValueError(f"loss: expected huber's delta > 0, received delta={param!r}")
        per_sample, grad = _huber(pred, target, param, n)
    elif kind in ("hinge", "squared_hinge"):
        per_sample, grad = _hinge(pred, target, kind == "squared_hinge", n)
    elif kind in _OTHER_LOSSES:
        per_sample, grad = _OTHER_LOSSES[kind](pred, target, n)
    else:
        raise ValueError(f"loss: expected kind in {LOSSES}, received kind={kind!r}")
    grad = grad.astype(pred.dtype, copy=False)
    if w is None and not reduce_sum:
        return float(per_sample.mean()), grad
    # the sum of w_i l_i in float64, divided by the rows (Keras's sum_over_batch_size) or
    # not ("sum")
    w64 = 1.0 if w is None else w.astype(np.float64)
    value = float((w64 * per_sample.astype(np.float64)).sum() / n)
    return value, (grad if w is None else grad * w[:, None])


_OTHER_LOSSES = {"mae": _mae, "mape": _mape, "log_cosh": _log_cosh, "kld": _kld,
                 "categorical_hinge": _categorical_hinge, "poisson": _poisson,
                 "cosine_similarity": _cosine_similarity}


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


def sparse_cce(pred, labels, from_logits=False, weights=None, label_smoothing=0.0,
               ignore_class=None, reduce_sum=False):
    """Categorical cross-entropy with integer labels: CCE against their one-hot rows.
    ignore_class: None or an int; rows of that label (which may lie outside [0, cols))
    count for nothing, Keras 3's mask: the mean is over the other rows (weights as loss's
    multiply as well); every row ignored: loss 0 and a zero gradient.  reduce_sum: as
    loss's (the ignored rows add nothing, nothing is rescaled)."""
    if pred.ndim != 2 or np.shape(labels) != (pred.shape[0],):
        raise ValueError(f"sparse_cce: expected labels of shape ({pred.shape[0]},) for "
                         f"pred of shape {pred.shape}, received {np.shape(labels)}")
    if ignore_class is None:
        return loss(pred, one_hot(labels, pred.shape[1], pred.dtype), "cce", from_logits,
                    weights=weights, label_smoothing=label_smoothing, reduce_sum=reduce_sum)
    labels = np.asarray(labels)
    valid = labels != ignore_class
    w = None if weights is None else row_weights(weights, pred.shape[0], pred.dtype)
    grad = np.zeros_like(pred)
    if not valid.any():
        return 0.0, grad
    # the rows not ignored, as a batch of their own: the mean is over them
    value, g = loss(pred[valid], one_hot(labels[valid], pred.shape[1], pred.dtype), "cce",
                    from_logits, weights=None if w is None else w[valid],
                    label_smoothing=label_smoothing, reduce_sum=reduce_sum)
    grad[valid] = g
    return value, grad


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


def weight_decay(w, wd, lr):
    """Keras 3's decoupled weight decay: w -= w * wd * lr (in this order)."""
    wd, lr = _scalar(wd, w), _scalar(lr, w)
    w[...] = w - w * wd * lr


def adam_amsgrad_update(w, m, v, v_hat, g, lr_t, beta1, beta2, epsilon):
    """Adam with amsgrad: m, v as adam_update; v_hat = max(v_hat, v) replaces v in the
    step."""
    lr_t, beta1, beta2, epsilon = (_scalar(s, w) for s in (lr_t, beta1, beta2, epsilon))
    m += (g - m) * (1 - beta1)
    v += (g * g - v) * (1 - beta2)
    v_hat[...] = np.maximum(v_hat, v)
    w -= lr_t * m / (np.sqrt(v_hat) + epsilon)


def adagrad_update(w, acc, g, lr, epsilon):
    """acc += g^2; w -= lr g / sqrt(acc + epsilon)."""
    lr, epsilon = _scalar(lr, w), _scalar(epsilon, w)
    acc += g * g
    w -= lr * g / np.sqrt(acc + epsilon)


def adadelta_update(w, acc_grad, acc_delta, g, lr, rho, epsilon):
    """acc_grad = rho acc_grad + (1 - rho) g^2; delta = -(sqrt(acc_delta + eps) g) /
    sqrt(acc_grad + eps); acc_delta = rho acc_delta + (1 - rho) delta^2; w += lr delta."""
    lr, rho, epsilon = (_scalar(s, w) for s in (lr, rho, epsilon))
    acc_grad[...] = rho * acc_grad + (1 - rho) * (g * g)
    delta = -(np.sqrt(acc_delta + epsilon) * g / np.sqrt(acc_grad + epsilon))
    acc_delta[...] = rho * acc_delta + (1 - rho) * (delta * delta)
    w += lr * delta


def adamax_update(w, m, u, g, lr, beta1, beta2, epsilon, bc1):
    """m += (g - m)(1 - beta1); u = max(beta2 u, |g|); w -= lr m / (bc1 (u + epsilon)),
    bc1 = 1 - beta1^step (computed in double by the caller)."""
    lr, beta1, beta2, epsilon, bc1 = (_scalar(s, w) for s in (lr, beta1, beta2, epsilon, bc1))
    m += (g - m) * (1 - beta1)
    u[...] = np.maximum(beta2 * u, np.abs(g))
    w -= lr * m / (bc1 * (u + epsilon))


def nadam_factors(beta1, beta2, step):
    """Nadam's step scalars in double, as pynn_nadam_factors computes them: (u_{t+1} /
    (1 - u_product_{t+1}), (1 - u_t) / (1 - u_product_t), 1 - beta2^t), u_s = beta1 (1 -
    0.5 * 0.96^s), u_product_t = beta1^t prod_{s <= min(t, 1000)} (1 - 0.5 d_s) with
    d_s = 0.96 d_{s-1}, d_0 = 1 (Keras keeps u_product as a float32 running product)."""
    if step < 1:
        raise ValueError(f"nadam_factors: expected step >= 1, received step={step}")
    beta1, beta2, t = float(beta1), float(beta2), float(step)
    u_t = beta1 * (1.0 - 0.5 * math.pow(0.96, t))
    u_t1 = beta1 * (1.0 - 0.5 * math.pow(0.96, t + 1.0))
    d = q = 1.0
    for _ in range(min(step, 1000)):
        d *= 0.96
        q *= 1.0 - 0.5 * d
    u_product_t = math.pow(beta1, t) * q
    u_product_t1 = u_product_t * u_t1
    return (u_t1 / (1.0 - u_product_t1), (1.0 - u_t) / (1.0 - u_product_t),
            1.0 - math.pow(beta2, t))


def nadam_update(w, m, v, g, lr, beta1, beta2, epsilon, c_m, c_g, bc2):
    """m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2); m_hat = c_m m + c_g g;
    v_hat = v / bc2; w -= m_hat lr / (sqrt(v_hat) + epsilon) (c_m, c_g, bc2: nadam_factors)."""
    lr, beta1, beta2, epsilon, c_m, c_g, bc2 = (
        _scalar(s, w) for s in (lr, beta1, beta2, epsilon, c_m, c_g, bc2))
    m += (g - m) * (1 - beta1)
    v += (g * g - v) * (1 - beta2)
    m_hat = c_m * m + c_g * g
    v_hat = v / bc2
    w -= m_hat * lr / (np.sqrt(v_hat) + epsilon)


def lion_update(w, m, g, lr, beta1, beta2):
    """w -= lr sign(beta1 m + (1 - beta1) g); m = beta2 m + (1 - beta2) g."""
    lr, beta1, beta2 = (_scalar(s, w) for s in (lr, beta1, beta2))
    w -= lr * np.sign(m * beta1 + g * (1 - beta1))
    m[...] = m * beta2 + g * (1 - beta2)


# ---- convolution (NHWC, Keras kernel layout (KH, KW, C, F)) -----------------------------
# Geometry: strides (sh, sw), padding (pad_top, pad_left), output size (OH, OW); output
# (n, i, j) sees input rows i*sh - pad_top + a, a in [0, KH), and columns likewise; what
# falls outside the input is padding (see pynn/backend/base.py).

def _padded(x, window, strides, padding, out_hw, fill):
    """x (N, H, W, C) inside a border of `fill` big enough for every window: pad_top /
    pad_left as given, bottom / right as the output size needs."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (pt, pl), (oh, ow) = window, strides, padding, out_hw
    rows = max((oh - 1) * sh + kh, pt + h)
    cols = max((ow - 1) * sw + kw, pl + w)
    xp = np.full((n, rows, cols, c), fill, dtype=x.dtype)
    xp[:, pt:pt + h, pl:pl + w, :] = x
    return xp


def _window_slice(a, stride, out):
    """The input positions that window offset `a` touches for outputs 0 .. out-1."""
    return slice(a, a + stride * (out - 1) + 1, stride)


def _windows(x, window, strides, padding, out_hw, fill):
    """(N, OH, OW, KH, KW, C): every output position's window of x, padding = fill."""
    xp = _padded(x, window, strides, padding, out_hw, fill)
    (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
    out = np.empty((x.shape[0], oh, ow, kh, kw, x.shape[3]), dtype=x.dtype)
    for a in range(kh):
        for b in range(kw):
            out[:, :, :, a, b, :] = xp[:, _window_slice(a, sh, oh), _window_slice(b, sw, ow), :]
    return out


def _scatter_windows(g, x_shape, window, strides, padding):
    """The adjoint of _windows: g (N, OH, OW, KH, KW, C) summed back onto the input
    positions each window element came from; padding positions are dropped."""
    n, h, w, c = x_shape
    (kh, kw), (sh, sw), (pt, pl) = window, strides, padding
    oh, ow = g.shape[1], g.shape[2]
    gp = np.zeros(_padded(np.zeros((n, h, w, c), g.dtype), window, strides, padding,
                          (oh, ow), 0).shape, dtype=g.dtype)
    for a in range(kh):
        for b in range(kw):
            gp[:, _window_slice(a, sh, oh), _window_slice(b, sw, ow), :] += g[:, :, :, a, b, :]
    return gp[:, pt:pt + h, pl:pl + w, :]


def im2col(x, kernel_size, strides, padding, out_hw):
    """(N*OH*OW, KH*KW*C): row (n, i, j) is the window of output (n, i, j) in (a, b, c)
    row-major order, zeros for padding."""
    win = _windows(x, kernel_size, strides, padding, out_hw, 0)
    return win.reshape(-1, win.shape[3] * win.shape[4] * win.shape[5])


def col2im(cols, x_shape, kernel_size, strides, padding, out_hw):
    """The adjoint of im2col: each column entry added back onto its input position."""
    (kh, kw), (oh, ow) = kernel_size, out_hw
    g = cols.reshape(x_shape[0], oh, ow, kh, kw, x_shape[3])
    return _scatter_windows(g, x_shape, kernel_size, strides, padding)


def conv2d_forward(x, w, b, strides, padding, out_hw, activation="linear", alpha=0.2):
    """(cols, z, y): cols = im2col(x), z = cols @ w + b as (N, OH, OW, F), y = activation(z)."""
    kh, kw, c, f = w.shape
    cols = im2col(x, (kh, kw), strides, padding, out_hw)
    z = gemm(cols, w.reshape(kh * kw * c, f))
    if b is not None:
        z = z + b
    z = z.reshape(x.shape[0], out_hw[0], out_hw[1], f)
    return cols, z, activation_forward(z, activation, alpha)


def conv2d_backward(x, w, z, y, dy, strides, padding, activation="linear", alpha=0.2):
    """(dz, dw, db, dx) for conv2d_forward's z, y and the gradient dy of y."""
    kh, kw, c, f = w.shape
    out_hw = z.shape[1:3]
    dz = activation_backward(z, y, dy, activation, alpha)
    dz2 = dz.reshape(-1, f)
    cols = im2col(x, (kh, kw), strides, padding, out_hw)
    dw = gemm(cols, dz2, transpose_a=True).reshape(w.shape)
    db = bias_grad(dz2)
    dcols = gemm(dz2, w.reshape(kh * kw * c, f), transpose_b=True)
    dx = col2im(dcols, x.shape, (kh, kw), strides, padding, out_hw)
    return dz, dw, db, dx


# ---- pooling -----------------------------------------------------------------------------

def maxpool2d_forward(x, pool_size, strides, padding, out_hw):
    """Max over the input elements of each window (padding, -inf, never wins; a NaN does,
    as in np.max); a window with no input element gives 0."""
    win = _windows(x, pool_size, strides, padding, out_hw, -np.inf)
    count = _window_counts(x.shape, pool_size, strides, padding, out_hw, x.dtype)
    return np.where(count > 0, win.max(axis=(3, 4)), 0).astype(x.dtype)


def maxpool2d_backward(x, dy, pool_size, strides, padding):
    """dy routed to each window's first input element holding the maximum (row-major
    window order; a NaN maximum goes to the first NaN), summed where windows overlap."""
    (ph, pw), out_hw = pool_size, dy.shape[1:3]
    win = _windows(x, pool_size, strides, padding, out_hw, -np.inf)
    n, oh, ow, _, _, c = win.shape
    win = win.reshape(n, oh, ow, ph * pw, c)
    best = win.max(axis=3, keepdims=True)
    inside = _windows(np.ones((1,) + x.shape[1:3] + (1,), x.dtype), pool_size, strides, padding,
                      out_hw, 0).reshape(1, oh, ow, ph * pw, 1) > 0
    holds = inside & ((win == best) | (np.isnan(win) & np.isnan(best)))
    first = holds.argmax(axis=3)[:, :, :, None, :]            # argmax: the first True
    onehot = (np.arange(ph * pw).reshape(1, 1, 1, -1, 1) == first) & holds.any(axis=3, keepdims=True)
    g = (onehot * dy[:, :, :, None, :]).astype(dy.dtype).reshape(n, oh, ow, ph, pw, c)
    return _scatter_windows(g, x.shape, pool_size, strides, padding)


def _window_counts(x_shape, window, strides, padding, out_hw, dtype):
    """(1, OH, OW, 1): how many input (non-padding) elements each window holds."""
    ones = np.ones((1, x_shape[1], x_shape[2], 1), dtype=dtype)
    return _windows(ones, window, strides, padding, out_hw, 0).sum(axis=(3, 4))


def avgpool2d_forward(x, pool_size, strides, padding, out_hw):
    """Mean over the input elements of each window (padding not counted); 0 if none."""
    win = _windows(x, pool_size, strides, padding, out_hw, 0)
    count = _window_counts(x.shape, pool_size, strides, padding, out_hw, x.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = win.sum(axis=(3, 4)) / count
    return np.where(count > 0, y, 0).astype(x.dtype)


def avgpool2d_backward(dy, x_shape, pool_size, strides, padding):
    (ph, pw), out_hw = pool_size, dy.shape[1:3]
    count = _window_counts(x_shape, pool_size, strides, padding, out_hw, dy.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(count > 0, dy / count, 0).astype(dy.dtype)
    g = np.broadcast_to(share[:, :, :, None, None, :], share.shape[:3] + (ph, pw) + share.shape[3:])
    return _scatter_windows(g, x_shape, pool_size, strides, padding)


def global_avgpool2d_forward(x):
    """(N, C): the mean over H and W (sum, then divide by H*W)."""
    return x.sum(axis=(1, 2)) / _scalar(x.shape[1] * x.shape[2], x)


def global_avgpool2d_backward(dy, x_shape):
    share = dy / _scalar(x_shape[1] * x_shape[2], dy)
    return np.ascontiguousarray(np.broadcast_to(share[:, None, None, :], x_shape))


# ---- batch normalization over the rows of (rows, C) ---------------------------------------

def batchnorm_forward_train(x, gamma, beta, moving_mean, moving_variance, momentum, epsilon):
    """(y, mean, inv_std, new_moving_mean, new_moving_variance), Keras 3's training rule:
    biased batch variance, moving = moving * momentum + stat * (1 - momentum)."""
    rows = _scalar(x.shape[0], x)
    momentum, epsilon = _scalar(momentum, x), _scalar(epsilon, x)
    mean = x.sum(axis=0) / rows
    centered = x - mean
    var = (centered * centered).sum(axis=0) / rows
    inv_std = 1 / np.sqrt(var + epsilon)
    y = centered * inv_std
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    new_mean = moving_mean * momentum + mean * (1 - momentum)
    new_var = moving_variance * momentum + var * (1 - momentum)
    return y, mean, inv_std, new_mean, new_var


def batchnorm_forward_infer(x, gamma, beta, moving_mean, moving_variance, epsilon):
    inv_std = 1 / np.sqrt(moving_variance + _scalar(epsilon, x))
    y = (x - moving_mean) * inv_std
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def batchnorm_backward(x, gamma, mean, inv_std, dy):
    """(dgamma, dbeta, dx) through the batch statistics of batchnorm_forward_train."""
    rows = _scalar(x.shape[0], x)
    xhat = (x - mean) * inv_std
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    scale = inv_std if gamma is None else gamma * inv_std
    dx = scale * (dy - dbeta / rows - xhat * (dgamma / rows))
    return dgamma, dbeta, dx


# ---- batch normalization in inference form, differentiated ---------------------------------

def batchnorm_infer_backward(x, gamma, moving_mean, moving_variance, epsilon, dy):
    """(dgamma, dbeta, dx) of batchnorm_forward_infer (a frozen layer inside a network that
    trains): the statistics are constants, so dx = dy * gamma * inv_std."""
    inv_std = 1 / np.sqrt(moving_variance + _scalar(epsilon, x))
    xhat = (x - moving_mean) * inv_std
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = dy * (inv_std if gamma is None else gamma * inv_std)
    return dgamma, dbeta, dx


# ---- randomness: counter-based uniforms (csrc/pynn.h, "randomness") ------------------------

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z):
    """splitmix64's finaliser on uint64 values (NumPy wraps uint64 arithmetic mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_uniform(seed, counter, count):
    """The uniforms u_0 .. u_{count-1} of (seed, counter): float32 in [0, 1), 24 bits each.
    key = mix64(seed + G (counter + 1)); u_e = (mix64(key + G (e + 1)) >> 40) 2^-24."""
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64((int(seed) + 0x9E3779B97F4A7C15 * (int(counter) + 1)) & _MASK64))
        e = np.arange(1, count + 1, dtype=np.uint64)
        bits = _mix64(key + _GOLDEN * e) >> np.uint64(40)
    return (bits.astype(np.float64) * 2.0 ** -24).astype(np.float32)


def dropout_mask(shape, broadcast, seed, counter, rate, dtype=np.float32):
    """Inverted dropout's mask for an array of `shape` (batch axis first): 0 where the
    uniform drawn for the element is below `rate`, else 1 / (1 - rate) (rounded to float32).
    broadcast[a] true: axis a of the noise shape is 1, the mask repeats along it."""
    noise_shape = tuple(1 if b else d for d, b in zip(shape, broadcast))
    u = random_uniform(seed, counter, int(np.prod(noise_shape))).reshape(noise_shape)
    scale = np.float32(1.0 / (1.0 - float(rate)))
    mask = np.where(u >= np.float32(rate), scale, np.float32(0)).astype(dtype)
    return np.ascontiguousarray(np.broadcast_to(mask, tuple(shape)))


# ---- geometric image ops (csrc/pynn.h, "geometric image ops") -----------------------
# Keras 3's keras.ops.image.affine_transform / resize as its numpy and JAX backends compute
# them, in double, spelled in the C kernels' order (csrc/image.c).
IMAGE_PARAMS = 8
INTERPOLATIONS = ("bilinear", "nearest")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
RANDOM_KINDS = ("rotation", "zoom", "translation", "flip", "crop")


def _extend(k, n, fill_mode):
    """The index fill_mode reads for integer positions k (an int64 array) of an axis of n,
    and whether it lies in the image (constant: False outside, the fill value is read)."""
    inside = (k >= 0) & (k < n)
    if fill_mode == "reflect":               # d c b a | a b c d | d c b a
        m = np.mod(k, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m), np.ones_like(inside)
    if fill_mode == "wrap":
        return np.mod(k, n), np.ones_like(inside)
    if fill_mode == "nearest":
        return np.clip(k, 0, n - 1), np.ones_like(inside)
    if fill_mode == "constant":
        return np.clip(k, 0, n - 1), inside
    raise ValueError(f"affine_transform: expected fill_mode in {FILL_MODES}, received "
                     f"{fill_mode!r}")


def _tame(v, n):
    lim = 4.0 * n + 4.0
    return np.clip(np.where(np.isnan(v), -lim, v), -lim, lim)


def affine_transform(x, params, interpolation="bilinear", fill_mode="constant",
                     fill_value=0.0):
    """keras.ops.image.affine_transform of the NHWC images x: output (i, j) of image b
    reads the input at column (a0 j + a1 i + a2) / k, row (b0 j + b1 i + b2) / k,
    k = c0 j + c1 i + 1, params[b] = (a0, a1, a2, b0, b1, b2, c0, c1); the image extended
    index by index by fill_mode, then bilinear or nearest (floor(v + 0.5))."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"affine_transform: expected interpolation in {INTERPOLATIONS}, "
                         f"received {interpolation!r}")
    n, h, w, c = x.shape
    t = np.asarray(params, dtype=np.float32).astype(np.float64).reshape(n, IMAGE_PARAMS)
    i = np.arange(h, dtype=np.float64)[None, :, None]
    j = np.arange(w, dtype=np.float64)[None, None, :]
    col = lambda q: t[:, q][:, None, None]    # noqa: E731
    k = col(6) * j + col(7) * i + 1.0
    xs = _tame((col(0) * j + col(1) * i + col(2)) / k, w)
    ys = _tame((col(3) * j + col(4) * i + col(5)) / k, h)
    xd = x.astype(np.float64)
    fv = float(np.float32(fill_value))
    b = np.arange(n)[:, None, None]

    def read(r, q):
        rr, ir = _extend(r, h, fill_mode)
        qq, iq = _extend(q, w, fill_mode)
        v = xd[b, rr, qq] if h and w else np.zeros((n, h, w, c))
        return np.where((ir & iq)[..., None], v, fv)

    if interpolation == "nearest":
        out = read(np.floor(ys + 0.5).astype(np.int64), np.floor(xs + 0.5).astype(np.int64))
        return out.astype(np.float32)
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = (ys - y0)[..., None], (xs - x0)[..., None]
    r0, q0 = y0.astype(np.int64), x0.astype(np.int64)
    out = ((1.0 - fy) * (1.0 - fx)) * read(r0, q0) + ((1.0 - fy) * fx) * read(r0, q0 + 1) + \
        (fy * (1.0 - fx)) * read(r0 + 1, q0) + (fy * fx) * read(r0 + 1, q0 + 1)
    return out.astype(np.float32)


def _resize_axis(out, size, interpolation):
    """Per output position: the two window indices and the second's weight (bilinear, half
    pixel centres, clamped), or the nearest index twice with weight 0."""
    i = np.arange(out, dtype=np.float64)
    if interpolation == "nearest":
        k = np.minimum(np.floor((i + 0.5) * size / out).astype(np.int64), size - 1)
        return k, k, np.zeros(out)
    s = np.clip((i + 0.5) * (size / out) - 0.5, 0.0, size - 1)
    a0 = np.floor(s)
    return a0.astype(np.int64), np.minimum(a0.astype(np.int64) + 1, size - 1), s - a0


def resize(x, out_hw, window=None, interpolation="bilinear", fill_value=0.0):
    """Keras 3's resize (half-pixel centres, antialias=False) of the window (top, left,
    height, width) of each NHWC image (default: the whole image) to out_hw; window
    positions outside the image read fill_value (pad_to_aspect_ratio)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"resize: expected interpolation in {INTERPOLATIONS}, received "
                         f"{interpolation!r}")
    n, h, w, c = x.shape
    oh, ow = out_hw
    top, left, wh, ww = (0, 0, h, w) if window is None else window
    r0, r1, fy = _resize_axis(oh, wh, interpolation)
    q0, q1, fx = _resize_axis(ow, ww, interpolation)
    r0, r1, q0, q1 = r0 + top, r1 + top, q0 + left, q1 + left
    xd = x.astype(np.float64)
    fv = float(np.float32(fill_value))

    def read(r, q):
        inside = ((r >= 0) & (r < h))[:, None] & ((q >= 0) & (q < w))[None, :]
        v = xd[:, np.clip(r, 0, max(h - 1, 0))][:, :, np.clip(q, 0, max(w - 1, 0))] \
            if h and w else np.zeros((n, len(r), len(q), c))
        return np.where(inside[None, :, :, None], v, fv)

    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    out = ((1.0 - fy) * (1.0 - fx)) * read(r0, q0) + ((1.0 - fy) * fx) * read(r0, q1) + \
        (fy * (1.0 - fx)) * read(r1, q0) + (fy * fx) * read(r1, q1)
    return out.astype(np.float32)


def flip(x, params=None, horizontal=True, vertical=False):
    """Each NHWC image flipped left-right and/or top-bottom where params[b, 0] != 0 (params
    None: every image)."""
    out = x
    if horizontal:
        out = out[:, :, ::-1]
    if vertical:
        out = out[:, ::-1]
    if params is None:
        return np.ascontiguousarray(out)
    chosen = (np.asarray(params).reshape(-1, IMAGE_PARAMS)[:, 0] != 0)[:, None, None, None]
    return np.where(chosen, out, x).astype(x.dtype)


def crop(x, out_hw, top=0, left=0, params=None):
    """The (oh, ow) window of each NHWC image at (top, left), or at (params[b, 0],
    params[b, 1])."""
    n = x.shape[0]
    oh, ow = out_hw
    if params is None:
        offsets = [(top, left)] * n
    else:
        p = np.asarray(params).reshape(-1, IMAGE_PARAMS)
        offsets = [(int(p[b, 0]), int(p[b, 1])) for b in range(n)]
    out = np.empty((n, oh, ow, x.shape[3]), dtype=x.dtype)
    for b, (t, l) in enumerate(offsets):
        if not (0 <= t <= x.shape[1] - oh and 0 <= l <= x.shape[2] - ow):
            raise ValueError(f"crop: offsets ({t}, {l}) put the window outside the image")
        out[b] = x[b, t:t + oh, l:l + ow]
    return out


def image_random(kind, n, h, w, ranges, seed, counter, out_hw=(0, 0)):
    """The per-image parameters (n, IMAGE_PARAMS) of a random augmentation layer (csrc/
    pynn.h, pynn_image_random): image b's j-th uniform is element b * IMAGE_PARAMS + j of
    (seed, counter)'s stream."""
    if kind not in RANDOM_KINDS:
        raise ValueError(f"image_random: expected kind in {RANDOM_KINDS}, received {kind!r}")
    u = random_uniform(seed, counter, n * IMAGE_PARAMS).reshape(n, IMAGE_PARAMS)
    u0, u1 = u[:, 0].astype(np.float64), u[:, 1].astype(np.float64)
    r = [float(v) for v in ranges]
    m = np.zeros((n, IMAGE_PARAMS))
    if kind == "rotation":
        lo, hi = r[0] * 360.0, r[1] * 360.0
        angle = (lo + u0 * (hi - lo)) * (math.pi / 180.0)
        cs, sn = np.cos(angle), np.sin(angle)
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        m[:, 0], m[:, 1], m[:, 3], m[:, 4] = cs, -sn, sn, cs
        m[:, 2] = cx - cx * m[:, 0] - cy * m[:, 1]
        m[:, 5] = cy - cx * m[:, 3] - cy * m[:, 4]
    elif kind == "zoom":
        zh = (1.0 + r[0]) + u0 * ((1.0 + r[1]) - (1.0 + r[0]))
        zw = (1.0 + r[2]) + u1 * ((1.0 + r[3]) - (1.0 + r[2])) if r[4] != 0 else zh
        m[:, 0], m[:, 2] = zw, 0.5 * (w - 1) * (1.0 - zw)
        m[:, 4], m[:, 5] = zh, 0.5 * (h - 1) * (1.0 - zh)
    elif kind == "translation":
        m[:, 0] = m[:, 4] = 1.0
        m[:, 5] = -((r[0] + u0 * (r[1] - r[0])) * h)
        m[:, 2] = -((r[2] + u1 * (r[3] - r[2])) * w)
    elif kind == "flip":
        m[:, 0] = (u0 <= 0.5).astype(np.float64)
    else:
        oh, ow = out_hw
        m[:, 0] = np.minimum(np.floor(u0 * (h - oh + 1)), h - oh)
        m[:, 1] = np.minimum(np.floor(u1 * (w - ow + 1)), w - ow)
    return m.astype(np.float32)

# ---- pixel preprocessing (csrc/pynn.h, "pixel preprocessing") -------------------------------

def channel_affine(x, scale, offset, c, inner):
    """y = x * scale[k] + offset[k], x viewed as (outer, c, inner); offset None: 0."""
    f = np.float32
    x3 = np.asarray(x, f).reshape(-1, c, inner)
    y = x3 * np.asarray(scale, f).reshape(1, c, 1)
    if offset is not None:
        y = y + np.asarray(offset, f).reshape(1, c, 1)
    return y.astype(f).reshape(np.shape(x))


def normalize(x, mean, variance, c, inner, invert, epsilon):
    """Keras 3's Normalization: d = max(sqrt(variance), epsilon) per channel k,
    y = (x - mean) / d, or with invert y = mean + x * d; mean None acts as 0 (the backward:
    dx = dy / d, resp. dy * d).  x viewed as (outer, c, inner)."""
    f = np.float32
    sd = np.sqrt(np.asarray(variance, f)).reshape(1, c, 1)
    d = np.where(sd > f(epsilon), sd, f(epsilon)).astype(f)
    m = f(0) if mean is None else np.asarray(mean, f).reshape(1, c, 1)
    x3 = np.asarray(x, f).reshape(-1, c, inner)
    y = m + x3 * d if invert else (x3 - m) / d
    return y.astype(f).reshape(np.shape(x))


def image_uniforms(seed, counter, n):
    """The uniform of each of n images of a call: u_img of (seed, counter)."""
    return random_uniform(seed, counter, n)


def contrast_factors(seed, counter, n, lower, upper):
    """RandomContrast's per-image factors: lo + u (hi - lo), lo = 1 - lower, hi = 1 + upper
    (float32 arithmetic, Keras's uniform(minval=1 - lower, maxval=1 + upper))."""
    f = np.float32
    lo, hi = f(1.0 - float(lower)), f(1.0 + float(upper))
    return (lo + image_uniforms(seed, counter, n) * (hi - lo)).astype(f)


def brightness_deltas(seed, counter, n, lower, upper, vmin, vmax):
    """RandomBrightness's per-image deltas: (lower + u (upper - lower)) * (vmax - vmin)."""
    f = np.float32
    lo, hi = f(lower), f(upper)
    return ((lo + image_uniforms(seed, counter, n) * (hi - lo)) * (f(vmax) - f(vmin))).astype(f)


def _channel_means(x):
    """Per image and channel, the mean over H and W (summed in float64, as the C kernel)."""
    n, h, w, c = x.shape
    return (x.astype(np.float64).sum(axis=(1, 2)) / (h * w)).astype(np.float32)[:, None, None, :]


def _clip(v, vmin, vmax):
    f = np.float32
    return np.where(v < f(vmin), f(vmin), np.where(v > f(vmax), f(vmax), v)).astype(f)


def random_contrast(x, seed, counter, lower, upper, vmin, vmax):
    """Keras 3's RandomContrast in training on images x (N, H, W, C): (y, factors) with
    y = clip((x - m) f + m, vmin, vmax), m the image's channel mean over H and W."""
    f = np.float32
    x = np.asarray(x, f)
    factors = contrast_factors(seed, counter, x.shape[0], lower, upper)
    m = _channel_means(x)
    fac = factors[:, None, None, None]
    return _clip((x - m) * fac + m, vmin, vmax), factors


def random_contrast_backward(x, factors, dy, vmin, vmax):
    """dx = f g + (1 - f) / (H W) * (the channel's sum of g over the image), g = dy where
    the unclipped value lies in [vmin, vmax], else 0."""
    f = np.float32
    x, dy = np.asarray(x, f), np.asarray(dy, f)
    n, h, w, c = x.shape
    m = _channel_means(x)
    fac = np.asarray(factors, f)[:, None, None, None]
    v = (x - m) * fac + m
    g = np.where((v >= f(vmin)) & (v <= f(vmax)), dy, f(0)).astype(f)
    sums = g.astype(np.float64).sum(axis=(1, 2))[:, None, None, :]
    shared = ((1.0 - fac.astype(np.float64)) * sums / (h * w)).astype(f)
    return (g * fac + shared).astype(f)


def random_brightness(x, seed, counter, lower, upper, vmin, vmax):
    """Keras 3's RandomBrightness in training on x (N, ...): (y, mask) with v = x + delta
    (one delta per image), y = clip(v, vmin, vmax), mask = 1 where v lies in [vmin, vmax]."""
    f = np.float32
    x = np.asarray(x, f)
    delta = brightness_deltas(seed, counter, x.shape[0], lower, upper, vmin, vmax)
    v = x + delta.reshape((-1,) + (1,) * (x.ndim - 1))
    mask = ((v >= f(vmin)) & (v <= f(vmax))).astype(f)
    return _clip(v, vmin, vmax), mask


# ---- merges, concatenation, scaling ----------------------------------------------------------
MERGES = ("add", "subtract", "multiply", "average", "maximum", "minimum")


def merge_forward(kind, xs):
    """The merge of the same-shaped arrays xs, folded left to right in input order."""
    if kind == "subtract":
        if len(xs) != 2:
            raise ValueError(f"merge_forward: subtract takes 2 inputs, received {len(xs)}")
        return xs[0] - xs[1]
    y = xs[0].copy()
    for x in xs[1:]:
        if kind in ("add", "average"):
            y = y + x
        elif kind == "multiply":
            y = y * x
        elif kind == "maximum":
            y = np.maximum(y, x)
        elif kind == "minimum":
            y = np.minimum(y, x)
        else:
            raise ValueError(f"merge_forward: expected kind in {MERGES}, received {kind!r}")
    if kind == "average":
        y = y / _scalar(len(xs), y)
    return y


def merge_backward(kind, i, xs, dy):
    """d merge / d xs[i] applied to dy.  maximum / minimum: dy goes to the first input
    (lowest index) that holds the extreme value."""
    if kind == "add":
        return dy.copy()
    if kind == "subtract":
        return dy.copy() if i == 0 else -dy
    if kind == "average":
        return dy / _scalar(len(xs), dy)
    if kind == "multiply":
        g = dy.copy()
        for j, x in enumerate(xs):
            if j != i:
                g = g * x
        return g
    if kind in ("maximum", "minimum"):
        best = merge_forward(kind, xs)
        first = np.full(dy.shape, len(xs))
        for j in range(len(xs) - 1, -1, -1):
            first = np.where(xs[j] == best, j, first)
        return np.where(first == i, dy, 0).astype(dy.dtype)
    raise ValueError(f"merge_backward: expected kind in {MERGES}, received {kind!r}")


def concat(xs):
    """Concatenation of 2-D arrays along their last axis."""
    return np.concatenate(xs, axis=1)


def concat_backward(dy, widths):
    """The split of dy (outer, sum(widths)) into its column blocks."""
    bounds = np.cumsum([0] + list(widths))
    return [dy[:, bounds[i]:bounds[i + 1]].copy() for i in range(len(widths))]


def scale(x, alpha):
    return x * _scalar(alpha, x)


# ---- metrics -------------------------------------------------------------------------------
METRICS = ("binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
           "mean_absolute_error", "mean_squared_error", "true_positives", "false_positives",
           "true_negatives", "false_negatives", "top_k_categorical_accuracy",
           "sparse_top_k_categorical_accuracy", "accuracy", "count")


def metric_values(kind, pred, target, k=5, threshold=0.5):
    """The metric's value for each row of pred (rows, cols) against target: float rows of
    the same shape, or int64 labels (rows,) (taken as one-hot rows by the metrics that
    compare values).  threshold: binary accuracy's and the counts' (pred > threshold)."""
    if target.ndim == 1:
        if target.size and (target.min() < 0 or target.max() >= pred.shape[1]):
            raise ValueError(f"metric_values: expected labels in [0, {pred.shape[1]}), received "
                             f"values from {target.min()} to {target.max()}")
        if kind == "sparse_categorical_accuracy":
            return (np.argmax(pred, axis=-1) == target).astype(np.float64)
        if kind == "sparse_top_k_categorical_accuracy":
            return _in_top_k(pred, target, k)
        target = one_hot(target, pred.shape[1], pred.dtype)
    if np.isnan(threshold):
        raise ValueError("metric_values: expected a threshold that is not NaN")
    thr = np.float32(threshold)
    if kind == "count":
        return np.ones(len(pred))
    if kind == "accuracy":
        hits = (pred == target).astype(pred.dtype)
        return (hits.sum(axis=-1, dtype=pred.dtype) / _scalar(pred.shape[1], pred)).astype(np.float64)
    if kind == "binary_accuracy":
        hits = ((pred > thr).astype(pred.dtype) == target).astype(pred.dtype)
        return (hits.sum(axis=-1, dtype=pred.dtype) / _scalar(pred.shape[1], pred)).astype(np.float64)
    if kind in ("top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
        return _in_top_k(pred, np.argmax(target, axis=-1), k)
    if kind in ("categorical_accuracy", "sparse_categorical_accuracy"):
        return (np.argmax(pred, axis=-1) == np.argmax(target, axis=-1)).astype(np.float64)
    if kind == "mean_absolute_error":
        err = np.abs(target - pred).sum(axis=-1, dtype=pred.dtype)
        return (err / _scalar(pred.shape[1], pred)).astype(np.float64)
    if kind == "mean_squared_error":
        d = target - pred
        err = (d * d).sum(axis=-1, dtype=pred.dtype)
        return (err / _scalar(pred.shape[1], pred)).astype(np.float64)
    if kind in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
        predicted = pred > thr                      # Keras: above the threshold
        actual = target != 0                        # Keras casts y_true to bool
        want_pred = kind in ("true_positives", "false_positives")
        want_true = kind in ("true_positives", "false_negatives")
        return ((predicted == want_pred) & (actual == want_true)).sum(axis=-1).astype(np.float64)
    raise ValueError(f"metric_values: expected kind in {METRICS}, received {kind!r}")


def _row_weights(weights, rows, per_weight, where):
    """Each row's weight in float64 (weights[i // per_weight]), checked as the kernels do."""
    if per_weight < 1:
        raise ValueError(f"{where}: expected per_weight >= 1, received {per_weight}")
    w = np.asarray(weights)
    if w.shape != ((rows + per_weight - 1) // per_weight,):
        raise ValueError(f"{where}: expected {(rows + per_weight - 1) // per_weight} weights, "
                         f"received shape {w.shape}")
    if w.size and not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError(f"{where}: expected finite weights >= 0")
    return np.repeat(w.astype(np.float64), per_weight)[:rows]


def _in_top_k(pred, truth, k):
    """1 where the true class's value is among the k largest of its row (TF's in_top_k:
    values tied with the k-th count as in; a non-finite value is not)."""
    if k < 1:
        raise ValueError(f"metric_values: expected k >= 1, received k={k}")
    v = pred[np.arange(len(pred)), truth]
    above = (pred > v[:, None]).sum(axis=-1)
    return ((above < k) & np.isfinite(v)).astype(np.float64)


def metric_sum(kind, pred, target, k=5, threshold=0.5, weights=None, per_weight=1):
    """The sum over rows of metric_values, row i weighted by weights[i // per_weight] (a
    Python float)."""
    values = metric_values(kind, pred, target, k, threshold)
    if weights is not None:
        values = values * _row_weights(weights, len(pred), per_weight, "metric_sum")
    return float(np.sum(values))


def metric_confusion(pred, target, thresholds, weights=None, per_weight=1):
    """(4, n) float64: true positives, false positives, true negatives, false negatives of
    every entry of pred at each float32 threshold (pred > threshold predicted positive, a
    non-zero target actually positive), each entry counting its row's weight; per row and
    threshold an integer count times the weight, added over the rows in order (so it
    agrees bitwise with the kernels)."""
    thresholds = np.asarray(thresholds, dtype=np.float32)
    if thresholds.ndim != 1 or thresholds.size < 1 or np.any(np.isnan(thresholds)):
        raise ValueError("metric_confusion: expected at least one threshold, none NaN")
    if target.ndim == 1:
        if target.size and (target.min() < 0 or target.max() >= pred.shape[1]):
            raise ValueError(f"metric_confusion: expected labels in [0, {pred.shape[1]})")
        target = one_hot(target, pred.shape[1], pred.dtype)
    rows = len(pred)
    w = np.ones(rows) if weights is None else \
        _row_weights(weights, rows, per_weight, "metric_confusion")
    predicted = pred[:, :, None] > thresholds[None, None, :]         # rows, cols, n
    actual = (target != 0)[:, :, None]
    per_row = np.stack([(predicted & actual).sum(axis=1), (predicted & ~actual).sum(axis=1),
                        (~predicted & ~actual).sum(axis=1), (~predicted & actual).sum(axis=1)],
                       axis=1).astype(np.float64)                     # rows, 4, n
    terms = per_row * w[:, None, None]
    out = np.zeros((4, len(thresholds)))
    for r in range(rows):                                             # rows, in order
        out += terms[r]
    return out


# ---- Keras 3's base-optimizer settings: clipping, per-variable decay, EMA --------------------
NORM_CHUNK = 4096
"""Norms sum chunks of this many elements in order, then the chunk sums in order
(PYNN_NORM_CHUNK)."""
SEGMENT_DECAY = 1
SEGMENT_SPARSE = 2
"""An Embedding table's segment, left to embedding_sgd when the step is plain SGD
(PYNN_SEGMENT_SPARSE)."""


def sparse_sgd_ok(kind, hyper, has_ema):
    """True when a step with these settings (hyper: pynn.ids.HYPER's and OPTIONS' names) is
    plain SGD, w -= lr g and nothing else, so the rows of a zero gradient do not change
    (pynn_optimizer_sparse_ok): kind "sgd", float32 momentum and weight decay 0, no clip
    option, no EMA array."""
    return kind == "sgd" and not has_ema and \
        np.float32(hyper.get("momentum", 0.0)) == 0 and \
        np.float32(hyper.get("weight_decay", 0.0)) == 0 and \
        not any(hyper.get(k, 0.0) for k in ("clipnorm", "clipvalue", "global_clipnorm"))


def dense_runs(triples):
    """The (start, end) runs of the segments not flagged SEGMENT_SPARSE."""
    runs = []
    for off, size, flags in triples:
        if flags & SEGMENT_SPARSE or not size:
            continue
        if runs and runs[-1][1] == off:
            runs[-1] = (runs[-1][0], off + size)
        else:
            runs.append((off, off + size))
    return runs


def check_segments(segments, n, where="optimizer_step"):
    """segments as a list of (offset, size, flags) triples tiling [0, n) in order (None: one
    covering everything, decay applied); ValueError otherwise."""
    if segments is None:
        return [(0, n, SEGMENT_DECAY)]
    flat = [int(v) for v in np.asarray(segments, dtype=np.int64).reshape(-1)]
    if len(flat) % 3:
        raise ValueError(f"{where}: expected segments as (offset, size, flags) triples")
    triples = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]
    end = 0
    for off, size, flags in triples:
        if off != end or size < 0 or flags & ~(SEGMENT_DECAY | SEGMENT_SPARSE):
            raise ValueError(f"{where}: segments must tile the array in order with flags 0 to "
                             f"3, received {triples}")
        end += size
    if triples and end != n:
        raise ValueError(f"{where}: segments cover {end} elements, the array has {n}")
    return triples or [(0, n, SEGMENT_DECAY)]


def sumsq(g):
    """The sum of squares of the flat array g in float64: chunks of NORM_CHUNK summed left
    to right, the chunk sums left to right (a cumulative sum is a sequential one)."""
    x = np.asarray(g, dtype=np.float64).reshape(-1)
    total = 0.0
    for c in range(0, x.size, NORM_CHUNK):
        part = x[c:c + NORM_CHUNK]
        total += float(np.cumsum(part * part)[-1])
    return total


def clip_gradients(g, segments=None, clipnorm=0.0, clipvalue=0.0, global_clipnorm=0.0):
    """Keras 3's _clip_gradients over the flat gradient g (in place), its variables the
    segments: clipnorm per variable g c / max(||g||, c), else global_clipnorm
    g * (c min(1 / N, 1 / c) + (N - N)), else clipvalue clip(g, -c, c); 0 is off."""
    g = g.reshape(-1)
    triples = check_segments(segments, g.size)
    f = g.dtype.type
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if clipnorm > 0:
            c = f(clipnorm)
            for off, size, _ in triples:
                if size:
                    seg = g[off:off + size]
                    norm = f(math.sqrt(sumsq(seg)))
                    seg[...] = seg * c / np.maximum(norm, c)
        elif global_clipnorm > 0:
            c = f(global_clipnorm)
            norm = f(math.sqrt(sum(sumsq(g[off:off + size]) for off, size, _ in triples)))
            scale = c * np.minimum(f(1) / norm, f(1) / c) + (norm - norm)
            g[...] = g * scale
        elif clipvalue > 0:
            c = f(clipvalue)
            g[...] = np.clip(g, -c, c)


def ema_update(ema, w, step, momentum, overwrite_frequency=0):
    """Keras 3's _update_model_variables_moving_average after update `step` (>= 1):
    ema = m ema + (1 - m) w with m = 0 at step 1, ema_momentum after; then w = ema when
    overwrite_frequency divides step."""
    m = _scalar(0.0 if step == 1 else momentum, w)
    ema[...] = m * ema + (_scalar(1, w) - m) * w
    f = int(overwrite_frequency or 0)
    if f > 0 and step % f == 0:
        w[...] = ema


# ---- one optimizer step ----------------------------------------------------------------------
def optimizer_step(kind, w, slots, g, step, hyper, segments=None, ema=None):
    """One update of the flat parameters w (in place); slots the optimizer's state arrays
    (pynn_optimizer_step's order, None where the rule reads none; fewer than
    pynn._core.OPT_SLOTS may be given); hyper a dict of the settings named in pynn.ids.HYPER
    (weight_decay and amsgrad may be left out: 0) and of the options named in
    pynn.ids.OPTIONS (clipping, EMA; left out: 0); step >= 1 the update being made.
    Keras 3's order: g clipped (in place), weight decay on the segments ((offset, size,
    flags) triples, None: one covering w) whose flag says so, the rule, the EMA (ema: its
    array, None: none)."""
    s = list(slots) + [None] * 3
    lr = hyper["learning_rate"]
    if kind not in ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"):
        raise ValueError(f"optimizer_step: expected kind 'sgd', 'adam', 'rmsprop', 'adagrad', "
                         f"'adadelta', 'adamax', 'nadam' or 'lion', received {kind!r}")
    triples = check_segments(segments, w.size)
    clip_gradients(g, triples, hyper.get("clipnorm", 0.0), hyper.get("clipvalue", 0.0),
                   hyper.get("global_clipnorm", 0.0))
    if float(np.float32(hyper.get("weight_decay", 0.0))) != 0.0:
        flat = w.reshape(-1)
        for off, size, flags in triples:
            if flags & SEGMENT_DECAY and size:
                weight_decay(flat[off:off + size], hyper["weight_decay"], lr)
    if segments is not None and sparse_sgd_ok(kind, hyper, ema is not None):
        # plain SGD: the segments flagged SEGMENT_SPARSE are left to embedding_sgd
        flat, gflat = w.reshape(-1), g.reshape(-1)
        for a, b in dense_runs(triples):
            _rule(kind, flat[a:b], s, gflat[a:b], step, hyper, lr)
        return
    _rule(kind, w, s, g, step, hyper, lr)
    if ema is not None:
        ema_update(ema, w, step, hyper.get("ema_momentum", 0.0),
                   hyper.get("ema_overwrite_frequency", 0.0))


def _rule(kind, w, s, g, step, hyper, lr):
    if kind == "sgd":
        sgd_update(w, s[0], g, lr, hyper["momentum"], bool(hyper["nesterov"]))
    elif kind == "adam":
        lr_t = adam_lr_t(lr, hyper["beta_1"], hyper["beta_2"], step)
        if hyper.get("amsgrad", 0.0):
            adam_amsgrad_update(w, s[0], s[1], s[2], g, lr_t, hyper["beta_1"], hyper["beta_2"],
                                hyper["epsilon"])
        else:
            adam_update(w, s[0], s[1], g, lr_t, hyper["beta_1"], hyper["beta_2"],
                        hyper["epsilon"])
    elif kind == "rmsprop":
        rmsprop_update(w, s[0], s[1], g, lr, hyper["rho"], hyper["momentum"], hyper["epsilon"])
    elif kind == "adagrad":
        adagrad_update(w, s[0], g, lr, hyper["epsilon"])
    elif kind == "adadelta":
        adadelta_update(w, s[0], s[1], g, lr, hyper["rho"], hyper["epsilon"])
    elif kind == "adamax":
        adamax_update(w, s[0], s[1], g, lr, hyper["beta_1"], hyper["beta_2"], hyper["epsilon"],
                      1.0 - hyper["beta_1"] ** step)
    elif kind == "nadam":
        c_m, c_g, bc2 = nadam_factors(hyper["beta_1"], hyper["beta_2"], step)
        nadam_update(w, s[0], s[1], g, lr, hyper["beta_1"], hyper["beta_2"], hyper["epsilon"],
                     c_m, c_g, bc2)
    else:
        lion_update(w, s[0], g, lr, hyper["beta_1"], hyper["beta_2"])


# ---- activations (engineer A): Keras 3's formulas (keras/src/backend/jax/nn.py) -------------
# elu, selu, softplus, softsign, silu, hard_sigmoid, hard_silu, relu6, mish, exponential,
# log_softmax; Keras's ReLU(max_value, negative_slope, threshold); softmax over a middle
# axis; PReLU.  Derivatives at a kink are jax.grad's.

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (jax.nn.softplus: logaddexp(x, 0))."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _hard_sigmoid(x):
    """relu6(x + 3) / 6, jax.nn.hard_sigmoid."""
    return np.minimum(np.maximum(x + _scalar(3, x), 0), _scalar(6, x)) / _scalar(6, x)


def _log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _elu(x, alpha):
    a = _scalar(alpha, x)
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


_MORE_FORWARD = {
    "elu": _elu,
    "selu": lambda x, a: _scalar(SELU_SCALE, x) * _elu(x, SELU_ALPHA),
    "softplus": lambda x, a: _softplus(x),
    "softsign": lambda x, a: x / (np.abs(x) + _scalar(1, x)),
    "silu": lambda x, a: x * _sigmoid(x),
    "hard_sigmoid": lambda x, a: _hard_sigmoid(x),
    "hard_silu": lambda x, a: x * _hard_sigmoid(x),
    "relu6": lambda x, a: np.minimum(np.maximum(x, 0), _scalar(6, x)),
    "mish": lambda x, a: x * np.tanh(_softplus(x)),
    "exponential": lambda x, a: np.exp(x),
    "log_softmax": lambda x, a: _log_softmax(x),
}


def _elu_grad(x, dy, alpha):
    a = _scalar(alpha, x)
    return np.where(x > 0, dy, dy * (a * np.exp(np.minimum(x, 0))))


def _mish_grad(x, y, dy, a):
    t = np.tanh(_softplus(x))
    return dy * (t + x * (1 - t * t) * _sigmoid(x))


def _hard_silu_grad(x, y, dy, a):
    hs = _hard_sigmoid(x)
    inside = (x > -3) & (x < 3)
    return dy * np.where(inside, hs + x / _scalar(6, x), hs)


_MORE_BACKWARD = {
    "elu": lambda x, y, dy, a: _elu_grad(x, dy, a),
    "selu": lambda x, y, dy, a: _scalar(SELU_SCALE, x) * _elu_grad(x, dy, SELU_ALPHA),
    "softplus": lambda x, y, dy, a: dy * _sigmoid(x),
    "softsign": lambda x, y, dy, a: dy / ((np.abs(x) + 1) * (np.abs(x) + 1)),
    "silu": lambda x, y, dy, a: dy * (_sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "hard_sigmoid": lambda x, y, dy, a: np.where((x > -3) & (x < 3), dy / _scalar(6, x),
                                                 0).astype(dy.dtype),
    "hard_silu": _hard_silu_grad,
    "relu6": lambda x, y, dy, a: np.where((x > 0) & (x < 6), dy, 0).astype(dy.dtype),
    "mish": _mish_grad,
    "exponential": lambda x, y, dy, a: dy * y,
    "log_softmax": lambda x, y, dy, a: dy - np.exp(y) * dy.sum(axis=-1, keepdims=True),
}


def relu_forward(x, negative_slope=0.0, threshold=0.0, max_value=None):
    """Keras's ReLU layer: clip(x [x > threshold], 0, max_value) - negative_slope
    max(threshold - x, 0); max_value None (or inf) for no clip."""
    top = _scalar(np.inf if max_value is None else max_value, x)
    t = _scalar(threshold, x)
    kept = np.where(x > t, x, 0)
    out = np.minimum(np.maximum(kept, 0), top)
    return (out - _scalar(negative_slope, x) * np.maximum(t - x, 0)).astype(x.dtype)


def relu_backward(x, dy, negative_slope=0.0, threshold=0.0, max_value=None):
    top = _scalar(np.inf if max_value is None else max_value, x)
    t = _scalar(threshold, x)
    pos = np.where((x > t) & (x > 0) & (x < top), dy, 0)
    neg = np.where(x < t, _scalar(negative_slope, x) * dy, 0)
    return (pos + neg).astype(dy.dtype)


def softmax_axis_forward(x, outer, length, inner, mask=None):
    """softmax of x viewed as (outer, length, inner) over its middle axis.  mask (None, or
    x's size): Keras's Softmax(mask=): where mask <= 0.5, x counts as -1e9 (Keras's
    _large_negative_number) and the output is 0."""
    v = x.reshape(outer, length, inner)
    keep = None if mask is None else (np.asarray(mask).reshape(v.shape) > 0.5)
    if keep is not None:
        v = np.where(keep, v, _scalar(-1e9, x))
    e = np.exp(v - v.max(axis=1, keepdims=True))
    out = e / e.sum(axis=1, keepdims=True)
    if keep is not None:
        out = np.where(keep, out, _scalar(0, x))
    return out.reshape(x.shape)


def softmax_axis_backward(y, dy, outer, length, inner):
    yv, gv = y.reshape(outer, length, inner), dy.reshape(outer, length, inner)
    dot = (gv * yv).sum(axis=1, keepdims=True)
    return (yv * (gv - dot)).reshape(y.shape)


def _prelu_alpha(alpha, dims, shared):
    """alpha (its own shape, the shared axes 1) broadcast to (1,) + dims."""
    shape = tuple(1 if s else d for d, s in zip(dims, shared))
    return np.broadcast_to(alpha.reshape((1,) + shape), (1,) + tuple(dims))


def prelu_forward(x, alpha, dims, shared):
    """PReLU: x > 0 ? x : alpha x, x (rows, *dims) (or flat), alpha broadcast."""
    v = x.reshape((-1,) + tuple(dims))
    a = _prelu_alpha(alpha, dims, shared)
    return np.where(v > 0, v, a * v).reshape(x.shape)


def prelu_backward(x, alpha, dy, dims, shared):
    """(dx, dalpha): dx = dy (x > 0 ? 1 : alpha); dalpha = the sum over rows and shared
    axes of dy x [x < 0], alpha's shape flattened."""
    v = x.reshape((-1,) + tuple(dims))
    g = dy.reshape(v.shape)
    a = _prelu_alpha(alpha, dims, shared)
    dx = np.where(v > 0, g, a * g).reshape(x.shape)
    contrib = np.where(v < 0, g * v, 0).astype(dy.dtype)
    axes = (0,) + tuple(1 + k for k, s in enumerate(shared) if s)
    dalpha = contrib.sum(axis=axes, keepdims=True).reshape(-1)
    return dx, dalpha


# ---- engineer D (#16): sequence ops (global max pooling, masked mean, RepeatVector) --------

def global_maxpool_forward(x):
    """(N, C): the maximum of x (N, S, C) over its steps (a NaN wins, as np.max)."""
    return x.max(axis=1)


def global_maxpool_backward(x, dy):
    """dy (N, C) at the first maximum of each (sample, channel) of x (N, S, C); 0 elsewhere."""
    first = x.argmax(axis=1)                    # argmax: the first maximum, or the first NaN
    dx = np.zeros_like(x)
    n, c = np.indices(first.shape)
    dx[n, first, c] = dy
    return dx


def masked_mean_forward(x, mask):
    """(N, C): sum_t mask[n, t] x[n, t, c] / sum_t mask[n, t] (Keras 3's masked mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)).astype(x.dtype)


def masked_mean_backward(dy, mask):
    """(N, S, C): mask[n, t] dy[n, c] / sum_t mask[n, t]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share = dy / mask.sum(axis=1, keepdims=True)
    return (mask[:, :, None] * share[:, None, :]).astype(dy.dtype)


def repeat_vector_forward(x, times):
    """(N, times, F): times copies of x (N, F)."""
    return np.ascontiguousarray(np.broadcast_to(x[:, None, :], (x.shape[0], times, x.shape[1])))


def repeat_vector_backward(dy):
    """(N, F): the sum of dy (N, times, F) over its copies, in order."""
    dx = dy[:, 0, :].copy()
    for t in range(1, dy.shape[1]):
        dx += dy[:, t, :]
    return dx


# ---- regularizers and constraints (engineer F) ------------------------------------------------

def penalty(x, l1, l2, scale=1.0):
    """(scale * (l1 sum|x| + l2 sum x^2) in float64, its gradient scale * (l1 sign(x) +
    2 l2 x) in float32): Keras 3's L1, L2 and L1L2 (keras/src/regularizers)."""
    x = np.asarray(x, dtype=np.float32)
    x64 = x.astype(np.float64)
    value = scale * (l1 * np.abs(x64).sum() + l2 * (x64 * x64).sum())
    grad = np.float32(scale * l1) * np.sign(x) + np.float32(2.0 * scale * l2) * x
    return float(value), grad.astype(np.float32)


def constraint(w, outer, red, inner, kind, a=0.0, b=0.0, rate=1.0):
    """Keras 3's weight constraints (keras/src/constraints) on w viewed as (outer, red,
    inner), the norms over `red`, epsilon 1e-7: a new float32 array of w's shape."""
    w = np.asarray(w, dtype=np.float32)
    v = w.reshape(outer, red, inner)
    if kind == "non_neg":
        return np.maximum(v, np.float32(0)).reshape(w.shape)
    eps = np.float32(1e-7)
    norms = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=1, keepdims=True)).astype(np.float32)
    if kind == "unit_norm":
        return (v / (eps + norms)).reshape(w.shape)
    if kind == "max_norm":
        desired = np.clip(norms, np.float32(0), np.float32(a))
    elif kind == "min_max_norm":
        desired = np.float32(rate) * np.clip(norms, np.float32(a), np.float32(b)) + \
            (np.float32(1) - np.float32(rate)) * norms
    else:
        raise ValueError(f"constraint: unknown kind {kind!r}")
    return (v * (desired / (eps + norms))).astype(np.float32).reshape(w.shape)


# ---- Embedding and Masking (engineer G, issue #16) -------------------------------------------
# Ids arrive as float32 holding integers (pynn's inputs are float32; exact up to 2^24).

def embedding_check_ids(ids, input_dim):
    """ids as int64, or ValueError when one is not an integer in [0, input_dim)."""
    ids = np.asarray(ids)
    with np.errstate(invalid="ignore"):
        bad = ~((ids >= 0) & (ids < input_dim) & (ids == np.floor(ids)))
    if bad.any():
        raise ValueError(f"embedding: an Embedding input id is not an integer in [0, input_dim="
                         f"{input_dim}): received {ids[bad].reshape(-1)[0]!r}")
    return ids.astype(np.int64)


def embedding_forward(ids, table):
    """table[ids] (ids (n,), table (V, D)) and the mask ids != 0 as float32 1/0."""
    rows = embedding_check_ids(ids, table.shape[0])
    return table[rows], (rows != 0).astype(np.float32)


def embedding_backward(ids, dy, input_dim):
    """The rows seen (sorted, distinct) and their gradient rows: for each id the sum of its
    dy rows in position order, in float32 (the kernels' order)."""
    rows = embedding_check_ids(ids, input_dim)
    seen = np.unique(rows)
    grad = np.zeros((len(seen), dy.shape[1]), dtype=np.float32)
    where = np.searchsorted(seen, rows)
    for i in range(len(rows)):             # position order
        grad[where[i]] += dy[i]
    return seen, grad


def embedding_sgd(table, dtable, seen, lr, apply):
    """Plain SGD on the rows `seen` (distinct) only, when apply: table[r] -= lr dtable[r]
    (sgd_update's expression, so the dense update's bits); then dtable[r] = 0."""
    if apply:
        w = table[seen]
        sgd_update(w, None, dtable[seen], lr, 0.0, False)
        table[seen] = w
    dtable[seen] = 0.0


def masking_forward(x, mask_value):
    """(y, mask): mask = any(x != mask_value over the last axis), y = x * mask."""
    keep = np.any(x != np.float32(mask_value), axis=-1).astype(np.float32)
    return x * keep[..., None], keep


def masking_backward(dy, mask):
    return dy * mask[..., None]


# ---- engineer E: normalization and noise layers (csrc/norm.c; csrc/pynn.h) -----------------
# Group normalization of x viewed as (n, s, groups, k) (LayerNormalization: s = groups = 1),
# unit normalization of rows, and the Box-Muller Gaussian noise of the counter-based
# uniforms.  The statistics are computed in float64 and rounded to float32, as C sums them.

def group_norm_forward(x, gamma, beta, s, groups, k, epsilon, rms=False):
    """(y, mean, inv_std) of Keras 3's group / layer normalization: per (b, g), over its
    s * k values, mean and the biased variance; inv_std = 1 / sqrt(var + epsilon);
    y = x * inv + (beta - mean * inv) with inv = inv_std * gamma (rms: y = x * inv_std *
    gamma (+ beta when given), no centring).  mean and inv_std are (n, groups) float32."""
    xr = np.asarray(x, np.float32).reshape(-1, s, groups, k)
    x64 = xr.astype(np.float64)
    mu = x64.mean(axis=(1, 3))
    var = ((x64 - mu[:, None, :, None]) ** 2).mean(axis=(1, 3))
    mean = mu.astype(np.float32)
    inv_std = (1.0 / np.sqrt(var.astype(np.float32).astype(np.float64)
                             + float(np.float32(epsilon)))).astype(np.float32)
    gm = np.ones((groups, k), np.float32) if gamma is None else \
        np.asarray(gamma, np.float32).reshape(groups, k)
    bt = np.zeros((groups, k), np.float32) if beta is None else \
        np.asarray(beta, np.float32).reshape(groups, k)
    istd = inv_std[:, None, :, None]
    if rms:
        y = xr * istd * gm
        if beta is not None:
            y = y + bt
    else:
        inv = istd * gm
        y = xr * inv + (bt - mean[:, None, :, None] * inv)
    return y.astype(np.float32).reshape(np.shape(x)), mean, inv_std


def group_norm_backward(x, gamma, mean, inv_std, dy, s, groups, k, rms=False):
    """(dgamma, dbeta, dx) of group_norm_forward (in float64, rounded at the end):
    gd = dy * gamma, xhat = (x - mean) * inv_std (rms: x * inv_std), m = s * k;
      dx = inv_std (gd - mean(gd) - xhat mean(gd xhat))           (rms 0)
      dx = gd inv_std - inv_std^3 (x - mean) sum(gd x) / m         (rms 1)."""
    shape = np.shape(x)
    x64 = np.asarray(x, np.float32).reshape(-1, s, groups, k).astype(np.float64)
    dy64 = np.asarray(dy, np.float32).reshape(x64.shape).astype(np.float64)
    mu = np.asarray(mean, np.float32).reshape(-1, groups).astype(np.float64)[:, None, :, None]
    istd = np.asarray(inv_std, np.float32).reshape(-1, groups).astype(np.float64)[:, None, :, None]
    gm = np.ones((groups, k)) if gamma is None else \
        np.asarray(gamma, np.float32).reshape(groups, k).astype(np.float64)
    m = float(s * k)
    xhat = x64 * istd if rms else (x64 - mu) * istd
    dbeta = dy64.sum(axis=(0, 1)).reshape(-1)
    dgamma = (dy64 * xhat).sum(axis=(0, 1)).reshape(-1)
    gd = dy64 * gm
    if rms:
        s2 = (gd * x64).sum(axis=(1, 3), keepdims=True)
        dx = gd * istd - s2 * istd ** 3 * (x64 - mu) / m
    else:
        s1 = gd.sum(axis=(1, 3), keepdims=True)
        s2 = (gd * xhat).sum(axis=(1, 3), keepdims=True)
        dx = istd * (gd - s1 / m - xhat * s2 / m)
    return (dgamma.astype(np.float32), dbeta.astype(np.float32),
            dx.astype(np.float32).reshape(shape))


UNIT_NORM_MIN_SQUARE = 1e-24
"""Keras 3's UnitNormalization: keras.ops.normalize with epsilon 1e-12, clamping the square
sum at epsilon^2 (x * rsqrt(max(sum x^2, 1e-24)))."""


def unit_norm_forward(x, cols):
    """(y, inv_norm): y = x / sqrt(max(sum x^2, 1e-24)) per row of `cols` values; inv_norm
    (rows,) float32, negated where the clamp applied."""
    xr = np.asarray(x, np.float32).reshape(-1, cols)
    ss = (xr.astype(np.float64) ** 2).sum(axis=1).astype(np.float32).astype(np.float64)
    inv = (1.0 / np.sqrt(np.maximum(ss, UNIT_NORM_MIN_SQUARE))).astype(np.float32)
    y = xr * inv[:, None]
    return y.reshape(np.shape(x)), np.where(ss > UNIT_NORM_MIN_SQUARE, inv, -inv)


def unit_norm_backward(x, inv_norm, dy, cols):
    """dx of unit_norm_forward: inv dy - inv^3 x (dy . x), inv = |inv_norm|, the second
    term 0 on a clamped row."""
    x64 = np.asarray(x, np.float32).reshape(-1, cols).astype(np.float64)
    dy64 = np.asarray(dy, np.float32).reshape(x64.shape).astype(np.float64)
    sign = np.asarray(inv_norm, np.float32).reshape(-1)
    inv = np.abs(sign).astype(np.float64)[:, None]
    dot = np.where(sign[:, None] < 0, 0.0, (dy64 * x64).sum(axis=1, keepdims=True))
    return (inv * dy64 - inv ** 3 * x64 * dot).astype(np.float32).reshape(np.shape(x))


def random_normal(seed, counter, count):
    """The standard normals z_0 .. z_{count-1} of (seed, counter), float64: Box-Muller on
    the uniforms u_{2e}, u_{2e+1}: z_e = sqrt(-2 log(1 - u_{2e})) cos(2 pi u_{2e+1})."""
    u = random_uniform(seed, counter, 2 * int(count)).astype(np.float64)
    return np.sqrt(-2.0 * np.log(1.0 - u[0::2])) * np.cos(6.283185307179586 * u[1::2])


def gaussian_noise(x, seed, counter, mode, scale):
    """(y, noise): mode 0 (GaussianNoise) noise = scale z, y = x + noise; mode 1
    (GaussianDropout) noise = 1 + scale z, y = x * noise; noise rounded to float32."""
    x = np.asarray(x, np.float32)
    z = random_normal(seed, counter, x.size).reshape(x.shape)
    if mode == 0:
        noise = (float(scale) * z).astype(np.float32)
        return x + noise, noise
    noise = (1.0 + float(scale) * z).astype(np.float32)
    return x * noise, noise


# ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) ---------------
# Conv2DTranspose: x (N, H, W, C), kernel w (KH, KW, F, C) (Keras's layout), output
# (N, OH, OW, F): the adjoint of the convolution over the output with strides and padding
# (pad_top, pad_left) (csrc/pynn.h, "transposed convolution").

def conv2d_transpose_forward(x, w, b, strides, padding, out_hw, activation="linear",
                             alpha=0.2):
    """(z, y): z = col2im(x W^T) + b (N, OH, OW, F), y = activation(z)."""
    kh, kw, f, c = w.shape
    n, h, wd, _ = x.shape
    cols = gemm(x.reshape(-1, c), w.reshape(kh * kw * f, c), transpose_b=True)
    z = col2im(cols, (n, out_hw[0], out_hw[1], f), (kh, kw), strides, padding, (h, wd))
    if b is not None:
        z = z + b
    z = z.astype(np.float32)
    return z, activation_forward(z, activation, alpha)


def conv2d_transpose_backward(x, w, z, y, dy, strides, padding, activation="linear",
                              alpha=0.2):
    """(dz, dw, db, dx) for conv2d_transpose_forward's z, y and the gradient dy of y."""
    kh, kw, f, c = w.shape
    dz = activation_backward(z, y, dy, activation, alpha)
    db = bias_grad(dz.reshape(-1, f))
    cols = im2col(dz, (kh, kw), strides, padding, x.shape[1:3])      # (N*H*W, KH*KW*F)
    dx = gemm(cols, w.reshape(kh * kw * f, c)).reshape(x.shape)
    dw = gemm(cols, x.reshape(-1, c), transpose_a=True).reshape(w.shape)
    return dz, dw, db, dx


def _upsample_matrix(size, factor, interpolation):
    """(size * factor, size): row i holds output i's weights on the inputs (resize's)."""
    out = size * factor
    i0, i1, t = _resize_axis(out, size, interpolation)
    m = np.zeros((out, size))
    m[np.arange(out), i0] += 1.0 - t
    m[np.arange(out), i1] += t
    return m


def upsample2d(x, size, interpolation="nearest"):
    """x (N, H, W, C) enlarged by integer factors: resize over the whole image."""
    n, h, w, c = x.shape
    return resize(x, (h * size[0], w * size[1]), None, interpolation)


def upsample2d_backward(dy, size, interpolation="nearest"):
    """dx (N, H, W, C): the adjoint of upsample2d applied to dy (N, H*fh, W*fw, C)."""
    n, oh, ow, c = dy.shape
    mh = _upsample_matrix(oh // size[0], size[0], interpolation)
    mw = _upsample_matrix(ow // size[1], size[1], interpolation)
    dx = np.einsum("ih,nijc,jw->nhwc", mh, dy.astype(np.float64), mw)
    return dx.astype(np.float32)


def pad_crop(x, out_hw, top, left):
    """y (N, OH, OW, C): y[:, i, j] = x[:, i - top, j - left] where inside x, else 0."""
    n, h, w, c = x.shape
    oh, ow = out_hw
    y = np.zeros((n, oh, ow, c), dtype=x.dtype)
    r0, r1 = max(0, top), min(oh, h + top)
    q0, q1 = max(0, left), min(ow, w + left)
    if r1 > r0 and q1 > q0:
        y[:, r0:r1, q0:q1] = x[:, r0 - top:r1 - top, q0 - left:q1 - left]
    return y


def kernel_dilate(src, dilation, inverse=False):
    """A kernel (KH, KW, A, B) with dilation - 1 zeros between its taps; inverse: the taps
    of a dilated kernel gathered back."""
    dh, dw = dilation
    if inverse:
        return np.ascontiguousarray(src[::dh, ::dw])
    kh, kw = src.shape[:2]
    out = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1) + src.shape[2:], dtype=src.dtype)
    out[::dh, ::dw] = src
    return out


# ---- convolution variants (engineer B): dilated and grouped convolution, transpose ---------
#
# Kernel (KH, KW, C / groups, F) (Keras's layout); output channel o lies in group
# g = o // (F / groups), which sees input channels g*C/groups ... (g+1)*C/groups - 1.
# Output (n, i, j) sees input row i*sh - pt + a*dh and column j*sw - pl + b*dw for tap (a, b).
# Sums run in float64 and are rounded once to float32.

def _dilated_taps(x_shape, w_shape, strides, padding, out_hw, dilation):
    """((ekh, ekw) the dilated window, [(a, b, row slice, column slice)] of each tap into the
    padded input)."""
    kh, kw = w_shape[:2]
    (sh, sw), (dh, dw), (oh, ow) = strides, dilation, out_hw
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    taps = [(a, b, _window_slice(a * dh, sh, oh), _window_slice(b * dw, sw, ow))
            for a in range(kh) for b in range(kw)]
    return (ekh, ekw), taps


def conv2d_general_forward(x, w, b, strides, padding, out_hw, dilation=(1, 1), groups=1,
                           activation="linear", alpha=0.2):
    """(z, y): z = the dilated, grouped convolution of x + b, y = activation(z)."""
    n = x.shape[0]
    kh, kw, cg, f = w.shape
    fg = f // groups
    window, taps = _dilated_taps(x.shape, w.shape, strides, padding, out_hw, dilation)
    xp = _padded(x, window, strides, padding, out_hw, 0).astype(np.float64)
    w64 = w.astype(np.float64).reshape(kh, kw, cg, groups, fg)
    z = np.zeros((n, out_hw[0], out_hw[1], groups, fg))
    for a, bb, rs, cs in taps:
        xs = xp[:, rs, cs, :].reshape(n, out_hw[0], out_hw[1], groups, cg)
        z += np.einsum("nijgc,cgf->nijgf", xs, w64[a, bb])
    z = z.reshape(n, out_hw[0], out_hw[1], f)
    if b is not None:
        z = z + b.astype(np.float64)
    z = z.astype(np.float32)
    return z, activation_forward(z, activation, alpha)


def conv2d_general_backward(x, w, z, y, dy, strides, padding, dilation=(1, 1), groups=1,
                            activation="linear", alpha=0.2):
    """(dz, dw, db, dx) for conv2d_general_forward's z, y and the gradient dy of y."""
    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    fg = f // groups
    out_hw = z.shape[1:3]
    dz = activation_backward(z, y, dy, activation, alpha)
    window, taps = _dilated_taps(x.shape, w.shape, strides, padding, out_hw, dilation)
    xp = _padded(x, window, strides, padding, out_hw, 0).astype(np.float64)
    gp = np.zeros(xp.shape)
    dz5 = dz.astype(np.float64).reshape(n, out_hw[0], out_hw[1], groups, fg)
    w64 = w.astype(np.float64).reshape(kh, kw, cg, groups, fg)
    dw = np.zeros((kh, kw, cg, groups, fg))
    for a, bb, rs, cs in taps:
        xs = xp[:, rs, cs, :].reshape(n, out_hw[0], out_hw[1], groups, cg)
        dw[a, bb] = np.einsum("nijgc,nijgf->cgf", xs, dz5)
        gp[:, rs, cs, :] += np.einsum("nijgf,cgf->nijgc", dz5, w64[a, bb]).reshape(
            n, out_hw[0], out_hw[1], c)
    pt, pl = padding
    dx = gp[:, pt:pt + h, pl:pl + wd, :].astype(np.float32)
    db = dz.astype(np.float64).reshape(-1, f).sum(axis=0).astype(np.float32)
    return dz, dw.reshape(w.shape).astype(np.float32), db, dx


def transpose(x, perm):
    """x (rows, ...) with its non-batch axes permuted by perm."""
    return np.ascontiguousarray(np.transpose(x, (0,) + tuple(p + 1 for p in perm)))


# ---- recurrent layers (engineer H): SimpleRNN, LSTM, GRU ------------------------------
# The layouts of csrc/pynn.h's pynn_rnn_forward / pynn_rnn_backward; cell 0 SimpleRNN,
# 1 LSTM (gates i, f, c, o), 2 GRU (z, r, h; reset_after=True, bias (2, 3u)).

RNN_GATES = {0: 1, 1: 4, 2: 3}


def _rnn_act(z, name):
    if name == "relu":
        return np.maximum(z, np.float32(0))
    if name == "sigmoid":
        return (np.float32(1) / (np.float32(1) + np.exp(-z))).astype(z.dtype)
    if name == "tanh":
        return np.tanh(z)
    return z


def _rnn_dact(y, name):
    """act'(z) from y = act(z)."""
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "sigmoid":
        return y * (np.float32(1) - y)
    if name == "tanh":
        return np.float32(1) - y * y
    return np.ones_like(y)


def _gate_inputs(x, in_mask, g):
    """x (n, T, f) as gate g reads it: times in_mask[:, g] (n, G, f) at every step."""
    return x if in_mask is None else x * in_mask[:, None, g]


def rnn_forward(x, kernel, rkernel, bias, mask, rec_mask, cell, act, rec_act,
                go_backwards=False, time_order=False, in_mask=None, gate_masks=False):
    """The forward of a recurrent layer over x (n, T, f): a dict of seq, cs, gates, hprev,
    aux (the buffers pynn_rnn_forward leaves; cs/aux None where the cell has none),
    h_last, c_last.

    Dropout masks, drawn once per sequence: rec_mask (n, u) multiplies the state each step
    reads (hprev holds the product); with gate_masks (Keras 3's LSTM/GRU with
    recurrent_dropout, "implementation 1"), each gate g has its own: rec_mask (n, G, u) and
    in_mask (n, G, f), gate g's products reading h * rec_mask[:, g] and x * in_mask[:, g]
    (hprev then holds h unmasked)."""
    n, T, f = x.shape
    u = rkernel.shape[0]
    G = RNN_GATES[cell]
    dt = x.dtype
    seq = np.zeros((n, T, u), dt)
    cs = np.zeros((n, T, u), dt) if cell == 1 else None
    gates = np.zeros((n, T, G * u), dt)
    hprev = np.zeros((n, T, u), dt)
    aux = np.zeros((n, T, u), dt) if cell == 2 else None
    if in_mask is not None and not gate_masks:
        raise ValueError("rnn_forward: in_mask needs gate_masks")
    if gate_masks:
        xp = np.concatenate(
            [gemm(_gate_inputs(x, in_mask, g).reshape(n * T, f), kernel[:, g * u:(g + 1) * u])
             for g in range(G)], axis=1).reshape(n, T, G * u)
    else:
        xp = gemm(x.reshape(n * T, f), kernel).reshape(n, T, G * u)
    out = np.zeros((n, T, u), dt)      # zero_output_for_mask's output
    h = np.zeros((n, u), dt)
    c = np.zeros((n, u), dt)
    for s in range(T):
        t = T - 1 - s if go_backwards else s
        o = t if time_order else s
        if gate_masks:
            hprev[:, t] = h
            rec = np.concatenate(
                [gemm(h * rec_mask[:, g] if rec_mask is not None else h,
                      rkernel[:, g * u:(g + 1) * u]) for g in range(G)], axis=1)
        else:
            hp = h * rec_mask if rec_mask is not None else h.copy()
            hprev[:, t] = hp
            rec = gemm(hp, rkernel)
        g = xp[:, t]
        if cell == 1:
            z = g + rec + (bias if bias is not None else 0)
            i = _rnn_act(z[:, :u], rec_act)
            fg = _rnn_act(z[:, u:2 * u], rec_act)
            cc = _rnn_act(z[:, 2 * u:3 * u], act)
            og = _rnn_act(z[:, 3 * u:], rec_act)
            gates[:, t] = np.concatenate([i, fg, cc, og], axis=1)
            c_new = fg * c + i * cc
            h_new = og * _rnn_act(c_new, act)
        elif cell == 2:
            if bias is not None:
                g = g + bias[0]
                rec = rec + bias[1]
            zg = _rnn_act(g[:, :u] + rec[:, :u], rec_act)
            rg = _rnn_act(g[:, u:2 * u] + rec[:, u:2 * u], rec_act)
            hh = _rnn_act(g[:, 2 * u:] + rg * rec[:, 2 * u:], act)
            gates[:, t] = np.concatenate([zg, rg, hh], axis=1)
            aux[:, t] = rec[:, 2 * u:]
            h_new = zg * h + (np.float32(1) - zg) * hh
            c_new = c
        else:
            h_new = _rnn_act(g + rec + (bias if bias is not None else 0), act)
            gates[:, t] = h_new
            c_new = c
        if mask is not None:
            keep = (mask[:, t] == 0)[:, None]
            h_new = np.where(keep, h, h_new)
            c_new = np.where(keep, c, c_new)
        h, c = h_new.astype(dt), c_new.astype(dt)
        seq[:, o] = h
        if mask is not None:
            out[:, o] = np.where((mask[:, t] == 0)[:, None], 0, h)
        if cs is not None:
            cs[:, o] = c
    return {"seq": seq, "cs": cs, "gates": gates, "hprev": hprev, "aux": aux,
            "out": out if mask is not None else seq.copy(),
            "h_last": h.copy(), "c_last": c.copy() if cell == 1 else None}


def rnn_backward(dseq, dh_last, dc_last, x, kernel, rkernel, saved, mask, rec_mask, cell, act,
                 rec_act, go_backwards=False, time_order=False, zero_output=False,
                 in_mask=None, gate_masks=False):
    """Backpropagation through time from the buffers `saved` (rnn_forward's dict): a dict
    of dkernel, drkernel, dbias ((G u,), or (2, G u) for the GRU), dx.  zero_output: dseq
    is the gradient of rnn_forward's "out" (seq with 0 at the masked steps).  Masks as
    rnn_forward's."""
    n, T, f = x.shape
    u = rkernel.shape[0]
    G = RNN_GATES[cell]
    dt = x.dtype
    seq, cs, gates, hprev, aux = (saved[k] for k in ("seq", "cs", "gates", "hprev", "aux"))
    dgates = np.zeros((n, T, G * u), dt)
    dgr = np.zeros((n, T, G * u), dt)
    dh = np.zeros((n, u), dt) if dh_last is None else dh_last.astype(dt).copy()
    dc = np.zeros((n, u), dt) if dc_last is None or cell != 1 else dc_last.astype(dt).copy()
    order = [T - 1 - s if go_backwards else s for s in range(T)]
    for s in range(T - 1, -1, -1):
        t = order[s]
        o = t if time_order else s
        op = None if s == 0 else (order[s - 1] if time_order else s - 1)
        if dseq is not None:
            d = dseq[:, o]
            if zero_output and mask is not None:
                d = np.where((mask[:, t] == 0)[:, None], 0, d).astype(dt)
            dh = dh + d
        g = gates[:, t]
        if cell == 1:
            i, fg, cc, og = g[:, :u], g[:, u:2 * u], g[:, 2 * u:3 * u], g[:, 3 * u:]
            c_prev = np.zeros((n, u), dt) if op is None else cs[:, op]
            tc = _rnn_act(cs[:, o], act)
            dct = dc + dh * og * _rnn_dact(tc, act)
            dg = np.concatenate([dct * cc * _rnn_dact(i, rec_act),
                                 dct * c_prev * _rnn_dact(fg, rec_act),
                                 dct * i * _rnn_dact(cc, act),
                                 dh * tc * _rnn_dact(og, rec_act)], axis=1)
            dgh = dg
            dc_new = dct * fg
            direct = np.zeros_like(dh)
        elif cell == 2:
            zg, rg, hh = g[:, :u], g[:, u:2 * u], g[:, 2 * u:]
            h_prev = np.zeros((n, u), dt) if op is None else seq[:, op]
            dhh = dh * (np.float32(1) - zg) * _rnn_dact(hh, act)
            dz = dh * (h_prev - hh) * _rnn_dact(zg, rec_act)
            dr = dhh * aux[:, t] * _rnn_dact(rg, rec_act)
            dg = np.concatenate([dz, dr, dhh], axis=1)
            dgh = np.concatenate([dz, dr, dhh * rg], axis=1)
            dc_new = dc
            direct = dh * zg
        else:
            dg = dh * _rnn_dact(g, act)
            dgh = dg
            dc_new = dc
            direct = np.zeros_like(dh)
        if mask is not None:
            keep = (mask[:, t] == 0)[:, None]
            dg = np.where(keep, 0, dg).astype(dt)
            dgh = np.where(keep, 0, dgh).astype(dt)
            dc_new = np.where(keep, dc, dc_new).astype(dt)
            direct = np.where(keep, dh, direct).astype(dt)
        dgates[:, t] = dg
        dgr[:, t] = dgh
        dc = dc_new
        if gate_masks:      # sum over the gates in order 0, 1, ... of each one's product
            dh_new = None
            for g in range(G):
                part = gemm(dgh[:, g * u:(g + 1) * u], rkernel[:, g * u:(g + 1) * u],
                            transpose_b=True)
                if rec_mask is not None:
                    part = part * rec_mask[:, g]
                dh_new = part if dh_new is None else dh_new + part
        else:
            dh_new = gemm(dgh, rkernel, transpose_b=True)
            if rec_mask is not None:
                dh_new = dh_new * rec_mask
        dh = (dh_new + direct).astype(dt)
    X = x.reshape(n * T, f)
    Dg = dgates.reshape(n * T, G * u)
    Dr = dgr.reshape(n * T, G * u)
    dbias = bias_grad(Dg)
    if cell == 2:
        dbias = np.stack([dbias, bias_grad(Dr)])
    if gate_masks:
        blocks = [slice(g * u, (g + 1) * u) for g in range(G)]
        dkernel = np.concatenate(
            [gemm(_gate_inputs(x, in_mask, g).reshape(n * T, f), Dg[:, b], transpose_a=True)
             for g, b in enumerate(blocks)], axis=1)
        drkernel = np.concatenate(
            [gemm((hprev * rec_mask[:, None, g] if rec_mask is not None else hprev)
                  .reshape(n * T, u), Dr[:, b], transpose_a=True)
             for g, b in enumerate(blocks)], axis=1)
        dx = None
        for g, b in enumerate(blocks):
            part = gemm(Dg[:, b], kernel[:, b], transpose_b=True).reshape(n, T, f)
            if in_mask is not None:
                part = part * in_mask[:, None, g]
            dx = part if dx is None else dx + part
    else:
        dkernel = gemm(X, Dg, transpose_a=True)
        drkernel = gemm(hprev.reshape(n * T, u), Dr, transpose_a=True)
        dx = gemm(Dg, kernel, transpose_b=True).reshape(n, T, f)
    return {"dkernel": dkernel, "drkernel": drkernel, "dbias": dbias, "dx": dx,
            "dgates": dgates, "dgr": dgr}
