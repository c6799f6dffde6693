"""The NumPy reference (pynn/backend/reference.py) checked against mathematics.

* Every backward formula against float64 central finite differences of its forward: one
  table, DERIVATIVES, of (forward, backward, inputs) cases -- activations, losses (every
  kind, probabilities and logits, sparse labels), Dense (the numpy backend's composition of
  GEMM, bias and activation), convolution, max / average / global pooling, batch
  normalization in training and inference form, merges, concatenation; and im2col / col2im
  as adjoints.
* Forwards at hand-computed points, so a forward that is wrong but consistent with its own
  backward still fails (a convolution instead of a cross-correlation, padding counted in an
  average, an unbiased variance, a clipped probability).
* The optimizer rules on small cases worked out by hand, Adam against its textbook form.
* A whole small model's backward (Dense layers and a loss) against finite differences of
  its forward.

Everything runs in float64: the reference computes in the dtype of its arrays.  Central
differences with step h have truncation error ~h^2 |f'''| and rounding error ~eps |f| / h;
with h = 1e-6 both are far below 1e-9 for the O(1) smooth functions here, so SMOOTH
(rtol 1e-6, atol 1e-9) leaves a wide margin while any wrong term (an error of 1e-2 or
more) fails.  Cases whose scalar sums many terms (a convolution, batch statistics, a
whole model) have |f| ~ 10-100, hence SUMS (rtol 1e-5, atol 1e-7); a model's mean loss
MODEL (rtol 1e-5, atol 1e-8).

To add a case, append a Derivative to DERIVATIVES: inputs(rng) -> dict of float64 arrays,
forward(**inputs) -> array (or a scalar loss), backward(probe, **inputs) -> {input name:
gradient of sum(probe * forward) with respect to it}.
"""
import math

import numpy as np
import pytest

from pynn import backend as backends
from pynn.backend import reference as ref
from pynn.layers.conv import output_size

H = 1e-6
SMOOTH = dict(rtol=1e-6, atol=1e-9)
SUMS = dict(rtol=1e-5, atol=1e-7)
MODEL = dict(rtol=1e-5, atol=1e-8)       # a model's loss is a mean: |f| ~ 1


def numeric_gradient(f, x, rng=None, samples=None, h=H):
    """(flat indices, central differences of the scalar f() with respect to those entries
    of x), x changed in place and restored; all entries, or `samples` random ones."""
    flat = x.reshape(-1)
    index = np.arange(flat.size) if samples is None or samples >= flat.size else \
        rng.choice(flat.size, size=samples, replace=False)
    grad = np.empty(index.size)
    for k, i in enumerate(index):
        saved = flat[i]
        flat[i] = saved + h
        up = f()
        flat[i] = saved - h
        down = f()
        flat[i] = saved
        grad[k] = (up - down) / (2 * h)
    return index, grad


def away_from_zero(rng, shape, scale=2.0, gap=0.05):
    """Normal samples pushed off [-gap, gap], so a step never crosses relu's kink."""
    x = rng.standard_normal(shape) * scale
    return np.where(x >= 0, x + gap, x - gap)


# ---- the table of derivatives ----------------------------------------------------------

class Derivative:
    """A forward and its backward; `constants`: inputs not differentiated (a target)."""

    def __init__(self, name, inputs, forward, backward, tol=SMOOTH, samples=None, constants=()):
        self.name, self.inputs, self.forward, self.backward = name, inputs, forward, backward
        self.tol, self.samples, self.constants = tol, samples, constants


def geometry(h, w, window, strides, padding):
    (oh, pt), (ow, pl) = (output_size(s, k, st, padding)
                          for s, k, st in zip((h, w), window, strides))
    return (oh, ow), (pt, pl)


def activation_case(act):
    return Derivative(
        f"activation-{act}", lambda rng: {"x": away_from_zero(rng, (3, 5))},
        lambda x: ref.activation_forward(x, act, 0.3),
        lambda probe, x: {"x": ref.activation_backward(x, ref.activation_forward(x, act, 0.3),
                                                       probe, act, 0.3)})


def loss_inputs(kind, from_logits, rng, shape=(4, 5)):
    """(pred, target) where each loss is smooth: probabilities well inside (0, 1), CCE
    probability rows deliberately not normalised (the gradient goes through the
    normalisation), soft targets that do not sum to 1 for CCE."""
    if kind in ("mse", "mae", "mape", "huber", "log_cosh", "cosine_similarity"):
        # Huber's |p - t| on both sides of delta = 1; MAPE's targets away from 0
        return {"pred": rng.standard_normal(shape) * 1.5, "target": rng.standard_normal(shape)}
    if kind in ("hinge", "squared_hinge", "categorical_hinge"):
        target = (rng.random(shape) > 0.5) * 1.0
        if kind == "categorical_hinge":
            target = np.eye(shape[1])[rng.integers(0, shape[1], size=shape[0])]
        return {"pred": rng.standard_normal(shape), "target": target}
    if kind in ("kld", "poisson"):
        return {"pred": rng.uniform(0.05, 0.95, shape), "target": rng.uniform(0, 1, shape)}
    target = rng.uniform(0, 1, shape)
    if kind == "bce":
        pred = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.05, 0.95, shape)
    else:
        target[0] /= target[0].sum()        # one row a distribution, the others not
        pred = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.1, 1.0, shape)
    return {"pred": pred, "target": target}


