# Embedding and Masking kernels (csrc/embedding.c; engineer G, issue #16).
# Textually included by _core.pyx, which defines `_check`.

cdef extern from "pynn.h" nogil:
    int PYNN_EINDEX
    int pynn_embedding_forward(float *y, float *mask, const float *ids, const float *table,
                               int64_t n, int64_t V, int64_t D)
    int pynn_embedding_backward(float *dtable, int64_t *work, const float *ids,
                                const float *dy, int64_t n, int64_t V, int64_t D)
    int pynn_embedding_grad_clear(float *dtable, const int64_t *work, int64_t n, int64_t V,
                                  int64_t D)
    int pynn_embedding_sgd(float *table, float *dtable, const int64_t *work, int64_t n,
                           int64_t V, int64_t D, float lr, int apply)
    int pynn_optimizer_sparse_ok(int kind, const double *hyper, const double *options,
                                 int has_ema)
    int PYNN_SEGMENT_SPARSE
    int pynn_masking_forward(float *y, float *mask, const float *x, int64_t rows, int64_t D,
                             float mask_value)
    int pynn_masking_backward(float *dx, const float *dy, const float *mask, int64_t rows,
                              int64_t D)

EINDEX = PYNN_EINDEX
SEGMENT_SPARSE = PYNN_SEGMENT_SPARSE
"""The optimizer segment flag of an Embedding table updated sparsely (pynn_embedding_sgd)."""


def embedding_forward(float[:, ::1] y,            # OUT (n, D)
                      mask,                       # OUT (n,) float32, or None
                      const float[::1] ids,       # IN  (n,) integers in [0, V) as float32
                      const float[:, ::1] table):  # IN  (V, D)
    """y = table[ids]; mask = ids != 0 (when given).  An id outside [0, V) or not an
    integer raises KernelInputError and writes nothing."""
    cdef int64_t n = ids.shape[0], V = table.shape[0], D = table.shape[1]
    _same_shape((y.shape[0], y.shape[1]), (n, D), "y", "embedding_forward")
    cdef float[::1] m
    cdef float *mp = NULL
    if mask is not None:
        m = mask
        _same_length(m.shape[0], n, "mask", "embedding_forward")
        if n > 0:
            mp = &m[0]
    cdef int status
    with nogil:
        status = pynn_embedding_forward(&y[0, 0] if n > 0 else NULL, mp,
                                        &ids[0] if n > 0 else NULL, &table[0, 0], n, V, D)
    _check(status, "embedding_forward")


def embedding_backward(float[:, ::1] dtable,      # OUT (V, D): the rows of ids written
                       int64_t[::1] work,         # scratch (2 n,), keeps the sorted keys
                       const float[::1] ids,      # IN  (n,)
                       const float[:, ::1] dy):   # IN  (n, D)
    """dtable[r] = sum of dy[i] over the ids[i] == r, in position order, for each r seen;
    the other rows are left as they are."""
    cdef int64_t n = ids.shape[0], V = dtable.shape[0], D = dtable.shape[1]
    _same_shape((dy.shape[0], dy.shape[1]), (n, D), "dy", "embedding_backward")
    if work.shape[0] < 2 * n:
        raise ValueError(f"embedding_backward: expected work of at least {2 * n} elements, "
                         f"received {work.shape[0]}")
    cdef int status
    with nogil:
        status = pynn_embedding_backward(&dtable[0, 0], &work[0] if n > 0 else NULL,
                                         &ids[0] if n > 0 else NULL,
                                         &dy[0, 0] if n > 0 else NULL, n, V, D)
    _check(status, "embedding_backward")


