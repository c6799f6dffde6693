# Wrappers of the non-GEMM kernels: bias gradients, activations, losses, optimizers.
# Textually included by _core.pyx, which declares the C functions and `_check`.
#
# Each wrapper checks that every array has the shape the C function assumes
# (dtype and C-contiguity are enforced by the typed memoryviews), releases the GIL
# around the C call and turns its status into an exception.  Outputs come first,
# as in csrc/pynn.h; the caller allocates them.  Empty arrays are fine: with
# boundscheck off, `&a[0]` is just the base pointer and the C kernel reads nothing.


cdef inline tuple _shape2(const float[:, ::1] a):
    return (a.shape[0], a.shape[1])


cdef inline void _same_length(Py_ssize_t received, Py_ssize_t expected, str what,
                              str where) except *:
    if received != expected:
        raise ValueError(f"{where}: expected {what} of shape ({expected},), "
                         f"received shape ({received},)")


# ---- bias ----------------------------------------------------------------------

def bias_grad(float[::1] db,              # OUT (cols,)
              const float[:, ::1] dz):    # IN  (rows, cols)
    """db = column sums of dz (thread-count independent)."""
    _same_length(db.shape[0], dz.shape[1], "db", "bias_grad")
    cdef int status
    with nogil:
        status = pynn_bias_grad(&db[0], &dz[0, 0], dz.shape[0], dz.shape[1])
    _check(status, "bias_grad")


# ---- activations ---------------------------------------------------------------

def activation_forward(float[:, ::1] y,          # OUT (rows, cols); may be x
                       const float[:, ::1] x,    # IN  (rows, cols)
                       int act, float alpha=0.2):
    """y = act(x) for an ACT_* id; alpha is leaky_relu's negative slope."""
    _same_shape(_shape2(y), _shape2(x), "y", "activation_forward")
    cdef int status
    with nogil:
        status = pynn_activation_forward(&y[0, 0], &x[0, 0], x.shape[0], x.shape[1],
                                         act, alpha)
    _check(status, "activation_forward")


def activation_backward(float[:, ::1] dx,         # OUT (rows, cols); may be dy
                        const float[:, ::1] x,    # IN  pre-activation
                        const float[:, ::1] y,    # IN  act(x)
                        const float[:, ::1] dy,   # IN  upstream gradient
                        int act, float alpha=0.2):
    """dx = act'(x) dy."""
    cdef tuple shape = _shape2(x)
    _same_shape(_shape2(y), shape, "y", "activation_backward")
    _same_shape(_shape2(dy), shape, "dy", "activation_backward")
    _same_shape(_shape2(dx), shape, "dx", "activation_backward")
    cdef int status
    with nogil:
        status = pynn_activation_backward(&dx[0, 0], &x[0, 0], &y[0, 0], &dy[0, 0],
                                          x.shape[0], x.shape[1], act, alpha)
    _check(status, "activation_backward")


def activation_backward_bias_grad(float[:, ::1] dz,         # OUT (rows, cols); may be dy
                                  float[::1] db,            # OUT (cols,)
                                  const float[:, ::1] z,    # IN  pre-activation
                                  const float[:, ::1] y,    # IN  act(z)
                                  const float[:, ::1] dy,   # IN  upstream gradient
                                  int act, float alpha=0.2):
    """dz = act'(z) dy and db = column sums of dz, in one pass."""
    cdef tuple shape = _shape2(z)
    _same_shape(_shape2(y), shape, "y", "activation_backward_bias_grad")
    _same_shape(_shape2(dy), shape, "dy", "activation_backward_bias_grad")
    _same_shape(_shape2(dz), shape, "dz", "activation_backward_bias_grad")
    _same_length(db.shape[0], z.shape[1], "db", "activation_backward_bias_grad")
    cdef int status
    with nogil:
        status = pynn_activation_backward_bias_grad(&dz[0, 0], &db[0], &z[0, 0], &y[0, 0], &dy[0, 0],
                                                    z.shape[0], z.shape[1], act, alpha)
    _check(status, "activation_backward_bias_grad")


# ---- losses --------------------------------------------------------------------

