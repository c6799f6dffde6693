"""The NumPy reference (pynn/backend/reference.py) checked against mathematics.

* Every backward formula (activations, losses) against float64 central finite
  differences of the matching forward formula.
* Loss values and activations at hand-computed points, so a forward formula that is
  wrong but self-consistent with its gradient is still caught.
* The optimizer rules against small cases worked out by hand.

Everything runs in float64.  Central differences with step h have truncation error
~h^2 |f'''| and rounding error ~eps |f| / h; with h = 1e-6 both are below 1e-9 for the
O(1) smooth functions used here, so rtol = 1e-6 with atol = 1e-9 leaves a wide margin
while any wrong term in a gradient (an error of 1e-2 or more) fails.
"""

import math

import numpy as np
import pytest

from pynn.backend import reference as ref

H = 1e-6
RTOL = 1e-6
ATOL = 1e-9


def numeric_gradient(f, x, h=H):
    """Central finite differences of the scalar function f at x (float64)."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        f_plus = f(x)
        x[index] = saved - h
        f_minus = f(x)
        x[index] = saved
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def away_from_zero(rng, shape, scale=2.0, gap=0.05):
    """Normal samples pushed off [-gap, gap], so the FD step never crosses relu's kink."""
    x = rng.standard_normal(shape) * scale
    return np.where(x >= 0, x + gap, x - gap)


# ---- activations -----------------------------------------------------------------

@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_activation_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(sum(map(ord, activation)))
    x = away_from_zero(rng, (3, 5))
    dy = rng.standard_normal((3, 5))   # random upstream gradient = weights of a scalar
    y = ref.activation_forward(x, activation, alpha=0.3)
    dx = ref.activation_backward(x, y, dy, activation, alpha=0.3)
    numeric = numeric_gradient(
        lambda z: float((dy * ref.activation_forward(z, activation, alpha=0.3)).sum()), x)
    np.testing.assert_allclose(dx, numeric, rtol=RTOL, atol=ATOL)


def test_activation_backward_writes_nothing_in_place():
    x = np.array([[-1.0, 2.0]])
    dy = np.array([[0.5, -0.25]])
    dy_before = dy.copy()
    for activation in ref.ACTIVATIONS:
        y = ref.activation_forward(x, activation)
        ref.activation_backward(x, y, dy, activation)
        np.testing.assert_array_equal(dy, dy_before)