def loss_case(kind, from_logits):
    name = f"loss-{kind}-{'logits' if from_logits else 'probs'}"
    return Derivative(name, lambda rng: loss_inputs(kind, from_logits, rng),
                      lambda pred, target: ref.loss(pred, target, kind, from_logits)[0],
                      lambda probe, pred, target: {
                          "pred": probe * ref.loss(pred, target, kind, from_logits)[1]},
                      constants=("target",))


def sparse_case(from_logits):
    labels = np.array([0, 5, 2, 2])

    def inputs(rng):
        return {"pred": rng.standard_normal((4, 6)) * 3 if from_logits else
                rng.uniform(0.1, 1.0, (4, 6))}
    return Derivative(f"sparse_cce-{'logits' if from_logits else 'probs'}", inputs,
                      lambda pred: ref.sparse_cce(pred, labels, from_logits)[0],
                      lambda probe, pred: {
                          "pred": probe * ref.sparse_cce(pred, labels, from_logits)[1]})


# the options of the losses: per-sample weights (one of them 0; per position: 2 rows
# each), label smoothing, ignore_class (one of the labels, and -1 outside the classes)
WEIGHTS4 = np.array([0.5, 0.0, 2.0, 1.25])


def weighted_loss_case(kind, from_logits, per_position=False, smoothing=0.0):
    weights = WEIGHTS4[:2] if per_position else WEIGHTS4
    name = (f"loss-{kind}-{'logits' if from_logits else 'probs'}-weighted"
            f"{'-per-position' if per_position else ''}{f'-smoothing{smoothing}' if smoothing else ''}")

    def value(pred, target):
        return ref.loss(pred, target, kind, from_logits, weights=weights,
                        label_smoothing=smoothing)

    return Derivative(name, lambda rng: loss_inputs(kind, from_logits, rng),
                      lambda pred, target: value(pred, target)[0],
                      lambda probe, pred, target: {"pred": probe * value(pred, target)[1]},
                      constants=("target",))


def sparse_options_case(from_logits, ignore_class, smoothing):
    labels = np.array([0, 5, -1, 2]) if ignore_class == -1 else np.array([0, 5, 2, 2])

    def value(pred):
        return ref.sparse_cce(pred, labels, from_logits, weights=WEIGHTS4[::-1].copy(),
                              label_smoothing=smoothing, ignore_class=ignore_class)

    def inputs(rng):
        return {"pred": rng.standard_normal((4, 6)) * 3 if from_logits else
                rng.uniform(0.1, 1.0, (4, 6))}
    return Derivative(f"sparse_cce-{'logits' if from_logits else 'probs'}-ignore{ignore_class}"
                      f"-smoothing{smoothing}", inputs, lambda pred: value(pred)[0],
                      lambda probe, pred: {"pred": probe * value(pred)[1]})


def dense_case(act):
    """The numpy backend's dense_backward (GEMMs, bias gradient, activation) in float64."""
    npb = backends.get("numpy")

    def inputs(rng):
        return {"x": rng.standard_normal((5, 4)), "w": rng.standard_normal((4, 3)) * 0.7,
                "b": rng.standard_normal(3) * 0.3}

    def forward(x, w, b):
        z, y = np.empty((5, 3)), np.empty((5, 3))
        npb.dense_forward(x, w, b, act, 0.3, z, y)
        return y

    def backward(probe, x, w, b):
        z, y = np.empty((5, 3)), np.empty((5, 3))
        npb.dense_forward(x, w, b, act, 0.3, z, y)
        dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
        npb.dense_backward(x, w, z, y, probe.copy(), act, 0.3, dw, db, dx)
        return {"x": dx, "w": dw, "b": db}
    return Derivative(f"dense-{act}", inputs, forward, backward)


CONV_GEOMETRIES = [((2, 6, 5, 3), (3, 2), (1, 1), "valid"), ((1, 7, 7, 2), (3, 3), (2, 2), "same"),
                   ((2, 5, 8, 1), (2, 4), (3, 2), "same"), ((1, 9, 4, 2), (4, 1), (2, 3), "valid")]


def conv_case(shape, window, strides, padding, act):
    out_hw, pads = geometry(shape[1], shape[2], window, strides, padding)

    def inputs(rng):
        return {"x": rng.standard_normal(shape), "w": rng.standard_normal(window + (shape[3], 4)),
                "b": rng.standard_normal(4)}

    def backward(probe, x, w, b):
        _, z, y = ref.conv2d_forward(x, w, b, strides, pads, out_hw, act)
        _, dw, db, dx = ref.conv2d_backward(x, w, z, y, probe.copy(), strides, pads, act)
        return {"x": dx, "w": dw, "b": db}
    return Derivative(f"conv2d-{'x'.join(map(str, shape))}-k{window[0]}{window[1]}-{padding}-{act}",
                      inputs, lambda x, w, b: ref.conv2d_forward(x, w, b, strides, pads, out_hw, act)[2],
                      backward, SUMS, samples=25)


