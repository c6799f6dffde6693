# ---- engineer D (#16): the sequence ops (csrc/seq1d.c): global max pooling, the masked
# mean over steps, RepeatVector.  x is viewed as (N, S, C): S steps (or H*W positions) of
# C channels.  -----------------------------------------------------------------------------

cdef extern from "pynn.h" nogil:
    int pynn_global_maxpool_forward(float *y, const float *x, int64_t n, int64_t s, int64_t c)
    int pynn_global_maxpool_backward(float *dx, const float *x, const float *dy, int64_t n,
                                     int64_t s, int64_t c)
    int pynn_masked_mean_forward(float *y, const float *x, const float *mask, int64_t n,
                                 int64_t s, int64_t c)
    int pynn_masked_mean_backward(float *dx, const float *dy, const float *mask, int64_t n,
                                  int64_t s, int64_t c)
    int pynn_repeat_vector_forward(float *y, const float *x, int64_t n, int64_t times, int64_t f)
    int pynn_repeat_vector_backward(float *dx, const float *dy, int64_t n, int64_t times,
                                    int64_t f)


cdef inline float *_data3(float[:, :, ::1] a) noexcept:
    return &a[0, 0, 0] if a.shape[0] > 0 and a.shape[1] > 0 and a.shape[2] > 0 else NULL


cdef inline const float *_cdata3(const float[:, :, ::1] a) noexcept:
    return &a[0, 0, 0] if a.shape[0] > 0 and a.shape[1] > 0 and a.shape[2] > 0 else NULL


def global_maxpool_forward(float[:, ::1] y,                 # OUT (N, C)
                           const float[:, :, ::1] x):       # IN  (N, S, C)
    _same_shape((y.shape[0], y.shape[1]), (x.shape[0], x.shape[2]), "y",
                "global_maxpool_forward")
    cdef float *out = _data(y)
    cdef const float *inp = _cdata3(x)
    cdef int status
    with nogil:
        status = pynn_global_maxpool_forward(out, inp, x.shape[0], x.shape[1], x.shape[2])
    _check(status, "global_maxpool_forward")


def global_maxpool_backward(float[:, :, ::1] dx,            # OUT (N, S, C)
                            const float[:, :, ::1] x,       # IN  (N, S, C)
                            const float[:, ::1] dy):        # IN  (N, C)
    _same_shape((x.shape[0], x.shape[1], x.shape[2]), (dx.shape[0], dx.shape[1], dx.shape[2]), "x",
                "global_maxpool_backward")
    _same_shape((dy.shape[0], dy.shape[1]), (dx.shape[0], dx.shape[2]), "dy",
                "global_maxpool_backward")
    cdef float *out = _data3(dx)
    cdef const float *inp = _cdata3(x)
    cdef const float *grad = _cdata(dy)
    cdef int status
    with nogil:
        status = pynn_global_maxpool_backward(out, inp, grad, dx.shape[0], dx.shape[1],
                                              dx.shape[2])
    _check(status, "global_maxpool_backward")


def masked_mean_forward(float[:, ::1] y,                    # OUT (N, C)
                        const float[:, :, ::1] x,           # IN  (N, S, C)
                        const float[:, ::1] mask):          # IN  (N, S): 1.0 or 0.0
    _same_shape((y.shape[0], y.shape[1]), (x.shape[0], x.shape[2]), "y", "masked_mean_forward")
    _same_shape((mask.shape[0], mask.shape[1]), (x.shape[0], x.shape[1]), "mask",
                "masked_mean_forward")
    cdef float *out = _data(y)
    cdef const float *inp = _cdata3(x)
    cdef const float *m = _cdata(mask)
    cdef int status
    with nogil:
        status = pynn_masked_mean_forward(out, inp, m, x.shape[0], x.shape[1], x.shape[2])
    _check(status, "masked_mean_forward")


def masked_mean_backward(float[:, :, ::1] dx,               # OUT (N, S, C)
                         const float[:, ::1] dy,            # IN  (N, C)
                         const float[:, ::1] mask):         # IN  (N, S)
    _same_shape((dy.shape[0], dy.shape[1]), (dx.shape[0], dx.shape[2]), "dy",
                "masked_mean_backward")
    _same_shape((mask.shape[0], mask.shape[1]), (dx.shape[0], dx.shape[1]), "mask",
                "masked_mean_backward")
    cdef float *out = _data3(dx)
    cdef const float *grad = _cdata(dy)
    cdef const float *m = _cdata(mask)
    cdef int status
    with nogil:
        status = pynn_masked_mean_backward(out, grad, m, dx.shape[0], dx.shape[1], dx.shape[2])
    _check(status, "masked_mean_backward")


def repeat_vector_forward(float[:, :, ::1] y,               # OUT (N, times, F)
                          const float[:, ::1] x):           # IN  (N, F)
    _same_shape((y.shape[0], y.shape[2]), (x.shape[0], x.shape[1]), "y",
                "repeat_vector_forward")
    cdef float *out = _data3(y)
    cdef const float *inp = _cdata(x)
    cdef int status
    with nogil:
        status = pynn_repeat_vector_forward(out, inp, y.shape[0], y.shape[1], y.shape[2])
    _check(status, "repeat_vector_forward")


def repeat_vector_backward(float[:, ::1] dx,                # OUT (N, F)
                           const float[:, :, ::1] dy):      # IN  (N, times, F)
    _same_shape((dy.shape[0], dy.shape[2]), (dx.shape[0], dx.shape[1]), "dy",
                "repeat_vector_backward")
    cdef float *out = _data(dx)
    cdef const float *grad = _cdata3(dy)
    cdef int status
    with nogil:
        status = pynn_repeat_vector_backward(out, grad, dy.shape[0], dy.shape[1], dy.shape[2])
    _check(status, "repeat_vector_backward")
