"""The C image kernels (through the cpu backend) against the NumPy reference on awkward
shapes: strides 1/2/3, both paddings, odd sizes, one channel, primes, overlapping and
gapped pooling windows; and bitwise the same on 1 and 2 threads."""
import numpy as np
import pytest

import pynn
from pynn import _core, ids
from pynn import backend as backends
from pynn.backend import reference as ref
from pynn.layers.conv import output_size

CPU, NUMPY = backends.get("cpu"), backends.get("numpy")

# (n, h, w, c, window, strides, padding)
GEOMETRIES = [
    (2, 7, 6, 3, (3, 2), (1, 1), "valid"),
    (3, 9, 8, 1, (5, 5), (2, 3), "same"),
    (1, 5, 5, 2, (3, 3), (3, 3), "same"),
    (2, 11, 13, 7, (4, 3), (2, 2), "same"),
    (1, 1, 1, 5, (1, 1), (1, 1), "valid"),
    (2, 3, 17, 3, (3, 3), (2, 1), "same"),
    (1, 8, 8, 1, (2, 2), (3, 3), "valid"),          # windows with gaps between them
    (4, 28, 28, 1, (5, 5), (1, 1), "same"),          # LeNet's first layer
    (2, 6, 6, 67, (2, 2), (1, 2), "same"),           # channels over one 64-wide block
    (3, 28, 28, 6, (2, 2), (2, 2), "valid"),         # LeNet's first pool: the 2x2/2 loops
    (2, 9, 11, 5, (2, 2), (2, 2), "valid"),          # 2x2/2 with a last odd row and column
    (2, 10, 10, 16, (2, 2), (2, 2), "same"),         # 2x2/2, "same" without padding
]


def geometry(h, w, window, strides, padding):
    (oh, pt), (ow, pl) = (output_size(s, k, st, padding)
                          for s, k, st in zip((h, w), window, strides))
    return (oh, ow), (pt, pl)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def work_for(be, x, k, strides, out_hw):
    """The conv2d_backward workspace the backend asks for (the plan allocates it once)."""
    return np.empty(be.conv2d_backward_work_size(x.shape, k.shape, strides, out_hw), np.float32)


