"""The `cuda` backend's CNN methods (convolution, pooling, batch normalization, dropout)
against the `numpy` backend on small awkward shapes, the bitwise repeatability of their
reductions, and one training step of a tiny CNN through the public API.

As tests/test_cuda.py: without a GPU these run under Numba's CUDA simulator, switched on
before numba is imported, so shapes stay tiny (batch 2-3, 5x7 images, 1-3 channels).

Tolerances: where a kernel adds the same float32 values in the same order as the reference
(max pooling, col2im's gather, dropout, the im2col copy) the results are compared exactly;
GEMM results (forward, dW, dX) agree to float32 rounding of K-term sums, the per-channel
sums of batch normalization to rounding of a differently ordered sum.
"""
import zlib

# first: importing cuda_setup switches the simulator on before numba is imported
from cuda_setup import be, quick_simulator  # noqa: F401  (fixtures)

import math

import numpy as np
import pytest

import pynn
from pynn import backend as backends
from pynn.backend import reference as ref



@pytest.fixture(scope="module")
def npb():
    return backends.get("numpy")


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def assert_close(actual, expected, rtol=1e-5, atol_of_max=1e-6, err_msg=""):
    expected = np.asarray(expected)
    atol = atol_of_max * float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


def nan_device(be, shape):
    """A device array full of NaN: an output left unwritten shows."""
    return be.from_host(np.full(shape, np.nan, np.float32))