def pool_case(shape, window, strides, padding, kind):
    out_hw, pads = geometry(shape[1], shape[2], window, strides, padding)
    forward = getattr(ref, f"{kind}pool2d_forward")

    def backward(probe, x):
        if kind == "max":
            return {"x": ref.maxpool2d_backward(x, probe, window, strides, pads)}
        return {"x": ref.avgpool2d_backward(probe, x.shape, window, strides, pads)}
    return Derivative(f"{kind}pool-{'x'.join(map(str, shape))}-p{window[0]}{window[1]}-{padding}",
                      lambda rng: {"x": rng.standard_normal(shape)},   # ties have probability 0
                      lambda x: forward(x, window, strides, pads, out_hw), backward, SUMS, samples=40)


def batchnorm_case(training, affine):
    """gamma, beta None (scale=False, center=False) act as ones and zeros: the derivatives
    are taken there, the backward given None."""
    c, ones, zeros = 4, np.ones(4), np.zeros(4)
    moving = np.array([0.3, -0.2, 1.0, 0.0]), np.array([0.7, 1.5, 0.6, 1.1])

    def inputs(rng):
        return {"x": rng.standard_normal((9, c)) * 2 + 1,
                "gamma": rng.standard_normal(c) if affine else ones.copy(),
                "beta": rng.standard_normal(c) if affine else zeros.copy()}

    def forward(x, gamma, beta):
        if training:
            return ref.batchnorm_forward_train(x, gamma, beta, zeros, ones, 0.99, 1e-3)[0]
        return ref.batchnorm_forward_infer(x, gamma, beta, *moving, 1e-3)

    def backward(probe, x, gamma, beta):
        g = gamma if affine else None
        if training:
            _, mean, inv_std, _, _ = ref.batchnorm_forward_train(x, g, None, zeros, ones, 0.99, 1e-3)
            dgamma, dbeta, dx = ref.batchnorm_backward(x, g, mean, inv_std, probe)
        else:
            dgamma, dbeta, dx = ref.batchnorm_infer_backward(x, g, *moving, 1e-3, probe)
        return {"x": dx, "gamma": dgamma, "beta": dbeta}
    return Derivative(f"batchnorm-{'train' if training else 'infer'}-{'affine' if affine else 'plain'}",
                      inputs, forward, backward, SUMS if training else SMOOTH)


def merge_case(kind, k):
    names = [f"x{i}" for i in range(k)]
    return Derivative(f"merge-{kind}-{k}",
                      lambda rng: {n: rng.standard_normal((3, 4)) for n in names},  # no ties
                      lambda **xs: ref.merge_forward(kind, [xs[n] for n in names]),
                      lambda probe, **xs: {n: ref.merge_backward(kind, i, [xs[m] for m in names], probe)
                                           for i, n in enumerate(names)})


def concat_case():
    widths = (2, 1, 3)
    return Derivative("concat",
                      lambda rng: {f"x{i}": rng.standard_normal((4, w)) for i, w in enumerate(widths)},
                      lambda x0, x1, x2: ref.concat([x0, x1, x2]),
                      lambda probe, x0, x1, x2: dict(zip(("x0", "x1", "x2"),
                                                         ref.concat_backward(probe, list(widths)))))


DERIVATIVES = (
    [activation_case(a) for a in ref.ACTIVATIONS]
    + [loss_case(kind, fl) for kind in ref.LOSSES for fl in (False, True)
       if fl is False or kind in ("bce", "cce")]      # only BCE and CCE take logits
    + [sparse_case(fl) for fl in (False, True)]
    + [weighted_loss_case(kind, False) for kind in ref.LOSSES]
    + [weighted_loss_case(kind, True, per_position=True) for kind in ("bce", "cce")]
    + [weighted_loss_case(kind, fl, smoothing=0.2) for kind in ("bce", "cce") for fl in (False, True)]
    + [sparse_options_case(fl, ignore, ls) for fl, ignore, ls in
       [(False, -1, 0.0), (True, 2, 0.1), (True, -1, 0.3), (False, 5, 0.0)]]
    + [dense_case(a) for a in ("relu", "sigmoid", "softmax", "gelu")]
    + [conv_case(*g, a) for g in CONV_GEOMETRIES for a in ("linear", "relu", "sigmoid", "softmax")]
    + [pool_case(*g, kind) for g in CONV_GEOMETRIES for kind in ("max", "avg")]
    + [Derivative("global_avgpool", lambda rng: {"x": rng.standard_normal((2, 3, 4, 5))},
                  ref.global_avgpool2d_forward,
                  lambda probe, x: {"x": ref.global_avgpool2d_backward(probe, x.shape)}, samples=25)]
    + [batchnorm_case(training, affine) for training in (True, False) for affine in (True, False)]
    + [merge_case(kind, k) for kind, k in [("add", 3), ("subtract", 2), ("multiply", 3),
                                           ("average", 4), ("maximum", 3), ("minimum", 2)]]
    + [concat_case()]
)