def close(a, b, rtol=2e-5, atol=2e-6):
    scale = max(float(np.abs(b).max()), 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("n,h,w,c,window,strides,padding", GEOMETRIES)
def test_im2col_and_col2im_match_the_reference(n, h, w, c, window, strides, padding):
    rng = np.random.default_rng(h * w + c)
    (oh, ow), pads = geometry(h, w, window, strides, padding)
    x = rand(rng, n, h, w, c)
    cols = np.full((n * oh * ow, window[0] * window[1] * c), np.nan, np.float32)
    _core.im2col(cols, x, window, strides, pads, (oh, ow))
    np.testing.assert_array_equal(cols, ref.im2col(x, window, strides, pads, (oh, ow)))
    g = rand(rng, *cols.shape)
    dx = np.full(x.shape, np.nan, np.float32)
    _core.col2im(dx, g, window, strides, pads, (oh, ow))
    close(dx, ref.col2im(g, x.shape, window, strides, pads, (oh, ow)))


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh", "softmax"])
@pytest.mark.parametrize("n,h,w,c,window,strides,padding", GEOMETRIES)
def test_conv2d_forward_and_backward_match_the_reference(n, h, w, c, window, strides, padding,
                                                         activation):
    rng = np.random.default_rng(h + 7 * w + c)
    f = 5 if c != 1 else 6
    (oh, ow), pads = geometry(h, w, window, strides, padding)
    x, k, b = rand(rng, n, h, w, c), rand(rng, *window, c, f), rand(rng, f)
    dy0 = rand(rng, n, oh, ow, f)
    out = {}
    for be in (CPU, NUMPY):
        cols = np.empty((n * oh * ow, window[0] * window[1] * c), np.float32)
        z, y = np.empty((n, oh, ow, f), np.float32), np.empty((n, oh, ow, f), np.float32)
        be.conv2d_forward(x, k, b, strides, pads, activation, 0.2, cols, z, y)
        dy = dy0.copy()
        dw, db, dx = np.empty_like(k), np.empty_like(b), np.empty_like(x)
        be.conv2d_backward(x, k, z, y, dy, strides, pads, activation, 0.2, cols,
                           work_for(be, x, k, strides, (oh, ow)), dw, db, dx)
        out[be.name] = (z, y, dy, dw, db, dx)
    for what, a, r in zip(("z", "y", "dz", "dw", "db", "dx"), out["cpu"], out["numpy"]):
        close(a, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("n,h,w,c,window,strides,padding", GEOMETRIES)
def test_pooling_matches_the_reference(n, h, w, c, window, strides, padding, kind):
    rng = np.random.default_rng(3 * h + w + c)
    (oh, ow), pads = geometry(h, w, window, strides, padding)
    x = rand(rng, n, h, w, c)
    x[0, 0, :, 0] = 0.0                     # ties: the first maximum takes the gradient
    dy = rand(rng, n, oh, ow, c)
    out = {}
    for be in (CPU, NUMPY):
        y = np.empty((n, oh, ow, c), np.float32)
        dx = np.full(x.shape, np.nan, np.float32)
        getattr(be, f"{kind}pool2d_forward")(x, window, strides, pads, y)
        if kind == "max":
            be.maxpool2d_backward(x, y, dy, window, strides, pads, dx)
        else:
            be.avgpool2d_backward(dy, window, strides, pads, dx)
        out[be.name] = (y, dx)
    np.testing.assert_array_equal(out["cpu"][0], out["numpy"][0]) if kind == "max" else \
        close(out["cpu"][0], out["numpy"][0])
    close(out["cpu"][1], out["numpy"][1])


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 7, 2), (2, 4, 4, 67)])
def test_global_average_pooling_matches_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, *shape)
    dy = rand(rng, shape[0], shape[3])
    out = {}
    for be in (CPU, NUMPY):
        y, dx = np.empty((shape[0], shape[3]), np.float32), np.empty(shape, np.float32)
        be.global_avgpool2d_forward(x, y)
        be.global_avgpool2d_backward(dy, dx)
        out[be.name] = (y, dx)
    for a, r in zip(out["cpu"], out["numpy"]):
        close(a, r)


@pytest.mark.parametrize("rows,cols,affine", [(1, 3, True), (7, 1, True), (257, 5, False),
                                               (1000, 6, True), (300, 131, True)])