def keras_geometry(hw, window, strides, padding):
    """((OH, OW), (pad_top, pad_left)) as Keras computes them (see pynn/backend/base.py)."""
    out, pads = [], []
    for size, k, s in zip(hw, window, strides):
        if padding == "valid":
            out.append((size - k) // s + 1)
            pads.append(0)
        else:
            o = math.ceil(size / s)
            out.append(o)
            pads.append(max((o - 1) * s + k - size, 0) // 2)
    return tuple(out), tuple(pads)


# ---- convolution ------------------------------------------------------------------------------

# (N, H, W, C, F, kernel, strides, padding, activation, bias)
CONV_CASES = [
    (2, 5, 7, 2, 3, (3, 3), (1, 1), "same", "relu", True),
    (3, 5, 7, 1, 2, (3, 3), (2, 2), "valid", "tanh", True),
    (2, 5, 7, 3, 2, (2, 2), (2, 2), "same", "linear", False),     # pad only bottom / right
    (2, 5, 7, 2, 3, (3, 3), (2, 2), "same", "softmax", True),     # pad on every side
    (2, 6, 5, 2, 1, (2, 2), (1, 1), "valid", "leaky_relu", True),
    (2, 5, 7, 2, 2, (3, 2), (2, 1), "same", "gelu", True),        # non-square window
]
CONV_IDS = [f"n{c[0]}-{c[1]}x{c[2]}x{c[3]}-f{c[4]}-k{c[5][0]}{c[5][1]}-s{c[6][0]}{c[6][1]}-{c[7]}-{c[8]}"
            + ("" if c[9] else "-nobias") for c in CONV_CASES]


def conv_problem(case):
    n, h, w, c, f, kernel, strides, padding, activation, bias = case
    rng = rng_for("conv", case)
    (oh, ow), pads = keras_geometry((h, w), kernel, strides, padding)
    x = f32(rng.standard_normal((n, h, w, c)))
    wt = f32(rng.standard_normal(kernel + (c, f)) * 0.5)
    b = f32(rng.standard_normal(f)) if bias else None
    dy = f32(rng.standard_normal((n, oh, ow, f)))
    return x, wt, b, dy, (oh, ow), pads


def numpy_conv(npb, x, wt, b, strides, pads, out_hw, activation, alpha=0.3):
    n, f = x.shape[0], wt.shape[3]
    k = wt.shape[0] * wt.shape[1] * wt.shape[2]
    cols = np.empty((n * out_hw[0] * out_hw[1], k), np.float32)
    z = np.empty((n,) + out_hw + (f,), np.float32)
    y = np.empty_like(z)
    npb.conv2d_forward(x, wt, b, strides, pads, activation, alpha, cols, z, y)
    return cols, z, y


def cuda_conv(be, x, wt, b, strides, pads, out_hw, activation, alpha=0.3):
    n, f = x.shape[0], wt.shape[3]
    k = wt.shape[0] * wt.shape[1] * wt.shape[2]
    cols = nan_device(be, (n * out_hw[0] * out_hw[1], k))
    z = nan_device(be, (n,) + out_hw + (f,))
    y = nan_device(be, z.shape)
    be.conv2d_forward(be.from_host(x), be.from_host(wt), None if b is None else be.from_host(b),
                      strides, pads, activation, alpha, cols, z, y)
    return cols, z, y


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_forward_matches_numpy(be, npb, case):
    strides, activation = case[6], case[8]
    x, wt, b, _, out_hw, pads = conv_problem(case)
    cols_n, z_n, y_n = numpy_conv(npb, x, wt, b, strides, pads, out_hw, activation)
    cols, z, y = cuda_conv(be, x, wt, b, strides, pads, out_hw, activation)
    np.testing.assert_array_equal(be.to_host(cols), cols_n)      # im2col: a copy
    assert_close(be.to_host(z), z_n, atol_of_max=1e-5)
    assert_close(be.to_host(y), y_n, atol_of_max=1e-5)


def test_conv2d_forward_in_place_y_is_z(be, npb):
    case = CONV_CASES[0]
    x, wt, b, _, out_hw, pads = conv_problem(case)
    _, _, y_n = numpy_conv(npb, x, wt, b, (1, 1), pads, out_hw, "relu")
    cols = be.empty((2 * out_hw[0] * out_hw[1], 18))
    z = nan_device(be, (2,) + out_hw + (3,))
    be.conv2d_forward(be.from_host(x), be.from_host(wt), be.from_host(b), (1, 1), pads, "relu",
                      0.3, cols, z, z)
    assert_close(be.to_host(z), y_n, atol_of_max=1e-5)


def conv_backward_both(be, npb, case, with_db=True, with_dx=True, with_dw=True):
    """(cuda results, numpy results) of conv2d_backward, each [dz, dw, db, dx] (None where
    not asked); both backwards see the same z and y (the numpy forward's) and the cuda
    one the cols its own forward left, and a work array of the size it asks for."""
    strides, activation = case[6], case[8]
    x, wt, b, dy, out_hw, pads = conv_problem(case)
    cols_n, z_n, y_n = numpy_conv(npb, x, wt, b, strides, pads, out_hw, activation)
    cols, _, _ = cuda_conv(be, x, wt, b, strides, pads, out_hw, activation)
    with_db = with_db and b is not None
    expect = [dy.copy(), np.empty_like(wt) if with_dw else None,
              np.empty(wt.shape[3], np.float32) if with_db else None,
              np.empty_like(x) if with_dx else None]
    work_n = np.empty(npb.conv2d_backward_work_size(x.shape, wt.shape, strides, out_hw), np.float32)
    npb.conv2d_backward(x, wt, z_n, y_n, expect[0], strides, pads, activation, 0.3, cols_n,
                        work_n, *expect[1:])
    got = [be.from_host(dy), nan_device(be, wt.shape) if with_dw else None,
           nan_device(be, (wt.shape[3],)) if with_db else None,
           nan_device(be, x.shape) if with_dx else None]
    work_size = be.conv2d_backward_work_size(x.shape, wt.shape, strides, out_hw)
    assert isinstance(work_size, int) and work_size >= 1
    be.conv2d_backward(be.from_host(x), be.from_host(wt), be.from_host(z_n), be.from_host(y_n),
                       got[0], strides, pads, activation, 0.3, cols, be.empty((work_size,)),
                       *got[1:])
    return [None if g is None else be.to_host(g) for g in got], expect


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv2d_backward_matches_numpy(be, npb, case):
    got, expect = conv_backward_both(be, npb, case)
    for name, g, e in zip(("dz", "dw", "db", "dx"), got, expect):
        if e is not None:
            assert_close(g, e, rtol=1e-4, atol_of_max=1e-5, err_msg=name)


def test_conv2d_backward_without_db_and_dx(be, npb):
    got, expect = conv_backward_both(be, npb, CONV_CASES[1], with_db=False, with_dx=False)
    assert got[2] is None and got[3] is None
    assert_close(got[0], expect[0])
    assert_close(got[1], expect[1], rtol=1e-4, atol_of_max=1e-5)


def test_conv2d_backward_of_a_frozen_layer(be, npb):
    """dw None: no filter gradient, still dz, db and dx."""
    got, expect = conv_backward_both(be, npb, CONV_CASES[0], with_dw=False)
    assert got[1] is None
    for name, index in (("dz", 0), ("db", 2), ("dx", 3)):
        assert_close(got[index], expect[index], rtol=1e-4, atol_of_max=1e-5, err_msg=name)


def test_conv2d_backward_repeats_bitwise(be, npb):
    first, _ = conv_backward_both(be, npb, CONV_CASES[3])
    second, _ = conv_backward_both(be, npb, CONV_CASES[3])
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


def test_col2im_gathers_in_the_reference_order(be, col2im_launch):
    """col2im alone (no GEMM rounding in between): the gather adds each input element's
    entries in the order of the reference's scatter, so the sums agree bitwise."""
    rng = rng_for("col2im")
    x_shape, window, strides, pads, out_hw = (2, 5, 7, 3), (3, 3), (1, 2), (1, 1), (5, 4)
    cols = f32(rng.standard_normal((2 * 5 * 4, 27)) * 1e3)
    expect = ref.col2im(cols, x_shape, window, strides, pads, out_hw)
    dx = nan_device(be, x_shape)
    col2im_launch(dx, be.from_host(cols), x_shape, window, strides, pads, out_hw)
    np.testing.assert_array_equal(be.to_host(dx), expect)


@pytest.fixture(scope="module")
def col2im_launch(be):
    from pynn.backend.cuda import convolution

    def launch(dx, cols, x_shape, window, strides, pads, out_hw):
        convolution.col2im(dx, cols, window, strides, pads, out_hw)
    return launch


# ---- pooling -----------------------------------------------------------------------------------

# (N, H, W, C, pool, strides, padding); padding a Keras name or an explicit (top, left) with
# the output size, to reach windows made only of padding (Keras never makes one)
POOL_CASES = [
    (2, 5, 7, 2, (2, 2), (2, 2), "valid"),
    (2, 5, 7, 2, (2, 2), (2, 2), "same"),
    (3, 5, 7, 1, (3, 3), (1, 1), "same"),          # overlapping windows
    (2, 5, 7, 3, (3, 3), (2, 2), "same"),
    (2, 5, 7, 2, (3, 2), (1, 2), "valid"),
    (2, 4, 5, 2, (2, 2), (2, 2), ((2, 2), (3, 4))),  # first row / column of windows: padding only
]
POOL_IDS = [f"n{c[0]}-{c[1]}x{c[2]}x{c[3]}-p{c[4][0]}{c[4][1]}-s{c[5][0]}{c[5][1]}-"
            f"{c[6] if isinstance(c[6], str) else 'explicit'}" for c in POOL_CASES]


def pool_problem(case, integer_valued=False):
    n, h, w, c, pool, strides, padding = case
    rng = rng_for("pool", case, integer_valued)
    if isinstance(padding, str):
        out_hw, pads = keras_geometry((h, w), pool, strides, padding)
    else:
        pads, out_hw = padding
    if integer_valued:     # few distinct values: ties in most windows
        x = f32(rng.integers(-2, 3, size=(n, h, w, c)))
    else:
        x = f32(rng.standard_normal((n, h, w, c)))
    dy = f32(rng.standard_normal((n,) + tuple(out_hw) + (c,)))
    return x, dy, tuple(out_hw), tuple(pads)


def pool_both(be, npb, kind, case, x, dy, out_hw, pads):
    """(cuda (y, dx), numpy (y, dx)) for kind 'max' or 'avg'."""
    pool, strides = case[4], case[5]
    y_n = np.empty(dy.shape, np.float32)
    dx_n = np.empty(x.shape, np.float32)
    y, dx = nan_device(be, dy.shape), nan_device(be, x.shape)
    d_x, d_dy = be.from_host(x), be.from_host(dy)
    if kind == "max":
        npb.maxpool2d_forward(x, pool, strides, pads, y_n)
        npb.maxpool2d_backward(x, y_n, dy, pool, strides, pads, dx_n)
        be.maxpool2d_forward(d_x, pool, strides, pads, y)
        be.maxpool2d_backward(d_x, y, d_dy, pool, strides, pads, dx)
    else:
        npb.avgpool2d_forward(x, pool, strides, pads, y_n)
        npb.avgpool2d_backward(dy, pool, strides, pads, dx_n)
        be.avgpool2d_forward(d_x, pool, strides, pads, y)
        be.avgpool2d_backward(d_dy, pool, strides, pads, dx)
    return (be.to_host(y), be.to_host(dx)), (y_n, dx_n)


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_maxpool_matches_numpy_with_ties(be, npb, case):
    """Integer-valued inputs tie in most windows: the gradient must go to the first maximum
    in row-major window order, as the reference; no rounding anywhere, so exact."""
    x, dy, out_hw, pads = pool_problem(case, integer_valued=True)
    x[0, 0, :2, 0] = -np.inf          # -inf inputs: a -inf window max gives 0 as the reference
    (y, dx), (y_n, dx_n) = pool_both(be, npb, "max", case, x, dy, out_hw, pads)
    np.testing.assert_array_equal(y, y_n)
    np.testing.assert_array_equal(dx, dx_n)


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_avgpool_matches_numpy(be, npb, case):
    x, dy, out_hw, pads = pool_problem(case)
    (y, dx), (y_n, dx_n) = pool_both(be, npb, "avg", case, x, dy, out_hw, pads)
    assert_close(y, y_n)
    assert_close(dx, dx_n)


def test_pool_backward_repeats_bitwise(be, npb):
    case = POOL_CASES[2]
    x, dy, out_hw, pads = pool_problem(case)
    for kind in ("max", "avg"):
        first, _ = pool_both(be, npb, kind, case, x, dy, out_hw, pads)
        second, _ = pool_both(be, npb, kind, case, x, dy, out_hw, pads)
        assert first[1].tobytes() == second[1].tobytes()


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (3, 1, 1, 2), (1, 4, 3, 1)],
                         ids=["2x5x7x3", "3x1x1x2", "1x4x3x1"])