@pytest.mark.parametrize("case", DERIVATIVES, ids=lambda c: c.name)
def test_backward_is_the_derivative_of_the_forward(case):
    rng = np.random.default_rng(sum(map(ord, case.name)))
    inputs = case.inputs(rng)
    y = np.asarray(case.forward(**inputs))
    probe = rng.standard_normal(y.shape) if y.ndim else 1.0   # sum(probe * y): a scalar
    grads = case.backward(probe, **inputs)
    assert set(grads) == set(inputs) - set(case.constants), case.name

    def scalar():
        return float(np.sum(probe * case.forward(**inputs)))
    for name, x in inputs.items():
        if name in case.constants:
            continue
        index, numeric = numeric_gradient(scalar, x, rng, case.samples)
        np.testing.assert_allclose(np.asarray(grads[name]).reshape(-1)[index], numeric,
                                   err_msg=f"{case.name}: d/d{name}", **case.tol)


@pytest.mark.parametrize("shape,window,strides,padding", CONV_GEOMETRIES)
def test_im2col_and_col2im_are_adjoints(shape, window, strides, padding):
    """<im2col(x), g> = <x, col2im(g)> for every x and g: col2im is im2col's backward."""
    out_hw, pads = geometry(shape[1], shape[2], window, strides, padding)
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    cols = ref.im2col(x, window, strides, pads, out_hw)
    g = rng.standard_normal(cols.shape)
    assert np.sum(cols * g) == pytest.approx(np.sum(x * ref.col2im(g, shape, window, strides, pads,
                                                                   out_hw)), rel=1e-12)


# ---- activations at hand-computed points --------------------------------------------------

