"""The `cuda` backend: every kernel against the NumPy reference on small awkward shapes, and
training steps through the public API against the independent float64 implementation and
the `numpy` backend.

Without a GPU these run under Numba's CUDA simulator, which must be switched on before numba
is imported: NUMBA_ENABLE_CUDASIM=1 is set unless the variable is already set or
nvidia-smi says a real GPU may be present (tests/cuda_setup.py), so the same tests run
unchanged on a GPU.  The
simulator runs every GPU thread as a Python thread, so shapes stay tiny (and each production
tile configuration is still exercised once on a shape that crosses its tile edges).

Tolerances: the GPU computes in float32 like the reference, but contracts multiply-adds into
FMAs and sums in other orders, so results agree to float32 rounding: rtol 1e-5 with an
absolute floor of 1e-6 of the largest value (as tests/test_kernels_parity.py argues), looser
for GEMMs (sums of K products).
"""
import os
import subprocess
import sys
import zlib
from pathlib import Path

# first: importing cuda_setup switches the simulator on before numba is imported
from cuda_setup import SIMULATED, be, quick_simulator  # noqa: F401  (fixtures)

import numpy as np
import pytest

import pynn
from pynn import backend as backends
from pynn.backend import reference as ref

import independent as ind                                          # noqa: E402
from test_training import (HIDDEN, LOSSES, OPTIMIZERS, assert_update_matches,  # noqa: E402
                            make_problem, pynn_steps, reference_steps)

ACTIVATIONS = ref.ACTIVATIONS


@pytest.fixture(scope="module")
def cuda_module(be):
    from pynn.backend import cuda
    return cuda


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def assert_close(actual, expected, rtol=1e-5, atol_of_max=1e-6):
    expected = np.asarray(expected)
    atol = atol_of_max * float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def nan_device(be, shape):
    """A device array full of NaN: an output left unwritten shows."""
    return be.from_host(np.full(shape, np.nan, np.float32))


def assert_bitwise(actual, expected, err_msg=""):
    """The same float32 bits (the sign of zero included) wherever not both NaN."""
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype == np.float32, err_msg
    assert actual.shape == expected.shape, err_msg
    both_nan = np.isnan(actual) & np.isnan(expected)
    np.testing.assert_array_equal(np.where(both_nan, 0, actual.view(np.uint32)),
                                  np.where(both_nan, 0, expected.view(np.uint32)), err_msg=err_msg)


def gemm_operands(rng, m, n, k, trans_a, trans_b):
    a = f32(rng.standard_normal((k, m) if trans_a else (m, k)))
    b = f32(rng.standard_normal((n, k) if trans_b else (k, n)))
    return a, b


def assert_gemm_close(got, a, b, trans_a, trans_b, k):
    """float32 sums of k products: within ~k ulps of sum |a_i b_i| (a rigorous bound would
    be (k - 1) u; FMA only tightens it)."""
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    exact = op_a @ op_b
    bound = (k + 1) * 2.0 ** -24 * (np.abs(op_a) @ np.abs(op_b)) + 1e-30
    assert got.dtype == np.float32
    assert np.all(np.abs(got - exact) <= bound), np.abs(got - exact).max()