def test_global_avgpool_matches_numpy(be, npb, shape):
    rng = rng_for("gap", shape)
    x, dy = f32(rng.standard_normal(shape)), f32(rng.standard_normal((shape[0], shape[3])))
    y_n, dx_n = np.empty(dy.shape, np.float32), np.empty(shape, np.float32)
    npb.global_avgpool2d_forward(x, y_n)
    npb.global_avgpool2d_backward(dy, dx_n)
    y, dx = nan_device(be, dy.shape), nan_device(be, shape)
    be.global_avgpool2d_forward(be.from_host(x), y)
    be.global_avgpool2d_backward(be.from_host(dy), dx)
    assert_close(be.to_host(y), y_n)
    np.testing.assert_array_equal(be.to_host(dx), dx_n)     # one division each


# ---- batch normalization -------------------------------------------------------------------------

# (rows, C, scale, center): rows = N*H*W of an image batch; 300 rows cross a chunk boundary
BN_CASES = [(70, 3, True, True), (7, 1, True, True), (300, 2, True, False), (12, 3, False, True),
            (5, 2, False, False)]
BN_IDS = [f"{r}x{c}" + ("" if s else "-noscale") + ("" if ce else "-nocenter")
          for r, c, s, ce in BN_CASES]


def bn_problem(case):
    rows, c, scale, center = case
    rng = rng_for("bn", case)
    x = f32(rng.standard_normal((rows, c)) * 3 + 2)
    gamma = f32(rng.standard_normal(c)) if scale else None
    beta = f32(rng.standard_normal(c)) if center else None
    moving = f32(rng.standard_normal(c)), f32(rng.random(c) + 0.5)
    dy = f32(rng.standard_normal((rows, c)))
    return x, gamma, beta, moving, dy