def test_activation_values_by_hand():
    x = np.array([[-2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(ref.activation_forward(x, "linear"), x)
    np.testing.assert_array_equal(ref.activation_forward(x, "relu"), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(ref.activation_forward(x, "leaky_relu", alpha=0.2),
                               [[-0.4, 0.0, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(ref.activation_forward(x, "sigmoid"),
                               [[1 / (1 + math.e ** 2), 0.5, 1 / (1 + math.e ** -1)]], rtol=1e-15)
    np.testing.assert_allclose(ref.activation_forward(x, "tanh"),
                               [[math.tanh(-2.0), 0.0, math.tanh(1.0)]], rtol=1e-15)
    # x Phi(x): Phi(1) = 0.8413447460685429, Phi(-2) = 0.022750131948179195
    np.testing.assert_allclose(ref.activation_forward(x, "gelu"),
                               [[-2 * 0.022750131948179195, 0.0, 0.8413447460685429]], rtol=1e-14)
    e = np.exp([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(ref.activation_forward(x, "softmax"), [e / e.sum()], rtol=1e-15)


def test_gelu_keeps_its_relative_accuracy_in_the_left_tail():
    """Phi(-10) = 7.619853024160527e-24: x Phi(x) through erfc, not 1 + erf (which is 0
    there even in float64), in float64 and in float32."""
    x = np.array([[-10.0, -6.0]])
    expected = [[-10 * 7.619853024160527e-24, -6 * 9.865876450376946e-10]]
    np.testing.assert_allclose(ref.activation_forward(x, "gelu"), expected, rtol=1e-13)
    np.testing.assert_allclose(ref.activation_forward(x.astype(np.float32), "gelu"), expected,
                               rtol=1e-6)


def test_softmax_is_shift_invariant_and_does_not_overflow():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -999.0]])
    y = ref.activation_forward(x, "softmax")
    expected = ref.activation_forward(np.array([[1.0, 2.0, 0.0]]), "softmax")[0]
    np.testing.assert_allclose(y[0], expected, rtol=1e-14)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)


def test_activations_keep_float32_and_write_nothing_in_place():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    dy = x[::-1].copy()
    dy_before = dy.copy()
    for activation in ref.ACTIVATIONS:
        y = ref.activation_forward(x, activation)
        assert y.dtype == np.float32, activation
        assert ref.activation_backward(x, y, dy, activation).dtype == np.float32, activation
        np.testing.assert_array_equal(dy, dy_before)


def test_unknown_activation_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="swish"):
        ref.activation_forward(np.zeros((1, 1)), "swish")


# ---- losses at hand-computed points -------------------------------------------------------

def test_loss_values_by_hand():
    pred = np.array([[0.5, 2.0], [1.0, -1.0]])
    target = np.array([[1.0, 1.0], [1.0, 1.0]])
    # MSE: rows (0.25 + 1)/2 = 0.625 and (0 + 4)/2 = 2; mean 1.3125
    assert ref.loss(pred, target, "mse")[0] == pytest.approx(1.3125, rel=1e-15)

    p, t = np.array([[0.8, 0.4]]), np.array([[1.0, 0.0]])
    bce = -(math.log(0.8) + math.log(0.6)) / 2
    assert ref.loss(p, t, "bce")[0] == pytest.approx(bce, rel=1e-14)
    # the logits form of the same probabilities gives the same loss
    assert ref.loss(np.log(p / (1 - p)), t, "bce", from_logits=True)[0] == pytest.approx(bce, rel=1e-12)

    # CCE normalises the row first: (2, 6, 2) -> (0.2, 0.6, 0.2)
    p, t = np.array([[2.0, 6.0, 2.0]]), np.array([[0.0, 1.0, 0.0]])
    assert ref.loss(p, t, "cce")[0] == pytest.approx(-math.log(0.6), rel=1e-14)
    logits = np.log(np.array([[0.2, 0.6, 0.2]])) + 3.0   # softmax is shift invariant
    assert ref.loss(logits, t, "cce", True)[0] == pytest.approx(-math.log(0.6), rel=1e-12)
    assert ref.sparse_cce(p, np.array([1]))[0] == pytest.approx(-math.log(0.6), rel=1e-14)


def test_probabilities_are_clipped_like_keras():
    eps = ref.EPSILON
    p, t = np.array([[0.0, 1.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 1.0, 0.0]])
    value, grad = ref.loss(p, t, "bce")
    # two confidently wrong entries cost -log(eps) each, the right ones -log(1 - eps);
    # rel 1e-9: the code takes log(1 - (1 - eps)), and 1 - eps is rounded (5e-10 rel)
    assert value == pytest.approx((-2 * math.log(eps) - 2 * math.log(1 - eps)) / 4, rel=1e-9)
    # clipping makes the loss flat in p there: the gradient is zero, and so are the
    # finite differences
    np.testing.assert_array_equal(grad, 0.0)
    q = np.array([[1e-9, 1 - 1e-9]])
    _, numeric = numeric_gradient(lambda: ref.loss(q, t[:, :2], "bce")[0], q, h=1e-10)
    np.testing.assert_array_equal(ref.loss(q, t[:, :2], "bce")[1], 0.0)
    np.testing.assert_array_equal(numeric, 0.0)

    value, grad = ref.loss(np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]), "cce")
    assert value == pytest.approx(-math.log(eps), rel=1e-12)
    assert np.isfinite(grad).all()


def test_logits_forms_are_stable_at_extremes():
    z, t = np.array([[-100.0, 100.0, 0.0]]), np.array([[1.0, 0.0, 0.5]])
    value, grad = ref.loss(z, t, "bce", from_logits=True)
    assert value == pytest.approx((100 + 100 + math.log(2)) / 3, rel=1e-12)
    np.testing.assert_allclose(grad, [[-1 / 3, 1 / 3, 0.0]], atol=1e-15)
    value, grad = ref.loss(z, np.array([[1.0, 0.0, 0.0]]), "cce", from_logits=True)
    assert value == pytest.approx(200.0, rel=1e-12)
    assert np.isfinite(grad).all()


def test_cce_logits_gradient_scales_softmax_by_the_target_sum():
    # d/dz of -sum_j t_j (z_j - lse(z)) is softmax(z) sum_j t_j - t, not softmax(z) - t
    z = np.random.default_rng(3).standard_normal((2, 4))
    t = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    _, grad = ref.loss(z, t, "cce", from_logits=True)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, (softmax * t.sum(axis=1, keepdims=True) - t) / 2,
                               rtol=1e-14, atol=1e-16)


def test_labels_out_of_range_are_rejected():
    pred = np.full((2, 3), 1 / 3)
    for labels in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match="labels"):
            ref.sparse_cce(pred, np.array(labels))
        with pytest.raises(ValueError, match="labels"):
            ref.metric_sum("sparse_categorical_accuracy", pred, np.array(labels))


# ---- metrics at hand-computed points -------------------------------------------------------

def test_metric_values_by_hand():
    pred = np.array([[0.5, 0.9, 0.1], [0.7, 0.7, 0.2]], np.float32)
    # > 0.5 is strict: row 0 predicts (0, 1, 0), row 1 (1, 1, 0)
    assert ref.metric_sum("binary_accuracy", pred, np.array([[0, 1, 1], [1, 1, 1]], np.float32)) == \
        pytest.approx(2 / 3 + 2 / 3, rel=1e-7)
    # argmax takes the first of a tie: row 1 predicts class 0
    one_hot = np.array([[0, 1, 0], [0, 1, 0]], np.float32)
    assert ref.metric_sum("categorical_accuracy", pred, one_hot) == 1.0
    assert ref.metric_sum("sparse_categorical_accuracy", pred, np.array([1, 0])) == 2.0
    target = np.array([[0, 1, 0], [1, 0, 0]], np.float32)
    assert ref.metric_sum("mean_absolute_error", pred, target) == pytest.approx(
        (0.5 + 0.1 + 0.1) / 3 + (0.3 + 0.7 + 0.2) / 3, rel=1e-6)
    assert ref.metric_sum("mean_squared_error", pred, target) == pytest.approx(
        (0.25 + 0.01 + 0.01) / 3 + (0.09 + 0.49 + 0.04) / 3, rel=1e-6)
    # int64 labels stand for one-hot rows in the metrics that compare values
    assert ref.metric_sum("mean_squared_error", pred, np.array([1, 0])) == \
        ref.metric_sum("mean_squared_error", pred, target)


