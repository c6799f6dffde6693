# ---- pixel preprocessing (csrc/pixel.c): Rescaling, Normalization, RandomContrast,
# RandomBrightness.  Arrays are C-contiguous float32; x is viewed as (outer, c, inner) or
# as n images of (h*w, c).  -------------------------------------------------------------

cdef const float *_channels_ptr(object a, int64_t c, str what, str where) except? NULL:
    """A float32 array of c values, or NULL for None."""
    cdef int64_t n
    if a is None:
        return NULL
    cdef const float *p = _f32_ptr(a, what, where, &n, False)
    if n != c:
        raise ValueError(f"{where}: expected {what} of {c} values, received {n}")
    return p


cdef inline uint64_t _u64(object value):
    return <uint64_t>(int(value) & 0xFFFFFFFFFFFFFFFF)


def channel_affine(y, x, scale, offset, int64_t c, int64_t inner):
    """y = x * scale[k] + offset[k], x viewed as (outer, c, inner); offset may be None."""
    cdef str where = "channel_affine"
    cdef int64_t n, ny
    cdef const float *px = _f32_ptr(x, "x", where, &n, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    if c < 1 or inner < 1 or n % (c * inner) != 0:
        raise ValueError(f"{where}: {n} values do not split into rows of c={c} x inner={inner}")
    cdef const float *ps = _channels_ptr(scale, c, "scale", where)
    cdef const float *po = _channels_ptr(offset, c, "offset", where)
    if ps == NULL:
        raise ValueError(f"{where}: scale is required")
    cdef int status
    with nogil:
        status = pynn_channel_affine(py, px, ps, po, n // (c * inner), c, inner)
    _check(status, where)


def normalize(y, x, mean, variance, int64_t c, int64_t inner, bint invert, float epsilon):
    """Keras's Normalization: (x - mean) / max(sqrt(variance), epsilon), or with invert
    mean + x * max(...); mean None acts as 0 (the backward)."""
    cdef str where = "normalize"
    cdef int64_t n
    cdef const float *px = _f32_ptr(x, "x", where, &n, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    if c < 1 or inner < 1 or n % (c * inner) != 0:
        raise ValueError(f"{where}: {n} values do not split into rows of c={c} x inner={inner}")
    cdef const float *pm = _channels_ptr(mean, c, "mean", where)
    cdef const float *pv = _channels_ptr(variance, c, "variance", where)
    if pv == NULL:
        raise ValueError(f"{where}: variance is required")
    cdef int status
    cdef int inv = 1 if invert else 0
    with nogil:
        status = pynn_normalize(py, px, pm, pv, n // (c * inner), c, inner, inv, epsilon)
    _check(status, where)


def _image_geometry(x, str where):
    if not isinstance(x, _np.ndarray) or x.ndim != 4:
        raise ValueError(f"{where}: expected x as images (N, H, W, C)")
    return x.shape[0], x.shape[1] * x.shape[2], x.shape[3]


def random_contrast(y, factors, x, seed, counter, double lower, double upper, float vmin,
                    float vmax):
    """Keras 3's RandomContrast in training on images x (N, H, W, C); factors (N,) out."""
    cdef str where = "random_contrast"
    cdef int64_t n, hw, c, nx, nf
    n, hw, c = _image_geometry(x, where)
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    cdef float *pf = _f32_ptr(factors, "factors", where, &nf, True)
    if nf != n:
        raise ValueError(f"{where}: expected factors of {n} values, received {nf}")
    cdef uint64_t s = _u64(seed), ctr = _u64(counter)
    cdef int status
    with nogil:
        status = pynn_random_contrast(py, pf, px, n, hw, c, s, ctr, lower, upper, vmin, vmax)
    _check(status, where)


def random_contrast_backward(dx, x, factors, dy, float vmin, float vmax):
    """The backward of random_contrast from its x and factors; dx may be dy."""
    cdef str where = "random_contrast_backward"
    cdef int64_t n, hw, c, nx, nf
    n, hw, c = _image_geometry(x, where)
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef const float *pdy = _f32_same(dy, x, "dy", where, False)
    cdef float *pdx = _f32_same(dx, x, "dx", where, True)
    cdef const float *pf = _f32_ptr(factors, "factors", where, &nf, False)
    if nf != n:
        raise ValueError(f"{where}: expected factors of {n} values, received {nf}")
    cdef int status
    with nogil:
        status = pynn_random_contrast_backward(pdx, px, pf, pdy, n, hw, c, vmin, vmax)
    _check(status, where)


def random_brightness(y, mask, x, seed, counter, double lower, double upper, float vmin,
                      float vmax):
    """Keras 3's RandomBrightness in training on x (N, ...): one delta per row (image);
    mask (x's shape, or None) = 1 where the value was not clipped."""
    cdef str where = "random_brightness"
    cdef int64_t nx
    if not isinstance(x, _np.ndarray) or x.ndim < 1:
        raise ValueError(f"{where}: expected x to be an array with a batch axis")
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    cdef float *pm = NULL
    if mask is not None:
        pm = _f32_same(mask, x, "mask", where, True)
    cdef int64_t n = x.shape[0]
    cdef int64_t per = nx // n if n > 0 else 0
    cdef uint64_t s = _u64(seed), ctr = _u64(counter)
    cdef int status
    with nogil:
        status = pynn_random_brightness(py, pm, px, n, per, s, ctr, lower, upper, vmin, vmax)
    _check(status, where)
