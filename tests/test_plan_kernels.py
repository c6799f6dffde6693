"""The kernels of a plan's ops and the C plan runner.

* Each cpu-backend method a plan op calls (dense_backward, conv2d_forward/backward with an
  optional dw, batchnorm_infer_backward, dropout_forward, merge/concat/scale, metric_sum,
  optimizer_step) against the numpy backend, the reference, on awkward shapes: 1, primes,
  row counts around the 256-row reduction chunks, and sizes past the 32768 elements at
  which a kernel starts an OpenMP team; bitwise the same on 1 and 2 threads.
* The reference's new backward formulas (merge_backward, concat_backward,
  batchnorm_infer_backward) against float64 central finite differences of their forward.
* PlanRunner (csrc/plan.c): hand-built plans of a 2-layer MLP and a small CNN trained for an
  epoch in one C call, one call per step, and op by op through the cpu backend from Python
  give bitwise the same weights, losses and metrics; refusals (a bad label, a NaN, a
  malformed plan) come before anything changes.

Tolerance (see close()): where both sides evaluate the same float32 expression elementwise
(dropout, merges, concatenation, scaling, the optimizer rules) the results are compared
exactly: IEEE float32 arithmetic and a correctly rounded sqrt give the same bits in C and
NumPy.  Where a sum is involved (GEMMs, column sums for db / dgamma / dbeta, a metric's
mean over columns) the C kernels add in a fixed chunked order and NumPy pairwise, so
results differ by a few ulps per term: ~sqrt(K) ulps for K terms, and K reaches ~10^4 here
(a filter gradient over a batch's positions).  rtol = 1e-4 with atol = 1e-5 * max|expected|
(the convention of tests/test_cnn_kernels.py) covers that with margin, while a wrong
formula or a missing term is off by 1e-2 or more.
"""
import zlib

import numpy as np
import pytest

import pynn
from pynn import _core, ids
from pynn import backend as backends
from pynn.backend import reference as ref

CPU, NUMPY = backends.get("cpu"), backends.get("numpy")


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(a, b, rtol=1e-4, atol=1e-5):
    b = np.asarray(b)
    scale = max(float(np.abs(b).max()), 1.0) if b.size else 1.0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


def on_threads(threads, fn):
    pynn.set_num_threads(threads)
    try:
        return fn()
    finally:
        pynn.set_num_threads(2)


def bitwise_on_1_and_2_threads(fn):
    for a, b in zip(on_threads(1, fn), on_threads(2, fn)):
        np.testing.assert_array_equal(a, b)


# ---- dense backward -------------------------------------------------------------------

DENSE_SHAPES = [(1, 1, 1), (7, 13, 5), (255, 17, 3), (256, 31, 10), (257, 64, 32),
                (300, 97, 131)]     # the last: 39300 elements of dz, past the team threshold


@pytest.mark.parametrize("activation", ["linear", "relu", "softmax", "gelu"])
@pytest.mark.parametrize("m,n_in,n_out", DENSE_SHAPES)
@pytest.mark.parametrize("wanted", ["all", "no_dw", "no_db", "dx_only", "none"])
def test_dense_backward_matches_the_reference(m, n_in, n_out, activation, wanted):
    rng = rng_for("dense", m, n_in, n_out, activation)
    x, w, b, dy0 = rand(rng, m, n_in), rand(rng, n_in, n_out), rand(rng, n_out), rand(rng, m, n_out)
    out = {}
    for be in (CPU, NUMPY):
        z, y = np.empty((m, n_out), np.float32), np.empty((m, n_out), np.float32)
        be.dense_forward(x, w, b, activation, 0.2, z, y)
        dy = dy0.copy()
        dw = np.full_like(w, np.nan) if wanted in ("all", "no_db") else None
        db = np.full_like(b, np.nan) if wanted in ("all", "no_dw") else None
        dx = np.full_like(x, np.nan) if wanted != "none" else None
        be.dense_backward(x, w, z, y, dy, activation, 0.2, dw, db, dx)
        out[be.name] = [a for a in (dy, dw, db, dx) if a is not None]
    for a, r in zip(out["cpu"], out["numpy"]):
        close(a, r)


def test_dense_backward_is_bitwise_the_same_on_1_and_2_threads():
    rng = rng_for("dense threads")
    x, w, z = rand(rng, 300, 97), rand(rng, 97, 131), rand(rng, 300, 131)
    y, dy0 = np.maximum(z, 0), rand(rng, 300, 131)

    def run():
        dy, dw, db, dx = dy0.copy(), np.empty_like(w), np.empty(131, np.float32), np.empty_like(x)
        CPU.dense_backward(x, w, z, y, dy, "relu", 0.0, dw, db, dx)
        return dy, dw, db, dx
    bitwise_on_1_and_2_threads(run)


def test_dense_backward_refuses_mismatched_shapes():
    x, w, z = (np.zeros(s, np.float32) for s in ((4, 3), (3, 2), (4, 2)))
    with pytest.raises(ValueError, match="dw"):
        _core.dense_backward(np.zeros((2, 3), np.float32), None, None, z.copy(), x, w, z, z,
                             ids.ACTIVATIONS["relu"])
    with pytest.raises(ValueError, match="dx"):
        _core.dense_backward(None, None, np.zeros((4, 2), np.float32), z.copy(), x, w, z, z,
                             ids.ACTIVATIONS["relu"])


# ---- convolution: the layer-level kernels, a frozen layer (dw None) -------------------

CONV_SHAPES = [
    # (n, h, w, c, window, strides, padding, f): the direct kernel, then the GEMM path
    (2, 8, 8, 1, (3, 3), (1, 1), (0, 0), 8),
    (3, 9, 70, 3, (3, 3), (1, 1), (1, 1), 9),
    (2, 11, 13, 7, (4, 3), (2, 2), (1, 1), 5),
    (64, 14, 14, 6, (5, 5), (1, 1), (0, 0), 16),     # 6400 positions: K split in 8 chunks
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0), 1),
]