# ---- SGEMM ------------------------------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (6, 5, 4), (7, 3, 9), (17, 19, 13), (2, 33, 17), (31, 1, 8)]


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)], ids=["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in GEMM_SHAPES])
def test_matmul_matches_reference(be, m, n, k, trans_a, trans_b):
    a, b = gemm_operands(rng_for("gemm", m, n, k, trans_a, trans_b), m, n, k, trans_a, trans_b)
    out = be.from_host(np.full((m, n), np.nan, np.float32))
    be.matmul(be.from_host(a), be.from_host(b), trans_a, trans_b, out)
    assert_gemm_close(be.to_host(out), a, b, trans_a, trans_b, k)


# Every production tile configuration on a shape crossing its M, N and K tile edges.
TILE_CASES = [("large", 130, 3, 9, False, False), ("large", 3, 130, 9, True, True),
              ("medium", 66, 65, 9, True, False), ("small", 33, 34, 17, False, True),
              ("tiny", 17, 18, 9, False, False), ("tiny", 17, 18, 9, True, True)]


@pytest.mark.parametrize("name,m,n,k,trans_a,trans_b", TILE_CASES,
                         ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}-{'tn'[c[4]]}{'tn'[c[5]]}" for c in TILE_CASES])
def test_every_tile_config_across_tile_edges(be, cuda_module, name, m, n, k, trans_a, trans_b):
    cfg = {c.name: c for c in cuda_module.gemm.GEMM_CONFIGS}[name]
    a, b = gemm_operands(rng_for("tile", name, m, n, k), m, n, k, trans_a, trans_b)
    out = be.from_host(np.full((m, n), np.nan, np.float32))
    be.matmul(be.from_host(a), be.from_host(b), trans_a, trans_b, out, cfg=cfg)
    assert_gemm_close(be.to_host(out), a, b, trans_a, trans_b, k)


def test_matmul_k_zero_and_empty(be):
    out = be.from_host(np.full((3, 2), np.nan, np.float32))
    be.matmul(be.empty((3, 0)), be.empty((0, 2)), False, False, out)
    np.testing.assert_array_equal(be.to_host(out), 0.0)
    be.matmul(be.empty((0, 4)), be.empty((4, 2)), False, False, be.empty((0, 2)))   # no launch


def test_matmul_refuses_mismatched_shapes(be):
    with pytest.raises(ValueError, match="inner dimensions"):
        be.matmul(be.empty((3, 4)), be.empty((5, 2)), False, False, be.empty((3, 2)))
    with pytest.raises(ValueError, match="expected out of shape"):
        be.matmul(be.empty((3, 4)), be.empty((4, 2)), False, False, be.empty((2, 3)))


def test_gemm_config_by_shape(cuda_module):
    gemm = cuda_module.gemm
    assert gemm.gemm_config(4096, 4096, 132) is gemm.GEMM_LARGE
    assert gemm.gemm_config(1024, 1024, 132) is gemm.GEMM_MEDIUM
    assert gemm.gemm_config(6, 5, 132) is gemm.GEMM_TINY


# ---- dense forward: GEMM + bias + activation in one kernel --------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("in_place", [False, True], ids=["z_and_y", "y_is_z"])
def test_dense_forward_matches_reference(be, activation, in_place):
    rng = rng_for("dense", activation)
    x, w, b = f32(rng.standard_normal((7, 5))), f32(rng.standard_normal((5, 3))), f32(rng.standard_normal(3))
    z_ref = ref.gemm(x, w) + b
    y_ref = ref.activation_forward(z_ref, activation, alpha=0.3)
    z = be.from_host(np.full((7, 3), np.nan, np.float32))
    y = z if in_place else be.from_host(np.full((7, 3), np.nan, np.float32))
    be.dense_forward(be.from_host(x), be.from_host(w), be.from_host(b), activation, 0.3, z, y)
    assert_close(be.to_host(y), y_ref, rtol=1e-5, atol_of_max=1e-5)
    if not in_place:
        assert_close(be.to_host(z), z_ref, rtol=1e-5, atol_of_max=1e-5)


def test_dense_forward_without_bias(be):
    rng = rng_for("dense_nobias")
    x, w = f32(rng.standard_normal((4, 6))), f32(rng.standard_normal((6, 2)))
    y = be.empty((4, 2))
    be.dense_forward(be.from_host(x), be.from_host(w), None, "relu", 0.0, y, y)
    assert_close(be.to_host(y), np.maximum(x @ w, 0), atol_of_max=1e-5)


# ---- activations ---------------------------------------------------------------------------------

ACT_SHAPES = [(1, 1), (5, 7), (3, 1)]


@pytest.mark.parametrize("shape", ACT_SHAPES, ids=[f"{r}x{c}" for r, c in ACT_SHAPES])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_and_backward(be, activation, shape):
    rng = rng_for("act", activation, shape)
    x, dy = f32(rng.standard_normal(shape) * 4), f32(rng.standard_normal(shape))
    y = be.empty(shape)
    be.activation_forward(be.from_host(x), activation, 0.3, y)
    assert_close(be.to_host(y), ref.activation_forward(x, activation, alpha=0.3))
    y_host = ref.activation_forward(x, activation, alpha=0.3)   # both sides read the same y
    dx = be.empty(shape)
    be.activation_backward(be.from_host(x), be.from_host(y_host), be.from_host(dy), activation, 0.3, dx)
    assert_close(be.to_host(dx), ref.activation_backward(x, y_host, dy, activation, alpha=0.3))
    # in place: dx is dy
    d_dy = be.from_host(dy)
    be.activation_backward(be.from_host(x), be.from_host(y_host), d_dy, activation, 0.3, d_dy)
    np.testing.assert_array_equal(be.to_host(d_dy), be.to_host(dx))


# ---- bias gradient and the fused activation backward + bias gradient ------------------------------

BIAS_SHAPES = [(1, 1), (9, 3), (13, 37), (2, 40)]


@pytest.mark.parametrize("shape", BIAS_SHAPES, ids=[f"{r}x{c}" for r, c in BIAS_SHAPES])
def test_bias_grad(be, shape):
    dz = f32(rng_for("bias", shape).standard_normal(shape))
    db = be.from_host(np.full(shape[1], np.nan, np.float32))
    be.bias_grad(be.from_host(dz), db)
    got = be.to_host(db)
    exact = dz.astype(np.float64).sum(axis=0)
    bound = (shape[0] - 1) * 2.0 ** -24 * np.abs(dz.astype(np.float64)).sum(axis=0)
    assert np.all(np.abs(got - exact) <= bound)


def test_bias_grad_is_exact_on_integers_and_repeats_bitwise(be):
    dz = be.from_host(f32(rng_for("bias_int").integers(-8, 9, size=(23, 37))))
    first, second = be.empty((37,)), be.empty((37,))
    be.bias_grad(dz, first)
    be.bias_grad(dz, second)
    np.testing.assert_array_equal(be.to_host(first), ref.bias_grad(be.to_host(dz)))
    np.testing.assert_array_equal(be.to_host(first), be.to_host(second))


def test_bias_grad_of_zero_rows_is_zero(be):
    db = be.from_host(np.full(5, np.nan, np.float32))
    be.bias_grad(be.empty((0, 5)), db)
    np.testing.assert_array_equal(be.to_host(db), 0.0)


def test_bias_grad_repeats_bitwise_on_floats(be):
    dz = be.from_host(f32(rng_for("bias_det").standard_normal((19, 5)) * 1e3))
    results = []
    for _ in range(2):
        db = be.empty((5,))
        be.bias_grad(dz, db)
        results.append(be.to_host(db))
    assert results[0].tobytes() == results[1].tobytes()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward_matches_numpy_backend(be, activation):
    rng = rng_for("dense_backward", activation)
    x, w = f32(rng.standard_normal((6, 4))), f32(rng.standard_normal((4, 3)))
    z = f32(rng.standard_normal((6, 3)) * 2)
    y = ref.activation_forward(z, activation, alpha=0.3)
    dy = f32(rng.standard_normal((6, 3)))
    npb = backends.get("numpy")
    expect = [np.empty((4, 3), np.float32), np.empty(3, np.float32), np.empty((6, 4), np.float32)]
    dy_np = dy.copy()
    npb.dense_backward(x, w, z, y, dy_np, activation, 0.3, *expect)
    got = [be.empty((4, 3)), be.empty((3,)), be.empty((6, 4))]
    dy_dev = be.from_host(dy)
    be.dense_backward(be.from_host(x), be.from_host(w), be.from_host(z), be.from_host(y), dy_dev,
                      activation, 0.3, *got)
    assert_close(be.to_host(dy_dev), dy_np)
    for g, e in zip(got, expect):
        assert_close(be.to_host(g), e, rtol=1e-4, atol_of_max=1e-5)
    # without db and dx
    dw = be.empty((4, 3))
    be.dense_backward(be.from_host(x), be.from_host(w), be.from_host(z), be.from_host(y),
                      be.from_host(dy), activation, 0.3, dw, None, None)
    assert_close(be.to_host(dw), expect[0], rtol=1e-4, atol_of_max=1e-5)
    # a frozen layer: no dw, still dz, db and dx
    dy_dev, db, dx = be.from_host(dy), nan_device(be, (3,)), nan_device(be, (6, 4))
    be.dense_backward(be.from_host(x), be.from_host(w), be.from_host(z), be.from_host(y), dy_dev,
                      activation, 0.3, None, db, dx)
    assert_close(be.to_host(dy_dev), dy_np)
    assert_close(be.to_host(db), expect[1], rtol=1e-4, atol_of_max=1e-5)
    assert_close(be.to_host(dx), expect[2], rtol=1e-4, atol_of_max=1e-5)


# ---- losses ----------------------------------------------------------------------------------------

def loss_inputs(kind, from_logits, shape):
    rng = rng_for("loss", kind, from_logits, shape)
    rows, cols = shape
    if from_logits or kind == "mse":
        pred = f32(rng.standard_normal(shape) * 3)
    else:
        pred = f32(rng.random(shape))
        if cols > 1:                      # clipped: zero gradient there (a 1-wide CCE row of 0 is 0/0)
            pred[0, 0] = 0.0
        if kind == "bce" and cols > 1:
            pred[0, 1] = 1.0
    if kind == "scce":
        return pred, rng.integers(0, cols, size=rows).astype(np.int64)
    if kind == "cce":
        return pred, f32(np.eye(cols)[rng.integers(0, cols, size=rows)])
    if kind == "bce":
        return pred, f32(rng.random(shape) > 0.5)
    return pred, f32(rng.standard_normal(shape))


LOSS_CASES = [(k, fl, s) for k in ("mse", "bce", "cce", "scce") for fl in (False, True)
              for s in ((5, 3), (1, 1), (4, 1))]


@pytest.mark.parametrize("kind,from_logits,shape", LOSS_CASES,
                         ids=[f"{k}-{'logits' if fl else 'probs'}-{s[0]}x{s[1]}" for k, fl, s in LOSS_CASES])
def test_loss_matches_reference(be, kind, from_logits, shape):
    pred, target = loss_inputs(kind, from_logits, shape)
    if kind == "scce":
        value_ref, grad_ref = ref.sparse_cce(pred, target, from_logits)
    else:
        value_ref, grad_ref = ref.loss(pred, target, kind, from_logits)
    grad = be.from_host(np.full(shape, np.nan, np.float32))
    value = be.loss(kind, be.from_host(pred), be.from_host(target), from_logits, grad)
    assert isinstance(value, float)
    np.testing.assert_allclose(value, value_ref, rtol=1e-5, atol=1e-6)
    assert_close(be.to_host(grad), grad_ref)
    assert be.loss(kind, be.from_host(pred), be.from_host(target), from_logits, None) == value


def test_loss_on_more_rows_than_one_block_repeats_bitwise(be, cuda_module):
    rows = cuda_module.reduction.ROWS_PER_BLOCK + 3      # two blocks, summed in order
    pred, target = loss_inputs("cce", True, (rows, 2))
    value_ref, grad_ref = ref.loss(pred, target, "cce", True)
    grad = be.empty((rows, 2))
    d_pred, d_target = be.from_host(pred), be.from_host(target)
    value = be.loss("cce", d_pred, d_target, True, grad)
    np.testing.assert_allclose(value, value_ref, rtol=1e-6)
    assert_close(be.to_host(grad), grad_ref)
    assert be.loss("cce", d_pred, d_target, True, None) == value


def test_loss_extreme_logits_stay_finite(be):
    pred = f32([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 50.0]])
    for kind, target in (("cce", f32(np.eye(3)[[1, 0]])), ("bce", f32([[1, 0, 1], [0, 1, 0]]))):
        grad = be.empty(pred.shape)
        value = be.loss(kind, be.from_host(pred), be.from_host(target), True, grad)
        value_ref, grad_ref = ref.loss(pred, target, kind, True)
        assert np.isfinite(value) and np.all(np.isfinite(be.to_host(grad)))
        np.testing.assert_allclose(value, value_ref, rtol=1e-6)
        assert_close(be.to_host(grad), grad_ref)