cdef int _loss_options(pynn_loss_options *opt, int64_t rows, float param, weights,
                       float label_smoothing, bint has_ignore, int64_t ignore_class,
                       bint reduce_sum, str where) except -1:
    """Fill *opt; weights: None or a 1-D float32 array (kept alive by the caller) whose
    length divides rows (each weight serves rows / len(weights) consecutive rows)."""
    cdef const float[::1] w
    opt.param = param
    opt.reduce_sum = reduce_sum
    opt.label_smoothing = label_smoothing
    opt.has_ignore = has_ignore
    opt.ignore_class = ignore_class
    opt.weights = NULL
    opt.per_weight = 1
    if weights is not None:
        w = weights
        if w.shape[0] < 1 or rows % w.shape[0] != 0:
            raise ValueError(f"{where}: expected weights of a length dividing the {rows} "
                             f"rows, received {w.shape[0]} weights")
        opt.weights = &w[0]
        opt.per_weight = rows // w.shape[0]
    return 0


def loss(grad,                            # OUT None or (rows, cols) float32
         const float[:, ::1] pred,        # IN  (rows, cols)
         const float[:, ::1] target,      # IN  (rows, cols)
         int kind, bint from_logits, float param=1.0, weights=None,
         float label_smoothing=0.0, bint reduce_sum=False):
    """sum_i w_i l_i / rows of the per-sample LOSS_* loss (w_i = 1 without weights); writes
    d loss / d pred into grad.  param: Huber's delta (ignored by the other kinds); weights:
    None or float32 (k,), k dividing rows, row i weighing weights[i // (rows // k)];
    label_smoothing: BCE and CCE; reduce_sum: Keras's "sum", sum_i w_i l_i (not divided by
    the rows) and its gradient (pynn_loss_options)."""
    cdef tuple shape = _shape2(pred)
    _same_shape(_shape2(target), shape, "target", "loss")
    cdef float[:, ::1] grad_view
    cdef float *grad_ptr = NULL
    if grad is not None:
        grad_view = grad
        _same_shape(_shape2(grad_view), shape, "grad", "loss")
        grad_ptr = &grad_view[0, 0]
    cdef pynn_loss_options opt
    _loss_options(&opt, pred.shape[0], param, weights, label_smoothing, False, 0, reduce_sum,
                  "loss")
    cdef double value = 0.0
    cdef int status
    with nogil:
        status = pynn_loss(grad_ptr, &value, &pred[0, 0], &target[0, 0],
                           pred.shape[0], pred.shape[1], kind, from_logits, &opt)
    _check(status, "loss")
    return value


def sparse_cce(grad,                      # OUT None or (rows, cols) float32
               const float[:, ::1] pred,  # IN  (rows, cols)
               const int64_t[::1] labels, # IN  (rows,) in [0, cols) or ignore_class
               bint from_logits, weights=None, float label_smoothing=0.0,
               ignore_class=None, bint reduce_sum=False):
    """Sparse categorical cross-entropy; labels out of range (other than ignore_class)
    raise ValueError.  weights, label_smoothing, reduce_sum as `loss`; ignore_class: None or
    an int, rows of that label count for nothing (the mean is over the others; with
    reduce_sum they add nothing and nothing is rescaled)."""
    cdef tuple shape = _shape2(pred)
    _same_length(labels.shape[0], pred.shape[0], "labels", "sparse_cce")
    cdef float[:, ::1] grad_view
    cdef float *grad_ptr = NULL
    if grad is not None:
        grad_view = grad
        _same_shape(_shape2(grad_view), shape, "grad", "sparse_cce")
        grad_ptr = &grad_view[0, 0]
    cdef pynn_loss_options opt
    _loss_options(&opt, pred.shape[0], 1.0, weights, label_smoothing, ignore_class is not None,
                  0 if ignore_class is None else ignore_class, reduce_sum, "sparse_cce")
    cdef double value = 0.0
    cdef int status
    with nogil:
        status = pynn_sparse_cce(grad_ptr, &value, &pred[0, 0], &labels[0],
                                 pred.shape[0], pred.shape[1], from_logits, &opt)
    _check(status, "sparse_cce")
    return value


# ---- optimizers ------------------------------------------------------------------
# The 1-D views are arr.reshape(-1) of contiguous parameter arrays.

def sgd_update(float[::1] w,              # IN/OUT parameters (n,)
               m,                         # IN/OUT momentum (n,), None if momentum == 0
               const float[::1] g,        # IN     gradient (n,)
               float lr, float momentum, bint nesterov):
    cdef Py_ssize_t n = w.shape[0]
    _same_length(g.shape[0], n, "g", "sgd_update")
    if m is None and momentum != 0.0:
        raise ValueError(f"sgd_update: expected a momentum array m when momentum != 0, "
                         f"received m=None with momentum={momentum}")
    cdef float[::1] m_view
    cdef float *m_ptr = NULL
    if m is not None:
        m_view = m
        _same_length(m_view.shape[0], n, "m", "sgd_update")
        m_ptr = &m_view[0]
    cdef int status
    with nogil:
        status = pynn_sgd_update(&w[0], m_ptr, &g[0], n, lr, momentum, nesterov)
    _check(status, "sgd_update")