def conv_out(h, w, window, strides, padding):
    return ((h + 2 * padding[0] - window[0]) // strides[0] + 1,
            (w + 2 * padding[1] - window[1]) // strides[1] + 1)


def conv_step(be, x, k, b, strides, padding, activation, dy0, want_dw, want_db, want_dx):
    n, f = x.shape[0], k.shape[3]
    oh, ow = conv_out(x.shape[1], x.shape[2], k.shape[:2], strides, padding)
    cols = np.empty((n * oh * ow, k.shape[0] * k.shape[1] * k.shape[2]), np.float32)
    z, y = np.empty((n, oh, ow, f), np.float32), np.empty((n, oh, ow, f), np.float32)
    be.conv2d_forward(x, k, b, strides, padding, activation, 0.2, cols, z, y)
    work = np.full(be.conv2d_backward_work_size(x.shape, k.shape, strides, (oh, ow)), np.nan,
                   np.float32)
    dy = dy0.copy()
    dw = np.full_like(k, np.nan) if want_dw else None
    db = np.full(f, np.nan, np.float32) if want_db else None
    dx = np.full_like(x, np.nan) if want_dx else None
    be.conv2d_backward(x, k, z, y, dy, strides, padding, activation, 0.2, cols, work, dw, db, dx)
    return [a for a in (z, y, dy, dw, db, dx) if a is not None]


@pytest.mark.parametrize("activation", ["relu", "softmax"])
@pytest.mark.parametrize("n,h,w,c,window,strides,padding,f", CONV_SHAPES)
@pytest.mark.parametrize("want_dw,want_db,want_dx", [(True, True, True), (False, True, True),
                                                     (False, False, True), (True, False, False)])
def test_conv2d_layer_kernels_match_the_reference(n, h, w, c, window, strides, padding, f,
                                                  activation, want_dw, want_db, want_dx):
    rng = rng_for("conv", n, h, w, c, f)
    x, k, b = rand(rng, n, h, w, c), rand(rng, *window, c, f), rand(rng, f)
    oh, ow = conv_out(h, w, window, strides, padding)
    dy0 = rand(rng, n, oh, ow, f)
    got = conv_step(CPU, x, k, b, strides, padding, activation, dy0, want_dw, want_db, want_dx)
    want = conv_step(NUMPY, x, k, b, strides, padding, activation, dy0, want_dw, want_db, want_dx)
    for a, r in zip(got, want):
        close(a, r)


@pytest.mark.parametrize("shape", [CONV_SHAPES[0], CONV_SHAPES[3]])
def test_a_frozen_convolution_computes_the_same_db_dz_and_dx(shape):
    """dw=None skips the filter gradient; what is still computed is bitwise what the
    trainable layer computes (the direct path derives db in the filter gradient's pass)."""
    n, h, w, c, window, strides, padding, f = shape
    rng = rng_for("frozen", shape)
    x, k, b = rand(rng, n, h, w, c), rand(rng, *window, c, f), rand(rng, f)
    dy0 = rand(rng, n, *conv_out(h, w, window, strides, padding), f)
    full = conv_step(CPU, x, k, b, strides, padding, "relu", dy0, True, True, True)
    frozen = conv_step(CPU, x, k, b, strides, padding, "relu", dy0, False, True, True)
    for a, r in zip(frozen, full[:3] + full[4:]):
        np.testing.assert_array_equal(a, r)


def test_conv2d_layer_kernels_are_bitwise_the_same_on_1_and_2_threads():
    rng = rng_for("conv threads")
    for n, h, w, c, window, strides, padding, f in (CONV_SHAPES[0], CONV_SHAPES[3]):
        x, k, b = rand(rng, n, h, w, c), rand(rng, *window, c, f), rand(rng, f)
        dy0 = rand(rng, n, *conv_out(h, w, window, strides, padding), f)
        bitwise_on_1_and_2_threads(lambda: conv_step(CPU, x, k, b, strides, padding, "relu", dy0,
                                                     True, True, True))


def test_conv2d_backward_refuses_a_small_work_array():
    rng = rng_for("conv work")
    x, k = rand(rng, 2, 8, 8, 1), rand(rng, 3, 3, 1, 8)
    cols = np.empty((72, 9), np.float32)
    z, y = np.empty((2, 6, 6, 8), np.float32), np.empty((2, 6, 6, 8), np.float32)
    CPU.conv2d_forward(x, k, None, (1, 1), (0, 0), "relu", 0.0, cols, z, y)
    need = CPU.conv2d_backward_work_size(x.shape, k.shape, (1, 1), (6, 6))
    with pytest.raises(ValueError, match="work"):
        CPU.conv2d_backward(x, k, z, y, z.copy(), (1, 1), (0, 0), "relu", 0.0, cols,
                            np.empty(need - 1, np.float32), np.empty_like(k), None, None)


# ---- batch normalization in inference form -----------------------------------------

@pytest.mark.parametrize("rows,cols", [(1, 3), (7, 1), (255, 5), (257, 6), (1000, 33),
                                       (300, 131)])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_infer_backward_matches_the_reference(rows, cols, affine):
    rng = rng_for("bn infer", rows, cols)
    x, dy = (rand(rng, rows, cols) * 3 + 1).astype(np.float32), rand(rng, rows, cols)
    gamma = rand(rng, cols) if affine else None
    mm, mv = rand(rng, cols), (np.abs(rand(rng, cols)) + 0.5).astype(np.float32)
    out = {}
    for be in (CPU, NUMPY):
        dg, db, dx = (np.full(cols, np.nan, np.float32), np.full(cols, np.nan, np.float32),
                      np.full_like(x, np.nan))
        be.batchnorm_infer_backward(x, gamma, mm, mv, 1e-3, dy, dg, db, dx)
        out[be.name] = (dg, db, dx)
    for a, r in zip(out["cpu"], out["numpy"]):
        close(a, r)
    # each output is optional, and what is computed does not depend on what is not
    dx_only = np.empty_like(x)
    CPU.batchnorm_infer_backward(x, gamma, mm, mv, 1e-3, dy, None, None, dx_only)
    np.testing.assert_array_equal(dx_only, out["cpu"][2])
    bitwise_on_1_and_2_threads(lambda: _bn_infer(x, gamma, mm, mv, dy))


def _bn_infer(x, gamma, mm, mv, dy):
    dg, db, dx = np.empty(x.shape[1], np.float32), np.empty(x.shape[1], np.float32), np.empty_like(x)
    CPU.batchnorm_infer_backward(x, gamma, mm, mv, 1e-3, dy, dg, db, dx)
    return dg, db, dx


# ---- dropout: counter-based masks ---------------------------------------------------

DROPOUT_CASES = [
    ((1,), (False,)),
    ((37,), (False,)),
    ((5, 7), (False, False)),
    ((5, 7), (True, False)),
    ((3, 5, 7, 2), (False, True, True, False)),     # SpatialDropout2D's noise shape
    ((3, 5, 7, 2), (False, False, False, True)),
    ((2, 1, 4), (True, True, True)),                # one uniform for the whole array
    ((64, 29, 23), (False, False, False)),          # 42688 elements: an OpenMP team
    ((64, 29, 23), (False, True, False)),
]


@pytest.mark.parametrize("shape,broadcast", DROPOUT_CASES)
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_dropout_masks_are_the_references_bit_for_bit(shape, broadcast, rate):
    rng = rng_for("dropout", shape, broadcast)
    x = rand(rng, *shape)
    for seed, counter in ((0, 0), (12345, 7), (2 ** 63 + 5, 2 ** 40)):
        expected = ref.dropout_mask(shape, broadcast, seed, counter, rate)
        for be in (CPU, NUMPY):
            y, mask = np.full_like(x, np.nan), np.full_like(x, np.nan)
            be.dropout_forward(x, seed, counter, rate, broadcast, mask, y)
            np.testing.assert_array_equal(mask, expected)
            np.testing.assert_array_equal(y, x * expected)


def test_dropout_draws_the_reference_uniforms():
    """With no broadcast, element e is dropped exactly when u_e < rate: the masks at two rates
    pin the uniforms of random_uniform between them."""
    x = np.ones((4000,), np.float32)
    u = ref.random_uniform(99, 3, 4000)
    for rate in (0.25, 0.5, 0.75):
        y, mask = np.empty_like(x), np.empty_like(x)
        CPU.dropout_forward(x, 99, 3, rate, (False,), mask, y)
        np.testing.assert_array_equal(mask == 0, u < np.float32(rate))
    assert abs(float(u.mean()) - 0.5) < 0.02
    # another counter, another mask (the step number changes the noise)
    y2, mask2 = np.empty_like(x), np.empty_like(x)
    CPU.dropout_forward(x, 99, 4, 0.5, (False,), mask2, y2)
    assert not np.array_equal(mask2, mask)


def test_dropout_is_bitwise_the_same_on_1_and_2_threads_and_in_place():
    rng = rng_for("dropout threads")
    x = rand(rng, 64, 29, 23)

    def run():
        y, mask = np.empty_like(x), np.empty_like(x)
        CPU.dropout_forward(x, 5, 9, 0.4, (False, True, False), mask, y)
        return y, mask
    bitwise_on_1_and_2_threads(run)
    y, mask = run()
    inplace, m2 = x.copy(), np.empty_like(x)
    CPU.dropout_forward(inplace, 5, 9, 0.4, (False, True, False), m2, inplace)
    np.testing.assert_array_equal(inplace, y)


def test_dropout_refuses_bad_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="rate"):
        CPU.dropout_forward(x, 0, 0, 1.0, (False, False), np.empty_like(x), np.empty_like(x))
    with pytest.raises(ValueError, match="broadcast"):
        CPU.dropout_forward(x, 0, 0, 0.5, (False,), np.empty_like(x), np.empty_like(x))
    with pytest.raises(ValueError, match="mask"):
        CPU.dropout_forward(x, 0, 0, 0.5, (False, False), np.empty((3, 2), np.float32),
                            np.empty_like(x))