# ---- optimizers ------------------------------------------------------------------------------------

OPT_CASES = [("sgd", dict(lr=0.1, momentum=0.0, nesterov=False)),
             ("sgd", dict(lr=0.1, momentum=0.9, nesterov=False)),
             ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
             ("adam", dict(lr_t=0.003, beta1=0.9, beta2=0.999, epsilon=1e-7)),
             ("rmsprop", dict(lr=0.01, rho=0.9, momentum=0.0, epsilon=1e-7)),
             ("rmsprop", dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7))]


@pytest.mark.parametrize("kind,kw", OPT_CASES, ids=["sgd", "sgd_momentum", "sgd_nesterov", "adam",
                                                   "rmsprop", "rmsprop_momentum"])
def test_optimizer_updates_match_reference(be, kind, kw):
    rng = rng_for("opt", kind, tuple(kw.items()))
    n = 37
    w, g = f32(rng.standard_normal(n)), f32(rng.standard_normal(n))
    s1, s2 = f32(rng.standard_normal(n) * 0.1), f32(rng.random(n) * 0.1)
    host = [a.copy() for a in (w, s1, s2)]
    dev = [be.from_host(a) for a in (w, s1, s2)]
    d_g = be.from_host(g)
    for _ in range(2):
        if kind == "sgd":
            ref.sgd_update(host[0], host[1], g, **kw)
            be.sgd_update(dev[0], dev[1] if kw["momentum"] else None, d_g, **kw)
        elif kind == "adam":
            ref.adam_update(host[0], host[1], host[2], g, **kw)
            be.adam_update(dev[0], dev[1], dev[2], d_g, **kw)
        else:
            ref.rmsprop_update(host[0], host[2], host[1], g, **kw)
            be.rmsprop_update(dev[0], dev[2], dev[1] if kw["momentum"] else None, d_g, **kw)
    for h, d in zip(host, dev):
        assert_close(be.to_host(d), h)