def dev_or_none(be, a):
    return None if a is None else be.from_host(a)


def bn_train_cuda(be, x, gamma, beta, moving, momentum=0.9, epsilon=1e-3):
    """(y, mean, inv_std, moving_mean, moving_variance) on the host."""
    rows, c = x.shape
    mm, mv = be.from_host(moving[0]), be.from_host(moving[1])
    mean, inv_std, y = nan_device(be, (c,)), nan_device(be, (c,)), nan_device(be, (rows, c))
    be.batchnorm_forward_train(be.from_host(x), dev_or_none(be, gamma), dev_or_none(be, beta),
                               mm, mv, momentum, epsilon, mean, inv_std, y)
    return [be.to_host(a) for a in (y, mean, inv_std, mm, mv)]


def bn_train_numpy(npb, x, gamma, beta, moving, momentum=0.9, epsilon=1e-3):
    rows, c = x.shape
    mm, mv = moving[0].copy(), moving[1].copy()
    mean, inv_std, y = np.empty(c, np.float32), np.empty(c, np.float32), np.empty((rows, c), np.float32)
    npb.batchnorm_forward_train(x, gamma, beta, mm, mv, momentum, epsilon, mean, inv_std, y)
    return [y, mean, inv_std, mm, mv]


@pytest.mark.parametrize("case", BN_CASES, ids=BN_IDS)
def test_batchnorm_train_infer_backward_match_numpy(be, npb, case):
    x, gamma, beta, moving, dy = bn_problem(case)
    got = bn_train_cuda(be, x, gamma, beta, moving)
    expect = bn_train_numpy(npb, x, gamma, beta, moving)
    for name, g, e in zip(("y", "mean", "inv_std", "moving_mean", "moving_variance"), got, expect):
        assert_close(g, e, rtol=2e-5, atol_of_max=1e-5, err_msg=name)
    # inference with the updated moving statistics
    y_n = np.empty_like(x)
    npb.batchnorm_forward_infer(x, gamma, beta, expect[3], expect[4], 1e-3, y_n)
    y = nan_device(be, x.shape)
    be.batchnorm_forward_infer(be.from_host(x), dev_or_none(be, gamma), dev_or_none(be, beta),
                               be.from_host(expect[3]), be.from_host(expect[4]), 1e-3, y)
    assert_close(be.to_host(y), y_n)
    # backward through the batch statistics (both sides from the reference's mean, inv_std)
    rows, c = x.shape
    mean, inv_std = expect[1], expect[2]
    e_dg = np.empty(c, np.float32) if gamma is not None else None
    e_db = np.empty(c, np.float32) if beta is not None else None
    e_dx = np.empty_like(x)
    npb.batchnorm_backward(x, gamma, mean, inv_std, dy, e_dg, e_db, e_dx)
    dg = nan_device(be, (c,)) if gamma is not None else None
    db = nan_device(be, (c,)) if beta is not None else None
    dx = nan_device(be, x.shape)
    be.batchnorm_backward(be.from_host(x), dev_or_none(be, gamma), be.from_host(mean),
                          be.from_host(inv_std), be.from_host(dy), dg, db, dx)
    for g, e in ((dg, e_dg), (db, e_db)):
        if e is not None:
            assert_close(be.to_host(g), e, rtol=1e-4, atol_of_max=1e-5)
    # dx = scale (dy - mean(dy) - xhat mean(dy xhat)) cancels: judge it against its scale
    assert_close(be.to_host(dx), e_dx, rtol=1e-4, atol_of_max=1e-4)


