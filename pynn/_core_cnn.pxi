# Wrappers of the image kernels: im2col/col2im, pooling, batch normalization, the
# dropout product.  Textually included by _core.pyx, which declares the C functions.
#
# Images are (N, H, W, C) C-contiguous float32 arrays (the typed memoryviews refuse
# anything else).  Window geometry is passed as (kh, kw), (sh, sw) and
# (pad_top, pad_left); the output height and width are read from the output array,
# and every shape that follows from them is checked here before C sees a pointer.


cdef inline tuple _shape4(const float[:, :, :, ::1] a):
    return (a.shape[0], a.shape[1], a.shape[2], a.shape[3])


cdef inline float *_data4(float[:, :, :, ::1] a) noexcept:
    return &a[0, 0, 0, 0] if a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3] > 0 else NULL


cdef inline const float *_cdata4(const float[:, :, :, ::1] a) noexcept:
    return &a[0, 0, 0, 0] if a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3] > 0 else NULL


cdef inline const float *_cdata1(const float[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline float *_data1(float[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef tuple _geometry(window, strides, padding, str where):
    """((kh, kw), (sh, sw), (pad_top, pad_left)) as six ints, checked."""
    kh, kw = window
    sh, sw = strides
    pt, pl = padding
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or pt < 0 or pl < 0:
        raise ValueError(f"{where}: expected a window and strides of positive integers and "
                         f"non-negative padding, received window={tuple(window)}, "
                         f"strides={tuple(strides)}, padding={tuple(padding)}")
    return kh, kw, sh, sw, pt, pl


# ---- convolution as GEMM ---------------------------------------------------------

def im2col(float[:, ::1] cols,                # OUT (N*OH*OW, KH*KW*C)
           const float[:, :, :, ::1] x,       # IN  (N, H, W, C)
           kernel_size, strides, padding, out_hw):
    """cols = the window of every output position, zeros for padding."""
    cdef int64_t kh, kw, sh, sw, pt, pl
    kh, kw, sh, sw, pt, pl = _geometry(kernel_size, strides, padding, "im2col")
    cdef int64_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef int64_t oh = out_hw[0], ow = out_hw[1]
    _same_shape((cols.shape[0], cols.shape[1]), (n * oh * ow, kh * kw * c), "cols", "im2col")
    cdef float *out = _data(cols)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_im2col(out, inp, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow)
    _check(status, "im2col")


def col2im(float[:, :, :, ::1] dx,            # OUT (N, H, W, C)
           const float[:, ::1] cols,          # IN  (N*OH*OW, KH*KW*C)
           kernel_size, strides, padding, out_hw):
    """dx = the adjoint of im2col (window entries summed back onto the input)."""
    cdef int64_t kh, kw, sh, sw, pt, pl
    kh, kw, sh, sw, pt, pl = _geometry(kernel_size, strides, padding, "col2im")
    cdef int64_t n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef int64_t oh = out_hw[0], ow = out_hw[1]
    _same_shape((cols.shape[0], cols.shape[1]), (n * oh * ow, kh * kw * c), "cols", "col2im")
    cdef float *out = _data4(dx)
    cdef const float *inp = _cdata(cols)
    cdef int status
    with nogil:
        status = pynn_col2im(out, inp, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow)
    _check(status, "col2im")


def conv2d_winograd_supported(int64_t n, kernel_shape, strides, out_hw, int act):
    """Whether conv2d_forward takes Winograd's F(2x2, 3x3) for a batch of n under a
    (kh, kw, c, f) kernel at these strides and output size (csrc/conv_winograd.c), and
    whether conv2d_backward's filter gradient takes F(3x3, 2x2): (forward, filter
    gradient)."""
    kh, kw, c, f = kernel_shape
    sh, sw = strides
    oh, ow = out_hw
    return (bool(pynn_conv2d_winograd_supported(n, kh, kw, sh, sw, c, f, oh, ow, act)),
            bool(pynn_conv2d_winograd_filter_supported(n, kh, kw, sh, sw, c, f, oh, ow, act)))


# ---- direct convolution (tiny kernels) -------------------------------------------

def conv2d_direct_supported(kernel_shape, int act):
    """Whether conv2d_direct_* handle a (kh, kw, c, f) kernel with this activation."""
    kh, kw, c, f = kernel_shape
    return bool(pynn_conv2d_direct_supported(kh, kw, c, f, act))


def conv2d_direct_forward(float[:, :, :, ::1] z,          # OUT (N, OH, OW, F)
                          float[:, :, :, ::1] y,          # OUT (N, OH, OW, F); may be z
                          const float[:, :, :, ::1] x,    # IN  (N, H, W, C)
                          const float[:, :, :, ::1] kernel,   # IN (KH, KW, C, F)
                          bias,                           # IN  (F,) or None
                          strides, padding, int act, float alpha):
    """z = conv(x, kernel) + bias, y = act(z), without a cols buffer."""
    cdef str where = "conv2d_direct_forward"
    cdef int64_t kh = kernel.shape[0], kw = kernel.shape[1], c = kernel.shape[2], f = kernel.shape[3]
    cdef int64_t sh, sw, pt, pl
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    _same_shape((z.shape[0], z.shape[3]), (x.shape[0], f), "z's batch and filters", where)
    _same_shape(_shape4(y), _shape4(z), "y", where)
    _same_length(x.shape[3], c, "x's channels", where)
    if not pynn_conv2d_direct_supported(kh, kw, c, f, act):
        raise ValueError(f"{where}: a kernel of shape {(kh, kw, c, f)} with activation {act} "
                         "is not handled by the direct convolution")
    cdef const float *pb = _optional_channels(bias, f, "bias", where)
    cdef float *pz = _data4(z)
    cdef float *py = _data4(y)
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef int status
    with nogil:
        status = pynn_conv2d_direct_forward(pz, py, px, pw, pb, x.shape[0], x.shape[1],
                                            x.shape[2], c, kh, kw, sh, sw, pt, pl, z.shape[1],
                                            z.shape[2], f, act, alpha)
    _check(status, where)


def conv2d_direct_filter_work(x_shape, kernel_shape, strides, out_hw):
    """Floats of scratch conv2d_direct_backward_filter uses for these shapes."""
    cdef int64_t n = x_shape[0], h = x_shape[1], w = x_shape[2], c = x_shape[3]
    return pynn_conv2d_direct_filter_work(n, h, w, c, kernel_shape[0], kernel_shape[1],
                                          strides[0], strides[1], out_hw[0], out_hw[1],
                                          kernel_shape[3])


def conv2d_direct_backward_filter(float[:, :, :, ::1] dw,     # OUT (KH, KW, C, F)
                                  db,                          # OUT (F,) or None
                                  float[:, :, :, ::1] dz,      # OUT (N, OH, OW, F); may be dy
                                  const float[:, :, :, ::1] x,     # IN (N, H, W, C)
                                  const float[:, :, :, ::1] z,     # IN (N, OH, OW, F)
                                  const float[:, :, :, ::1] y,     # IN (N, OH, OW, F)
                                  const float[:, :, :, ::1] dy,    # IN (N, OH, OW, F)
                                  strides, padding, int act, float alpha,
                                  work=None):                  # scratch float32, 1-D, or None
    """dz = act'(z) dy; dw, db = the kernel and bias gradients.  `work`, a reused scratch
    array of at least conv2d_direct_filter_work(...) floats, holds the partial sums so the
    call allocates nothing (without it, or when it is too small, C allocates them)."""
    cdef str where = "conv2d_direct_backward_filter"
    cdef int64_t kh = dw.shape[0], kw = dw.shape[1], c = dw.shape[2], f = dw.shape[3]
    cdef int64_t sh, sw, pt, pl
    cdef float[::1] db_view
    cdef float *pdb = NULL
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    _same_shape((dz.shape[0], dz.shape[3]), (x.shape[0], f), "dz's batch and filters", where)
    _same_shape(_shape4(z), _shape4(dz), "z", where)
    _same_shape(_shape4(y), _shape4(dz), "y", where)
    _same_shape(_shape4(dy), _shape4(dz), "dy", where)
    _same_length(x.shape[3], c, "x's channels", where)
    if not pynn_conv2d_direct_supported(kh, kw, c, f, act):
        raise ValueError(f"{where}: a kernel of shape {(kh, kw, c, f)} with activation {act} "
                         "is not handled by the direct convolution")
    if db is not None:
        db_view = db
        _same_length(db_view.shape[0], f, "db", where)
        pdb = _data1(db_view)
    cdef float[::1] work_view
    cdef float *pwork = NULL
    cdef int64_t work_size = 0
    if work is not None:
        work_view = work
        work_size = work_view.shape[0]
        if work_size > 0:
            pwork = &work_view[0]
    cdef float *pdw = _data4(dw)
    cdef float *pdz = _data4(dz)
    cdef const float *px = _cdata4(x)
    cdef const float *pz = _cdata4(z)
    cdef const float *py = _cdata4(y)
    cdef const float *pdy = _cdata4(dy)
    cdef int status
    with nogil:
        status = pynn_conv2d_direct_backward_filter(pdw, pdb, pdz, px, pz, py, pdy, x.shape[0],
                                                    x.shape[1], x.shape[2], c, kh, kw, sh, sw,
                                                    pt, pl, dz.shape[1], dz.shape[2], f, act,
                                                    alpha, pwork, work_size)
    _check(status, where)


# ---- pooling ----------------------------------------------------------------------

def maxpool2d_forward(float[:, :, :, ::1] y,          # OUT (N, OH, OW, C)
                      const float[:, :, :, ::1] x,    # IN  (N, H, W, C)
                      pool_size, strides, padding):
    cdef int64_t ph, pw, sh, sw, pt, pl
    ph, pw, sh, sw, pt, pl = _geometry(pool_size, strides, padding, "maxpool2d_forward")
    _same_shape((y.shape[0], y.shape[3]), (x.shape[0], x.shape[3]), "y's batch and channels",
                "maxpool2d_forward")
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_maxpool2d_forward(out, inp, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                        ph, pw, sh, sw, pt, pl, y.shape[1], y.shape[2])
    _check(status, "maxpool2d_forward")


def maxpool2d_backward(float[:, :, :, ::1] dx,         # OUT (N, H, W, C)
                       const float[:, :, :, ::1] x,    # IN  (N, H, W, C) the forward's input
                       const float[:, :, :, ::1] y,    # IN  (N, OH, OW, C) the forward's output
                       const float[:, :, :, ::1] dy,   # IN  (N, OH, OW, C)
                       pool_size, strides, padding):
    cdef int64_t ph, pw, sh, sw, pt, pl
    ph, pw, sh, sw, pt, pl = _geometry(pool_size, strides, padding, "maxpool2d_backward")
    _same_shape(_shape4(dx), _shape4(x), "dx", "maxpool2d_backward")
    _same_shape((dy.shape[0], dy.shape[3]), (x.shape[0], x.shape[3]), "dy's batch and channels",
                "maxpool2d_backward")
    cdef float *out = _data4(dx)
    cdef const float *inp = _cdata4(x)
    _same_shape(_shape4(y), _shape4(dy), "y", "maxpool2d_backward")
    cdef const float *grad = _cdata4(dy)
    cdef const float *outp = _cdata4(y)
    cdef int status
    with nogil:
        status = pynn_maxpool2d_backward(out, inp, outp, grad, x.shape[0], x.shape[1], x.shape[2],
                                         x.shape[3], ph, pw, sh, sw, pt, pl, dy.shape[1],
                                         dy.shape[2])
    _check(status, "maxpool2d_backward")


def avgpool2d_forward(float[:, :, :, ::1] y,          # OUT (N, OH, OW, C)
                      const float[:, :, :, ::1] x,    # IN  (N, H, W, C)
                      pool_size, strides, padding):
    cdef int64_t ph, pw, sh, sw, pt, pl
    ph, pw, sh, sw, pt, pl = _geometry(pool_size, strides, padding, "avgpool2d_forward")
    _same_shape((y.shape[0], y.shape[3]), (x.shape[0], x.shape[3]), "y's batch and channels",
                "avgpool2d_forward")
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_avgpool2d_forward(out, inp, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                                        ph, pw, sh, sw, pt, pl, y.shape[1], y.shape[2])
    _check(status, "avgpool2d_forward")


def avgpool2d_backward(float[:, :, :, ::1] dx,         # OUT (N, H, W, C)
                       const float[:, :, :, ::1] dy,   # IN  (N, OH, OW, C)
                       pool_size, strides, padding):
    cdef int64_t ph, pw, sh, sw, pt, pl
    ph, pw, sh, sw, pt, pl = _geometry(pool_size, strides, padding, "avgpool2d_backward")
    _same_shape((dy.shape[0], dy.shape[3]), (dx.shape[0], dx.shape[3]),
                "dy's batch and channels", "avgpool2d_backward")
    cdef float *out = _data4(dx)
    cdef const float *grad = _cdata4(dy)
    cdef int status
    with nogil:
        status = pynn_avgpool2d_backward(out, grad, dx.shape[0], dx.shape[1], dx.shape[2],
                                         dx.shape[3], ph, pw, sh, sw, pt, pl, dy.shape[1],
                                         dy.shape[2])
    _check(status, "avgpool2d_backward")


def global_avgpool2d_forward(float[:, ::1] y,                 # OUT (N, C)
                             const float[:, :, :, ::1] x):    # IN  (N, H, W, C)
    _same_shape((y.shape[0], y.shape[1]), (x.shape[0], x.shape[3]), "y",
                "global_avgpool2d_forward")
    cdef float *out = _data(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_global_avgpool2d_forward(out, inp, x.shape[0], x.shape[1], x.shape[2],
                                               x.shape[3])
    _check(status, "global_avgpool2d_forward")


def global_avgpool2d_backward(float[:, :, :, ::1] dx,        # OUT (N, H, W, C)
                              const float[:, ::1] dy):       # IN  (N, C)
    _same_shape((dy.shape[0], dy.shape[1]), (dx.shape[0], dx.shape[3]), "dy",
                "global_avgpool2d_backward")
    cdef float *out = _data4(dx)
    cdef const float *grad = _cdata(dy)
    cdef int status
    with nogil:
        status = pynn_global_avgpool2d_backward(out, grad, dx.shape[0], dx.shape[1],
                                                dx.shape[2], dx.shape[3])
    _check(status, "global_avgpool2d_backward")


# ---- batch normalization over the rows of (rows, C) --------------------------------

cdef const float *_optional_channels(v, Py_ssize_t cols, str what, str where) except? NULL:
    """The data of an optional (cols,) array, NULL for None."""
    cdef const float[::1] view
    if v is None:
        return NULL
    view = v
    _same_length(view.shape[0], cols, what, where)
    return _cdata1(view)


def batchnorm_forward_train(float[:, ::1] y,             # OUT (rows, C)
                            float[::1] mean,             # OUT (C,)
                            float[::1] inv_std,          # OUT (C,)
                            float[::1] moving_mean,      # IN/OUT (C,)
                            float[::1] moving_variance,  # IN/OUT (C,)
                            const float[:, ::1] x,       # IN  (rows, C)
                            gamma, beta,                 # IN  (C,) or None
                            float momentum, float epsilon):
    cdef str where = "batchnorm_forward_train"
    cdef Py_ssize_t cols = x.shape[1]
    _same_shape(_shape2(y), _shape2(x), "y", where)
    for arr, what in ((mean, "mean"), (inv_std, "inv_std"), (moving_mean, "moving_mean"),
                      (moving_variance, "moving_variance")):
        _same_length(arr.shape[0], cols, what, where)
    if x.shape[0] < 1:
        raise ValueError(f"{where}: expected at least one row, received x of shape {_shape2(x)}")
    cdef const float *g = _optional_channels(gamma, cols, "gamma", where)
    cdef const float *b = _optional_channels(beta, cols, "beta", where)
    cdef float *py = _data(y)
    cdef float *pm = _data1(mean)
    cdef float *ps = _data1(inv_std)
    cdef float *pmm = _data1(moving_mean)
    cdef float *pmv = _data1(moving_variance)
    cdef const float *px = _cdata(x)
    cdef int status
    with nogil:
        status = pynn_batchnorm_forward_train(py, pm, ps, pmm, pmv, px, g, b, x.shape[0], cols,
                                              momentum, epsilon)
    _check(status, where)


def batchnorm_forward_infer(float[:, ::1] y,                  # OUT (rows, C)
                            const float[:, ::1] x,            # IN  (rows, C)
                            gamma, beta,                      # IN  (C,) or None
                            const float[::1] moving_mean,     # IN  (C,)
                            const float[::1] moving_variance, # IN  (C,)
                            float epsilon):
    cdef str where = "batchnorm_forward_infer"
    cdef Py_ssize_t cols = x.shape[1]
    _same_shape(_shape2(y), _shape2(x), "y", where)
    _same_length(moving_mean.shape[0], cols, "moving_mean", where)
    _same_length(moving_variance.shape[0], cols, "moving_variance", where)
    cdef const float *g = _optional_channels(gamma, cols, "gamma", where)
    cdef const float *b = _optional_channels(beta, cols, "beta", where)
    cdef float *py = _data(y)
    cdef const float *px = _cdata(x)
    cdef const float *pmm = _cdata1(moving_mean)
    cdef const float *pmv = _cdata1(moving_variance)
    cdef int status
    with nogil:
        status = pynn_batchnorm_forward_infer(py, px, g, b, pmm, pmv, x.shape[0], cols, epsilon)
    _check(status, where)


def batchnorm_backward(dx, dgamma, dbeta,            # OUT (rows, C), (C,), (C,); each may be None
                       const float[:, ::1] x,        # IN  (rows, C)
                       gamma,                        # IN  (C,) or None
                       const float[::1] mean,        # IN  (C,)
                       const float[::1] inv_std,     # IN  (C,)
                       const float[:, ::1] dy):      # IN  (rows, C)
    cdef str where = "batchnorm_backward"
    cdef Py_ssize_t cols = x.shape[1]
    cdef float[:, ::1] dx_view
    cdef float[::1] dg_view, db_view
    cdef float *pdx = NULL
    cdef float *pdg = NULL
    cdef float *pdb = NULL
    _same_shape(_shape2(dy), _shape2(x), "dy", where)
    _same_length(mean.shape[0], cols, "mean", where)
    _same_length(inv_std.shape[0], cols, "inv_std", where)
    if x.shape[0] < 1:
        raise ValueError(f"{where}: expected at least one row, received x of shape {_shape2(x)}")
    if dx is not None:
        dx_view = dx
        _same_shape(_shape2(dx_view), _shape2(x), "dx", where)
        pdx = _data(dx_view)
    if dgamma is not None:
        dg_view = dgamma
        _same_length(dg_view.shape[0], cols, "dgamma", where)
        pdg = _data1(dg_view)
    if dbeta is not None:
        db_view = dbeta
        _same_length(db_view.shape[0], cols, "dbeta", where)
        pdb = _data1(db_view)
    cdef const float *g = _optional_channels(gamma, cols, "gamma", where)
    cdef const float *px = _cdata(x)
    cdef const float *pm = _cdata1(mean)
    cdef const float *ps = _cdata1(inv_std)
    cdef const float *pdy = _cdata(dy)
    cdef int status
    with nogil:
        status = pynn_batchnorm_backward(pdx, pdg, pdb, px, g, pm, ps, pdy, x.shape[0], cols)
    _check(status, where)


# ---- dropout -------------------------------------------------------------------------

def multiply(float[::1] y,              # OUT (n,); may be x
             const float[::1] x,        # IN  (n,)
             const float[::1] mask):    # IN  (n,)
    """y = x * mask elementwise."""
    _same_length(x.shape[0], y.shape[0], "x", "multiply")
    _same_length(mask.shape[0], y.shape[0], "mask", "multiply")
    cdef float *py = _data1(y)
    cdef const float *px = _cdata1(x)
    cdef const float *pm = _cdata1(mask)
    cdef int status
    with nogil:
        status = pynn_multiply(py, px, pm, y.shape[0])
    _check(status, "multiply")


# ---- layer-level convolution (csrc/layers.c): direct kernel or implicit GEMM ----------

cdef tuple _conv_shapes(const float[:, :, :, ::1] x, const float[:, :, :, ::1] kernel,
                        const float[:, :, :, ::1] z, const float[:, :, :, ::1] y, cols,
                        str where):
    """(kh, kw, c, f) after checking x, z, y and cols against the kernel."""
    cdef int64_t kh = kernel.shape[0], kw = kernel.shape[1], c = kernel.shape[2], f = kernel.shape[3]
    cdef const float[:, ::1] cv = cols
    _same_shape((z.shape[0], z.shape[3]), (x.shape[0], f), "z's batch and filters", where)
    _same_shape(_shape4(y), _shape4(z), "y", where)
    _same_length(x.shape[3], c, "x's channels", where)
    _same_shape((cv.shape[0], cv.shape[1]), (z.shape[0] * z.shape[1] * z.shape[2], kh * kw * c),
                "cols", where)
    return kh, kw, c, f


def conv2d_forward(float[:, :, :, ::1] z,          # OUT (N, OH, OW, F) pre-activation
                   float[:, :, :, ::1] y,          # OUT (N, OH, OW, F) act(z); may be z
                   float[:, ::1] cols,             # -   (N*OH*OW, KH*KW*C): not used any more
                   const float[:, :, :, ::1] x,    # IN  (N, H, W, C)
                   const float[:, :, :, ::1] kernel,   # IN (KH, KW, C, F)
                   bias,                           # IN  (F,) or None
                   strides, padding, int act, float alpha):
    """z = conv(x, kernel) + bias, y = act(z): the direct kernel for tiny kernels, else the
    implicit GEMM (csrc/conv_gemm.c), which reads the windows straight from x.  cols is
    checked for its shape but neither read nor written (the cuda backend's im2col uses the
    plan's buffer; csrc/pynn.h)."""
    cdef str where = "conv2d_forward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl
    if act < PYNN_ACT_LINEAR or act >= PYNN_ACT_COUNT:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _conv_shapes(x, kernel, z, y, cols, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    cdef const float *pb = _optional_channels(bias, f, "bias", where)
    cdef float *pz = _data4(z)
    cdef float *py = _data4(y)
    cdef float *pc = _data(cols)
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef int status
    with nogil:
        status = pynn_conv2d_forward(pz, py, pc, px, pw, pb, x.shape[0], x.shape[1], x.shape[2],
                                     c, kh, kw, sh, sw, pt, pl, z.shape[1], z.shape[2], f, act,
                                     alpha)
    _check(status, where)


def conv2d_backward_work(x_shape, kernel_shape, strides, out_hw):
    """Floats of the `work` array conv2d_backward needs for these shapes (>= 1)."""
    cdef int64_t n = x_shape[0], h = x_shape[1], w = x_shape[2], c = x_shape[3]
    cdef int64_t size = pynn_conv2d_backward_work(n, h, w, c, kernel_shape[0], kernel_shape[1],
                                                  strides[0], strides[1], out_hw[0], out_hw[1],
                                                  kernel_shape[3])
    if size < 0 or kernel_shape[2] != c:
        raise ValueError(f"conv2d_backward_work: invalid shapes x={tuple(x_shape)}, "
                         f"kernel={tuple(kernel_shape)}, strides={tuple(strides)}, "
                         f"out_hw={tuple(out_hw)}")
    return size


def conv2d_backward(dw, db, dx,                      # OUT (KH,KW,C,F), (F,), (N,H,W,C); each may be None
                    float[:, :, :, ::1] dy,          # IN/OUT (N, OH, OW, F): overwritten with dz
                    float[:, ::1] cols,              # -   not used any more (see conv2d_forward)
                    float[::1] work,                 # WORK  conv2d_backward_work(...) floats
                    const float[:, :, :, ::1] x,     # IN  (N, H, W, C)
                    const float[:, :, :, ::1] kernel,    # IN (KH, KW, C, F)
                    const float[:, :, :, ::1] z,     # IN  (N, OH, OW, F)
                    const float[:, :, :, ::1] y,     # IN  (N, OH, OW, F)
                    strides, padding, int act, float alpha):
    """Backward of conv2d_forward with its operands: dz into dy, then dw (None: a frozen
    layer), db and dx; nothing allocated (the partial sums live in `work`)."""
    cdef str where = "conv2d_backward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl
    cdef float[:, :, :, ::1] dw_view, dx_view
    cdef float[::1] db_view
    cdef float *pdw = NULL
    cdef float *pdb = NULL
    cdef float *pdx = NULL
    if act < PYNN_ACT_LINEAR or act >= PYNN_ACT_COUNT:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _conv_shapes(x, kernel, z, y, cols, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    _same_shape(_shape4(dy), _shape4(z), "dy", where)
    cdef int64_t need = pynn_conv2d_backward_work(x.shape[0], x.shape[1], x.shape[2], c, kh, kw,
                                                  sh, sw, z.shape[1], z.shape[2], f)
    if work.shape[0] < need:
        raise ValueError(f"{where}: expected work of at least {need} floats "
                         f"(conv2d_backward_work), received {work.shape[0]}")
    if dw is not None:
        dw_view = dw
        _same_shape(_shape4(dw_view), (kh, kw, c, f), "dw", where)
        pdw = _data4(dw_view)
    if db is not None:
        db_view = db
        _same_length(db_view.shape[0], f, "db", where)
        pdb = _data1(db_view)
    if dx is not None:
        dx_view = dx
        _same_shape(_shape4(dx_view), _shape4(x), "dx", where)
        pdx = _data4(dx_view)
    cdef float *pdy = _data4(dy)
    cdef float *pc = _data(cols)
    cdef float *pwork = &work[0]
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef const float *pz = _cdata4(z)
    cdef const float *py = _cdata4(y)
    cdef int status
    with nogil:
        status = pynn_conv2d_backward(pdw, pdb, pdx, pdy, pc, pwork, work.shape[0], px, pw, pz,
                                      py, x.shape[0], x.shape[1], x.shape[2], c, kh, kw, sh, sw,
                                      pt, pl, z.shape[1], z.shape[2], f, act, alpha)
    _check(status, where)


# ---- batch normalization in inference form, differentiated ---------------------------

def batchnorm_infer_backward(dx, dgamma, dbeta,            # OUT (rows, C), (C,), (C,); each may be None
                             const float[:, ::1] x,        # IN  (rows, C)
                             gamma,                        # IN  (C,) or None
                             const float[::1] moving_mean,      # IN (C,)
                             const float[::1] moving_variance,  # IN (C,)
                             const float[:, ::1] dy,       # IN  (rows, C)
                             float epsilon):
    """The backward of batchnorm_forward_infer (the statistics are constants)."""
    cdef str where = "batchnorm_infer_backward"
    cdef Py_ssize_t cols = x.shape[1]
    cdef float[:, ::1] dx_view
    cdef float[::1] dg_view, db_view
    cdef float *pdx = NULL
    cdef float *pdg = NULL
    cdef float *pdb = NULL
    _same_shape(_shape2(dy), _shape2(x), "dy", where)
    _same_length(moving_mean.shape[0], cols, "moving_mean", where)
    _same_length(moving_variance.shape[0], cols, "moving_variance", where)
    if dx is not None:
        dx_view = dx
        _same_shape(_shape2(dx_view), _shape2(x), "dx", where)
        pdx = _data(dx_view)
    if dgamma is not None:
        dg_view = dgamma
        _same_length(dg_view.shape[0], cols, "dgamma", where)
        pdg = _data1(dg_view)
    if dbeta is not None:
        db_view = dbeta
        _same_length(db_view.shape[0], cols, "dbeta", where)
        pdb = _data1(db_view)
    cdef const float *g = _optional_channels(gamma, cols, "gamma", where)
    cdef const float *px = _cdata(x)
    cdef const float *pmm = _cdata1(moving_mean)
    cdef const float *pmv = _cdata1(moving_variance)
    cdef const float *pdy = _cdata(dy)
    cdef int status
    with nogil:
        status = pynn_batchnorm_infer_backward(pdx, pdg, pdb, px, g, pmm, pmv, pdy, x.shape[0],
                                               cols, epsilon)
    _check(status, where)


# ---- dropout: counter-based masks ------------------------------------------------------

def dropout_forward(y,                # OUT x's shape; may be x
                    mask,             # OUT x's shape
                    x,                # IN  (rows, ...) float32
                    broadcast,        # IN  one bool per axis of x, batch first: noise shape 1
                    seed, counter,    # IN  integers (taken mod 2^64)
                    double rate):
    """Inverted dropout with the uniforms of (seed, counter) (csrc/pynn.h, "randomness"):
    mask = 0 where u < rate, else 1 / (1 - rate); y = x * mask."""
    cdef str where = "dropout_forward"
    cdef int64_t n, ndim
    cdef Py_ssize_t a
    if not isinstance(x, _np.ndarray) or x.ndim < 1:
        raise ValueError(f"{where}: expected x to be an array with a batch axis")
    ndim = x.ndim - 1
    if len(broadcast) != x.ndim:
        raise ValueError(f"{where}: expected one broadcast flag per axis of x ({x.ndim}), "
                         f"received {len(broadcast)}")
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"{where}: expected 0 <= rate < 1, received rate={rate}")
    cdef const float *px = _f32_ptr(x, "x", where, &n, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    cdef float *pm = _f32_same(mask, x, "mask", where, True)
    cdef int64_t[::1] dims = _np.array(list(x.shape[1:]) + [0], dtype=_np.int64)
    cdef int64_t[::1] flags = _np.array([1 if b else 0 for b in broadcast], dtype=_np.int64)
    cdef uint64_t s = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    cdef uint64_t ctr = <uint64_t>(int(counter) & 0xFFFFFFFFFFFFFFFF)
    cdef int64_t rows = x.shape[0]
    cdef int status
    with nogil:
        status = pynn_dropout_forward(py, pm, px, rows, &dims[0], &flags[0], ndim, s, ctr, rate)
    _check(status, where)