def embedding_grad_clear(float[:, ::1] dtable,    # OUT (V, D)
                         const int64_t[::1] work,  # IN  what embedding_backward left
                         int64_t n, bint whole=False):
    """Zero the rows embedding_backward wrote (its n sorted keys in work); whole: every
    row."""
    cdef int status
    if whole:
        with nogil:
            status = pynn_embedding_grad_clear(&dtable[0, 0], NULL, 0, dtable.shape[0],
                                               dtable.shape[1])
        _check(status, "embedding_grad_clear")
        return
    if n < 0 or work.shape[0] < 2 * n:
        raise ValueError(f"embedding_grad_clear: expected work of at least 2 n = {2 * n} "
                         f"elements, received {work.shape[0]}")
    with nogil:
        status = pynn_embedding_grad_clear(&dtable[0, 0], &work[0] if n > 0 else NULL, n,
                                           dtable.shape[0], dtable.shape[1])
    _check(status, "embedding_grad_clear")


def masking_forward(float[:, ::1] y,              # OUT (rows, D)
                    mask,                         # OUT (rows,) float32, or None
                    const float[:, ::1] x,        # IN  (rows, D)
                    float mask_value):
    """mask[r] = any(x[r] != mask_value); y[r] = x[r] * mask[r]."""
    cdef int64_t rows = x.shape[0], D = x.shape[1]
    _same_shape((y.shape[0], y.shape[1]), (rows, D), "y", "masking_forward")
    cdef float[::1] m
    cdef float *mp = NULL
    if mask is not None:
        m = mask
        _same_length(m.shape[0], rows, "mask", "masking_forward")
        if rows > 0:
            mp = &m[0]
    cdef int status
    with nogil:
        status = pynn_masking_forward(&y[0, 0] if rows > 0 else NULL, mp,
                                      &x[0, 0] if rows > 0 else NULL, rows, D, mask_value)
    _check(status, "masking_forward")


def masking_backward(float[:, ::1] dx,            # OUT (rows, D); may be dy
                     const float[:, ::1] dy,      # IN  (rows, D)
                     const float[::1] mask):      # IN  (rows,)
    """dx[r] = dy[r] * mask[r]."""
    cdef int64_t rows = dy.shape[0], D = dy.shape[1]
    _same_shape((dx.shape[0], dx.shape[1]), (rows, D), "dx", "masking_backward")
    _same_length(mask.shape[0], rows, "mask", "masking_backward")
    cdef int status
    with nogil:
        status = pynn_masking_backward(&dx[0, 0] if rows > 0 else NULL,
                                       &dy[0, 0] if rows > 0 else NULL,
                                       &mask[0] if rows > 0 else NULL, rows, D)
    _check(status, "masking_backward")


def embedding_sgd(float[:, ::1] table,           # IN/OUT (V, D): the rows seen updated
                  float[:, ::1] dtable,          # IN/OUT (V, D): the rows seen zeroed
                  const int64_t[::1] work,       # IN  what embedding_backward left
                  int64_t n, float lr, bint apply):
    """Plain SGD on the rows seen only (apply), then those gradient rows zeroed
    (pynn_embedding_sgd)."""
    cdef int status
    _same_shape((table.shape[0], table.shape[1]), (dtable.shape[0], dtable.shape[1]), "table",
                "embedding_sgd")
    if n < 0 or work.shape[0] < 2 * n:
        raise ValueError(f"embedding_sgd: expected work of at least 2 n = {2 * n} "
                         f"elements, received {work.shape[0]}")
    with nogil:
        status = pynn_embedding_sgd(&table[0, 0], &dtable[0, 0], &work[0] if n > 0 else NULL,
                                    n, table.shape[0], table.shape[1], lr, apply)
    _check(status, "embedding_sgd")


def optimizer_sparse_ok(int kind, hyper, options, bint has_ema):
    """pynn_optimizer_sparse_ok: 1 when a step with these settings is plain SGD."""
    cdef double h[16]
    cdef double opt[8]
    cdef Py_ssize_t j
    if len(hyper) != PYNN_HYPER_COUNT or len(options) != PYNN_OPTION_COUNT:
        raise ValueError("optimizer_sparse_ok: expected pynn.ids.HYPER and pynn.ids.OPTIONS")
    for j in range(PYNN_HYPER_COUNT):
        h[j] = hyper[j]
    for j in range(PYNN_OPTION_COUNT):
        opt[j] = options[j]
    return bool(pynn_optimizer_sparse_ok(kind, h, opt, has_ema))