def test_batchnorm_reductions_repeat_bitwise(be):
    x, gamma, beta, moving, dy = bn_problem(BN_CASES[2])     # two chunks of rows
    first = bn_train_cuda(be, x, gamma, beta, moving)
    second = bn_train_cuda(be, x, gamma, beta, moving)
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()
    grads = []
    for _ in range(2):
        dg, db, dx = be.empty((2,)), be.empty((2,)), be.empty(x.shape)
        be.batchnorm_backward(be.from_host(x), be.from_host(gamma), be.from_host(first[1]),
                              be.from_host(first[2]), be.from_host(dy), dg, db, dx)
        grads.append([be.to_host(a).tobytes() for a in (dg, db, dx)])
    assert grads[0] == grads[1]


def test_batchnorm_backward_dx_only(be, npb):
    """dgamma and dbeta None (scale=False, center=False) or dx None."""
    x, _, _, moving, dy = bn_problem(BN_CASES[0])
    _, mean, inv_std, _, _ = bn_train_numpy(npb, x, None, None, moving)
    e_dx = np.empty_like(x)
    npb.batchnorm_backward(x, None, mean, inv_std, dy, None, None, e_dx)
    dx = nan_device(be, x.shape)
    args = [be.from_host(a) for a in (x,)] + [None] + [be.from_host(a) for a in (mean, inv_std, dy)]
    be.batchnorm_backward(*args, None, None, dx)
    assert_close(be.to_host(dx), e_dx, rtol=1e-4, atol_of_max=1e-4)
    dg, db = nan_device(be, (3,)), nan_device(be, (3,))
    be.batchnorm_backward(*args, dg, db, None)
    e_dg, e_db = np.empty(3, np.float32), np.empty(3, np.float32)
    npb.batchnorm_backward(x, None, mean, inv_std, dy, e_dg, e_db, None)
    assert_close(be.to_host(dg), e_dg, rtol=1e-4, atol_of_max=1e-5)
    assert_close(be.to_host(db), e_db, rtol=1e-4, atol_of_max=1e-5)