# ---- convolution, pooling, batch normalization, merges at hand-computed points ---------------

def test_conv2d_is_a_cross_correlation_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    # y[i, j] = sum_ab x[i + a, j + b] w[a, b]: 1*1 + 2*2 + 4*3 + 5*4 = 37, ...
    _, z, y = ref.conv2d_forward(x, w, np.array([0.5]), (1, 1), (0, 0), (2, 2), "relu")
    np.testing.assert_array_equal(z.reshape(2, 2), [[37.5, 47.5], [67.5, 77.5]])
    np.testing.assert_array_equal(y, z)
    # "same" with stride 2 on 3x3: one padding row and column, at the bottom and right
    (out_hw, pads) = geometry(3, 3, (2, 2), (2, 2), "same")
    assert (out_hw, pads) == ((2, 2), (0, 0))
    _, z, _ = ref.conv2d_forward(x, w, None, (2, 2), pads, out_hw)
    np.testing.assert_array_equal(z.reshape(2, 2), [[37, 3 + 2 * 0 + 6 * 3],
                                                    [7 + 8 * 2, 9]])


def test_pooling_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    out_hw, pads = geometry(3, 3, (2, 2), (2, 2), "same")
    # average over the input elements of each window: padding is not counted
    np.testing.assert_array_equal(ref.avgpool2d_forward(x, (2, 2), (2, 2), pads, out_hw).reshape(2, 2),
                                  [[3.0, 4.5], [7.5, 9.0]])
    np.testing.assert_array_equal(ref.maxpool2d_forward(x, (2, 2), (2, 2), pads, out_hw).reshape(2, 2),
                                  [[5.0, 6.0], [8.0, 9.0]])
    # padding never wins a max, even over negative inputs or -inf; a window of padding
    # only gives 0
    np.testing.assert_array_equal(ref.maxpool2d_forward(-x, (2, 2), (2, 2), pads, out_hw).reshape(2, 2),
                                  [[-1.0, -3.0], [-7.0, -9.0]])
    assert ref.maxpool2d_forward(np.full((1, 1, 1, 1), -np.inf), (2, 2), (1, 1), (1, 1), (2, 2))[0, 1, 1, 0] \
        == -np.inf
    np.testing.assert_array_equal(ref.maxpool2d_forward(x, (2, 2), (2, 2), (2, 2), (2, 2)).reshape(2, 2),
                                  [[0.0, 0.0], [0.0, 5.0]])
    # ties: the first maximum in row-major window order takes the gradient
    dx = ref.maxpool2d_backward(np.ones((1, 2, 2, 1)), np.full((1, 1, 1, 1), 7.0), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(dx.reshape(2, 2), [[7.0, 0.0], [0.0, 0.0]])
    # ... the first input element, not a padding position before it
    dx = ref.maxpool2d_backward(np.full((1, 1, 1, 1), -np.inf), np.full((1, 2, 2, 1), 3.0), (2, 2),
                                (1, 1), (1, 1))
    np.testing.assert_array_equal(dx.reshape(1), [12.0])
    np.testing.assert_array_equal(ref.global_avgpool2d_forward(x), [[5.0]])


def test_batchnorm_by_hand():
    """Biased variance, Keras's momentum rule."""
    x = np.array([[1.0], [3.0]])
    y, mean, inv_std, moving_mean, moving_var = ref.batchnorm_forward_train(
        x, np.array([2.0]), np.array([0.5]), np.array([0.0]), np.array([1.0]), 0.9, 1e-3)
    inv = 1 / math.sqrt(1.0 + 1e-3)            # mean 2, variance ((1-2)^2 + (3-2)^2) / 2 = 1
    np.testing.assert_allclose(mean, [2.0], rtol=1e-15)
    np.testing.assert_allclose(inv_std, [inv], rtol=1e-15)
    np.testing.assert_allclose(y.ravel(), [-2 * inv + 0.5, 2 * inv + 0.5], rtol=1e-15)
    np.testing.assert_allclose(moving_mean, [0.2], rtol=1e-15)
    np.testing.assert_allclose(moving_var, [0.9 + 0.1], rtol=1e-15)
    y = ref.batchnorm_forward_infer(x, None, None, np.array([1.0]), np.array([3.0]), 1.0)
    np.testing.assert_allclose(y.ravel(), [0.0, 1.0], rtol=1e-15)


def test_merges_by_hand():
    a, b, c = np.array([1.0, 5.0]), np.array([3.0, 5.0]), np.array([2.0, -1.0])
    np.testing.assert_array_equal(ref.merge_forward("subtract", [a, b]), [-2.0, 0.0])
    np.testing.assert_array_equal(ref.merge_forward("average", [a, b, c]), [2.0, 3.0])
    np.testing.assert_array_equal(ref.merge_forward("multiply", [a, b, c]), [6.0, -25.0])
    np.testing.assert_array_equal(ref.merge_forward("minimum", [a, b, c]), [1.0, -1.0])
    dy = np.array([10.0, 20.0])
    # the tie at 5 sends the gradient to the first input holding the maximum
    np.testing.assert_array_equal(ref.merge_backward("maximum", 0, [a, b, c], dy), [0.0, 20.0])
    np.testing.assert_array_equal(ref.merge_backward("maximum", 1, [a, b, c], dy), [10.0, 0.0])
    np.testing.assert_array_equal(ref.merge_backward("subtract", 1, [a, b], dy), -dy)
    with pytest.raises(ValueError, match="subtract takes 2 inputs"):
        ref.merge_forward("subtract", [a, b, c])


# ---- randomness ------------------------------------------------------------------------------

def test_the_generator_is_splitmix64():
    """splitmix64's first output from state 0 (its published test value) is the key of
    (seed 0, counter 0)."""
    with np.errstate(over="ignore"):                  # uint64 arithmetic wraps
        assert int(ref._mix64(np.uint64(0x9E3779B97F4A7C15))) == 0xE220A8397B1DCDAF


def test_uniforms_and_dropout_masks():
    u = ref.random_uniform(99, 3, 4000)
    assert u.dtype == np.float32 and 0 <= u.min() and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.02
    assert not np.array_equal(u, ref.random_uniform(99, 4, 4000))   # another step
    for rate in (0.25, 0.5, 0.75):
        mask = ref.dropout_mask((4000,), (False,), 99, 3, rate)
        np.testing.assert_array_equal(mask == 0, u < np.float32(rate))
        assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - rate))}
    # a broadcast axis repeats the mask
    mask = ref.dropout_mask((3, 5), (True, False), 1, 2, 0.5)
    np.testing.assert_array_equal(mask, np.broadcast_to(mask[:1], (3, 5)))