# ---- merges, concatenation, scaling ------------------------------------------------

MERGE_SIZES = [1, 7, 1031, 40000]


def merge_inputs(kind, k, n):
    rng = rng_for("merge", kind, k, n)
    xs = [rand(rng, n) for _ in range(k)]
    if kind in ("maximum", "minimum") and k > 1 and n > 3:
        xs[1][:3] = xs[0][:3]           # ties: the first input holding the extreme wins
    return xs


@pytest.mark.parametrize("n", MERGE_SIZES)
@pytest.mark.parametrize("kind,k", [("add", 1), ("add", 3), ("subtract", 2), ("multiply", 3),
                                    ("average", 2), ("average", 5), ("maximum", 3),
                                    ("minimum", 2)])
def test_merges_match_the_reference_exactly(kind, k, n):
    xs = merge_inputs(kind, k, n)
    dy = rand(rng_for("merge dy", n), n)
    y = {be.name: np.full(n, np.nan, np.float32) for be in (CPU, NUMPY)}
    for be in (CPU, NUMPY):
        be.merge_forward(kind, xs, y[be.name])
    np.testing.assert_array_equal(y["cpu"], y["numpy"])
    for i in range(k):
        d = {}
        for be in (CPU, NUMPY):
            d[be.name] = np.full(n, np.nan, np.float32)
            be.merge_backward(kind, i, xs, dy, d[be.name])
        np.testing.assert_array_equal(d["cpu"], d["numpy"])
    # in place: y may be xs[0] (the plan sums gradients that way), dx may be dy
    first = xs[0].copy()
    CPU.merge_forward(kind, [first] + xs[1:], first)
    np.testing.assert_array_equal(first, y["cpu"])
    g = dy.copy()
    CPU.merge_backward(kind, k - 1, xs, g, g)
    expect = np.empty_like(g)
    NUMPY.merge_backward(kind, k - 1, xs, dy, expect)
    np.testing.assert_array_equal(g, expect)


def test_merges_are_bitwise_the_same_on_1_and_2_threads():
    xs = merge_inputs("maximum", 3, 40000)

    def run():
        outs = []
        for kind in ("add", "multiply", "average", "maximum"):
            y, d = np.empty(40000, np.float32), np.empty(40000, np.float32)
            CPU.merge_forward(kind, xs, y)
            CPU.merge_backward(kind, 1, xs, xs[2], d)
            outs += [y, d]
        return outs
    bitwise_on_1_and_2_threads(run)


