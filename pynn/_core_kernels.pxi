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

def loss(grad,                            # OUT None or (rows, cols) float32
         const float[:, ::1] pred,        # IN  (rows, cols)
         const float[:, ::1] target,      # IN  (rows, cols)
         int kind, bint from_logits):
    """Mean over rows of the per-sample LOSS_* loss; writes d loss / d pred into grad."""
    cdef tuple shape = _shape2(pred)
    _same_shape(_shape2(target), shape, "target", "loss")
    cdef float[:, ::1] grad_view
    cdef float *grad_ptr = NULL
    if grad is not None:
        grad_view = grad
        _same_shape(_shape2(grad_view), shape, "grad", "loss")
        grad_ptr = &grad_view[0, 0]
    cdef double value = 0.0
    cdef int status
    with nogil:
        status = pynn_loss(grad_ptr, &value, &pred[0, 0], &target[0, 0],
                           pred.shape[0], pred.shape[1], kind, from_logits)
    _check(status, "loss")
    return value


def sparse_cce(grad,                      # OUT None or (rows, cols) float32
               const float[:, ::1] pred,  # IN  (rows, cols)
               const int64_t[::1] labels, # IN  (rows,) in [0, cols)
               bint from_logits):
    """Sparse categorical cross-entropy; labels out of range raise ValueError."""
    cdef tuple shape = _shape2(pred)
    _same_length(labels.shape[0], pred.shape[0], "labels", "sparse_cce")
    cdef float[:, ::1] grad_view
    cdef float *grad_ptr = NULL
    if grad is not None:
        grad_view = grad
        _same_shape(_shape2(grad_view), shape, "grad", "sparse_cce")
        grad_ptr = &grad_view[0, 0]
    cdef double value = 0.0
    cdef int status
    with nogil:
        status = pynn_sparse_cce(grad_ptr, &value, &pred[0, 0], &labels[0],
                                 pred.shape[0], pred.shape[1], from_logits)
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