def adam_update(float[::1] w,             # IN/OUT parameters (n,)
                float[::1] m,             # IN/OUT first moment (n,)
                float[::1] v,             # IN/OUT second moment (n,)
                const float[::1] g,       # IN     gradient (n,)
                float lr_t, float beta1, float beta2, float epsilon):
    """One Adam step; lr_t already holds the bias correction (reference.adam_lr_t)."""
    cdef Py_ssize_t n = w.shape[0]
    _same_length(m.shape[0], n, "m", "adam_update")
    _same_length(v.shape[0], n, "v", "adam_update")
    _same_length(g.shape[0], n, "g", "adam_update")
    cdef int status
    with nogil:
        status = pynn_adam_update(&w[0], &m[0], &v[0], &g[0], n, lr_t, beta1, beta2,
                                  epsilon)
    _check(status, "adam_update")


def rmsprop_update(float[::1] w,          # IN/OUT parameters (n,)
                   float[::1] v,          # IN/OUT mean square (n,)
                   mom,                   # IN/OUT momentum (n,), None if momentum == 0
                   const float[::1] g,    # IN     gradient (n,)
                   float lr, float rho, float momentum, float epsilon):
    cdef Py_ssize_t n = w.shape[0]
    _same_length(v.shape[0], n, "v", "rmsprop_update")
    _same_length(g.shape[0], n, "g", "rmsprop_update")
    if mom is None and momentum != 0.0:
        raise ValueError(f"rmsprop_update: expected a momentum array mom when momentum != 0, "
                         f"received mom=None with momentum={momentum}")
    cdef float[::1] mom_view
    cdef float *mom_ptr = NULL
    if mom is not None:
        mom_view = mom
        _same_length(mom_view.shape[0], n, "mom", "rmsprop_update")
        mom_ptr = &mom_view[0]
    cdef int status
    with nogil:
        status = pynn_rmsprop_update(&w[0], &v[0], mom_ptr, &g[0], n, lr, rho, momentum,
                                     epsilon)
    _check(status, "rmsprop_update")


# ---- helpers for arrays of any shape -----------------------------------------------

import numpy as _np
from cpython.mem cimport PyMem_Malloc, PyMem_Free


cdef float *_f32_ptr(object a, str what, str where, int64_t *n, bint out) except? NULL:
    """The data pointer and size of a C-contiguous float32 array of any shape (writeable
    when it is an output); NULL for an empty one."""
    cdef const float[::1] view
    if not isinstance(a, _np.ndarray) or a.dtype != _np.float32 or not a.flags.c_contiguous:
        raise ValueError(f"{where}: expected {what} to be a C-contiguous float32 array, "
                         f"received {type(a).__name__}"
                         f"{' of dtype ' + str(a.dtype) if isinstance(a, _np.ndarray) else ''}")
    if out and not a.flags.writeable:
        raise ValueError(f"{where}: {what} is an output and must be writeable")
    view = a.reshape(-1)
    n[0] = view.shape[0]
    return <float *>&view[0] if view.shape[0] > 0 else NULL


cdef float *_f32_same(object a, object like, str what, str where, bint out) except? NULL:
    """_f32_ptr for an array that must have the shape of `like`."""
    cdef int64_t n
    cdef float *p = _f32_ptr(a, what, where, &n, out)
    if a.shape != like.shape:
        raise ValueError(f"{where}: expected {what} of shape {like.shape}, received shape {a.shape}")
    return p


# ---- layer-level kernels --------------------------------------------------------------