def test_activation_values_by_hand():
    x = np.array([[-2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(ref.activation_forward(x, "linear"), x)
    np.testing.assert_array_equal(ref.activation_forward(x, "relu"), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(ref.activation_forward(x, "leaky_relu", alpha=0.2),
                               [[-0.4, 0.0, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(ref.activation_forward(x, "sigmoid"),
                               [[1 / (1 + math.e ** 2), 0.5, 1 / (1 + math.e ** -1)]],
                               rtol=1e-15)
    np.testing.assert_allclose(ref.activation_forward(x, "tanh"),
                               [[math.tanh(-2.0), 0.0, math.tanh(1.0)]], rtol=1e-15)
    # x Phi(x): Phi(1) = 0.8413447460685429, Phi(-2) = 0.022750131948179195
    np.testing.assert_allclose(ref.activation_forward(x, "gelu"),
                               [[-2 * 0.022750131948179195, 0.0, 0.8413447460685429]],
                               rtol=1e-14)
    e = np.exp([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(ref.activation_forward(x, "softmax"), [e / e.sum()],
                               rtol=1e-15)


def test_softmax_is_shift_invariant_and_does_not_overflow():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -999.0]])
    y = ref.activation_forward(x, "softmax")
    expected = ref.activation_forward(np.array([[1.0, 2.0, 0.0]]), "softmax")[0]
    np.testing.assert_allclose(y[0], expected, rtol=1e-14)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)


def test_activation_forward_keeps_float32():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    for activation in ref.ACTIVATIONS:
        y = ref.activation_forward(x, activation)
        assert y.dtype == np.float32, activation
        assert ref.activation_backward(x, y, x, activation).dtype == np.float32, activation


def test_unknown_activation_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="swish"):
        ref.activation_forward(np.zeros((1, 1)), "swish")


# ---- losses ------------------------------------------------------------------------

def loss_case(kind, from_logits, rng, shape=(4, 5)):
    """(pred, target) in the region where each loss is smooth: probabilities well
    inside (0, 1), CCE probability rows deliberately not normalised (the gradient goes
    through the normalisation), soft targets that do not sum to 1 for CCE."""
    if kind == "mse":
        return rng.standard_normal(shape), rng.standard_normal(shape)
    if kind == "bce":
        target = rng.uniform(0, 1, shape)
        pred = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.05, 0.95, shape)
        return pred, target
    target = rng.uniform(0, 1, shape)
    target[0] /= target[0].sum()        # one row a distribution, the others not
    pred = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.1, 1.0, shape)
    return pred, target


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("kind", ref.LOSSES)
def test_loss_gradient_matches_finite_differences(kind, from_logits):
    rng = np.random.default_rng(7 + len(kind) + from_logits)
    pred, target = loss_case(kind, from_logits, rng)
    _, grad = ref.loss(pred, target, kind, from_logits)
    numeric = numeric_gradient(lambda p: ref.loss(p, target, kind, from_logits)[0], pred)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_cce_gradient_matches_finite_differences(from_logits):
    rng = np.random.default_rng(11 + from_logits)
    pred = rng.standard_normal((4, 6)) * 3 if from_logits else rng.uniform(0.1, 1.0, (4, 6))
    labels = np.array([0, 5, 2, 2])
    _, grad = ref.sparse_cce(pred, labels, from_logits)
    numeric = numeric_gradient(lambda p: ref.sparse_cce(p, labels, from_logits)[0], pred)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


def test_loss_values_by_hand():
    pred = np.array([[0.5, 2.0], [1.0, -1.0]])
    target = np.array([[1.0, 1.0], [1.0, 1.0]])
    # MSE: rows (0.25 + 1)/2 = 0.625 and (0 + 4)/2 = 2; mean 1.3125
    assert ref.loss(pred, target, "mse")[0] == pytest.approx(1.3125, rel=1e-15)

    p = np.array([[0.8, 0.4]])
    t = np.array([[1.0, 0.0]])
    bce = -(math.log(0.8) + math.log(0.6)) / 2
    assert ref.loss(p, t, "bce")[0] == pytest.approx(bce, rel=1e-14)
    # the logits form of the same probabilities gives the same loss
    logits = np.log(p / (1 - p))
    assert ref.loss(logits, t, "bce", from_logits=True)[0] == pytest.approx(bce, rel=1e-12)

    # CCE normalises the row first: (2, 6, 2) -> (0.2, 0.6, 0.2)
    p = np.array([[2.0, 6.0, 2.0]])
    t = np.array([[0.0, 1.0, 0.0]])
    assert ref.loss(p, t, "cce")[0] == pytest.approx(-math.log(0.6), rel=1e-14)
    logits = np.log(np.array([[0.2, 0.6, 0.2]])) + 3.0   # softmax is shift invariant
    assert ref.loss(logits, t, "cce", True)[0] == pytest.approx(-math.log(0.6), rel=1e-12)
    assert ref.sparse_cce(p, np.array([1]))[0] == pytest.approx(-math.log(0.6), rel=1e-14)


def test_probabilities_are_clipped_like_keras():
    eps = ref.EPSILON
    p = np.array([[0.0, 1.0, 1.0, 0.0]])
    t = np.array([[1.0, 0.0, 1.0, 0.0]])
    value, grad = ref.loss(p, t, "bce")
    # two confidently wrong entries cost -log(eps) each, the right ones -log(1 - eps)
    expected = (-2 * math.log(eps) - 2 * math.log(1 - eps)) / 4
    # rel 1e-9: the code takes log(1 - (1 - eps)), and 1 - eps is rounded (5e-10 rel)
    assert value == pytest.approx(expected, rel=1e-9)
    # clipping makes the loss flat in p there: the gradient is zero, and FD agrees
    np.testing.assert_array_equal(grad, 0.0)
    q = np.array([[1e-9, 1 - 1e-9]])
    numeric = numeric_gradient(lambda z: ref.loss(z, t[:, :2], "bce")[0], q, h=1e-10)
    np.testing.assert_array_equal(ref.loss(q, t[:, :2], "bce")[1], 0.0)
    np.testing.assert_array_equal(numeric, 0.0)

    value, grad = ref.loss(np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]), "cce")
    assert value == pytest.approx(-math.log(eps), rel=1e-12)
    assert np.isfinite(grad).all()


def test_logits_forms_are_stable_at_extremes():
    z = np.array([[-100.0, 100.0, 0.0]])
    t = np.array([[1.0, 0.0, 0.5]])
    value, grad = ref.loss(z, t, "bce", from_logits=True)
    assert value == pytest.approx((100 + 100 + math.log(2)) / 3, rel=1e-12)
    np.testing.assert_allclose(grad, [[-1 / 3, 1 / 3, 0.0]], atol=1e-15)
    value, grad = ref.loss(z, np.array([[1.0, 0.0, 0.0]]), "cce", from_logits=True)
    assert value == pytest.approx(200.0, rel=1e-12)
    assert np.isfinite(grad).all()


def test_cce_logits_gradient_scales_softmax_by_the_target_sum():
    # d/dz of -sum_j t_j (z_j - lse(z)) is softmax(z) sum_j t_j - t, not softmax(z) - t
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 4))
    t = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    _, grad = ref.loss(z, t, "cce", from_logits=True)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, (softmax * t.sum(axis=1, keepdims=True) - t) / 2,
                               rtol=1e-14, atol=1e-16)


def test_sparse_labels_out_of_range_are_rejected():
    pred = np.full((2, 3), 1 / 3)
    for labels in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match="labels"):
            ref.sparse_cce(pred, np.array(labels))


# ---- optimizers -------------------------------------------------------------------------

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
    np.testing.assert_allclose(w, -lr_t * 0.1 * g / (math.sqrt(0.001) * np.abs(g) + eps),
                               rtol=1e-14)
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
    ref.rmsprop_update(w, v, None, np.array([0.5]), lr=0.01, rho=0.9, momentum=0.0,
                       epsilon=1e-7)
    np.testing.assert_allclose(v, [0.025], rtol=1e-14)
    np.testing.assert_allclose(w, [1.0 - inc], rtol=1e-14)

    w, v, mom = np.array([1.0]), np.array([0.0]), np.array([0.3])
    ref.rmsprop_update(w, v, mom, np.array([0.5]), lr=0.01, rho=0.9, momentum=0.5,
                       epsilon=1e-7)
    np.testing.assert_allclose(mom, [0.15 + inc], rtol=1e-14)
    np.testing.assert_allclose(w, [1.0 - 0.15 - inc], rtol=1e-14)