@pytest.mark.parametrize("case", BN_CASES[:4], ids=BN_IDS[:4])
def test_batchnorm_infer_backward_matches_numpy(be, npb, case):
    """The statistics as constants: dgamma, dbeta (column sums, here over 300 rows in two
    chunks too) and dx = dy * gamma / sqrt(moving_variance + epsilon), elementwise."""
    x, gamma, beta, moving, dy = bn_problem(case)
    rows, c = x.shape
    expect = [np.empty(c, np.float32) if gamma is not None else None,
              np.empty(c, np.float32) if beta is not None else None, np.empty_like(x)]
    npb.batchnorm_infer_backward(x, gamma, moving[0], moving[1], 1e-3, dy, *expect)
    got = [nan_device(be, (c,)) if gamma is not None else None,
           nan_device(be, (c,)) if beta is not None else None, nan_device(be, x.shape)]
    be.batchnorm_infer_backward(be.from_host(x), dev_or_none(be, gamma), be.from_host(moving[0]),
                                be.from_host(moving[1]), 1e-3, be.from_host(dy), *got)
    for name, g, e in zip(("dgamma", "dbeta"), got, expect):
        if e is not None:
            assert_close(be.to_host(g), e, rtol=1e-4, atol_of_max=1e-5, err_msg=name)
    assert_close(be.to_host(got[2]), expect[2], err_msg="dx")
    # each output may be None
    dx = nan_device(be, x.shape)
    be.batchnorm_infer_backward(be.from_host(x), dev_or_none(be, gamma), be.from_host(moving[0]),
                                be.from_host(moving[1]), 1e-3, be.from_host(dy), None, None, dx)
    assert be.to_host(dx).tobytes() == be.to_host(got[2]).tobytes()
    if gamma is not None:
        dg = nan_device(be, (c,))
        be.batchnorm_infer_backward(be.from_host(x), be.from_host(gamma), be.from_host(moving[0]),
                                    be.from_host(moving[1]), 1e-3, be.from_host(dy), dg, None, None)
        assert be.to_host(dg).tobytes() == be.to_host(got[0]).tobytes()


# ---- dropout ---------------------------------------------------------------------------------------

# (shape, broadcast): broadcast[a] true where Keras's noise_shape is 1 (the mask repeats)
DROPOUT_CASES = [((3, 5, 7, 2), (False, False, False, False)),
                 ((3, 5, 7, 2), (False, True, True, False)),     # one mask per image and channel
                 ((4, 3), (True, False)),                         # one mask row for the batch
                 ((2, 1, 3), (False, False, True)),
                 ((5,), (False,))]
DROPOUT_IDS = ["x".join(map(str, s)) + "-" + "".join("b" if b else "." for b in bc)
               for s, bc in DROPOUT_CASES]


@pytest.mark.parametrize("shape,broadcast", DROPOUT_CASES, ids=DROPOUT_IDS)
def test_dropout_mask_drawn_on_the_device_is_the_reference_mask(be, npb, shape, broadcast):
    """The counter-based generator on the device gives bitwise reference.dropout_mask, noise
    shape included; y = x * mask and the backward dx = dy * mask bitwise too."""
    rng = rng_for("dropout", shape, broadcast)
    x, dy = f32(rng.standard_normal(shape)), f32(rng.standard_normal(shape))
    seed, counter, rate = 2**64 - 3, 41, 0.4          # seed + G (counter + 1) wraps mod 2^64
    expect = ref.dropout_mask(shape, broadcast, seed, counter, rate)
    mask, y = nan_device(be, shape), nan_device(be, shape)
    be.dropout_forward(be.from_host(x), seed, counter, rate, broadcast, mask, y)
    mask_host = be.to_host(mask)
    assert mask_host.tobytes() == expect.tobytes()
    assert be.to_host(y).tobytes() == (x * expect).tobytes()
    mask_n, y_n = np.empty_like(x), np.empty_like(x)
    npb.dropout_forward(x, seed, counter, rate, broadcast, mask_n, y_n)
    assert be.to_host(y).tobytes() == y_n.tobytes()
    dx = nan_device(be, shape)
    be.dropout_backward(be.from_host(dy), mask, dx)
    np.testing.assert_array_equal(be.to_host(dx), dy * expect)
    d_dy = be.from_host(dy)                                   # in place: dx is dy
    be.dropout_backward(d_dy, mask, d_dy)
    np.testing.assert_array_equal(be.to_host(d_dy), dy * expect)