def dense_backward(dw, db, dx,                  # OUT (in, out), (out,), (m, in); each may be None
                   float[:, ::1] dy,            # IN/OUT (m, out): overwritten with dz
                   const float[:, ::1] x,       # IN  (m, in) the forward's input
                   const float[:, ::1] w,       # IN  (in, out) kernel
                   const float[:, ::1] z,       # IN  (m, out) pre-activation
                   const float[:, ::1] y,       # IN  (m, out) act(z); may be z
                   int act, float alpha=0.2):
    """dy <- dz = act'(z) dy; db = column sums of dz; dw = x^T dz; dx = dz w^T."""
    cdef str where = "dense_backward"
    cdef Py_ssize_t m = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef float[:, ::1] dw_view, dx_view
    cdef float[::1] db_view
    cdef float *pdw = NULL
    cdef float *pdb = NULL
    cdef float *pdx = NULL
    if act < PYNN_ACT_LINEAR or act >= PYNN_ACT_COUNT:
        raise ValueError(f"{where}: expected act to be one of pynn.ids.ACTIVATIONS' ids, received {act}")
    _same_shape(_shape2(w), (n_in, n_out), "w", where)
    for arr, what in ((dy, "dy"), (z, "z"), (y, "y")):
        _same_shape(_shape2(arr), (m, n_out), what, where)
    if dw is not None:
        dw_view = dw
        _same_shape(_shape2(dw_view), (n_in, n_out), "dw", where)
        pdw = _data(dw_view)
    if db is not None:
        db_view = db
        _same_length(db_view.shape[0], n_out, "db", where)
        pdb = &db_view[0] if n_out > 0 else NULL
    if dx is not None:
        dx_view = dx
        _same_shape(_shape2(dx_view), (m, n_in), "dx", where)
        pdx = _data(dx_view)
    cdef float *pdy = _data(dy)
    cdef const float *px = _cdata(x)
    cdef const float *pw = _cdata(w)
    cdef const float *pz = _cdata(z)
    cdef const float *py = _cdata(y)
    cdef int status
    with nogil:
        status = pynn_dense_backward(pdw, pdb, pdx, pdy, px, pw, pz, py, m, n_in, n_out, act,
                                     alpha)
    _check(status, where)


# ---- merges, concatenation, scaling ---------------------------------------------------

cdef const float **_pointer_list(list arrays, object like, str what, str where) except NULL:
    """A PyMem array of the data pointers of float32 arrays shaped like `like` (the caller
    frees it)."""
    cdef Py_ssize_t i, k = len(arrays)
    cdef const float **ptrs = <const float **>PyMem_Malloc(max(k, 1) * sizeof(float *))
    if ptrs == NULL:
        raise MemoryError()
    try:
        for i in range(k):
            ptrs[i] = _f32_same(arrays[i], like, f"{what}[{i}]", where, False)
    except BaseException:
        PyMem_Free(ptrs)
        raise
    return ptrs


cdef int _merge_kind(int kind, Py_ssize_t k, str where) except -1:
    if kind < 0 or kind >= len(ID_TABLES["merge"]):
        raise ValueError(f"{where}: expected kind to be one of pynn.ids.MERGES' ids, received {kind}")
    if k < 1 or (kind == ID_TABLES["merge"]["subtract"] and k != 2):
        raise ValueError(f"{where}: expected at least one input (exactly 2 for subtract), "
                         f"received {k}")
    return 0


def merge_forward(y,                 # OUT any shape; may be xs[0] (or xs[1] of two)
                  xs,                # IN  list of arrays of y's shape
                  int kind):
    """y = the merge (pynn.ids.MERGES) of xs, folded left to right."""
    cdef str where = "merge_forward"
    cdef list arrays = list(xs)
    cdef Py_ssize_t k = len(arrays)
    cdef int64_t n
    _merge_kind(kind, k, where)
    cdef float *py = _f32_ptr(y, "y", where, &n, True)
    cdef const float **ptrs = _pointer_list(arrays, y, "xs", where)
    cdef int status
    with nogil:
        status = pynn_merge_forward(py, ptrs, k, n, kind)
    PyMem_Free(ptrs)
    _check(status, where)


def merge_backward(dx,               # OUT xs[i]'s shape; may be dy
                   dy,               # IN  the merge's shape
                   xs,               # IN  the merge's inputs
                   int kind, Py_ssize_t i):
    """dx = d merge / d xs[i] applied to dy."""
    cdef str where = "merge_backward"
    cdef list arrays = list(xs)
    cdef Py_ssize_t k = len(arrays)
    cdef int64_t n
    _merge_kind(kind, k, where)
    if i < 0 or i >= k:
        raise ValueError(f"{where}: expected 0 <= i < {k}, received i={i}")
    cdef float *pdx = _f32_ptr(dx, "dx", where, &n, True)
    cdef const float *pdy = _f32_same(dy, dx, "dy", where, False)
    cdef const float **ptrs = _pointer_list(arrays, dx, "xs", where)
    cdef int status
    with nogil:
        status = pynn_merge_backward(pdx, pdy, ptrs, k, n, kind, i)
    PyMem_Free(ptrs)
    _check(status, where)