# ---- one optimizer step (the plan's call) --------------------------------------------------------

STEP_CASES = [("sgd", dict(learning_rate=0.1, momentum=0.0, nesterov=False), False),
              ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True), True),
              ("adam", dict(learning_rate=0.003, beta_1=0.9, beta_2=0.999, epsilon=1e-7), True),
              ("rmsprop", dict(learning_rate=0.01, rho=0.9, momentum=0.0, epsilon=1e-7), True),
              ("rmsprop", dict(learning_rate=0.01, rho=0.9, momentum=0.5, epsilon=1e-7), True)]


@pytest.mark.parametrize("kind,settings,slot1", STEP_CASES,
                         ids=["sgd", "sgd_nesterov", "adam", "rmsprop", "rmsprop_momentum"])
def test_optimizer_step_matches_numpy_backend(be, kind, settings, slot1):
    """Steps 1..3 (Adam's bias correction changes each step), slots as pynn_optimizer_step's:
    SGD (slot1 = momentum or None), Adam (m, v), RMSprop (velocity, momentum or None)."""
    npb = backends.get("numpy")
    hyper = dict.fromkeys(pynn.ids.HYPER, 0.0) | settings
    rng = rng_for("step", kind, tuple(settings.items()))
    n = 29
    w, g = f32(rng.standard_normal(n)), f32(rng.standard_normal(n))
    second = kind == "adam" or (kind == "rmsprop" and settings["momentum"])
    slots = [f32(rng.random(n) * 0.1) if used else None for used in (slot1, second)]
    host = [w.copy()] + [None if a is None else a.copy() for a in slots]
    dev = [be.from_host(w)] + [None if a is None else be.from_host(a) for a in slots]
    d_g = be.from_host(g)
    for step in (1, 2, 3):
        npb.optimizer_step(kind, host[0], host[1], host[2], g, step, hyper)
        be.optimizer_step(kind, dev[0], dev[1], dev[2], d_g, step, hyper)
    for h, d in zip(host, dev):
        if h is not None:
            assert_close(be.to_host(d), h)