# ---- optimizers by hand ----------------------------------------------------------------------

def test_sgd_by_hand():
    w, g = np.array([1.0, -2.0]), np.array([0.5, -1.0])
    ref.sgd_update(w, None, g, lr=0.1, momentum=0.0, nesterov=False)
    np.testing.assert_allclose(w, [0.95, -1.9], rtol=1e-15)
    # m = 0.9 * 0.2 - 0.1 * 0.5 = 0.13; w = 1 + 0.13
    w, m = np.array([1.0]), np.array([0.2])
    ref.sgd_update(w, m, np.array([0.5]), lr=0.1, momentum=0.9, nesterov=False)
    np.testing.assert_allclose(m, [0.13], rtol=1e-14)
    np.testing.assert_allclose(w, [1.13], rtol=1e-14)
    # nesterov: same m, w = 1 + 0.9 * 0.13 - 0.1 * 0.5 = 1.067
    w, m = np.array([1.0]), np.array([0.2])
    ref.sgd_update(w, m, np.array([0.5]), lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(m, [0.13], rtol=1e-14)
    np.testing.assert_allclose(w, [1.067], rtol=1e-14)


def test_adam_first_step_from_zeros_moves_each_weight_by_about_lr():
    # m = 0.1 g, v = 0.001 g^2, lr_t = lr sqrt(0.001) / 0.1, so
    # w -= lr g / (|g| + eps / sqrt(0.001)) ~ lr sign(g)
    lr, eps = 0.01, 1e-7
    g = np.array([0.5, -3.0, 0.05])  # |g| >> eps / sqrt(0.001)
    w, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    lr_t = ref.adam_lr_t(lr, 0.9, 0.999, 1)
    assert lr_t == pytest.approx(lr * math.sqrt(0.001) / 0.1, rel=1e-7)  # float32 value
    ref.adam_update(w, m, v, g, lr_t, 0.9, 0.999, eps)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-14)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-12)
    np.testing.assert_allclose(w, -lr_t * 0.1 * g / (math.sqrt(0.001) * np.abs(g) + eps), rtol=1e-14)
    np.testing.assert_allclose(w, -lr * np.sign(g), rtol=1e-3)


def test_adam_matches_the_textbook_form_with_keras_epsilon():
    # Keras adds eps to sqrt(v) before bias correction; that is the textbook update
    # w -= lr m_hat / (sqrt(v_hat) + eps_hat) with eps_hat = eps / sqrt(1 - beta2^t).
    rng = np.random.default_rng(5)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-3
    w, m, v = rng.standard_normal(4), np.zeros(4), np.zeros(4)
    w_book, m_book, v_book = w.copy(), np.zeros(4), np.zeros(4)
    for t in range(1, 4):
        g = rng.standard_normal(4)
        # lr_t is rounded to float32 (see adam_lr_t), so use the exact value here
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        ref.adam_update(w, m, v, g, lr_t, b1, b2, eps)
        m_book = b1 * m_book + (1 - b1) * g
        v_book = b2 * v_book + (1 - b2) * g * g
        m_hat, v_hat = m_book / (1 - b1 ** t), v_book / (1 - b2 ** t)
        w_book -= lr * m_hat / (np.sqrt(v_hat) + eps / math.sqrt(1 - b2 ** t))
    np.testing.assert_allclose(w, w_book, rtol=1e-12)


