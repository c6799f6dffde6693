# activations (engineer A): Keras's ReLU(max_value, negative_slope, threshold), softmax over
# any axis, PReLU -- csrc/act_layers.c.  Arrays are flat (the caller reshapes with
# ravel(), which is a view of a C-contiguous array).

cdef extern from "pynn.h" nogil:
    int pynn_relu_forward(float *y, const float *x, int64_t n, float negative_slope,
                          float threshold, float max_value)
    int pynn_relu_backward(float *dx, const float *x, const float *dy, int64_t n,
                           float negative_slope, float threshold, float max_value)
    int pynn_softmax_axis_forward(float *y, const float *x, int64_t outer, int64_t len,
                                  int64_t inner)
    int pynn_softmax_axis_backward(float *dx, const float *y, const float *dy, int64_t outer,
                                   int64_t len, int64_t inner)
    int pynn_softmax_axis_masked_forward(float *y, const float *x, const float *mask,
                                         int64_t outer, int64_t len, int64_t inner)
    int pynn_prelu_forward(float *y, const float *x, const float *alpha, int64_t rows,
                           int64_t rank, const int64_t *dims, const int64_t *shared)
    int pynn_prelu_backward(float *dx, float *dalpha, const float *x, const float *alpha,
                            const float *dy, int64_t rows, int64_t rank, const int64_t *dims,
                            const int64_t *shared)


cdef int _same_size(Py_ssize_t got, Py_ssize_t want, str what, str where) except -1:
    if got != want:
        raise ValueError(f"{where}: expected {what} to hold {want} elements, received {got}")
    return 0


def relu_forward(float[::1] y,                 # OUT (n,); may be x
                 const float[::1] x,           # IN  (n,)
                 float negative_slope, float threshold, float max_value):
    """y = clip(x [x > threshold], 0, max_value) - negative_slope max(threshold - x, 0)."""
    _same_size(y.shape[0], x.shape[0], "y", "relu_forward")
    cdef float *py = _data1(y)
    cdef const float *px = _cdata1(x)
    cdef int64_t n = x.shape[0]
    cdef int status
    with nogil:
        status = pynn_relu_forward(py, px, n, negative_slope, threshold, max_value)
    _check(status, "relu_forward")


def relu_backward(float[::1] dx,               # OUT (n,); may be dy
                  const float[::1] x,          # IN  (n,) the forward's input
                  const float[::1] dy,         # IN  (n,)
                  float negative_slope, float threshold, float max_value):
    """dx = relu'(x) dy for relu_forward's ReLU."""
    _same_size(dx.shape[0], x.shape[0], "dx", "relu_backward")
    _same_size(dy.shape[0], x.shape[0], "dy", "relu_backward")
    cdef float *pdx = _data1(dx)
    cdef const float *px = _cdata1(x)
    cdef const float *pdy = _cdata1(dy)
    cdef int64_t n = x.shape[0]
    cdef int status
    with nogil:
        status = pynn_relu_backward(pdx, px, pdy, n, negative_slope, threshold, max_value)
    _check(status, "relu_backward")


def softmax_axis_forward(float[::1] y, const float[::1] x,
                         int64_t outer, int64_t length, int64_t inner, mask=None):
    """y = softmax of x (outer, length, inner) over its middle axis; y may be x.  mask
    (None, or as many floats as x): where it is <= 0.5, x counts as -1e9 and y is 0."""
    _same_size(x.shape[0], outer * length * inner, "x", "softmax_axis_forward")
    _same_size(y.shape[0], x.shape[0], "y", "softmax_axis_forward")
    cdef const float[::1] mask_view
    cdef const float *pm = NULL
    if mask is not None:
        mask_view = mask
        _same_size(mask_view.shape[0], x.shape[0], "mask", "softmax_axis_forward")
        pm = _cdata1(mask_view)
    cdef float *py = _data1(y)
    cdef const float *px = _cdata1(x)
    cdef int status
    with nogil:
        status = pynn_softmax_axis_masked_forward(py, px, pm, outer, length, inner)
    _check(status, "softmax_axis_forward")