def test_optimizer_step_refuses_an_unknown_kind(be):
    with pytest.raises(ValueError, match="optimizer_step: expected kind in"):
        be.optimizer_step("adagrad", be.empty((2,)), None, None, be.empty((2,)), 1,
                          dict.fromkeys(pynn.ids.HYPER, 0.1))


# ---- merges, concatenation, scaling: bitwise the reference's ---------------------------------------

MERGE_CASES = [(kind, k) for kind in ref.MERGES for k in ((2,) if kind == "subtract" else (1, 2, 3))]


def merge_inputs(kind, k, shape=(3, 5)):
    """k arrays of `shape`; for maximum / minimum integer-valued, so most positions tie and
    the gradient must go to the first input holding the extreme."""
    rng = rng_for("merge", kind, k, shape)
    if kind in ("maximum", "minimum"):
        return [f32(rng.integers(-1, 2, size=shape)) for _ in range(k)], f32(rng.standard_normal(shape))
    return [f32(rng.standard_normal(shape)) for _ in range(k)], f32(rng.standard_normal(shape))


@pytest.mark.parametrize("kind,k", MERGE_CASES, ids=[f"{kind}-{k}" for kind, k in MERGE_CASES])
def test_merge_forward_and_backward_bitwise(be, kind, k):
    npb = backends.get("numpy")
    xs, dy = merge_inputs(kind, k)
    d_xs = [be.from_host(x) for x in xs]
    y_n = np.empty_like(xs[0])
    npb.merge_forward(kind, xs, y_n)
    y = nan_device(be, xs[0].shape)
    be.merge_forward(kind, d_xs, y)
    assert_bitwise(be.to_host(y), y_n, kind)
    for i in range(k):
        dx_n = np.empty_like(dy)
        npb.merge_backward(kind, i, xs, dy, dx_n)
        dx = nan_device(be, dy.shape)
        be.merge_backward(kind, i, d_xs, be.from_host(dy), dx)
        assert_bitwise(be.to_host(dx), dx_n, f"{kind} d/dx{i}")


