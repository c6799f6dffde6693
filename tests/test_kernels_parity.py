"""Every non-GEMM C kernel (via pynn._core) against the NumPy reference, in float32.

Shapes are chosen to be awkward: 1 x 1, a single row or column, primes, sizes just off
PYNN_REDUCE_CHUNK (256 rows), and shapes large enough that the kernels start more than
one thread (pynn_threads_for starts a team at 32768 elements).

Tolerance (see assert_close): both sides compute in float32 with the same expressions
in the same order, so elementwise results differ only where libm (expf, logf, erff,
tanhf) and NumPy's own float32 transcendental functions round differently -- an ulp or
two -- and where a row sum is taken in a different order (the C kernels add in index
order, in double for the losses; NumPy adds pairwise in float32): ~sqrt(cols) ulps at
worst for cols ~ 1000.  rtol = 1e-5 (about 80 ulps) covers that with margin, while a
wrong formula is off by 1e-3 or more.  Where the result is a difference of nearly equal
terms (sigmoid(z) - t, dy - dot, 1 + erf(x) for x << 0) the error is absolute, a few ulps
of the largest term, hence atol = 1e-6 * max|expected| (about 8 ulps of the largest
element).
"""

import zlib

import numpy as np
import pytest

import pynn
import pynn._core as core
from pynn.backend import reference as ref

RTOL = 1e-5
ATOL_OF_MAX = 1e-6

ACT_IDS = pynn.ids.ACTIVATIONS
LOSS_IDS = {k: v for k, v in pynn.ids.LOSSES.items() if k != "scce"}

SHAPES = [(1, 1), (1, 300), (300, 1), (7, 13), (97, 1031), (257, 10), (255, 17),
          (256, 17), (513, 3), (300, 200)]
SHAPE_IDS = [f"{r}x{c}" for r, c in SHAPES]
LARGE = (1000, 300)     # multi-threaded and four reduction chunks


def assert_close(actual, expected, rtol=RTOL):
    expected = np.asarray(expected)
    assert actual.dtype == np.float32
    atol = ATOL_OF_MAX * float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=False)