def test_batchnorm_matches_the_reference(rows, cols, affine):
    rng = np.random.default_rng(rows + cols)
    x = (rand(rng, rows, cols) * 3 + 1).astype(np.float32)
    gamma, beta = (rand(rng, cols), rand(rng, cols)) if affine else (None, None)
    dy = rand(rng, rows, cols)
    out = {}
    for be in (CPU, NUMPY):
        mm, mv = np.full(cols, 0.5, np.float32), np.full(cols, 2.0, np.float32)
        mean, inv, y = np.empty(cols, np.float32), np.empty(cols, np.float32), np.empty_like(x)
        be.batchnorm_forward_train(x, gamma, beta, mm, mv, 0.99, 1e-3, mean, inv, y)
        yi = np.empty_like(x)
        be.batchnorm_forward_infer(x, gamma, beta, mm, mv, 1e-3, yi)
        dg, db, dx = np.empty(cols, np.float32), np.empty(cols, np.float32), np.empty_like(x)
        be.batchnorm_backward(x, gamma, mean, inv, dy, dg if affine else None,
                              db if affine else None, dx)
        out[be.name] = (y, mean, inv, mm, mv, yi, dx) + ((dg, db) if affine else ())
    for a, r in zip(out["cpu"], out["numpy"]):
        close(a, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("broadcast", [(False, False, False, False), (False, True, True, False),
                                       (True, False, False, True)])
def test_dropout_matches_the_reference(broadcast):
    """The counter-based masks are the reference's, bit for bit, and so is y = x * mask
    (one float32 product); the backward is the same product."""
    rng = np.random.default_rng(0)
    x = rand(rng, 3, 5, 7, 2)
    expected = ref.dropout_mask(x.shape, broadcast, 42, 7, 0.3)
    for be in (CPU, NUMPY):
        y, mask = np.empty_like(x), np.empty_like(x)
        be.dropout_forward(x, 42, 7, 0.3, broadcast, mask, y)
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(y, x * expected)
        g = x.copy()
        be.dropout_backward(g, mask, g)
        np.testing.assert_array_equal(g, x * expected)


def run_all_kernels(threads):
    pynn.set_num_threads(threads)
    try:
        rng = np.random.default_rng(5)
        n, h, w, c, f = 8, 30, 29, 3, 7
        x, k, b = rand(rng, n, h, w, c), rand(rng, 3, 3, c, f), rand(rng, f)
        (oh, ow), pads = geometry(h, w, (3, 3), (2, 2), "same")
        cols = np.empty((n * oh * ow, 9 * c), np.float32)
        z, y = np.empty((n, oh, ow, f), np.float32), np.empty((n, oh, ow, f), np.float32)
        CPU.conv2d_forward(x, k, b, (2, 2), pads, "relu", 0.0, cols, z, y)
        dy = rand(rng, *z.shape)
        dw, db, dx = np.empty_like(k), np.empty_like(b), np.empty_like(x)
        CPU.conv2d_backward(x, k, z, y, dy, (2, 2), pads, "relu", 0.0, cols,
                            work_for(CPU, x, k, (2, 2), (oh, ow)), dw, db, dx)
        outs = [z, y, dy, dw, db, dx]
        for window, strides in (((3, 3), (1, 1)), ((2, 2), (2, 2))):
            (ph, pw), pp = geometry(h, w, window, strides, "same")
            for kind in ("max", "avg"):
                p = np.empty((n, ph, pw, c), np.float32)
                d = np.empty_like(x)
                g = rand(rng, *p.shape)
                getattr(CPU, f"{kind}pool2d_forward")(x, window, strides, pp, p)
                if kind == "max":
                    CPU.maxpool2d_backward(x, p, g, window, strides, pp, d)
                else:
                    CPU.avgpool2d_backward(g, window, strides, pp, d)
                outs += [p, d]
        rows = x.reshape(-1, c)
        mm, mv = np.zeros(c, np.float32), np.ones(c, np.float32)
        mean, inv, yb = np.empty(c, np.float32), np.empty(c, np.float32), np.empty_like(rows)
        CPU.batchnorm_forward_train(rows, b[:c], b[:c], mm, mv, 0.9, 1e-3, mean, inv, yb)
        dg, dbb, dxb = np.empty(c, np.float32), np.empty(c, np.float32), np.empty_like(rows)
        CPU.batchnorm_backward(rows, b[:c], mean, inv, rows, dg, dbb, dxb)
        return outs + [mm, mv, mean, inv, yb, dg, dbb, dxb]
    finally:
        pynn.set_num_threads(2)


def test_kernels_are_bitwise_the_same_on_1_and_2_threads():
    for a, b in zip(run_all_kernels(1), run_all_kernels(2)):
        np.testing.assert_array_equal(a, b)


def test_kernels_refuse_mismatched_shapes():
    x = np.zeros((2, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match="cols"):
        _core.im2col(np.zeros((10, 27), np.float32), x, (3, 3), (1, 1), (0, 0), (3, 3))
    with pytest.raises(ValueError, match="window"):
        _core.maxpool2d_forward(np.zeros((2, 2, 2, 3), np.float32), x, (0, 2), (1, 1), (0, 0))
    with pytest.raises(ValueError):
        _core.batchnorm_forward_train(np.zeros((4, 3), np.float32), *(np.zeros(2, np.float32),) * 4,
                                      np.zeros((4, 3), np.float32), None, None, 0.9, 1e-3)


# The direct convolution (conv_direct.c) takes layers with kh*kw*c <= 32 and <= 16 filters;
# these shapes sit on both sides of that rule, of its 64-column blocks (ow 70, 130) and of
# its 8-lane and 4-filter tiles (f 1, 5, 9, 16, 17).
DIRECT_SHAPES = [
    # (n, h, w, c, window, strides, padding, f)
    (3, 28, 28, 1, (5, 5), (1, 1), "same", 6),
    (2, 9, 70, 3, (3, 3), (1, 1), "same", 9),
    (1, 5, 131, 2, (2, 4), (1, 2), "valid", 16),
    (2, 7, 7, 2, (4, 4), (1, 1), "same", 1),      # kh*kw*c = 32: the largest direct kernel
    (2, 7, 7, 3, (3, 4), (2, 1), "same", 5),      # 36: the GEMM path
    (2, 6, 6, 1, (3, 3), (1, 1), "valid", 17),    # 17 filters: the GEMM path
    (1, 1, 1, 1, (1, 1), (1, 1), "valid", 3),
    # one channel at column stride 1: lanes over (position, filter) (xe_* in conv_direct.c)
    (2, 13, 12, 1, (4, 8), (2, 1), "same", 16),   # kw 8, row stride 2, ow*f 192: the widest
    (1, 5, 13, 1, (3, 3), (1, 1), "same", 16),    # ow*f 208: the patch route
    (2, 40, 9, 1, (3, 3), (1, 1), "same", 5),     # 40 rows: two row blocks per image
    (2, 9, 10, 1, (2, 7), (1, 1), "valid", 7),    # kw 7: the loop without a fixed width
    (2, 40, 7, 1, (5, 5), (1, 1), "same", 3),     # 5x5 at row stride 1 (xe_grad_5x5), 2 blocks
    (2, 3, 12, 1, (5, 5), (1, 1), "same", 16),    # 5x5 with fewer rows than the window
]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("n,h,w,c,window,strides,padding,f", DIRECT_SHAPES)
def test_direct_convolution_matches_the_reference(n, h, w, c, window, strides, padding, f,
                                                  use_bias):
    rng = np.random.default_rng(n + h + w + c + f)
    (oh, ow), pads = geometry(h, w, window, strides, padding)
    x, k = rand(rng, n, h, w, c), rand(rng, *window, c, f)
    b = rand(rng, f) if use_bias else None
    dy0 = rand(rng, n, oh, ow, f)
    direct = _core.conv2d_direct_supported(k.shape, ids.ACTIVATIONS["relu"])
    assert direct == (window[0] * window[1] * c <= 32 and f <= 16)
    out = {}
    for be in (CPU, NUMPY):
        cols = np.empty((n * oh * ow, window[0] * window[1] * c), np.float32)
        z, y = np.empty((n, oh, ow, f), np.float32), np.empty((n, oh, ow, f), np.float32)
        be.conv2d_forward(x, k, b, strides, pads, "relu", 0.0, cols, z, y)
        dy = dy0.copy()
        dw = np.empty_like(k)
        db = np.empty(f, np.float32) if use_bias else None
        be.conv2d_backward(x, k, z, y, dy, strides, pads, "relu", 0.0, cols,
                           work_for(be, x, k, strides, (oh, ow)), dw, db, None)
        out[be.name] = (z, y, dy, dw) + ((db,) if use_bias else ())
    for a, r in zip(out["cpu"], out["numpy"]):
        close(a, r, rtol=1e-4, atol=1e-5)


def test_direct_convolution_is_bitwise_the_same_on_1_and_2_threads():
    rng = np.random.default_rng(11)
    x, k, b = rand(rng, 16, 28, 28, 1), rand(rng, 5, 5, 1, 6), rand(rng, 6)
    dy0 = rand(rng, 16, 28, 28, 6)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            z, y = np.empty_like(dy0), np.empty_like(dy0)
            _core.conv2d_direct_forward(z, y, x, k, b, (1, 1), (2, 2), ids.ACTIVATIONS["relu"], 0.0)
            dz, dw, db = dy0.copy(), np.empty_like(k), np.empty_like(b)
            _core.conv2d_direct_backward_filter(dw, db, dz, x, z, y, dz, (1, 1), (2, 2),
                                                ids.ACTIVATIONS["relu"], 0.0)
            outs.append((z, y, dz, dw, db))
        finally:
            pynn.set_num_threads(2)
    for a, r in zip(*outs):
        np.testing.assert_array_equal(a, r)


def test_direct_convolution_refuses_what_it_does_not_handle():
    x = np.zeros((1, 5, 5, 3), np.float32)
    z = np.zeros((1, 5, 5, 4), np.float32)
    with pytest.raises(ValueError, match="direct"):
        _core.conv2d_direct_forward(z, z, x, np.zeros((4, 4, 3, 4), np.float32), None, (1, 1),
                                    (1, 1), ids.ACTIVATIONS["relu"], 0.0)
    with pytest.raises(ValueError, match="direct"):
        _core.conv2d_direct_forward(z, z, x, np.zeros((3, 3, 3, 4), np.float32), None, (1, 1),
                                    (1, 1), ids.ACTIVATIONS["softmax"], 0.0)


# sgemm_ksplit: the filter gradient's GEMM with K cut into chunks fixed by the shape
# (csrc/gemm.c).  K on both sides of one chunk (256) and of the 8-chunk cap, M and N
# off the micro-kernel's tiles, all four transposes.
KSPLIT_SHAPES = [(16, 150, 6400), (1, 1, 1), (7, 33, 255), (13, 29, 257), (5, 3, 2049),
                 (17, 1, 3001), (24, 40, 512)]


@pytest.mark.parametrize("trans_a,trans_b", [(True, False), (False, False), (False, True),
                                             (True, True)])
@pytest.mark.parametrize("m,n,k", KSPLIT_SHAPES)
def test_sgemm_ksplit_matches_the_product(m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m + n + k)
    a = rand(rng, *((k, m) if trans_a else (m, k)))
    b = rand(rng, *((n, k) if trans_b else (k, n)))
    expect = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            c = np.full((m, n), np.nan, np.float32)
            work = np.full(_core.sgemm_ksplit_chunks(m, n, k) * m * n, np.nan, np.float32)
            _core.sgemm_ksplit(c, work, a, b, trans_a, trans_b)
            outs.append(c)
        finally:
            pynn.set_num_threads(2)
    np.testing.assert_array_equal(outs[0], outs[1])
    close(outs[0], expect.astype(np.float32), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="partials"):
        _core.sgemm_ksplit(c, np.zeros(_core.sgemm_ksplit_chunks(m, n, k) * m * n - 1,
                                       np.float32), a, b, trans_a, trans_b)


def test_gemm_convolution_is_bitwise_the_same_on_1_and_2_threads():
    """LeNet's second layer (16@5x5 over 6 channels): the im2col + GEMM path, its filter
    gradient through sgemm_ksplit."""
    rng = np.random.default_rng(12)
    x, k, b = rand(rng, 64, 14, 14, 6), rand(rng, 5, 5, 6, 16), rand(rng, 16)
    assert not _core.conv2d_direct_supported(k.shape, ids.ACTIVATIONS["relu"])
    dy0 = rand(rng, 64, 10, 10, 16)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            cols = np.empty((6400, 150), np.float32)
            z, y = np.empty_like(dy0), np.empty_like(dy0)
            CPU.conv2d_forward(x, k, b, (1, 1), (0, 0), "relu", 0.0, cols, z, y)
            dy, dw, db, dx = dy0.copy(), np.empty_like(k), np.empty_like(b), np.empty_like(x)
            CPU.conv2d_backward(x, k, z, y, dy, (1, 1), (0, 0), "relu", 0.0, cols,
                                work_for(CPU, x, k, (1, 1), (10, 10)), dw, db, dx)
            outs.append((z, y, dy, dw, db, dx))
        finally:
            pynn.set_num_threads(2)
    for a, r in zip(*outs):
        np.testing.assert_array_equal(a, r)
    ref_dw = ref.im2col(x, (5, 5), (1, 1), (0, 0), (10, 10)).T.astype(np.float64) @ \
        outs[0][2].reshape(-1, 16)
    close(outs[0][3].reshape(150, 16), ref_dw.astype(np.float32), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,h,w,c", [(16, 28, 28, 6), (3, 9, 11, 5), (2, 10, 10, 16), (1, 2, 2, 1),
                                     (2, 3, 3, 67)])
def test_2x2_max_pooling_routes_ties_like_the_reference_on_1_and_2_threads(n, h, w, c):
    """The 2x2/stride-2 loops (pool.c): after a ReLU most windows tie at 0, and the first
    window position (row-major) must take the gradient; odd leftover rows and columns get 0."""
    rng = np.random.default_rng(n * h + w * c)
    x = np.maximum(rand(rng, n, h, w, c), 0.0)
    x[:, ::3, 1::2] = x[:, ::3, ::2][:, :, :w // 2]        # ties between nonzero values too
    (oh, ow), pads = geometry(h, w, (2, 2), (2, 2), "valid")
    dy = rand(rng, n, oh, ow, c)
    yr = np.empty((n, oh, ow, c), np.float32)
    dxr = np.empty_like(x)
    NUMPY.maxpool2d_forward(x, (2, 2), (2, 2), pads, yr)
    NUMPY.maxpool2d_backward(x, yr, dy, (2, 2), (2, 2), pads, dxr)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            y = np.full((n, oh, ow, c), np.nan, np.float32)
            dx = np.full(x.shape, np.nan, np.float32)
            _core.maxpool2d_forward(y, x, (2, 2), (2, 2), pads)
            _core.maxpool2d_backward(dx, x, y, dy, (2, 2), (2, 2), pads)
            outs.append((y, dx))
        finally:
            pynn.set_num_threads(2)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(outs[0][0], yr)
    np.testing.assert_array_equal(outs[0][1], dxr)


@pytest.mark.parametrize("n,h,w,window,strides,f", [(8, 40, 9, (3, 3), (1, 1), 5),
                                                    (8, 40, 7, (5, 5), (1, 1), 3),
                                                    (6, 13, 12, (4, 8), (2, 1), 16)])
def test_one_channel_direct_convolution_is_bitwise_the_same_on_1_and_2_threads(n, h, w, window,
                                                                             strides, f):
    rng = np.random.default_rng(n * h + f)
    (oh, ow), pads = geometry(h, w, window, strides, "same")
    x, k, b = rand(rng, n, h, w, 1), rand(rng, *window, 1, f), rand(rng, f)
    dy0 = rand(rng, n, oh, ow, f)
    outs = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        try:
            z, y = np.empty_like(dy0), np.empty_like(dy0)
            _core.conv2d_direct_forward(z, y, x, k, b, strides, pads, ids.ACTIVATIONS["relu"], 0.0)
            dz, dw, db = dy0.copy(), np.empty_like(k), np.empty_like(b)
            _core.conv2d_direct_backward_filter(dw, db, dz, x, z, y, dz, strides, pads,
                                                ids.ACTIVATIONS["relu"], 0.0)
            outs.append((z, y, dz, dw, db))
        finally:
            pynn.set_num_threads(2)
    for a, r in zip(*outs):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("n,h,w,c,window,strides,f", [(64, 28, 28, 1, (5, 5), (1, 1), 6),   # LeNet conv1
                                                      (5, 13, 11, 2, (3, 3), (2, 1), 7),
                                                      (3, 9, 40, 1, (3, 4), (1, 2), 16)])
def test_direct_filter_gradient_uses_the_layers_scratch_and_gives_the_same_result(
        n, h, w, c, window, strides, f):
    """The layer's cols buffer (unused by the direct forward) is big enough for the
    filter gradient's partial sums, so a step allocates nothing; with or without that
    scratch the results are bitwise the same."""
    rng = np.random.default_rng(h * w + f)
    (oh, ow), pads = geometry(h, w, window, strides, "same")
    x, k, b = rand(rng, n, h, w, c), rand(rng, *window, c, f), rand(rng, f)
    need = _core.conv2d_direct_filter_work(x.shape, k.shape, strides, (oh, ow))
    cols_size = n * oh * ow * window[0] * window[1] * c
    assert 0 < need <= cols_size
    z, y = np.empty((n, oh, ow, f), np.float32), np.empty((n, oh, ow, f), np.float32)
    _core.conv2d_direct_forward(z, y, x, k, b, strides, pads, ids.ACTIVATIONS["relu"], 0.0)
    dy0 = rand(rng, n, oh, ow, f)
    results = []
    for work in (None, np.full(need, np.nan, np.float32), np.empty(need - 1, np.float32)):
        dz, dw, db = dy0.copy(), np.empty_like(k), np.empty_like(b)
        _core.conv2d_direct_backward_filter(dw, db, dz, x, z, y, dz, strides, pads,
                                            ids.ACTIVATIONS["relu"], 0.0, work)
        results.append((dz, dw, db))
    for other in results[1:]:
        for a, r in zip(results[0], other):
            assert a.tobytes() == r.tobytes()