def test_dropout_streams_repeat_and_differ(be):
    """Same (seed, counter): the same mask; another counter or seed: another mask.  y may
    be x; rate 0 keeps everything."""
    shape, broadcast = (4, 6, 5), (False, False, False)
    x = f32(rng_for("dropout_streams").standard_normal(shape))
    masks = {}
    for seed, counter in ((7, 0), (7, 0), (7, 1), (8, 0)):
        mask, d_x = be.empty(shape), be.from_host(x)
        be.dropout_forward(d_x, seed, counter, 0.5, broadcast, mask, d_x)
        host = be.to_host(mask)
        np.testing.assert_array_equal(be.to_host(d_x), x * host)
        if (seed, counter) in masks:
            assert masks[(seed, counter)].tobytes() == host.tobytes()
        masks[(seed, counter)] = host
    assert len({m.tobytes() for m in masks.values()}) == 3
    mask, y = be.empty(shape), be.empty(shape)
    be.dropout_forward(be.from_host(x), 7, 0, 0.0, broadcast, mask, y)
    np.testing.assert_array_equal(be.to_host(mask), 1.0)


def test_device_uniforms_are_the_reference_uniforms(be):
    from pynn.backend.cuda import random
    u = nan_device(be, (1000,))
    random.random_uniform(123456789, 2**40 + 3, u)
    assert be.to_host(u).tobytes() == ref.random_uniform(123456789, 2**40 + 3, 1000).tobytes()


def test_dropout_refuses_bad_arguments(be):
    x = be.empty((2, 3))
    with pytest.raises(ValueError, match="one broadcast flag per axis"):
        be.dropout_forward(x, 1, 0, 0.5, (False,), be.empty((2, 3)), be.empty((2, 3)))
    with pytest.raises(ValueError, match=r"rate in \[0, 1\)"):
        be.dropout_forward(x, 1, 0, 1.0, (False, False), be.empty((2, 3)), be.empty((2, 3)))


# ---- a tiny CNN through the public API --------------------------------------------------------------

def tiny_cnn(backend):
    layers = pynn.layers
    pynn.utils.set_random_seed(11)
    model = pynn.Sequential([
        layers.Input((5, 7, 2)),
        layers.Conv2D(3, 3, padding="same", activation="relu"),
        layers.BatchNormalization(momentum=0.9),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(2, (2, 2), strides=(2, 1), activation="tanh"),
        layers.AveragePooling2D((1, 2), padding="same"),
        layers.Dropout(0.25),
        layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=pynn.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  backend=backend)
    return model


def test_tiny_cnn_training_step_matches_numpy(be):
    if not hasattr(pynn.layers, "Conv2D"):
        pytest.skip("the CNN layers are not on this branch (the backend methods are tested "
                    "directly above)")
    rng = rng_for("tiny_cnn")
    x = f32(rng.standard_normal((3, 5, 7, 2)))
    y = rng.integers(0, 3, size=3)
    results = {}
    for backend in ("cuda", "numpy"):
        model = tiny_cnn(backend)
        pynn.utils.set_random_seed(5)                 # the same dropout masks on both
        losses = [float(np.asarray(model.train_on_batch(x, y)).reshape(-1)[0]) for _ in range(2)]
        results[backend] = losses, model.get_weights(), model.predict(x, verbose=0)
    (l_c, w_c, p_c), (l_n, w_n, p_n) = results["cuda"], results["numpy"]
    np.testing.assert_allclose(l_c, l_n, rtol=1e-5, atol=1e-6)
    assert len(w_c) == len(w_n)       # kernels, biases, gamma, beta and the moving statistics
    for a, b in zip(w_c, w_n):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(p_c, p_n, rtol=1e-4, atol=1e-6)
