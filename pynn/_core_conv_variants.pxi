# Wrappers of the convolution variants (engineer B, csrc/conv_variants.c): dilated and
# grouped convolution (Conv2D's dilation_rate and groups, DepthwiseConv2D, SeparableConv2D's
# depthwise half) and the batched transpose (Permute, channels_first).  Textually included
# by _core.pyx.

cdef extern from "pynn.h" nogil:
    int PYNN_TRANSPOSE_MAX_DIMS
    int pynn_conv2d_general_forward(float *z, float *y, const float *x, const float *wgt,
                                    const float *bias, int64_t n, int64_t h, int64_t w,
                                    int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                    int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                                    int64_t f, int64_t dh, int64_t dw, int64_t groups, int act,
                                    float alpha)
    int64_t pynn_conv2d_general_work(int64_t n, int64_t c, int64_t kh, int64_t kw, int64_t f,
                                     int64_t groups)
    int pynn_conv2d_general_backward(float *dwgt, float *db, float *dx, float *dy, float *work,
                                     int64_t work_size, const float *x, const float *wgt,
                                     const float *z, const float *y, int64_t n, int64_t h,
                                     int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                                     int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh,
                                     int64_t ow, int64_t f, int64_t dh, int64_t dw,
                                     int64_t groups, int act, float alpha)
    int pynn_transpose(float *y, const float *x, int64_t rows, int64_t ndim,
                       const int64_t *dims, const int64_t *perm)


cdef tuple _general_shapes(const float[:, :, :, ::1] x, const float[:, :, :, ::1] kernel,
                           const float[:, :, :, ::1] z, const float[:, :, :, ::1] y,
                           int64_t groups, str where):
    """(kh, kw, c, f) of a grouped convolution, its shapes checked."""
    cdef int64_t kh = kernel.shape[0], kw = kernel.shape[1], f = kernel.shape[3]
    cdef int64_t c = x.shape[3]
    if groups < 1 or c % groups != 0 or f % groups != 0 or kernel.shape[2] * groups != c:
        raise ValueError(f"{where}: expected a kernel (kh, kw, c / groups, f) with groups "
                         f"dividing c and f, received x {_shape4(x)}, kernel "
                         f"{_shape4(kernel)}, groups={groups}")
    _same_shape(_shape4(z), (x.shape[0], z.shape[1], z.shape[2], f), "z", where)
    _same_shape(_shape4(y), _shape4(z), "y", where)
    return kh, kw, c, f


def conv2d_general_forward(float[:, :, :, ::1] z,          # OUT (N, OH, OW, F)
                           float[:, :, :, ::1] y,          # OUT (N, OH, OW, F); may be z
                           const float[:, :, :, ::1] x,    # IN  (N, H, W, C)
                           const float[:, :, :, ::1] kernel,   # IN (KH, KW, C/groups, F)
                           bias, strides, padding, dilation, int64_t groups, int act,
                           float alpha):
    """z = the dilated, grouped convolution of x + bias, y = act(z)."""
    cdef str where = "conv2d_general_forward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl, dh, dw
    if act < PYNN_ACT_LINEAR or act > PYNN_ACT_GELU:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _general_shapes(x, kernel, z, y, groups, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    dh, dw = dilation
    cdef const float *pb = _optional_channels(bias, f, "bias", where)
    cdef float *pz = _data4(z)
    cdef float *py = _data4(y)
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef int status
    with nogil:
        status = pynn_conv2d_general_forward(pz, py, px, pw, pb, x.shape[0], x.shape[1],
                                             x.shape[2], c, kh, kw, sh, sw, pt, pl, z.shape[1],
                                             z.shape[2], f, dh, dw, groups, act, alpha)
    _check(status, where)


def conv2d_general_work(x_shape, kernel_shape, int64_t groups):
    """Floats of the `work` array conv2d_general_backward needs for these shapes."""
    cdef int64_t size = pynn_conv2d_general_work(x_shape[0], x_shape[3], kernel_shape[0],
                                                 kernel_shape[1], kernel_shape[3], groups)
    if size < 0:
        raise ValueError(f"conv2d_general_work: invalid shapes x={tuple(x_shape)}, "
                         f"kernel={tuple(kernel_shape)}, groups={groups}")
    return size


def conv2d_general_backward(dw, db, dx,                     # OUT (KH,KW,C/g,F), (F,), (N,H,W,C); may be None
                            float[:, :, :, ::1] dy,         # IN/OUT (N, OH, OW, F): overwritten with dz
                            float[::1] work,                # WORK conv2d_general_work(...) floats
                            const float[:, :, :, ::1] x,
                            const float[:, :, :, ::1] kernel,
                            const float[:, :, :, ::1] z,
                            const float[:, :, :, ::1] y,
                            strides, padding, dilation, int64_t groups, int act, float alpha):
    """Backward of conv2d_general_forward: dz into dy, then dw, db and dx."""
    cdef str where = "conv2d_general_backward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl, dh, dwd
    cdef float[:, :, :, ::1] dw_view, dx_view
    cdef float[::1] db_view
    cdef float *pdw = NULL
    cdef float *pdb = NULL
    cdef float *pdx = NULL
    if act < PYNN_ACT_LINEAR or act > PYNN_ACT_GELU:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _general_shapes(x, kernel, z, y, groups, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    dh, dwd = dilation
    _same_shape(_shape4(dy), _shape4(z), "dy", where)
    if dw is not None:
        dw_view = dw
        _same_shape(_shape4(dw_view), _shape4(kernel), "dw", where)
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
    cdef float *pwork = _data1(work)
    cdef int64_t nwork = work.shape[0]
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef const float *pz = _cdata4(z)
    cdef const float *py = _cdata4(y)
    cdef int status
    with nogil:
        status = pynn_conv2d_general_backward(pdw, pdb, pdx, pdy, pwork, nwork, px, pw, pz, py,
                                              x.shape[0], x.shape[1], x.shape[2], c, kh, kw, sh,
                                              sw, pt, pl, z.shape[1], z.shape[2], f, dh, dwd,
                                              groups, act, alpha)
    _check(status, where)


def transpose(y, x, perm):
    """y = x with its non-batch axes permuted: y.shape = (x.shape[0],) + the permuted
    x.shape[1:]; perm a permutation of range(x.ndim - 1)."""
    cdef str where = "transpose"
    cdef float[::1] yv = y.reshape(-1)
    cdef const float[::1] xv = x.reshape(-1)
    cdef int64_t dims[8]
    cdef int64_t p[8]
    cdef int64_t ndim = x.ndim - 1, k, rows = x.shape[0]
    if ndim < 1 or ndim > PYNN_TRANSPOSE_MAX_DIMS or sorted(perm) != list(range(ndim)):
        raise ValueError(f"{where}: expected perm to be a permutation of the {ndim} "
                         f"non-batch axes, received {tuple(perm)}")
    expect = (rows,) + tuple(x.shape[1 + perm[k]] for k in range(ndim))
    if tuple(y.shape) != expect:
        raise ValueError(f"{where}: expected y of shape {expect}, received {tuple(y.shape)}")
    for k in range(ndim):
        dims[k] = x.shape[1 + k]
        p[k] = perm[k]
    cdef float *py = _data1(yv)
    cdef const float *px = _cdata1(xv)
    cdef int status
    with nogil:
        status = pynn_transpose(py, px, rows, ndim, dims, p)
    _check(status, where)