def concat(float[:, ::1] y,          # OUT (outer, sum of widths)
           xs):                      # IN  list of (outer, width_i) arrays
    """y = the 2-D arrays xs side by side (along the last axis)."""
    cdef str where = "concat"
    cdef list arrays = list(xs)
    cdef Py_ssize_t j, k = len(arrays), total = 0
    cdef const float[:, ::1] view
    cdef float *py = _data(y)
    cdef int status
    if k < 1:
        raise ValueError(f"{where}: expected at least one input, received none")
    cdef int64_t[::1] widths = _np.empty(k, dtype=_np.int64)
    cdef const float **ptrs = <const float **>PyMem_Malloc(k * sizeof(float *))
    if ptrs == NULL:
        raise MemoryError()
    try:
        for j in range(k):
            view = arrays[j]
            _same_length(view.shape[0], y.shape[0], f"xs[{j}]'s rows", where)
            widths[j] = view.shape[1]
            total += view.shape[1]
            ptrs[j] = _cdata(view)
        _same_shape(_shape2(y), (y.shape[0], total), "y", where)
        with nogil:
            status = pynn_concat(py, ptrs, &widths[0], k, y.shape[0])
    finally:
        PyMem_Free(ptrs)
    _check(status, where)


def concat_backward(dxs,                     # OUT list of (outer, widths[i]) arrays or None
                    const float[:, ::1] dy,  # IN  (outer, sum of widths)
                    widths):                 # IN  the inputs' widths
    """dxs[i] = the columns of dy that came from input i (None: not wanted)."""
    cdef str where = "concat_backward"
    cdef list arrays = list(dxs)
    cdef Py_ssize_t j, k = len(arrays), total = 0
    cdef float[:, ::1] view
    cdef const float *pdy = _cdata(dy)
    cdef int status
    if k < 1 or len(widths) != k:
        raise ValueError(f"{where}: expected one width per output (at least one), received "
                         f"{len(widths)} widths for {k} outputs")
    cdef int64_t[::1] w = _np.asarray(widths, dtype=_np.int64).copy()
    cdef float **ptrs = <float **>PyMem_Malloc(k * sizeof(float *))
    if ptrs == NULL:
        raise MemoryError()
    try:
        for j in range(k):
            if w[j] < 0:
                raise ValueError(f"{where}: expected non-negative widths, received {list(widths)}")
            total += w[j]
            ptrs[j] = NULL
            if arrays[j] is not None:
                view = arrays[j]
                _same_shape(_shape2(view), (dy.shape[0], w[j]), f"dxs[{j}]", where)
                ptrs[j] = _data(view)
        _same_shape(_shape2(dy), (dy.shape[0], total), "dy", where)
        with nogil:
            status = pynn_concat_backward(ptrs, pdy, &w[0], k, dy.shape[0])
    finally:
        PyMem_Free(ptrs)
    _check(status, where)


def scale(y,                # OUT any shape; may be x
          x,                # IN  y's shape
          float alpha):
    """y = alpha * x."""
    cdef int64_t n
    cdef float *py = _f32_ptr(y, "y", "scale", &n, True)
    cdef const float *px = _f32_same(x, y, "x", "scale", False)
    cdef int status
    with nogil:
        status = pynn_scale(py, px, n, alpha)
    _check(status, "scale")


# ---- metrics and optimizer steps ------------------------------------------------------

