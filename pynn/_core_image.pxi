# Wrappers of the geometric image kernels (csrc/image.c).  Textually included by _core.pyx,
# which declares the C functions.  Images are (N, H, W, C) C-contiguous float32 arrays;
# params (N, IMAGE_PARAMS) float32, one row per image (csrc/pynn.h).

IMAGE_PARAMS = PYNN_IMAGE_PARAMS
INTERPOLATIONS = {"bilinear": PYNN_INTERP_BILINEAR, "nearest": PYNN_INTERP_NEAREST}
FILL_MODES = {"reflect": PYNN_FILL_REFLECT, "wrap": PYNN_FILL_WRAP,
              "constant": PYNN_FILL_CONSTANT, "nearest": PYNN_FILL_NEAREST}
RANDOM_KINDS = {"rotation": PYNN_RANDOM_ROTATION, "zoom": PYNN_RANDOM_ZOOM,
                "translation": PYNN_RANDOM_TRANSLATION, "flip": PYNN_RANDOM_FLIP,
                "crop": PYNN_RANDOM_CROP}
RANDOM_REALS = PYNN_RANDOM_REALS


cdef const float *_params_or_null(params, int64_t n, str where) except? NULL:
    cdef const float[:, ::1] p
    if params is None:
        return NULL
    p = params
    if p.shape[0] != n or p.shape[1] != PYNN_IMAGE_PARAMS:
        raise ValueError(f"{where}: expected params of shape ({n}, {PYNN_IMAGE_PARAMS}), "
                         f"received {(p.shape[0], p.shape[1])}")
    return &p[0, 0] if n > 0 else NULL


cdef int _choice(table, value, str what, str where) except -1:
    if value not in table:
        raise ValueError(f"{where}: expected {what} in {tuple(table)}, received {value!r}")
    return table[value]


def affine_transform(float[:, :, :, ::1] y, const float[:, :, :, ::1] x, params,
                     str interpolation, str fill_mode, float fill_value):
    """y = x resampled through each image's inverse transform (pynn_affine_transform)."""
    cdef str where = "affine_transform"
    _same_shape(_shape4(y), _shape4(x), "y", where)
    cdef int interp = _choice(INTERPOLATIONS, interpolation, "interpolation", where)
    cdef int fill = _choice(FILL_MODES, fill_mode, "fill_mode", where)
    if params is None:
        raise ValueError(f"{where}: expected params, received None")
    cdef const float *pp = _params_or_null(params, x.shape[0], where)
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_affine_transform(out, inp, pp, x.shape[0], x.shape[1], x.shape[2],
                                       x.shape[3], interp, fill, fill_value)
    _check(status, where)


def resize(float[:, :, :, ::1] y, const float[:, :, :, ::1] x, window, str interpolation,
           float fill_value):
    """y = the window (top, left, height, width) of each image resized to y's size."""
    cdef str where = "resize"
    _same_shape((y.shape[0], y.shape[3]), (x.shape[0], x.shape[3]), "y's batch and channels",
                where)
    cdef int interp = _choice(INTERPOLATIONS, interpolation, "interpolation", where)
    cdef int64_t top = window[0], left = window[1], wh = window[2], ww = window[3]
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_resize(out, inp, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                             y.shape[1], y.shape[2], top, left, wh, ww, interp, fill_value)
    _check(status, where)


def flip(float[:, :, :, ::1] y, const float[:, :, :, ::1] x, params, bint horizontal,
         bint vertical):
    """y = x flipped (the images whose params say so; params None: every image)."""
    cdef str where = "flip"
    _same_shape(_shape4(y), _shape4(x), "y", where)
    cdef const float *pp = _params_or_null(params, x.shape[0], where)
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_flip(out, inp, pp, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                           horizontal, vertical)
    _check(status, where)


def crop(float[:, :, :, ::1] y, const float[:, :, :, ::1] x, params, int64_t top,
         int64_t left):
    """y = the (oh, ow) window of each image at (top, left), or at its params' offsets."""
    cdef str where = "crop"
    _same_shape((y.shape[0], y.shape[3]), (x.shape[0], x.shape[3]), "y's batch and channels",
                where)
    cdef const float *pp = _params_or_null(params, x.shape[0], where)
    cdef float *out = _data4(y)
    cdef const float *inp = _cdata4(x)
    cdef int status
    with nogil:
        status = pynn_crop(out, inp, pp, x.shape[0], x.shape[1], x.shape[2], x.shape[3],
                           y.shape[1], y.shape[2], top, left)
    _check(status, where)


def image_random(float[:, ::1] params, str kind, int64_t h, int64_t w, int64_t oh, int64_t ow,
                 ranges, seed, counter):
    """params (N, IMAGE_PARAMS) = the per-image parameters of `kind` (pynn_image_random)."""
    cdef str where = "image_random"
    cdef int k = _choice(RANDOM_KINDS, kind, "kind", where)
    if params.shape[1] != PYNN_IMAGE_PARAMS:
        raise ValueError(f"{where}: expected params with {PYNN_IMAGE_PARAMS} columns")
    cdef double r[8]
    cdef Py_ssize_t j
    vals = list(ranges)
    if len(vals) != PYNN_RANDOM_REALS:
        raise ValueError(f"{where}: expected {PYNN_RANDOM_REALS} ranges, received {len(vals)}")
    for j in range(PYNN_RANDOM_REALS):
        r[j] = float(vals[j])
    cdef uint64_t s = <uint64_t>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    cdef uint64_t ctr = <uint64_t>(int(counter) & 0xFFFFFFFFFFFFFFFF)
    cdef float *out = &params[0, 0] if params.shape[0] > 0 else NULL
    cdef int64_t n = params.shape[0]
    cdef int status
    with nogil:
        status = pynn_image_random(out, n, h, w, oh, ow, k, r, s, ctr)
    _check(status, where)
