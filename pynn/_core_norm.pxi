# ---- normalization and noise layers (csrc/norm.c; engineer E): LayerNormalization,
# GroupNormalization, UnitNormalization, GaussianNoise, GaussianDropout.  Arrays are
# C-contiguous float32 of any shape; x is viewed as (n, s, groups * k) or (rows, cols).
# Textually included by _core.pyx.  -------------------------------------------------------

cdef extern from "pynn.h" nogil:
    int pynn_group_norm_forward(float *y, float *mean, float *inv_std, const float *x,
                                const float *gamma, const float *beta, int64_t n, int64_t s,
                                int64_t groups, int64_t k, float epsilon, int rms)
    int pynn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                                 const float *gamma, const float *mean, const float *inv_std,
                                 const float *dy, int64_t n, int64_t s, int64_t groups,
                                 int64_t k, int rms)
    int pynn_unit_norm_forward(float *y, float *inv_norm, const float *x, int64_t rows,
                               int64_t cols)
    int pynn_unit_norm_backward(float *dx, const float *x, const float *inv_norm,
                                const float *dy, int64_t rows, int64_t cols)
    int pynn_gaussian_noise(float *y, float *noise, const float *x, int64_t n, uint64_t seed,
                            uint64_t counter, int mode, double scale)


cdef float *_f32_sized(object a, int64_t size, str what, str where, bint out) except? NULL:
    """A float32 array of exactly `size` values (None: NULL)."""
    cdef int64_t n
    if a is None:
        return NULL
    cdef float *p = _f32_ptr(a, what, where, &n, out)
    if n != size:
        raise ValueError(f"{where}: expected {what} of {size} values, received {n}")
    return p


cdef int64_t _gn_rows(int64_t n_x, int64_t s, int64_t groups, int64_t k, str where) except -1:
    if s < 1 or groups < 1 or k < 1 or n_x % (s * groups * k) != 0:
        raise ValueError(f"{where}: {n_x} values do not split into rows of s={s} x "
                         f"groups={groups} x k={k}")
    return n_x // (s * groups * k)


def group_norm_forward(y, mean, inv_std, x, gamma, beta, int64_t s, int64_t groups, int64_t k,
                       float epsilon, bint rms=False):
    """Group (and layer) normalization of x viewed as (n, s, groups * k): mean and inv_std
    (n * groups) out; gamma and beta (groups * k) may be None (csrc/pynn.h)."""
    cdef str where = "group_norm_forward"
    cdef int64_t nx
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    cdef int64_t n = _gn_rows(nx, s, groups, k, where)
    cdef float *pm = _f32_sized(mean, n * groups, "mean", where, True)
    cdef float *ps = _f32_sized(inv_std, n * groups, "inv_std", where, True)
    cdef const float *pg = _f32_sized(gamma, groups * k, "gamma", where, False)
    cdef const float *pb = _f32_sized(beta, groups * k, "beta", where, False)
    cdef int status
    cdef int r = 1 if rms else 0
    with nogil:
        status = pynn_group_norm_forward(py, pm, ps, px, pg, pb, n, s, groups, k, epsilon, r)
    _check(status, where)


def group_norm_backward(dx, dgamma, dbeta, x, gamma, mean, inv_std, dy, int64_t s,
                        int64_t groups, int64_t k, bint rms=False):
    """The backward of group_norm_forward; dx, dgamma and dbeta may each be None."""
    cdef str where = "group_norm_backward"
    cdef int64_t nx
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef const float *pdy = _f32_same(dy, x, "dy", where, False)
    cdef int64_t n = _gn_rows(nx, s, groups, k, where)
    cdef float *pdx = NULL
    if dx is not None:
        pdx = _f32_same(dx, x, "dx", where, True)
    cdef float *pdg = _f32_sized(dgamma, groups * k, "dgamma", where, True)
    cdef float *pdb = _f32_sized(dbeta, groups * k, "dbeta", where, True)
    cdef const float *pg = _f32_sized(gamma, groups * k, "gamma", where, False)
    cdef const float *pm = _f32_sized(mean, n * groups, "mean", where, False)
    cdef const float *ps = _f32_sized(inv_std, n * groups, "inv_std", where, False)
    cdef int status
    cdef int r = 1 if rms else 0
    with nogil:
        status = pynn_group_norm_backward(pdx, pdg, pdb, px, pg, pm, ps, pdy, n, s, groups, k, r)
    _check(status, where)


def unit_norm_forward(y, inv_norm, x, int64_t cols):
    """y = x / sqrt(max(sum x^2, 1e-24)) per row of cols; inv_norm (rows) out."""
    cdef str where = "unit_norm_forward"
    cdef int64_t nx
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    if cols < 1 or nx % cols != 0:
        raise ValueError(f"{where}: {nx} values do not split into rows of cols={cols}")
    cdef float *pn = _f32_sized(inv_norm, nx // cols, "inv_norm", where, True)
    cdef int status
    with nogil:
        status = pynn_unit_norm_forward(py, pn, px, nx // cols, cols)
    _check(status, where)


def unit_norm_backward(dx, x, inv_norm, dy, int64_t cols):
    """The backward of unit_norm_forward; dx may be dy."""
    cdef str where = "unit_norm_backward"
    cdef int64_t nx
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef const float *pdy = _f32_same(dy, x, "dy", where, False)
    cdef float *pdx = _f32_same(dx, x, "dx", where, True)
    if cols < 1 or nx % cols != 0:
        raise ValueError(f"{where}: {nx} values do not split into rows of cols={cols}")
    cdef const float *pn = _f32_sized(inv_norm, nx // cols, "inv_norm", where, False)
    cdef int status
    with nogil:
        status = pynn_unit_norm_backward(pdx, px, pn, pdy, nx // cols, cols)
    _check(status, where)


def gaussian_noise(y, noise, x, seed, counter, int mode, double scale):
    """mode 0: y = x + scale z; mode 1: y = x (1 + scale z); z the Box-Muller normals of
    (seed, counter); noise (x's shape, or None) out."""
    cdef str where = "gaussian_noise"
    cdef int64_t nx
    cdef const float *px = _f32_ptr(x, "x", where, &nx, False)
    cdef float *py = _f32_same(y, x, "y", where, True)
    cdef float *pn = NULL
    if noise is not None:
        pn = _f32_same(noise, x, "noise", where, True)
    cdef uint64_t sd = _u64(seed), ctr = _u64(counter)
    cdef int status
    with nogil:
        status = pynn_gaussian_noise(py, pn, px, nx, sd, ctr, mode, scale)
    _check(status, where)
