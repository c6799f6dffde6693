# ---- transposed convolution, upsampling, padding, cropping (csrc/upsampling.c) ----------
# Images are (N, H, W, C) C-contiguous float32 arrays; the typed memoryviews refuse
# anything else, and every shape is checked here before C sees a pointer.

cdef extern from "pynn.h" nogil:
    int64_t pynn_conv2d_transpose_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t oh, int64_t ow, int64_t f)
    int pynn_conv2d_transpose_forward(float *z, float *y, float *work, int64_t work_size,
                                      const float *x, const float *wgt, const float *bias,
                                      int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                      int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                      int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                                      int act, float alpha)
    int pynn_conv2d_transpose_backward(float *dw, float *db, float *dx, float *dy, float *work,
                                       int64_t work_size, const float *x, const float *wgt,
                                       const float *z, const float *y, int64_t n, int64_t h,
                                       int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                                       int64_t sw, int64_t pad_top, int64_t pad_left,
                                       int64_t oh, int64_t ow, int64_t f, int act, float alpha)
    int pynn_upsample2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                                 int64_t c, int64_t fh, int64_t fw, int interp)
    int pynn_pad_crop(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                      int64_t oh, int64_t ow, int64_t top, int64_t left)
    int pynn_kernel_dilate(float *dst, const float *src, int64_t kh, int64_t kw, int64_t cols,
                           int64_t dh, int64_t dw, int inverse)


def conv2d_transpose_work(x_shape, kernel_shape, out_hw):
    """Floats of the `work` array conv2d_transpose_forward/backward need (>= 1)."""
    cdef int64_t n = x_shape[0], h = x_shape[1], w = x_shape[2], c = x_shape[3]
    cdef int64_t size = pynn_conv2d_transpose_work(n, h, w, c, kernel_shape[0],
                                                   kernel_shape[1], out_hw[0], out_hw[1],
                                                   kernel_shape[2])
    if size < 0 or kernel_shape[3] != c:
        raise ValueError(f"conv2d_transpose_work: invalid shapes x={tuple(x_shape)}, "
                         f"kernel={tuple(kernel_shape)}, out_hw={tuple(out_hw)}")
    return size


cdef tuple _convt_shapes(const float[:, :, :, ::1] x, const float[:, :, :, ::1] kernel,
                         const float[:, :, :, ::1] z, const float[:, :, :, ::1] y,
                         float[::1] work, str where):
    """(kh, kw, c, f) after checking x (N,H,W,C), kernel (KH,KW,F,C), z, y (N,OH,OW,F)."""
    cdef int64_t kh = kernel.shape[0], kw = kernel.shape[1], f = kernel.shape[2]
    cdef int64_t c = x.shape[3]
    if kernel.shape[3] != c:
        raise ValueError(f"{where}: expected the kernel (KH, KW, F, C) to have C={c} (the "
                         f"input's channels), received kernel shape {_shape4(kernel)}")
    _same_shape(_shape4(z), (x.shape[0], z.shape[1], z.shape[2], f), "z", where)
    _same_shape(_shape4(y), _shape4(z), "y", where)
    cdef int64_t need = pynn_conv2d_transpose_work(x.shape[0], x.shape[1], x.shape[2], c, kh,
                                                   kw, z.shape[1], z.shape[2], f)
    if need < 0 or work.shape[0] < need:
        raise ValueError(f"{where}: expected work of at least {need} floats "
                         f"(conv2d_transpose_work), received {work.shape[0]}")
    return kh, kw, c, f