def rng_for(*key):
    """A generator seeded by the test's key (crc32, not hash(): that varies per run)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


@pytest.fixture
def restore_threads():
    previous = core.get_num_threads()
    yield
    core.set_num_threads(previous)


# ---- bias ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_bias_grad(shape):
    rng = rng_for("bias_grad", shape)
    dz = f32(rng.standard_normal(shape))
    db = np.full(shape[1], np.nan, dtype=np.float32)
    core.bias_grad(db, dz)
    # Compared with the exact (float64) column sums: any float32 summation order of n
    # terms is within (n - 1) u sum|dz| of the exact sum (u = 2^-24), so this bound is
    # rigorous; dropping or repeating one row would be off by ~1.
    exact = ref.bias_grad(dz.astype(np.float64))
    bound = (shape[0] - 1) * 2.0 ** -24 * np.abs(dz.astype(np.float64)).sum(axis=0)
    assert db.dtype == np.float32
    assert (np.abs(db - exact) <= bound).all()


@pytest.mark.parametrize("rows", [1, 255, 256, 257, 513, 1000])
def test_bias_grad_is_exact_on_integers(rows):
    # Small integers sum exactly in float32 in any order: the chunking must neither drop
    # nor repeat a row at the chunk boundaries.
    rng = rng_for("bias_grad_int", rows)
    dz = f32(rng.integers(-8, 9, size=(rows, 37)))
    db = np.empty(37, dtype=np.float32)
    core.bias_grad(db, dz)
    np.testing.assert_array_equal(db, ref.bias_grad(dz))


def test_bias_grad_of_zero_rows_is_zero():
    db = np.full(5, np.nan, dtype=np.float32)
    core.bias_grad(db, np.zeros((0, 5), dtype=np.float32))
    np.testing.assert_array_equal(db, 0.0)


# ---- activations --------------------------------------------------------------------

def activation_input(shape, activation):
    rng = rng_for("act", shape, activation)
    # wide enough to reach sigmoid/tanh saturation and gelu's far left tail
    return f32(rng.standard_normal(shape) * 4), f32(rng.standard_normal(shape))


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_activation_forward(activation, shape):
    x, _ = activation_input(shape, activation)
    y = np.full(shape, np.nan, dtype=np.float32)
    core.activation_forward(y, x, ACT_IDS[activation], 0.3)
    assert_close(y, ref.activation_forward(x, activation, alpha=0.3))


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_activation_backward(activation, shape):
    x, dy = activation_input(shape, activation)
    y = ref.activation_forward(x, activation, alpha=0.3)   # both sides read the same y
    dx = np.full(shape, np.nan, dtype=np.float32)
    core.activation_backward(dx, x, y, dy, ACT_IDS[activation], 0.3)
    assert_close(dx, ref.activation_backward(x, y, dy, activation, alpha=0.3))


@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_activations_in_place_match_out_of_place(activation):
    x, dy = activation_input((97, 1031), activation)
    y = np.empty_like(x)
    core.activation_forward(y, x, ACT_IDS[activation])
    y_in_place = x.copy()
    core.activation_forward(y_in_place, y_in_place, ACT_IDS[activation])   # y is x
    np.testing.assert_array_equal(y_in_place, y)

    dx = np.empty_like(x)
    core.activation_backward(dx, x, y, dy, ACT_IDS[activation])
    dx_in_place = dy.copy()
    core.activation_backward(dx_in_place, x, y, dx_in_place, ACT_IDS[activation])  # dx is dy
    np.testing.assert_array_equal(dx_in_place, dx)


def test_softmax_extreme_logits_are_finite():
    x = f32([[100.0, -100.0, 0.0], [-100.0, -100.0, -100.0]])
    y = np.empty_like(x)
    core.activation_forward(y, x, pynn.ids.ACTIVATIONS["softmax"])
    assert np.isfinite(y).all()
    assert_close(y, ref.activation_forward(x, "softmax"))


def test_activations_accept_read_only_inputs():
    x, dy = activation_input((7, 13), "tanh")
    y = ref.activation_forward(x, "tanh")
    for a in (x, y, dy):
        a.flags.writeable = False
    out = np.empty_like(x)
    core.activation_forward(out, x, pynn.ids.ACTIVATIONS["tanh"])
    core.activation_backward(out, x, y, dy, pynn.ids.ACTIVATIONS["tanh"])
    assert_close(out, ref.activation_backward(x, y, dy, "tanh"))


# ---- losses ----------------------------------------------------------------------------

def loss_input(kind, from_logits, shape):
    rng = rng_for("loss", kind, from_logits, shape)
    if kind == "mse":
        return f32(rng.standard_normal(shape)), f32(rng.standard_normal(shape))
    if kind == "bce":
        pred = rng.standard_normal(shape) * 4 if from_logits else rng.uniform(0, 1, shape)
        return f32(pred), f32(rng.uniform(0, 1, shape))
    pred = rng.standard_normal(shape) * 3 if from_logits else rng.uniform(0.01, 1, shape)
    target = rng.uniform(0, 1, shape)
    target[1:] /= target[1:].sum(axis=1, keepdims=True)   # row 0 stays unnormalised
    return f32(pred), f32(target)


def check_loss(pred, target, kind, from_logits):
    grad = np.full(pred.shape, np.nan, dtype=np.float32)
    value = core.loss(grad, pred, target, LOSS_IDS[kind], from_logits)
    expected_value, expected_grad = ref.loss(pred, target, kind, from_logits)
    assert np.isfinite(value)
    assert value == pytest.approx(expected_value, rel=RTOL)
    assert_close(grad, expected_grad)
    # without a gradient the loss is the same number
    assert core.loss(None, pred, target, LOSS_IDS[kind], from_logits) == value


def check_sparse(pred, labels, from_logits):
    grad = np.full(pred.shape, np.nan, dtype=np.float32)
    value = core.sparse_cce(grad, pred, labels, from_logits)
    expected_value, expected_grad = ref.sparse_cce(pred, labels, from_logits)
    assert np.isfinite(value)
    assert value == pytest.approx(expected_value, rel=RTOL)
    assert_close(grad, expected_grad)
    assert core.sparse_cce(None, pred, labels, from_logits) == value


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("kind", ref.LOSSES)
def test_loss(kind, from_logits, shape):
    pred, target = loss_input(kind, from_logits, shape)
    check_loss(pred, target, kind, from_logits)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_sparse_cce(from_logits, shape):
    pred, _ = loss_input("cce", from_logits, shape)
    labels = rng_for("labels", shape).integers(0, shape[1], size=shape[0])
    check_sparse(pred, labels, from_logits)


def test_logits_at_plus_minus_100_stay_finite():
    rng = rng_for("extreme logits")
    z = f32(rng.choice([-100.0, 100.0, 0.0, 3.0], size=(9, 4)))
    t_binary = f32(rng.integers(0, 2, size=(9, 4)))
    check_loss(z, t_binary, "bce", True)
    check_loss(z, ref.one_hot(rng.integers(0, 4, size=9), 4), "cce", True)
    check_sparse(z, rng.integers(0, 4, size=9), True)


def test_probabilities_at_0_and_1_are_clipped():
    # confidently right and confidently wrong rows; every row has a positive sum
    p = f32([[0, 1, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]])
    t = f32([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    check_loss(p, t, "bce", False)
    check_loss(p, t, "cce", False)
    check_sparse(p, np.array([1, 1, 0, 2]), False)
    grad = np.empty_like(p)
    core.loss(grad, p, t, pynn.ids.LOSSES["bce"], False)
    assert (grad[p == 0] == 0).all() and (grad[p == 1] == 0).all()   # flat where clipped


@pytest.mark.parametrize("bad_label", [-1, 3])
def test_sparse_labels_out_of_range_raise_before_writing(bad_label):
    pred = f32(np.full((4, 3), 1 / 3))
    labels = np.array([0, 1, bad_label, 2])
    grad = np.full((4, 3), 7.0, dtype=np.float32)
    with pytest.raises(ValueError, match="label"):
        core.sparse_cce(grad, pred, labels, False)
    np.testing.assert_array_equal(grad, 7.0)


def test_loss_argument_errors_name_the_function():
    pred = f32(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match=r"loss: expected target of shape \(2, 3\)"):
        core.loss(None, pred, f32(np.ones((2, 4))), pynn.ids.LOSSES["mse"], False)
    with pytest.raises(ValueError, match=r"loss: expected grad of shape \(2, 3\)"):
        core.loss(np.empty((3, 2), np.float32), pred, pred, pynn.ids.LOSSES["mse"], False)
    with pytest.raises(ValueError, match="loss"):
        core.loss(None, pred, pred, 99, False)
    with pytest.raises(ValueError, match="loss"):       # rows == 0 has no mean
        core.loss(None, f32(np.ones((0, 3))), f32(np.ones((0, 3))), pynn.ids.LOSSES["mse"], False)
    with pytest.raises(ValueError, match=r"sparse_cce: expected labels of shape \(2,\)"):
        core.sparse_cce(None, pred, np.array([0, 1, 2]), False)


def test_activation_argument_errors_name_the_function():
    x = f32(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"activation_forward: expected y of shape \(2, 3\)"):
        core.activation_forward(np.empty((3, 2), np.float32), x, pynn.ids.ACTIVATIONS["relu"])
    with pytest.raises(ValueError, match="activation_forward"):
        core.activation_forward(np.empty_like(x), x, 42)
    with pytest.raises(ValueError, match="activation_backward"):
        core.activation_backward(np.empty_like(x), x, x, x, -1)
    with pytest.raises(ValueError, match=r"bias_grad: expected db of shape \(3,\)"):
        core.bias_grad(np.empty(4, np.float32), x)


# ---- optimizers ----------------------------------------------------------------------
# Elementwise, the same float32 operations in the same order on both sides, and sqrt is
# correctly rounded: on x86-64 the results are bitwise equal.  rtol = 1e-6 (8 ulps) still
# lets a compiler that fuses a*b + c into an FMA (e.g. on aarch64) pass.

OPT_RTOL = 1e-6
SIZES = [1, 7, 1031, 40000]


def opt_state(n, seed):
    rng = rng_for("opt", n, seed)
    return [f32(rng.standard_normal(n)) for _ in range(3)]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_update(momentum, nesterov, n):
    w, m, _ = opt_state(n, "sgd")
    w_ref, m_ref = w.copy(), m.copy()
    for step in range(3):
        g = opt_state(n, step)[2]
        core.sgd_update(w, m if momentum else None, g, 0.01, momentum, nesterov)
        ref.sgd_update(w_ref, m_ref, g, 0.01, momentum, nesterov)
    assert_close(w, w_ref, rtol=OPT_RTOL)
    assert_close(m, m_ref, rtol=OPT_RTOL)


def test_sgd_without_momentum_leaves_m_alone():
    w, m, g = opt_state(5, "sgd m")
    m_before = m.copy()
    core.sgd_update(w, m, g, 0.1, 0.0, False)
    np.testing.assert_array_equal(m, m_before)
    with pytest.raises(ValueError, match="sgd_update"):
        core.sgd_update(w, None, g, 0.1, 0.9, False)


@pytest.mark.parametrize("n", SIZES)
def test_adam_update(n):
    w, _, _ = opt_state(n, "adam")
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    w_ref, m_ref, v_ref = w.copy(), m.copy(), v.copy()
    for step in range(1, 4):
        g = opt_state(n, step)[2]
        lr_t = ref.adam_lr_t(0.001, 0.9, 0.999, step)
        core.adam_update(w, m, v, g, lr_t, 0.9, 0.999, 1e-7)
        ref.adam_update(w_ref, m_ref, v_ref, g, lr_t, 0.9, 0.999, 1e-7)
    for got, want in ((w, w_ref), (m, m_ref), (v, v_ref)):
        assert_close(got, want, rtol=OPT_RTOL)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_update(momentum, n):
    w, _, _ = opt_state(n, "rmsprop")
    v, mom = np.zeros(n, np.float32), np.zeros(n, np.float32)
    w_ref, v_ref, mom_ref = w.copy(), v.copy(), mom.copy()
    for step in range(3):
        g = opt_state(n, step)[2]
        core.rmsprop_update(w, v, mom if momentum else None, g, 0.001, 0.9, momentum, 1e-7)
        ref.rmsprop_update(w_ref, v_ref, mom_ref, g, 0.001, 0.9, momentum, 1e-7)
    for got, want in ((w, w_ref), (v, v_ref), (mom, mom_ref)):
        assert_close(got, want, rtol=OPT_RTOL)


def test_optimizer_shape_errors_name_the_function():
    w = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"adam_update: expected v of shape \(4,\)"):
        core.adam_update(w, w.copy(), np.zeros(3, np.float32), w.copy(), 0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match="rmsprop_update"):
        core.rmsprop_update(w, w.copy(), None, w.copy(), 0.1, 0.9, 0.5, 1e-7)


# ---- determinism: 1, 2 or 3 threads give the same bits ---------------------------------------

def run_every_kernel():
    """Outputs of every kernel on LARGE inputs, as a list of arrays."""
    rng = rng_for("determinism")
    x = f32(rng.standard_normal(LARGE) * 3)
    dy = f32(rng.standard_normal(LARGE))
    probs = f32(rng.uniform(0.01, 1, LARGE))
    target = f32(rng.uniform(0, 1, LARGE))
    labels = rng.integers(0, LARGE[1], size=LARGE[0])
    outputs = []

    db = np.empty(LARGE[1], np.float32)
    core.bias_grad(db, dy)
    outputs += [db]

    for name, act in ACT_IDS.items():
        y, dx = np.empty_like(x), np.empty_like(x)
        core.activation_forward(y, x, act)
        core.activation_backward(dx, x, y, dy, act)
        outputs += [y, dx]

    for name, kind in LOSS_IDS.items():
        for from_logits in (False, True):
            pred = x if from_logits or name == "mse" else probs
            grad = np.empty_like(x)
            value = core.loss(grad, pred, target, kind, from_logits)
            outputs += [np.float64(value), grad]
    for from_logits in (False, True):
        grad = np.empty_like(x)
        value = core.sparse_cce(grad, x if from_logits else probs, labels, from_logits)
        outputs += [np.float64(value), grad]

    w, m, v, g = (f32(rng.standard_normal(LARGE[0] * 100)) for _ in range(4))
    v = np.abs(v)
    core.sgd_update(w, m, g, 0.01, 0.9, True)
    core.adam_update(w, m, v, g, 0.001, 0.9, 0.999, 1e-7)
    core.rmsprop_update(w, v, m, g, 0.001, 0.9, 0.5, 1e-7)
    outputs += [w, m, v]
    return outputs


def test_results_do_not_depend_on_the_thread_count(restore_threads):
    core.set_num_threads(1)
    single = run_every_kernel()
    for threads in (2, 3):
        core.set_num_threads(threads)
        for index, (got, want) in enumerate(zip(run_every_kernel(), single)):
            assert np.array_equal(got, want), f"output {index} differs on {threads} threads"