def softmax_axis_backward(float[::1] dx, const float[::1] y, const float[::1] dy,
                          int64_t outer, int64_t length, int64_t inner):
    """dx = y (dy - sum_axis dy y); dx may be dy."""
    _same_size(y.shape[0], outer * length * inner, "y", "softmax_axis_backward")
    _same_size(dy.shape[0], y.shape[0], "dy", "softmax_axis_backward")
    _same_size(dx.shape[0], y.shape[0], "dx", "softmax_axis_backward")
    cdef float *pdx = _data1(dx)
    cdef const float *py = _cdata1(y)
    cdef const float *pdy = _cdata1(dy)
    cdef int status
    with nogil:
        status = pynn_softmax_axis_backward(pdx, py, pdy, outer, length, inner)
    _check(status, "softmax_axis_backward")


cdef tuple _prelu_geometry(dims, shared, Py_ssize_t n, Py_ssize_t na, str where):
    """(rows, dims, shared) as int64 arrays after checking them against the sizes."""
    import numpy as np
    d = np.ascontiguousarray(dims, dtype=np.int64)
    s = np.ascontiguousarray([1 if v else 0 for v in shared], dtype=np.int64)
    if d.ndim != 1 or d.shape[0] < 1 or d.shape[0] > 16 or s.shape[0] != d.shape[0] \
            or (d < 1).any():
        raise ValueError(f"{where}: expected dims (1 to 16 sizes >= 1) and shared of the "
                         f"same length, received dims={tuple(dims)}, shared={tuple(shared)}")
    per = int(np.prod(d))
    want_a = int(np.prod(d[s == 0]))
    if n % per:
        raise ValueError(f"{where}: expected x to hold a multiple of {per} elements, "
                         f"received {n}")
    _same_size(na, want_a, "alpha", where)
    return n // per, d, s


def prelu_forward(float[::1] y, const float[::1] x, const float[::1] alpha, dims, shared):
    """y = x > 0 ? x : alpha x, alpha broadcast over the rows and the shared axes."""
    rows, d, s = _prelu_geometry(dims, shared, x.shape[0], alpha.shape[0], "prelu_forward")
    _same_size(y.shape[0], x.shape[0], "y", "prelu_forward")
    cdef const int64_t[::1] dv = d
    cdef const int64_t[::1] sv = s
    cdef int64_t r = rows, rank = dv.shape[0]
    cdef float *py = _data1(y)
    cdef const float *px = _cdata1(x)
    cdef const float *pa = _cdata1(alpha)
    cdef const int64_t *pd = &dv[0]
    cdef const int64_t *ps = &sv[0]
    cdef int status
    with nogil:
        status = pynn_prelu_forward(py, px, pa, r, rank, pd, ps)
    _check(status, "prelu_forward")


def prelu_backward(dx, dalpha, const float[::1] x, const float[::1] alpha,
                   const float[::1] dy, dims, shared):
    """dalpha = sum over rows and shared positions of dy x [x < 0] unless dalpha is None;
    dx = dy (x > 0 ? 1 : alpha) unless dx is None (dx may be dy)."""
    rows, d, s = _prelu_geometry(dims, shared, x.shape[0], alpha.shape[0], "prelu_backward")
    cdef float[::1] da_view
    cdef float *pda = NULL
    if dalpha is not None:
        da_view = dalpha
        _same_size(da_view.shape[0], alpha.shape[0], "dalpha", "prelu_backward")
        pda = _data1(da_view)
    _same_size(dy.shape[0], x.shape[0], "dy", "prelu_backward")
    cdef float[::1] dx_view
    cdef float *pdx = NULL
    if dx is not None:
        dx_view = dx
        _same_size(dx_view.shape[0], x.shape[0], "dx", "prelu_backward")
        pdx = _data1(dx_view)
    cdef const int64_t[::1] dv = d
    cdef const int64_t[::1] sv = s
    cdef int64_t r = rows, rank = dv.shape[0]
    cdef const float *px = _cdata1(x)
    cdef const float *pa = _cdata1(alpha)
    cdef const float *pdy = _cdata1(dy)
    cdef const int64_t *pd = &dv[0]
    cdef const int64_t *ps = &sv[0]
    cdef int status
    with nogil:
        status = pynn_prelu_backward(pdx, pda, px, pa, pdy, r, rank, pd, ps)
    _check(status, "prelu_backward")