def conv2d_transpose_forward(float[:, :, :, ::1] z,       # OUT (N, OH, OW, F)
                             float[:, :, :, ::1] y,       # OUT (N, OH, OW, F); may be z
                             float[::1] work,             # WORK conv2d_transpose_work floats
                             const float[:, :, :, ::1] x,       # IN (N, H, W, C)
                             const float[:, :, :, ::1] kernel,  # IN (KH, KW, F, C)
                             bias,                        # IN (F,) or None
                             strides, padding, int act, float alpha):
    """z = conv_transpose(x, kernel) + bias, y = act(z) (csrc/pynn.h)."""
    cdef str where = "conv2d_transpose_forward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl
    cdef const float[::1] b_view
    cdef const float *pb = NULL
    if act < PYNN_ACT_LINEAR or act > PYNN_ACT_GELU:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _convt_shapes(x, kernel, z, y, work, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    if bias is not None:
        b_view = bias
        _same_length(b_view.shape[0], f, "bias", where)
        pb = _cdata1(b_view)
    cdef float *pz = _data4(z)
    cdef float *py = _data4(y)
    cdef float *pwork = &work[0]
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef int status
    with nogil:
        status = pynn_conv2d_transpose_forward(pz, py, pwork, work.shape[0], px, pw, pb,
                                               x.shape[0], x.shape[1], x.shape[2], c, kh, kw,
                                               sh, sw, pt, pl, z.shape[1], z.shape[2], f, act,
                                               alpha)
    _check(status, where)


def conv2d_transpose_backward(dw, db, dx,                  # OUT (KH,KW,F,C), (F,), (N,H,W,C); each may be None
                              float[:, :, :, ::1] dy,      # IN/OUT (N, OH, OW, F): overwritten with dz
                              float[::1] work,             # WORK conv2d_transpose_work floats
                              const float[:, :, :, ::1] x,       # IN (N, H, W, C)
                              const float[:, :, :, ::1] kernel,  # IN (KH, KW, F, C)
                              const float[:, :, :, ::1] z,       # IN (N, OH, OW, F)
                              const float[:, :, :, ::1] y,       # IN (N, OH, OW, F)
                              strides, padding, int act, float alpha):
    """Backward of conv2d_transpose_forward: dz into dy, then db, dw and dx."""
    cdef str where = "conv2d_transpose_backward"
    cdef int64_t kh, kw, c, f, sh, sw, pt, pl
    cdef float[:, :, :, ::1] dw_view, dx_view
    cdef float[::1] db_view
    cdef float *pdw = NULL
    cdef float *pdb = NULL
    cdef float *pdx = NULL
    if act < PYNN_ACT_LINEAR or act > PYNN_ACT_GELU:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    kh, kw, c, f = _convt_shapes(x, kernel, z, y, work, where)
    _, _, sh, sw, pt, pl = _geometry((kh, kw), strides, padding, where)
    _same_shape(_shape4(dy), _shape4(z), "dy", where)
    if dw is not None:
        dw_view = dw
        _same_shape(_shape4(dw_view), (kh, kw, f, c), "dw", where)
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
    cdef float *pwork = &work[0]
    cdef const float *px = _cdata4(x)
    cdef const float *pw = _cdata4(kernel)
    cdef const float *pz = _cdata4(z)
    cdef const float *py = _cdata4(y)
    cdef int status
    with nogil:
        status = pynn_conv2d_transpose_backward(pdw, pdb, pdx, pdy, pwork, work.shape[0], px,
                                                pw, pz, py, x.shape[0], x.shape[1], x.shape[2],
                                                c, kh, kw, sh, sw, pt, pl, z.shape[1],
                                                z.shape[2], f, act, alpha)
    _check(status, where)


def upsample2d_backward(float[:, :, :, ::1] dx,          # OUT (N, H, W, C)
                        const float[:, :, :, ::1] dy,    # IN  (N, H*fh, W*fw, C)
                        size, str interpolation):
    """dx = the adjoint of the upsampling by `size` (nearest or bilinear) applied to dy."""
    cdef str where = "upsample2d_backward"
    cdef int interp = _choice(INTERPOLATIONS, interpolation, "interpolation", where)
    cdef int64_t fh = size[0], fw = size[1]
    if fh < 1 or fw < 1:
        raise ValueError(f"{where}: expected size of positive integers, received {tuple(size)}")
    _same_shape(_shape4(dy), (dx.shape[0], dx.shape[1] * fh, dx.shape[2] * fw, dx.shape[3]),
                "dy", where)
    cdef float *pdx = _data4(dx)
    cdef const float *pdy = _cdata4(dy)
    cdef int status
    with nogil:
        status = pynn_upsample2d_backward(pdx, pdy, dx.shape[0], dx.shape[1], dx.shape[2],
                                          dx.shape[3], fh, fw, interp)
    _check(status, where)


def pad_crop(float[:, :, :, ::1] y,            # OUT (N, OH, OW, C)
             const float[:, :, :, ::1] x,      # IN  (N, H, W, C)
             int64_t top, int64_t left):
    """y[:, i, j] = x[:, i - top, j - left] where inside x, else 0."""
    cdef str where = "pad_crop"
    if y.shape[0] != x.shape[0] or y.shape[3] != x.shape[3]:
        raise ValueError(f"{where}: expected y (N, OH, OW, C) for x {_shape4(x)}, received "
                         f"{_shape4(y)}")
    cdef float *py = _data4(y)
    cdef const float *px = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_pad_crop(py, px, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                               y.shape[1], y.shape[2], top, left)
    _check(status, where)


def kernel_dilate(float[:, :, :, ::1] dst,          # OUT (KH', KW', F, C) or (KH, KW, F, C)
                  const float[:, :, :, ::1] src,    # IN  the other
                  dilation, bint inverse):
    """inverse False: dst = src with dilation - 1 zeros between its taps; True: the taps of
    the dilated src gathered back."""
    cdef str where = "kernel_dilate"
    cdef int64_t dh = dilation[0], dw = dilation[1]
    if dh < 1 or dw < 1:
        raise ValueError(f"{where}: expected a dilation of positive integers, received "
                         f"{tuple(dilation)}")
    small = dst if inverse else src
    cdef const float[:, :, :, ::1] s4 = small
    cdef int64_t kh = s4.shape[0], kw = s4.shape[1], cols = s4.shape[2] * s4.shape[3]
    wide = (kh if kh < 1 else (kh - 1) * dh + 1, kw if kw < 1 else (kw - 1) * dw + 1,
            s4.shape[2], s4.shape[3])
    _same_shape(_shape4(src) if inverse else _shape4(dst), wide, "src" if inverse else "dst",
                where)
    if (_shape4(dst) if inverse else _shape4(src)) != (kh, kw, s4.shape[2], s4.shape[3]):
        raise ValueError(f"{where}: mismatched shapes")
    cdef float *pd = _data4(dst)
    cdef const float *ps = _cdata4(src)
    cdef int status
    cdef int inv = 1 if inverse else 0
    with nogil:
        status = pynn_kernel_dilate(pd, ps, kh, kw, cols, dh, dw, inv)
    _check(status, where)