@pytest.mark.parametrize("kind", ref.MERGES)
def test_merge_in_place(be, kind):
    """y may be xs[0] (the plan sums gradients in place that way); dx may be dy."""
    npb = backends.get("numpy")
    xs, dy = merge_inputs(kind, 2, shape=(7,))
    d_xs = [be.from_host(x) for x in xs]
    y_n = np.empty_like(xs[0])
    npb.merge_forward(kind, xs, y_n)
    dx_n = np.empty_like(dy)
    npb.merge_backward(kind, 1, xs, dy, dx_n)
    d_dy = be.from_host(dy)
    be.merge_backward(kind, 1, d_xs, d_dy, d_dy)
    assert_bitwise(be.to_host(d_dy), dx_n)
    be.merge_forward(kind, d_xs, d_xs[0])
    assert_bitwise(be.to_host(d_xs[0]), y_n)


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_merge_extremes_with_nan_and_signed_zeros(be, kind):
    """NaN anywhere wins the forward and routes no gradient (np.maximum / the reference's
    x == max test); -0 and +0 tie, and the first one gets the gradient."""
    npb = backends.get("numpy")
    nan = np.nan
    xs = [f32([nan, 1.0, 2.0, 0.0, -0.0, 3.0]), f32([1.0, nan, 2.0, -0.0, 0.0, 3.0]),
          f32([0.5, 0.5, nan, 0.0, 0.0, 3.0])]
    dy = f32([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    d_xs = [be.from_host(x) for x in xs]
    y_n, y = np.empty_like(dy), nan_device(be, dy.shape)
    npb.merge_forward(kind, xs, y_n)
    be.merge_forward(kind, d_xs, y)
    np.testing.assert_array_equal(be.to_host(y), y_n)
    for i in range(3):
        dx_n, dx = np.empty_like(dy), nan_device(be, dy.shape)
        npb.merge_backward(kind, i, xs, dy, dx_n)
        be.merge_backward(kind, i, d_xs, be.from_host(dy), dx)
        assert_bitwise(be.to_host(dx), dx_n, f"d/dx{i}")
    # one input: x0 itself is the extreme, except where it is NaN
    dx_n, dx = np.empty_like(dy), nan_device(be, dy.shape)
    npb.merge_backward(kind, 0, xs[:1], dy, dx_n)
    be.merge_backward(kind, 0, d_xs[:1], be.from_host(dy), dx)
    assert_bitwise(be.to_host(dx), dx_n)


def test_merge_refuses_bad_arguments(be):
    a, b = be.empty((2, 3)), be.empty((3, 2))
    with pytest.raises(ValueError, match="expected kind in"):
        be.merge_forward("concatenate", [a, a], a)
    with pytest.raises(ValueError, match=r"expected xs\[1\] of shape \(2, 3\)"):
        be.merge_forward("add", [a, b], a)
    with pytest.raises(ValueError, match="subtract takes 2 inputs"):
        be.merge_forward("subtract", [a, a, a], a)
    with pytest.raises(ValueError, match="input index"):
        be.merge_backward("add", 2, [a, a], a, a)


def test_concat_forward_and_backward_bitwise(be):
    npb = backends.get("numpy")
    rng = rng_for("concat")
    widths = (1, 4, 2)
    xs = [f32(rng.standard_normal((5, w))) for w in widths]
    y_n = np.empty((5, 7), np.float32)
    npb.concat_forward(xs, y_n)
    y = nan_device(be, (5, 7))
    be.concat_forward([be.from_host(x) for x in xs], y)
    assert_bitwise(be.to_host(y), y_n)
    dy = f32(rng.standard_normal((5, 7)))
    dxs = [nan_device(be, (5, 1)), None, nan_device(be, (5, 2))]     # None: not wanted
    be.concat_backward(be.from_host(dy), widths, dxs)
    assert_bitwise(be.to_host(dxs[0]), dy[:, :1])
    assert_bitwise(be.to_host(dxs[2]), dy[:, 5:])


def test_scale_bitwise_and_in_place(be):
    npb = backends.get("numpy")
    x = f32(rng_for("scale").standard_normal((3, 7)) * 1e3)
    for alpha in (0.3, -1.0, 1.0 / 3.0):
        y_n = np.empty_like(x)
        npb.scale(x, alpha, y_n)
        y = nan_device(be, x.shape)
        be.scale(be.from_host(x), alpha, y)
        assert_bitwise(be.to_host(y), y_n, f"alpha={alpha}")
        d_x = be.from_host(x)
        be.scale(d_x, alpha, d_x)
        assert_bitwise(be.to_host(d_x), y_n, f"in place, alpha={alpha}")


# ---- metric sums ---------------------------------------------------------------------------------

def metric_inputs(kind, shape, labels):
    """pred (probabilities, with ties in the first row) and float targets or int64 labels."""
    rng = rng_for("metric", kind, shape, labels)
    rows, cols = shape
    pred = f32(rng.random(shape))
    pred[0, :] = 0.5                           # > 0.5 is false; argmax ties: the first wins
    if rows > 1 and cols > 1:
        pred[1, -1] = pred[1, 0] = pred[1].max() + 0.25
    if labels:
        return pred, rng.integers(0, cols, size=rows).astype(np.int64)
    if kind in ("mean_absolute_error", "mean_squared_error"):
        return pred, f32(rng.random(shape))
    if kind == "binary_accuracy":
        return pred, f32(rng.random(shape) > 0.5)
    target = f32(np.eye(cols)[rng.integers(0, cols, size=rows)])
    return pred, target


METRIC_CASES = [(kind, labels, shape) for kind in ref.METRICS for labels in (False, True)
                for shape in ((1, 1), (6, 3), (5, 11))]


@pytest.mark.parametrize("kind,labels,shape", METRIC_CASES,
                         ids=[f"{k}-{'labels' if l else 'rows'}-{s[0]}x{s[1]}" for k, l, s in METRIC_CASES])
def test_metric_sum_matches_numpy_backend(be, kind, labels, shape):
    npb = backends.get("numpy")
    pred, target = metric_inputs(kind, shape, labels)
    expect = npb.metric_sum(kind, pred, target)
    got = be.metric_sum(kind, be.from_host(pred), be.from_host(target))
    assert isinstance(got, float)
    # per-row float32 values agree to rounding (row sums in another order), the row sum
    # in double to its rounding
    np.testing.assert_allclose(got, expect, rtol=2e-7 * shape[1], atol=1e-12)


def test_metric_sum_over_several_blocks_repeats_bitwise(be, cuda_module):
    rows = cuda_module.reduction.ROWS_PER_BLOCK + 5
    npb = backends.get("numpy")
    for kind, labels in (("mean_squared_error", False), ("sparse_categorical_accuracy", True)):
        pred, target = metric_inputs(kind, (rows, 2), labels)
        d_pred, d_target = be.from_host(pred), be.from_host(target)
        first = be.metric_sum(kind, d_pred, d_target)
        np.testing.assert_allclose(first, npb.metric_sum(kind, pred, target), rtol=1e-6)
        assert be.metric_sum(kind, d_pred, d_target) == first


def test_metric_sum_refuses_bad_arguments(be):
    with pytest.raises(ValueError, match="expected kind in"):
        be.metric_sum("auc", be.empty((2, 3)), be.empty((2, 3)))
    with pytest.raises(ValueError, match="expected labels of shape"):
        be.metric_sum("sparse_categorical_accuracy", be.empty((2, 3)),
                      be.from_host(np.zeros(3, np.int64)))


# ---- arrays -----------------------------------------------------------------------------------------

def test_arrays_and_views_share_device_memory(be):
    flat = be.from_host(np.arange(10, dtype=np.float32))
    view = be.view(flat, 2, (2, 3))
    np.testing.assert_array_equal(be.to_host(view), np.arange(2, 8).reshape(2, 3))
    be.copy_from_host(view, np.full((2, 3), -1.0, np.float32))
    np.testing.assert_array_equal(be.to_host(flat)[2:8], -1.0)
    np.testing.assert_array_equal(be.to_host(be.zeros((3, 4))), 0.0)
    assert be.to_host(be.from_host(np.arange(3))).dtype == np.int64
    assert be.to_host(be.from_host(np.ones(3, np.float64))).dtype == np.float32


# ---- whole models through the public API -----------------------------------------------------------

@pytest.mark.parametrize("opt_id,opt_factory,opt_kwargs", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("loss_id,loss_factory,out_act,out_dim,kind,from_logits", LOSSES,
                         ids=[l[0] for l in LOSSES])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_training_step_matches_independent_backprop_and_numpy(be, hidden, loss_id, loss_factory, out_act,
                                                             out_dim, kind, from_logits, opt_id,
                                                             opt_factory, opt_kwargs):
    # the seeds of tests/test_training.py: its problems keep every softmax probability above
    # Keras's clipping epsilon, where the fused logits form and the clipped one agree
    seed = zlib.crc32(f"{hidden}/{loss_id}/{opt_id}".encode())
    x, y, w0 = make_problem(seed, out_dim, kind)
    steps = 1
    w_ref, loss_ref, grads = reference_steps(hidden, out_act, kind, from_logits, opt_kwargs, x, y, w0, steps)
    label = f"cuda {hidden}/{loss_id}/{opt_id}"
    w_cuda, loss_cuda = pynn_steps("cuda", hidden, out_act, out_dim, loss_factory(), opt_factory(),
                                   x, y, w0, steps)
    np.testing.assert_allclose(loss_cuda, loss_ref, rtol=1e-4, atol=1e-6, err_msg=label)
    assert_update_matches(w0, w_cuda, w_ref, grads, opt_kwargs["kind"], label)
    w_np, loss_np = pynn_steps("numpy", hidden, out_act, out_dim, loss_factory(), opt_factory(),
                               x, y, w0, steps)
    for a, b in zip(w_cuda, w_np):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=label)
    np.testing.assert_allclose(loss_cuda, loss_np, rtol=1e-5, atol=1e-7, err_msg=label)


def small_digits_model(backend):
    pynn.utils.set_random_seed(3)
    model = pynn.Sequential([pynn.layers.Input((6,)), pynn.layers.Dense(5, activation="relu"),
                             pynn.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


def test_fit_predict_evaluate_get_weights_match_numpy(be):
    rng = rng_for("fit")
    x = f32(rng.standard_normal((10, 6)))
    y = rng.integers(0, 3, size=10)
    results = {}
    for backend in ("cuda", "numpy"):
        model = small_digits_model(backend)
        pynn.utils.set_random_seed(5)
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
        results[backend] = (history.history, model.get_weights(), model.predict(x, batch_size=7, verbose=0),
                            model.evaluate(x, y, batch_size=6, verbose=0))
    (h_c, w_c, p_c, e_c), (h_n, w_n, p_n, e_n) = results["cuda"], results["numpy"]
    for key in h_n:
        np.testing.assert_allclose(h_c[key], h_n[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(w_c, w_n):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    assert isinstance(p_c, np.ndarray) and p_c.shape == (10, 3)
    np.testing.assert_allclose(p_c, p_n, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e_c, e_n, rtol=1e-5, atol=1e-6)


def test_set_weights_then_get_weights_round_trips(be):
    model = small_digits_model("cuda")
    weights = [f32(rng_for("sw", i).standard_normal(w.shape)) for i, w in enumerate(model.get_weights())]
    model.set_weights(weights)
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


# ---- the GPU build of every kernel -------------------------------------------------------------------

def test_every_kernel_compiles_for_a_gpu():
    """The simulator never types a kernel as the GPU build does: compile each one to PTX
    (tests/cuda_ptx.py; needs NVVM, not a GPU, and the simulator off, so in a subprocess)."""
    if not SIMULATED:
        pytest.skip("on a GPU every test above compiles its kernels for real")
    root = Path(__file__).resolve().parents[1]
    # the source tree first: the installed copy of pynn may be older
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    run = subprocess.run([sys.executable, str(root / "tests" / "cuda_ptx.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip() + " (pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12)")
    assert run.returncode == 0, run.stdout + run.stderr


# ---- availability ------------------------------------------------------------------------------------

def test_cuda_available_is_true_here(be):
    assert pynn.cuda_available() is True
    assert backends.cuda_unavailable_reason() is None
    assert "cuda" in repr(be)


def test_unusable_gpu_raises_an_error_that_says_why(be, cuda_module, monkeypatch):
    reason = "the CUDA driver could not be initialised (CUDA driver library cannot be found)"
    monkeypatch.setattr(cuda_module, "unavailable_reason", lambda: reason)
    monkeypatch.setattr(backends, "_instances", {})
    assert pynn.cuda_available() is False
    model = pynn.Sequential([pynn.layers.Input((3,)), pynn.layers.Dense(2)])
    with pytest.raises(backends.BackendUnavailableError, match="driver could not be initialised"):
        model.compile(optimizer="sgd", loss="mse", backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda' cannot run here"):
        pynn.set_backend("cuda")
    assert pynn.get_backend() == "cpu"


def test_missing_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)          # import numba -> ImportError
    for name in [m for m in sys.modules if m == "pynn.backend.cuda" or m.startswith("pynn.backend.cuda.")]:
        monkeypatch.delitem(sys.modules, name)     # the package and its kernel modules
    monkeypatch.delattr(backends, "cuda", raising=False)
    monkeypatch.setattr(backends, "_instances", {})
    reason = backends.cuda_unavailable_reason()
    assert "numba-cuda is not installed" in reason and 'pip install "pynn[cuda]"' in reason
    assert pynn.cuda_available() is False
    with pytest.raises(ValueError, match=r"pynn\[cuda\]"):
        backends.get("cuda")


def test_unknown_backend_lists_cuda():
    with pytest.raises(ValueError, match="'cpu', 'numpy', 'cuda'"):
        backends.get("tpu")