cdef int _metric_operands(str where, const float[:, ::1] pred, target, weights,
                          int64_t per_weight, const float **pt, const int64_t **pl,
                          const float **pw) except -1:
    """The target (float rows or int64 labels) and weights pointers of a metric kernel, their
    shapes checked against pred's (weights: ceil(rows / per_weight) floats)."""
    cdef const float[:, ::1] t
    cdef const int64_t[::1] labels
    cdef const float[::1] w
    cdef int64_t rows = pred.shape[0]
    if pred.shape[1] < 1:
        raise ValueError(f"{where}: expected pred with at least one column, received {_shape2(pred)}")
    if isinstance(target, _np.ndarray) and target.ndim == 1:
        labels = target
        _same_length(labels.shape[0], rows, "labels", where)
        pl[0] = &labels[0] if labels.shape[0] > 0 else NULL
    else:
        t = target
        _same_shape(_shape2(t), _shape2(pred), "target", where)
        pt[0] = _cdata(t)
    if per_weight < 1:
        raise ValueError(f"{where}: expected per_weight >= 1, received {per_weight}")
    if weights is not None:
        w = weights
        _same_length(w.shape[0], (rows + per_weight - 1) // per_weight, "weights", where)
        pw[0] = &w[0] if w.shape[0] > 0 else NULL
    return 0


def metric_sum(const float[:, ::1] pred,    # IN (rows, cols)
               target,                      # IN (rows, cols) float32, or (rows,) int64 labels
               int kind, int64_t k=5, float threshold=0.5,
               weights=None,                # IN None, or (ceil(rows / per_weight),) float32
               int64_t per_weight=1):
    """The sum over the rows of metric `kind`'s (pynn.ids.METRICS) per-row value, row i
    weighted by weights[i // per_weight] (k: the top-k accuracies'; threshold: binary
    accuracy's and the confusion counts')."""
    cdef str where = "metric_sum"
    cdef const float *pt = NULL
    cdef const int64_t *pl = NULL
    cdef const float *pw = NULL
    cdef const float *pp = _cdata(pred)
    cdef double value = 0.0
    cdef int status
    if kind < 0 or kind >= len(ID_TABLES["metric"]):
        raise ValueError(f"{where}: expected kind to be one of pynn.ids.METRICS' ids, received {kind}")
    _metric_operands(where, pred, target, weights, per_weight, &pt, &pl, &pw)
    with nogil:
        status = pynn_metric_sum(&value, pp, pt, pl, pred.shape[0], pred.shape[1], kind, k,
                                 threshold, pw, per_weight)
    _check(status, where)
    return value


def metric_confusion(const float[:, ::1] pred,    # IN (rows, cols)
                     target,                      # IN (rows, cols) float32, or (rows,) int64
                     const float[::1] thresholds,  # IN (n,) float32, n >= 1
                     weights=None, int64_t per_weight=1):
    """The (4, n) float64 confusion counts (true positives, false positives, true negatives,
    false negatives) of every entry of pred at each threshold (pred > threshold is predicted
    positive), row i weighted by weights[i // per_weight]."""
    cdef str where = "metric_confusion"
    cdef const float *pt = NULL
    cdef const int64_t *pl = NULL
    cdef const float *pw = NULL
    cdef const float *pp = _cdata(pred)
    cdef int64_t n = thresholds.shape[0]
    cdef int status
    if n < 1:
        raise ValueError(f"{where}: expected at least one threshold, received none")
    _metric_operands(where, pred, target, weights, per_weight, &pt, &pl, &pw)
    out = _np.zeros((4, n), dtype=_np.float64)
    cdef double[:, ::1] c = out
    with nogil:
        status = pynn_metric_confusion(&c[0, 0], pp, pt, pl, pred.shape[0], pred.shape[1],
                                       &thresholds[0], n, pw, per_weight)
    _check(status, where)
    return out


HYPER_INDEX = {"learning_rate": PYNN_HYPER_LEARNING_RATE, "momentum": PYNN_HYPER_MOMENTUM,
               "nesterov": PYNN_HYPER_NESTEROV, "beta_1": PYNN_HYPER_BETA_1,
               "beta_2": PYNN_HYPER_BETA_2, "rho": PYNN_HYPER_RHO, "epsilon": PYNN_HYPER_EPSILON,
               "weight_decay": PYNN_HYPER_WEIGHT_DECAY, "amsgrad": PYNN_HYPER_AMSGRAD}
"""Where each setting sits in pynn_optimizer_step's hyper array (pynn.ids.HYPER is this
order; tests/test_kernels.py checks that they agree)."""
OPT_SLOTS = PYNN_OPT_SLOTS
"""How many state arrays pynn_optimizer_step takes."""


def nadam_factors(double beta_1, double beta_2, int64_t step):
    """Nadam's step scalars (c_m, c_g, 1 - beta_2^step) in double (pynn_nadam_factors)."""
    cdef double out[3]
    if step < 1:
        raise ValueError(f"nadam_factors: expected step >= 1, received step={step}")
    pynn_nadam_factors(out, beta_1, beta_2, step)
    return out[0], out[1], out[2]


SCHEDULE_MAX_BOUNDARIES = PYNN_SCHEDULE_MAX_BOUNDARIES
"""The most boundaries a PiecewiseConstantDecay may have."""
SCHEDULE_PARAMS = PYNN_SCHEDULE_PARAMS
"""How many parameters pynn_schedule_lr reads (unused ones are 0)."""
OPT_REALS = PYNN_OPT_REALS
"""The reals of an OP_OPTIMIZER that carries a schedule block."""


def schedule_lr(int kind, params, int64_t iteration):
    """The learning rate of schedule `kind` (pynn.ids.SCHEDULES) with `params` (a sequence of
    SCHEDULE_PARAMS numbers) at `iteration` >= 0, in double (pynn_schedule_lr): what the
    optimizer op of a plan computes in C, bit for bit."""
    cdef double p[64]
    cdef Py_ssize_t j
    if len(params) != PYNN_SCHEDULE_PARAMS:
        raise ValueError(f"schedule_lr: expected {PYNN_SCHEDULE_PARAMS} params, received "
                         f"{len(params)}")
    if iteration < 0:
        raise ValueError(f"schedule_lr: expected iteration >= 0, received {iteration}")
    if kind <= 0 or kind >= pynn_id_count(PYNN_TABLE_SCHEDULE):
        raise ValueError(f"schedule_lr: unknown schedule kind {kind}")
    for j in range(PYNN_SCHEDULE_PARAMS):
        p[j] = params[j]
    return pynn_schedule_lr(kind, p, iteration)


OPT_REALS_OPTIONS = PYNN_OPT_REALS_OPTIONS
"""The reals of an OP_OPTIMIZER that carries a schedule block and an options block."""
OPTION_INDEX = {"clipnorm": PYNN_OPTION_CLIPNORM, "clipvalue": PYNN_OPTION_CLIPVALUE,
                "global_clipnorm": PYNN_OPTION_GLOBAL_CLIPNORM,
                "ema_momentum": PYNN_OPTION_EMA_MOMENTUM,
                "ema_overwrite_frequency": PYNN_OPTION_EMA_OVERWRITE_FREQUENCY}
"""Where each base-optimizer option sits in the options block (pynn.ids.OPTIONS is this
order)."""
SEGMENT_DECAY = PYNN_SEGMENT_DECAY
NORM_CHUNK = PYNN_NORM_CHUNK
"""Norms sum chunks of this many elements, each in order, the chunk sums in order."""


cdef int64_t[::1] _segments(object segments, str where):
    """Flat int64 triples (offset, size, flags) from a sequence of triples or a flat
    sequence."""
    arr = _np.ascontiguousarray(_np.asarray(segments if segments is not None else [],
                                            dtype=_np.int64).reshape(-1))
    if arr.shape[0] % 3:
        raise ValueError(f"{where}: expected segments as (offset, size, flags) triples, "
                         f"received {arr.shape[0]} numbers")
    if arr.shape[0] == 0:
        arr = _np.zeros(1, dtype=_np.int64)       # a pointer for the empty list
    return arr


def segment_sumsq(g, segments):
    """The sum of squares of each segment of the flat float32 array g in double, chunked
    as pynn_segment_sumsq does (no segments: one covering g)."""
    cdef str where = "segment_sumsq"
    cdef int64_t n
    cdef const float *pg = _f32_ptr(g, "g", where, &n, False)
    cdef int64_t[::1] seg = _segments(segments, where)
    cdef int64_t k = 0 if segments is None else _np.asarray(segments, dtype=_np.int64).size // 3
    out = _np.zeros(max(k, 1), dtype=_np.float64)
    cdef double[::1] po = out
    cdef int status
    with nogil:
        status = pynn_segment_sumsq(&po[0], pg, n, &seg[0], k)
    _check(status, where)
    return out


def optimizer_apply(w, slots, ema, g, int kind, int64_t step, hyper, options, segments):
    """One step as Keras 3's base optimizer makes it (pynn_optimizer_apply): g clipped in
    place by options (pynn.ids.OPTIONS order, None: none), weight decay on the segments
    (triples (offset, size, flags), None: one covering w) whose flag says so, the rule,
    then the EMA array ema (None: none)."""
    cdef str where = "optimizer_apply"
    cdef int64_t n, k
    cdef double h[16]
    cdef double opt[8]
    cdef float *p[8]
    cdef float *pe = NULL
    cdef const double *popt = NULL
    cdef Py_ssize_t j
    cdef int need, status
    if len(hyper) != PYNN_HYPER_COUNT:
        raise ValueError(f"{where}: expected {PYNN_HYPER_COUNT} settings (pynn.ids.HYPER), "
                         f"received {len(hyper)}")
    for j in range(PYNN_HYPER_COUNT):
        h[j] = hyper[j]
    if options is not None:
        if len(options) != PYNN_OPTION_COUNT:
            raise ValueError(f"{where}: expected {PYNN_OPTION_COUNT} options (pynn.ids.OPTIONS), "
                             f"received {len(options)}")
        for j in range(PYNN_OPTION_COUNT):
            opt[j] = options[j]
        popt = opt
    if kind < 0 or kind >= len(ID_TABLES["optimizer"]):
        raise ValueError(f"{where}: expected kind to be one of pynn.ids.OPTIMIZERS' ids, received {kind}")
    if step < 1:
        raise ValueError(f"{where}: expected step >= 1, received step={step}")
    slots = list(slots)
    if len(slots) > PYNN_OPT_SLOTS:
        raise ValueError(f"{where}: expected at most {PYNN_OPT_SLOTS} state arrays, received "
                         f"{len(slots)}")
    slots += [None] * (PYNN_OPT_SLOTS - len(slots))
    cdef float *pw = _f32_ptr(w, "w", where, &n, True)
    cdef float *pg = _f32_same(g, w, "g", where, True)
    for j in range(PYNN_OPT_SLOTS):
        p[j] = NULL if slots[j] is None else _f32_same(slots[j], w, f"slots[{j}]", where, True)
    if ema is not None:
        pe = _f32_same(ema, w, "ema", where, True)
    need = pynn_optimizer_slots(kind, h)
    for j in range(PYNN_OPT_SLOTS):
        if n > 0 and (need >> j) & 1 and p[j] == NULL:
            raise ValueError(f"{where}: this optimizer needs its state arrays, received "
                             f"slots={['None' if s is None else 'an array' for s in slots]}")
    cdef int64_t[::1] seg = _segments(segments, where)
    k = 0 if segments is None else _np.asarray(segments, dtype=_np.int64).size // 3
    with nogil:
        status = pynn_optimizer_apply(pw, p, pe, pg, n, &seg[0], k, kind, step, h,
                                      popt)
    _check(status, where)


def optimizer_step(w,              # IN/OUT parameters, any shape
                   slots,          # IN/OUT PYNN_OPT_SLOTS optimizer state arrays of w's
                                   #        shape (or fewer), None where the rule reads none
                   g,              # IN     gradient of w's shape
                   int kind, int64_t step,
                   hyper):         # IN     the settings, in pynn.ids.HYPER order
    """One update of w by optimizer `kind` (pynn.ids.OPTIMIZERS); step >= 1 the update being
    made (Adam's bias correction)."""
    cdef str where = "optimizer_step"
    cdef int64_t n
    cdef double h[16]
    cdef float *p[8]
    cdef Py_ssize_t j
    cdef int need
    if len(hyper) != PYNN_HYPER_COUNT:
        raise ValueError(f"{where}: expected {PYNN_HYPER_COUNT} settings (pynn.ids.HYPER), "
                         f"received {len(hyper)}")
    for j in range(PYNN_HYPER_COUNT):
        h[j] = hyper[j]
    if kind < 0 or kind >= len(ID_TABLES["optimizer"]):
        raise ValueError(f"{where}: expected kind to be one of pynn.ids.OPTIMIZERS' ids, received {kind}")
    if step < 1:
        raise ValueError(f"{where}: expected step >= 1, received step={step}")
    slots = list(slots)
    if len(slots) > PYNN_OPT_SLOTS:
        raise ValueError(f"{where}: expected at most {PYNN_OPT_SLOTS} state arrays, received "
                         f"{len(slots)}")
    slots += [None] * (PYNN_OPT_SLOTS - len(slots))
    cdef float *pw = _f32_ptr(w, "w", where, &n, True)
    cdef const float *pg = _f32_same(g, w, "g", where, False)
    for j in range(PYNN_OPT_SLOTS):
        p[j] = NULL if slots[j] is None else _f32_same(slots[j], w, f"slots[{j}]", where, True)
    need = pynn_optimizer_slots(kind, h)
    for j in range(PYNN_OPT_SLOTS):
        if n > 0 and (need >> j) & 1 and p[j] == NULL:
            raise ValueError(f"{where}: this optimizer needs its state arrays, received "
                             f"slots={['None' if s is None else 'an array' for s in slots]}")
    cdef int status
    with nogil:
        status = pynn_optimizer_step(pw, p, pg, n, kind, step, h)
    _check(status, where)