def test_adam_lr_t_is_float32_and_rejects_step_zero():
    value = ref.adam_lr_t(0.001, 0.9, 0.999, 2)
    assert value == float(np.float32(0.001 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.81)))
    with pytest.raises(ValueError, match="step"):
        ref.adam_lr_t(0.001, 0.9, 0.999, 0)


def test_rmsprop_by_hand():
    # v = 0.1 * 0.25 = 0.025; inc = 0.01 * 0.5 / sqrt(0.025 + 1e-7)
    inc = 0.01 * 0.5 / math.sqrt(0.025 + 1e-7)
    w, v = np.array([1.0]), np.array([0.0])
    ref.rmsprop_update(w, v, None, np.array([0.5]), lr=0.01, rho=0.9, momentum=0.0, epsilon=1e-7)
    np.testing.assert_allclose(v, [0.025], rtol=1e-14)
    np.testing.assert_allclose(w, [1.0 - inc], rtol=1e-14)
    w, v, mom = np.array([1.0]), np.array([0.0]), np.array([0.3])
    ref.rmsprop_update(w, v, mom, np.array([0.5]), lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7)
    np.testing.assert_allclose(mom, [0.15 + inc], rtol=1e-14)
    np.testing.assert_allclose(w, [1.0 - 0.15 - inc], rtol=1e-14)


def test_optimizer_step_dispatches_to_the_rules():
    hyper = {"learning_rate": 0.01, "momentum": 0.0, "nesterov": 0.0, "beta_1": 0.9,
             "beta_2": 0.999, "rho": 0.9, "epsilon": 1e-7}
    g = np.array([0.5, -1.0])
    w1, w2, m, v = np.ones(2), np.ones(2), np.zeros(2), np.zeros(2)
    ref.optimizer_step("adam", w1, (m, v), g, 2, hyper)
    ref.adam_update(w2, np.zeros(2), np.zeros(2), g, ref.adam_lr_t(0.01, 0.9, 0.999, 2), 0.9, 0.999, 1e-7)
    np.testing.assert_array_equal(w1, w2)
    with pytest.raises(ValueError, match="adafactor"):
        ref.optimizer_step("adafactor", w1, (None, None), g, 1, hyper)


# ---- a whole model ---------------------------------------------------------------------------

def model_forward(weights, acts, x):
    saved, a = [], x
    for i, act in enumerate(acts):
        z = ref.gemm(a, weights[2 * i]) + weights[2 * i + 1]
        y = ref.activation_forward(z, act)
        saved.append((a, z, y))
        a = y
    return a, saved


def model_backward(weights, acts, saved, grad):
    grads = [None] * len(weights)
    for i in reversed(range(len(acts))):
        a, z, y = saved[i]
        dz = ref.activation_backward(z, y, grad, acts[i])
        grads[2 * i] = ref.gemm(a, dz, transpose_a=True)
        grads[2 * i + 1] = ref.bias_grad(dz)
        grad = ref.gemm(dz, weights[2 * i], transpose_b=True)
    return grads


@pytest.mark.parametrize("acts,kind,from_logits", [
    (["relu", "tanh", "softmax"], "cce", False),
    (["gelu", "sigmoid", "linear"], "cce", True),
    (["leaky_relu", "softmax", "sigmoid"], "bce", False),
    (["tanh", "relu", "linear"], "mse", False),
    (["sigmoid", "gelu", "linear"], "scce", True),
])
def test_whole_model_gradient_matches_finite_differences(acts, kind, from_logits):
    """Three Dense layers composed from the reference's GEMM, bias gradient, activations
    and a loss: every weight's gradient against finite differences of the loss."""
    rng = np.random.default_rng(5)
    sizes = [5, 6, 4, 3]
    weights = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        weights += [rng.normal(0, 0.6, size=(a, b)), rng.normal(0, 0.2, size=(b,))]
    x = rng.normal(size=(7, 5))
    if kind == "scce":
        target = rng.integers(0, 3, size=7)
    elif kind == "mse":
        target = rng.normal(size=(7, 3))
    else:
        target = np.eye(3)[rng.integers(0, 3, size=7)]

    def loss(out):
        return ref.sparse_cce(out, target, from_logits) if kind == "scce" else \
            ref.loss(out, target, kind, from_logits)

    out, saved = model_forward(weights, acts, x)
    grads = model_backward(weights, acts, saved, loss(out)[1])
    for w, gw in zip(weights, grads):
        _, numeric = numeric_gradient(lambda: loss(model_forward(weights, acts, x)[0])[0], w)
        np.testing.assert_allclose(gw.reshape(-1), numeric, **MODEL)