def test_merges_refuse_bad_arguments():
    a, b = np.ones(3, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="xs"):
        CPU.merge_forward("add", [a, b], np.empty(3, np.float32))
    with pytest.raises(ValueError, match="subtract"):
        CPU.merge_forward("subtract", [a, a, a], np.empty(3, np.float32))
    with pytest.raises(ValueError, match="i="):
        CPU.merge_backward("add", 2, [a, a], a, np.empty(3, np.float32))


@pytest.mark.parametrize("outer", [1, 7, 300])
@pytest.mark.parametrize("widths", [(1,), (3, 1, 130), (64, 64), (0, 5)])
def test_concat_and_its_backward_match_the_reference_exactly(outer, widths):
    rng = rng_for("concat", outer, widths)
    xs = [rand(rng, outer, w) for w in widths]
    out = {}
    for be in (CPU, NUMPY):
        y = np.full((outer, sum(widths)), np.nan, np.float32)
        be.concat_forward(xs, y)
        dxs = [np.full((outer, w), np.nan, np.float32) if i != 1 else None
               for i, w in enumerate(widths)]
        be.concat_backward(y * 2, list(widths), dxs)
        out[be.name] = [y] + [d for d in dxs if d is not None]
    for a, r in zip(out["cpu"], out["numpy"]):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("n", MERGE_SIZES)
def test_scale_matches_the_reference_exactly(n):
    x = rand(rng_for("scale", n), n)
    for alpha in (0.0, -1.5, 1 / 3):
        got, want = np.empty_like(x), np.empty_like(x)
        CPU.scale(x, alpha, got)
        NUMPY.scale(x, alpha, want)
        np.testing.assert_array_equal(got, want)


# ---- metrics ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(ids.METRICS))
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 10), (7, 3), (257, 10), (300, 131)])
@pytest.mark.parametrize("labels", [True, False])
def test_metric_sum_matches_the_reference(kind, rows, cols, labels):
    rng = rng_for("metric", kind, rows, cols)
    pred = rng.random((rows, cols), dtype=np.float32)
    pred[0, 0] = pred[0, -1] = 0.5                       # a tie for argmax, 0.5 for binary
    if labels:
        target = rng.integers(0, cols, rows).astype(np.int64)
    elif kind == "binary_accuracy":
        target = (rng.random((rows, cols)) > 0.5).astype(np.float32)
    else:
        target = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)] \
            if "accuracy" in kind else rng.random((rows, cols), dtype=np.float32)
    got, want = CPU.metric_sum(kind, pred, target), NUMPY.metric_sum(kind, pred, target)
    assert isinstance(got, float)
    # accuracies are sums of 0/1 (exact); the error metrics average a row in float32
    # (C in index order, NumPy pairwise): a few ulps of each row's value
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6 * rows)


def test_metric_sum_refuses_a_label_out_of_range():
    pred = np.full((3, 4), 0.25, np.float32)
    for bad in (4, -1):
        with pytest.raises(_core.KernelInputError):
            CPU.metric_sum("sparse_categorical_accuracy", pred, np.array([0, bad, 1], np.int64))


# ---- optimizer steps ---------------------------------------------------------------------

HYPER = {"learning_rate": 0.01, "momentum": 0.9, "nesterov": 0.0, "beta_1": 0.9,
         "beta_2": 0.999, "rho": 0.9, "epsilon": 1e-7}


def test_hyper_order_is_the_c_order():
    assert [_core.HYPER_INDEX[name] for name in ids.HYPER] == list(range(len(ids.HYPER)))


@pytest.mark.parametrize("n", MERGE_SIZES)
@pytest.mark.parametrize("kind,changes", [("sgd", {"momentum": 0.0}), ("sgd", {}),
                                          ("sgd", {"nesterov": 1.0}), ("adam", {}),
                                          ("rmsprop", {"momentum": 0.0}), ("rmsprop", {})])
def test_optimizer_step_matches_the_reference_exactly(kind, changes, n):
    """Elementwise float32 rules evaluated in the same order (Adam's lr_t in double, as the
    reference's adam_lr_t): bitwise equal, as tests/test_kernels_parity.py explains."""
    hyper = dict(HYPER, **changes)
    rng = rng_for("optimizer", kind, n)
    state = {}
    for be in (CPU, NUMPY):
        rng = rng_for("optimizer", kind, n)
        w, s1, s2 = rand(rng, n), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step in range(1, 4):
            be.optimizer_step(kind, w, s1, s2, rand(rng_for("g", n, step), n), step, hyper)
        state[be.name] = (w, s1, s2)
    for a, r in zip(state["cpu"], state["numpy"]):
        np.testing.assert_array_equal(a, r)


def test_optimizer_step_refuses_missing_state_and_bad_steps():
    w = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="state"):
        CPU.optimizer_step("adam", w, None, None, w.copy(), 1, HYPER)
    with pytest.raises(ValueError, match="step"):
        CPU.optimizer_step("sgd", w, w.copy(), None, w.copy(), 0, HYPER)
    with pytest.raises(KeyError, match="epsilon"):
        CPU.optimizer_step("adam", w, w.copy(), w.copy(), w.copy(), 1,
                           {k: v for k, v in HYPER.items() if k != "epsilon"})
    # SGD without momentum needs no state, nor the settings of other rules
    CPU.optimizer_step("sgd", w, None, None, w.copy(), 1,
                       {"learning_rate": 0.01, "momentum": 0.0, "nesterov": 0.0})
    np.testing.assert_array_equal(w, np.full(5, np.float32(1) - np.float32(0.01) * 1, np.float32))


# ---- the reference's new backward formulas against finite differences --------------
# float64 throughout; central differences with h = 1e-6 (see tests/test_reference_gradients.py
# for the error budget behind rtol = 1e-6, atol = 1e-9).

H, FD_RTOL, FD_ATOL = 1e-6, 1e-6, 1e-9


def numeric_gradient(f, x):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + H
        f_plus = f(x)
        x[index] = saved - H
        f_minus = f(x)
        x[index] = saved
        grad[index] = (f_plus - f_minus) / (2 * H)
    return grad


@pytest.mark.parametrize("kind,k", [("add", 3), ("subtract", 2), ("multiply", 3), ("average", 4),
                                    ("maximum", 3), ("minimum", 2)])
def test_merge_backward_is_the_derivative(kind, k):
    rng = np.random.default_rng(k + len(kind))
    xs = [rng.standard_normal((3, 4)) for _ in range(k)]     # ties have probability 0
    probe = rng.standard_normal((3, 4))
    for i in range(k):
        def f(xi, i=i):
            return float((probe * ref.merge_forward(kind, xs[:i] + [xi] + xs[i + 1:])).sum())
        numeric = numeric_gradient(f, xs[i].copy())
        np.testing.assert_allclose(ref.merge_backward(kind, i, xs, probe), numeric,
                                   rtol=FD_RTOL, atol=FD_ATOL)


def test_concat_backward_is_the_derivative():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((4, w)) for w in (2, 1, 3)]
    probe = rng.standard_normal((4, 6))
    grads = ref.concat_backward(probe, [2, 1, 3])
    for i in range(3):
        def f(xi, i=i):
            return float((probe * ref.concat(xs[:i] + [xi] + xs[i + 1:])).sum())
        np.testing.assert_allclose(grads[i], numeric_gradient(f, xs[i].copy()), rtol=FD_RTOL,
                                   atol=FD_ATOL)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_infer_backward_is_the_derivative(affine):
    rng = np.random.default_rng(4)
    x, probe = rng.standard_normal((5, 3)) * 2 + 1, rng.standard_normal((5, 3))
    gamma, beta = (rng.standard_normal(3), rng.standard_normal(3)) if affine else (None, None)
    mm, mv = rng.standard_normal(3), rng.random(3) + 0.5
    dgamma, dbeta, dx = ref.batchnorm_infer_backward(x, gamma, mm, mv, 1e-3, probe)

    def loss(x_, gamma_=gamma, beta_=beta):
        return float((probe * ref.batchnorm_forward_infer(x_, gamma_, beta_, mm, mv, 1e-3)).sum())
    np.testing.assert_allclose(dx, numeric_gradient(loss, x.copy()), rtol=FD_RTOL, atol=FD_ATOL)
    ones, zeros = np.ones(3), np.zeros(3)
    np.testing.assert_allclose(
        dgamma, numeric_gradient(lambda g: loss(x, g, beta if affine else zeros),
                                 (gamma if affine else ones).copy()), rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_allclose(
        dbeta, numeric_gradient(lambda b: loss(x, gamma, b), (beta if affine else zeros).copy()),
        rtol=FD_RTOL, atol=FD_ATOL)


# ---- the plan runner --------------------------------------------------------------------
# Plans are built by hand here, as pynn/models/plan.py will compile them: buffers (batched
# ones hold `capacity` rows), ops naming them by index.  The Python executor below walks the
# same list through the cpu backend's methods, as the numpy and cuda backends will.

ACT_NAMES = {v: k for k, v in ids.ACTIVATIONS.items()}
LOSS_NAMES = {v: k for k, v in ids.LOSSES.items()}
METRIC_NAMES = {v: k for k, v in ids.METRICS.items()}
OPT_NAMES = {v: k for k, v in ids.OPTIMIZERS.items()}
OP_NAMES = {v: k for k, v in ids.OPS.items()}


class Plan:
    """A plan under construction: buffers (array, row_size) and ops (kind, bufs, ints, reals)."""

    def __init__(self, capacity):
        self.capacity, self.buffers, self.ops = capacity, [], []
        self.inputs, self.targets, self.classes, self.outputs = [], [], [], []
        self.n_losses = self.n_metrics = 0

    def batched(self, row_size, dtype=np.float32):
        self.buffers.append((np.zeros(self.capacity * row_size, dtype), row_size))
        return len(self.buffers) - 1

    def fixed(self, array):
        self.buffers.append((array, 0))
        return len(self.buffers) - 1

    def op(self, name, bufs, ints=(), reals=()):
        self.ops.append((ids.OPS[name], list(bufs), [int(i) for i in ints], [float(r) for r in reals]))

    def runner(self, max_steps=64):
        return _core.PlanRunner(self.ops, self.buffers, self.capacity, self.inputs, self.targets,
                                self.classes, self.outputs, self.n_losses, self.n_metrics,
                                max_steps)


class Params:
    """One flat float32 array with views (a model's parameter store), and a buffer per view."""

    def __init__(self, plan, shapes, init):
        self.flat = init(sum(int(np.prod(s)) for s in shapes)).astype(np.float32)
        self.index = plan.fixed(self.flat)
        self.views, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            self.views.append(plan.fixed(self.flat[at:at + size]))
            at += size


HYPER_ADAM = [0.01, 0.0, 0.0, 0.9, 0.999, 0.9, 1e-7]           # pynn.ids.HYPER order
HYPER_SGD_MOMENTUM = [0.05, 0.9, 1.0, 0.9, 0.999, 0.9, 1e-7]   # nesterov


def mlp_plan(capacity, n_in=64, hidden=32, classes=10, seed=0, outputs=False):
    """Dense(hidden, relu), Dense(classes) on logits, sparse CCE, accuracy on the softmax,
    Adam: a model's compiled training step (outputs: the softmax is copied out)."""
    p = Plan(capacity)
    rng = np.random.default_rng(seed)
    shapes = [(n_in, hidden), (hidden,), (hidden, classes), (classes,)]
    params = Params(p, shapes, lambda n: rng.standard_normal(n) * 0.3)
    grads = Params(p, shapes, np.zeros)
    m, v = p.fixed(np.zeros(params.flat.size, np.float32)), p.fixed(np.zeros(params.flat.size, np.float32))
    w1, b1, w2, b2 = params.views
    dw1, db1, dw2, db2 = grads.views
    x, labels = p.batched(n_in), p.batched(1, np.int64)
    z1, y1, z2, grad, dx1, probs = (p.batched(n) for n in (hidden, hidden, classes, classes,
                                                            hidden, classes))
    relu, linear, softmax = (ids.ACTIVATIONS[a] for a in ("relu", "linear", "softmax"))
    p.op("dense", [x, w1, b1, z1, y1], [n_in, hidden, relu], [0.0])
    p.op("dense", [y1, w2, b2, z2, z2], [hidden, classes, linear], [0.0])
    p.op("loss", [z2, labels, grad], [ids.LOSSES["scce"], 1, classes, 0], [1.0])
    p.op("activation", [z2, probs], [classes, softmax], [0.0])
    p.op("metric", [probs, labels], [ids.METRICS["sparse_categorical_accuracy"], classes, 0])
    p.op("dense_backward", [y1, w2, z2, z2, grad, dw2, db2, dx1], [hidden, classes, linear], [0.0])
    p.op("dense_backward", [x, w1, z1, y1, dx1, dw1, db1, -1], [n_in, hidden, relu], [0.0])
    p.op("optimizer", [params.index, grads.index, m, v], [ids.OPTIMIZERS["adam"]], HYPER_ADAM)
    p.inputs, p.targets, p.classes = [x], [labels], [classes]
    p.outputs = [probs] if outputs else []
    p.n_losses, p.n_metrics = 1, 1
    return p, params


def cnn_plan(capacity, seed=0):
    """Conv2D(8, 3) relu on 8x8x1 images (the direct kernel), SpatialDropout-like dropout,
    Flatten (the dense op reads the dropout's buffer), Dense(10) logits, sparse CCE, SGD with
    Nesterov momentum."""
    p = Plan(capacity)
    rng = np.random.default_rng(seed)
    shapes = [(3, 3, 1, 8), (8,), (288, 10), (10,)]
    params = Params(p, shapes, lambda n: rng.standard_normal(n) * 0.2)
    grads = Params(p, shapes, np.zeros)
    mom = p.fixed(np.zeros(params.flat.size, np.float32))
    k, b, w2, b2 = params.views
    dk, db, dw2, db2 = grads.views
    x, labels = p.batched(64), p.batched(1, np.int64)
    cols, z1, y1, mask, d, z2, grad, dd, dy1 = (p.batched(n) for n in (36 * 9, 288, 288, 288, 288,
                                                                        10, 10, 288, 288))
    work = p.fixed(np.zeros(CPU.conv2d_backward_work_size((capacity, 8, 8, 1), (3, 3, 1, 8),
                                                          (1, 1), (6, 6)), np.float32))
    relu, linear = ids.ACTIVATIONS["relu"], ids.ACTIVATIONS["linear"]
    geometry = [8, 8, 1, 3, 3, 1, 1, 0, 0, 6, 6, 8, relu]
    dropout_ints = [1234, 3, 6, 6, 8, 0, 1, 1, 0]               # seed, ndim, dims, broadcast
    p.op("conv2d", [x, k, b, cols, z1, y1], geometry, [0.0])
    p.op("dropout", [y1, mask, d], dropout_ints, [0.25])
    p.op("dense", [d, w2, b2, z2, z2], [288, 10, linear], [0.0])
    p.op("loss", [z2, labels, grad], [ids.LOSSES["scce"], 1, 10, 0], [1.0])
    p.op("metric", [z2, labels], [ids.METRICS["sparse_categorical_accuracy"], 10, 0])
    p.op("dense_backward", [d, w2, z2, z2, grad, dw2, db2, dd], [288, 10, linear], [0.0])
    p.op("dropout_backward", [dd, mask, dy1])
    p.op("conv2d_backward", [x, k, z1, y1, dy1, cols, work, dk, db, -1], geometry, [0.0])
    p.op("optimizer", [params.index, grads.index, mom, -1], [ids.OPTIMIZERS["sgd"]],
         HYPER_SGD_MOMENTUM)
    p.inputs, p.targets, p.classes = [x], [labels], [10]
    p.n_losses, p.n_metrics = 1, 1
    return p, params


def python_step(p, rows, step, losses, metrics):
    """One step of plan p (its inputs already gathered) through the cpu backend's methods."""
    def view(b, *shape):
        array, row_size = p.buffers[b]
        if b == -1:
            return None
        if row_size:
            return array[:rows * row_size].reshape((rows,) + shape)
        return array.reshape(shape) if shape else array

    for kind, bufs, ints, reals in p.ops:
        name = OP_NAMES[kind]
        v = [None if i == -1 else i for i in bufs]
        if name == "dense":
            n_in, n_out, act = ints
            x, w, b, z, y = bufs
            CPU.dense_forward(view(x, n_in), view(w, n_in, n_out), view(b, n_out), ACT_NAMES[act],
                              reals[0], view(z, n_out), view(y, n_out))
        elif name == "dense_backward":
            n_in, n_out, act = ints
            x, w, z, y, dy, dw, db, dx = bufs
            CPU.dense_backward(view(x, n_in), view(w, n_in, n_out), view(z, n_out), view(y, n_out),
                               view(dy, n_out), ACT_NAMES[act], reals[0],
                               None if dw == -1 else view(dw, n_in, n_out),
                               None if db == -1 else view(db, n_out),
                               None if dx == -1 else view(dx, n_in))
        elif name in ("conv2d", "conv2d_backward"):
            h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, f, act = ints
            args = dict(strides=(sh, sw), padding=(pt, pl), activation=ACT_NAMES[act], alpha=reals[0])
            if name == "conv2d":
                x, k, b, cols, z, y = bufs
                CPU.conv2d_forward(view(x, h, w, c), view(k, kh, kw, c, f), view(b, f),
                                   cols=view(cols, oh * ow * kh * kw * c).reshape(-1, kh * kw * c),
                                   z=view(z, oh, ow, f), y=view(y, oh, ow, f), **args)
            else:
                x, k, z, y, dy, cols, work, dw, db, dx = bufs
                CPU.conv2d_backward(view(x, h, w, c), view(k, kh, kw, c, f), view(z, oh, ow, f),
                                    view(y, oh, ow, f), view(dy, oh, ow, f),
                                    cols=view(cols, oh * ow * kh * kw * c).reshape(-1, kh * kw * c),
                                    work=view(work), dw=None if dw == -1 else view(dw, kh, kw, c, f),
                                    db=None if db == -1 else view(db, f),
                                    dx=None if dx == -1 else view(dx, h, w, c), **args)
        elif name == "dropout":
            seed, ndim = ints[:2]
            dims, broadcast = ints[2:2 + ndim], [bool(f) for f in ints[2 + ndim:]]
            x, mask, y = bufs
            CPU.dropout_forward(view(x, *dims), seed, step, reals[0], broadcast, view(mask, *dims),
                                view(y, *dims))
        elif name == "dropout_backward":
            dy, mask, dx = bufs
            CPU.dropout_backward(view(dy, p.buffers[dy][1]), view(mask, p.buffers[dy][1]),
                                 view(dx, p.buffers[dy][1]))
        elif name == "activation":
            cols, act = ints
            CPU.activation_forward(view(bufs[0], cols), ACT_NAMES[act], reals[0], view(bufs[1], cols))
        elif name == "loss":
            kind_id, from_logits, cols, index = ints
            pred, target, grad = bufs
            labels = p.buffers[target][0].dtype == np.int64
            losses[index] = CPU.loss(LOSS_NAMES[kind_id], view(pred, cols),
                                     view(target) if labels else view(target, cols),
                                     bool(from_logits), view(grad, cols))
        elif name == "metric":
            kind_id, cols, index = ints
            pred, target = bufs
            labels = p.buffers[target][0].dtype == np.int64
            metrics[index] = CPU.metric_sum(METRIC_NAMES[kind_id], view(pred, cols),
                                            view(target) if labels else view(target, cols))
        elif name == "optimizer":
            w, g, s1, s2 = bufs
            CPU.optimizer_step(OPT_NAMES[ints[0]], view(w), view(s1) if s1 != -1 else None,
                               view(s2) if s2 != -1 else None, view(g), step,
                               dict(zip(ids.HYPER, reals)))
        else:
            raise AssertionError(f"no Python executor for op {name}")


def python_run(p, x, labels, order, first_row, batch, n_steps, iterations):
    """pynn_plan_run's loop in Python: gather each step's rows, then python_step."""
    n_order = len(order)
    losses, metrics, rows_seen = [], [], []
    for s in range(n_steps):
        r0 = first_row + s * batch
        idx = order[r0:min(r0 + batch, n_order)]
        rows = len(idx)
        for b, data in zip(p.inputs + p.targets, (x, labels)):
            array, row_size = p.buffers[b]
            array[:rows * row_size].reshape((rows, row_size))[...] = data.reshape(len(data), -1)[idx]
        step_losses, step_metrics = [0.0] * p.n_losses, [0.0] * p.n_metrics
        python_step(p, rows, iterations + s + 1, step_losses, step_metrics)
        losses.append(step_losses)
        metrics.append(step_metrics)
        rows_seen.append(rows)
    return np.array(losses), np.array(metrics), np.array(rows_seen)


def learnable_data(n, n_in, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    labels = np.argmax(x[:, :classes], axis=1).astype(np.int64)
    return x, labels


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_plan_runner_one_call_per_step_and_python_agree_bitwise(which):
    n, batch = 200, 32                              # 6 full steps and one of 8 rows
    build = mlp_plan if which == "mlp" else cnn_plan
    x, labels = learnable_data(n, 64, 10, 1)
    order = np.random.default_rng(2).permutation(n).astype(np.int64)
    steps = -(-n // batch)

    plans = [build(batch) for _ in range(3)]
    # one C call for the epoch (two epochs: iterations carries Adam's step and dropout's counter)
    p, params_epoch = plans[0]
    runner = p.runner()
    out_epoch = [tuple(a.copy() for a in runner.run([x], [labels], None, order, n, 0, batch,
                                                    steps, e * steps))
                 for e in range(2)]
    # one C call per step
    p, params_step = plans[1]
    runner = p.runner()
    out_step = []
    for e in range(2):
        parts = [tuple(a.copy() for a in runner.run([x], [labels], None, order, n, s * batch,
                                                    batch, 1, e * steps + s))
                 for s in range(steps)]
        out_step.append(tuple(np.concatenate(k) for k in zip(*parts)))
    # op by op from Python
    p, params_python = plans[2]
    out_python = [python_run(p, x, labels, order, 0, batch, steps, e * steps) for e in range(2)]

    np.testing.assert_array_equal(params_epoch.flat, params_step.flat)
    np.testing.assert_array_equal(params_epoch.flat, params_python.flat)
    for a, b, c in zip(out_epoch, out_step, out_python):
        for ea, eb, ec in zip(a, b, c):
            np.testing.assert_array_equal(ea, eb)
            np.testing.assert_array_equal(ea.reshape(ec.shape), ec)
    assert list(out_epoch[0][2]) == [32] * 6 + [8]
    assert out_epoch[1][0][:, 0].mean() < out_epoch[0][0][:, 0].mean()   # it learns


def test_plan_runner_is_bitwise_the_same_on_1_and_2_threads():
    x, labels = learnable_data(300, 64, 10, 3)

    def train():
        p, params = cnn_plan(64)
        p.runner().run([x], [labels], None, None, 300, 0, 64, 5, 0)
        return [params.flat]
    bitwise_on_1_and_2_threads(train)


def test_plan_runner_writes_outputs_at_the_orders_positions():
    """A prediction plan (forward only) copies each step's predictions to the rows of the
    order's positions; the learning rate of an optimizer op changes with set_reals."""
    x, labels = learnable_data(50, 64, 10, 4)
    p, params = mlp_plan(16, outputs=True)
    runner = p.runner()
    order = np.random.default_rng(5).permutation(50).astype(np.int64)
    probs = np.full((50, 10), np.nan, np.float32)
    runner.run([x], [labels], [probs], order, 50, 0, 16, 4, 0)
    # the probabilities were those of the parameters before each step's update: recompute
    # with a copy of the plan whose optimizer does nothing
    q, q_params = mlp_plan(16, outputs=True)
    q_runner = q.runner()
    q_runner.set_reals(len(q.ops) - 1, [0.0] + HYPER_ADAM[1:])
    assert q_runner.reals(len(q.ops) - 1)[0] == 0.0
    before = q_params.flat.copy()
    expect = np.full((50, 10), np.nan, np.float32)
    q_runner.run([x], [labels], [expect], order, 50, 0, 16, 4, 0)
    np.testing.assert_array_equal(q_params.flat, before)     # lr 0: nothing moved
    w1, b1, w2, b2 = (q.buffers[i][0] for i in q_params.views)
    h = np.maximum(x[order] @ w1.reshape(64, 32) + b1, 0)
    logits = h @ w2.reshape(32, 10) + b2
    np.testing.assert_allclose(expect, ref.activation_forward(logits, "softmax"),
                               rtol=1e-5, atol=1e-6)
    assert np.isfinite(probs).all()
    np.testing.assert_array_equal(probs[:16], expect[:16])   # step 1 ran on the same weights


def test_plan_runner_refuses_a_bad_label_before_the_step_changes_anything():
    x, labels = learnable_data(96, 64, 10, 6)
    bad = labels.copy()
    bad[70] = 10                                   # in the third step of 32 rows
    p, params = mlp_plan(32)
    runner = p.runner()
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [bad], None, None, 96, 0, 32, 3, 0)
    q, q_params = mlp_plan(32)
    q.runner().run([x], [labels], None, None, 96, 0, 32, 2, 0)
    np.testing.assert_array_equal(params.flat, q_params.flat)    # two steps applied, not three
    before = params.flat.copy()
    bad[5] = -1
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [bad], None, None, 96, 0, 32, 1, 2)
    np.testing.assert_array_equal(params.flat, before)


def test_plan_runner_refuses_non_finite_inputs_when_asked():
    x, labels = learnable_data(64, 64, 10, 7)
    x[40, 3] = np.nan
    p, params = mlp_plan(32)
    runner = p.runner()
    before = params.flat.copy()
    with pytest.raises(_core.KernelInputError):
        runner.run([x], [labels], None, None, 64, 32, 32, 1, 0, True)
    np.testing.assert_array_equal(params.flat, before)
    runner.run([x], [labels], None, None, 64, 0, 32, 1, 0, True)      # the clean first half


def malformed(change):
    """An MLP plan with one thing broken by `change(plan)`."""
    p, params = mlp_plan(32)
    change(p)
    return p, params


# (what is broken, how) -- the plan's ops: 0 dense, 1 dense, 2 loss, 3 activation, 4 metric,
# 5 and 6 dense_backward, 7 optimizer.  pynn_plan_run finds all but FOUND_IN_PYTHON's, which
# PlanRunner's constructor refuses (with these messages) before C sees them.
MALFORMED = {
    "dense without its activation": lambda p: p.ops.__setitem__(0, (p.ops[0][0], p.ops[0][1],
                                                                     p.ops[0][2][:2], p.ops[0][3])),
    "unknown activation": lambda p: p.ops[0][2].__setitem__(2, 99),
    "a kernel too small for in x out": lambda p: p.ops[0][2].__setitem__(1, 40),
    "an output buffer too small": lambda p: p.ops[0][1].__setitem__(3, p.ops[1][1][3]),
    "a buffer index out of range": lambda p: p.ops[6][1].__setitem__(7, -2),
    "labels given to a float loss": lambda p: p.ops[2][2].__setitem__(0, ids.LOSSES["cce"]),
    "labels of more classes than columns": lambda p: p.classes.__setitem__(0, 11),
    "labels that are no plan target": lambda p: (p.targets.clear(), p.classes.clear()),
    "a loss slot out of range": lambda p: p.ops[2][2].__setitem__(3, 1),
    "a metric id out of range": lambda p: p.ops[4][2].__setitem__(0, 99),
    "Adam without its second moment": lambda p: p.ops[-1][1].__setitem__(3, -1),
    "hyper-parameters missing": lambda p: p.ops[-1][3].pop(),
    "an int64 buffer as a kernel": lambda p: p.ops[0][1].__setitem__(1, p.targets[0]),
    "a merge of nothing": lambda p: p.ops.append((ids.OPS["merge"], [p.inputs[0]],
                                                  [ids.MERGES["add"]], [])),
    "a target that is a fixed buffer": lambda p: p.targets.__setitem__(0, 2),
}


FOUND_IN_PYTHON = {"a buffer index out of range": "names buffer",
                   "a target that is a fixed buffer": "batched buffer"}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_plan_runner_refuses_a_malformed_plan_before_changing_anything(what):
    x, labels = learnable_data(64, 64, 10, 8)
    p, params = malformed(MALFORMED[what])
    before = params.flat.copy()
    with pytest.raises(ValueError, match=FOUND_IN_PYTHON.get(what, "refused the plan")):
        p.runner().run([x], [labels] if p.targets else None, None, None, 64, 0, 32, 2, 0)
    np.testing.assert_array_equal(params.flat, before)


def test_plan_runner_refuses_bad_runs():
    x, labels = learnable_data(64, 64, 10, 9)
    p, params = mlp_plan(32)
    runner = p.runner(max_steps=4)
    before = params.flat.copy()
    cases = [
        lambda: runner.run([x], [labels], None, None, 64, 0, 33, 1, 0),        # batch > capacity
        lambda: runner.run([x], [labels], None, None, 64, 0, 32, 3, 0),        # a step of no rows
        lambda: runner.run([x], [labels], None, None, 65, 0, 32, 1, 0),        # n_order > rows
        lambda: runner.run([x], [labels], None, None, 64, 0, 32, 5, 0),        # > max_steps
        lambda: runner.run([x], [labels[:10]], None, None, 10, 0, 32, 1, 0),   # rows differ
        lambda: runner.run([x.astype(np.float64)], [labels], None, None, 64, 0, 32, 1, 0),
        lambda: runner.run([x[:, :10]], [labels], None, None, 64, 0, 32, 1, 0),
        lambda: runner.run([x], [labels], None, np.array([0, 64], np.int64), 2, 0, 32, 1, 0),
        lambda: runner.run([x], [labels], [np.empty((10, 10), np.float32)], None, 64, 0, 32, 1, 0),
    ]
    for case in cases:
        with pytest.raises(ValueError):
            case()
    np.testing.assert_array_equal(params.flat, before)
    with pytest.raises(ValueError, match="buffer"):
        _core.PlanRunner([(ids.OPS["scale"], [0, 5], [], [1.0])], [(np.zeros(4, np.float32), 0)],
                         1, [], [], [], [], 0, 0)
