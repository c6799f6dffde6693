# GEMM wrappers, included by _core.pyx.
#
# These only check shapes and hand C-contiguous float32 buffers to csrc/gemm.c
# (typed memoryviews already refuse another dtype or layout).  The leading
# dimensions passed down are the row strides of the memoryviews.


cdef inline int64_t _leading_dim(Py_ssize_t row_stride_bytes, Py_ssize_t cols) noexcept:
    """Row stride in floats; numpy reports odd strides for empty or one-row
    arrays, where any value >= max(1, cols) is as good."""
    cdef int64_t ld = row_stride_bytes // <Py_ssize_t>sizeof(float)
    cdef int64_t least = cols if cols > 1 else 1
    return ld if ld >= least else least


cdef inline float *_data(float[:, ::1] x) noexcept:
    return &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL


cdef inline const float *_cdata(const float[:, ::1] x) noexcept:
    return &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL


cdef tuple _gemm_dims(tuple c_shape, tuple a_shape, tuple b_shape,
                      bint trans_a, bint trans_b, str c_name, str where):
    """(M, N, K) of C = op(A) op(B), or ValueError naming the argument that disagrees."""
    cdef Py_ssize_t M = c_shape[0], N = c_shape[1]
    cdef Py_ssize_t K = a_shape[0] if trans_a else a_shape[1]
    a_expected = (K, M) if trans_a else (M, K)
    b_expected = (N, K) if trans_b else (K, N)
    if a_shape != a_expected:
        raise ValueError(
            f"{where}: {c_name} has shape {c_shape}, so A{'^T' if trans_a else ''} must have "
            f"{M} rows: expected A of shape {a_expected}, received shape {a_shape}")
    if b_shape != b_expected:
        raise ValueError(
            f"{where}: op(A) is ({M}, {K}) and {c_name} is {c_shape}: expected B of shape "
            f"{b_expected}{' (trans_b)' if trans_b else ''}, received shape {b_shape}")
    return M, N, K


def sgemm(float[:, ::1] C,           # OUT (M, N)
          const float[:, ::1] A,     # IN  (M, K), or (K, M) if trans_a
          const float[:, ::1] B,     # IN  (K, N), or (N, K) if trans_b
          bint trans_a=False, bint trans_b=False, float alpha=1.0, float beta=0.0):
    """C = alpha op(A) op(B) + beta C, in place (beta == 0: C is not read)."""
    cdef Py_ssize_t M, N, K
    M, N, K = _gemm_dims((C.shape[0], C.shape[1]), (A.shape[0], A.shape[1]),
                         (B.shape[0], B.shape[1]), trans_a, trans_b, "C", "sgemm")
    cdef int64_t lda = _leading_dim(A.strides[0], A.shape[1])
    cdef int64_t ldb = _leading_dim(B.strides[0], B.shape[1])
    cdef int64_t ldc = _leading_dim(C.strides[0], C.shape[1])
    cdef float *c = _data(C)
    cdef const float *a = _cdata(A)
    cdef const float *b = _cdata(B)
    cdef int status
    with nogil:
        status = pynn_sgemm(c, a, b, trans_a, trans_b, M, N, K, alpha, beta, lda, ldb, ldc)
    _check(status, "sgemm")


def sgemm_ksplit_chunks(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K):
    """How many K chunks sgemm_ksplit cuts an (M, N, K) product into (its partials
    workspace holds that many M x N matrices)."""
    return pynn_sgemm_ksplit_chunks(M, N, K)


def sgemm_ksplit(float[:, ::1] C,          # OUT (M, N)
                 float[::1] partials,       # WORK sgemm_ksplit_chunks(M, N, K) * M * N floats
                 const float[:, ::1] A,     # IN  (M, K), or (K, M) if trans_a
                 const float[:, ::1] B,     # IN  (K, N), or (N, K) if trans_b
                 bint trans_a=False, bint trans_b=False):
    """C = op(A) op(B) with K cut into fixed chunks summed in chunk order (for a long K
    and a small C: a filter gradient); the same result on any number of threads."""
    cdef Py_ssize_t M, N, K
    M, N, K = _gemm_dims((C.shape[0], C.shape[1]), (A.shape[0], A.shape[1]),
                         (B.shape[0], B.shape[1]), trans_a, trans_b, "C", "sgemm_ksplit")
    cdef int64_t need = pynn_sgemm_ksplit_chunks(M, N, K) * M * N
    if partials.shape[0] < need:
        raise ValueError(f"sgemm_ksplit: partials must hold at least {need} floats, "
                         f"received {partials.shape[0]}")
    cdef int64_t lda = _leading_dim(A.strides[0], A.shape[1])
    cdef int64_t ldb = _leading_dim(B.strides[0], B.shape[1])
    cdef int64_t ldc = _leading_dim(C.strides[0], C.shape[1])
    cdef float *c = _data(C)
    cdef float *w = &partials[0] if partials.shape[0] > 0 else NULL
    cdef const float *a = _cdata(A)
    cdef const float *b = _cdata(B)
    cdef int status
    with nogil:
        status = pynn_sgemm_ksplit(c, w, a, b, trans_a, trans_b, M, N, K, lda, ldb, ldc)
    _check(status, "sgemm_ksplit")


def sgemm_bias_act(float[:, ::1] Z,          # OUT (M, N) pre-activation
                   Y,                        # OUT (M, N) act(Z), or None; may be Z itself
                   const float[:, ::1] A,    # IN  (M, K), or (K, M) if trans_a
                   const float[:, ::1] B,    # IN  (K, N), or (N, K) if trans_b
                   bias,                     # IN  (N,), or None
                   bint trans_a, bint trans_b, int act, float act_alpha):
    """Dense forward in one pass: Z = op(A) op(B) + bias, then Y = act(Z)."""
    cdef Py_ssize_t M, N, K
    cdef float[:, ::1] y_view
    cdef const float[::1] bias_view
    cdef float *y = NULL
    cdef const float *bias_ptr = NULL
    if act < PYNN_ACT_LINEAR or act >= PYNN_ACT_COUNT:
        raise ValueError(f"sgemm_bias_act: expected act to be one of pynn._core.ACT_* "
                         f"({PYNN_ACT_LINEAR}..{PYNN_ACT_COUNT - 1}), received {act}")
    M, N, K = _gemm_dims((Z.shape[0], Z.shape[1]), (A.shape[0], A.shape[1]),
                         (B.shape[0], B.shape[1]), trans_a, trans_b, "Z", "sgemm_bias_act")
    if Y is not None:
        y_view = Y
        _same_shape((y_view.shape[0], y_view.shape[1]), (M, N), "Y", "sgemm_bias_act")
        y = _data(y_view)
    if bias is not None:
        bias_view = bias
        _same_shape((bias_view.shape[0],), (N,), "bias", "sgemm_bias_act")
        bias_ptr = &bias_view[0] if N > 0 else NULL
    cdef float *z = _data(Z)
    cdef const float *a = _cdata(A)
    cdef const float *b = _cdata(B)
    cdef int status
    with nogil:
        status = pynn_sgemm_bias_act(z, y, a, b, bias_ptr, trans_a, trans_b, M, N, K,
                                     act, act_alpha)
    _check(status, "sgemm_bias_act")


def dense_panels_floats(int64_t K, int64_t N):
    """Floats of a K x N weight matrix packed by dense_pack_panels (csrc/pynn.h)."""
    return pynn_dense_panels_floats(K, N)


def dense_pack_panels(float[::1] wp, const float[::1] w, int64_t K, int64_t N):
    """wp = the weights w (K x N, row-major, flat) in pynn_dense_pack_panels's column
    panels, marked current (wp[0] = 1.0; 0.0 marks them stale), which a Dense op of an
    inference plan reads on its few-rows path."""
    if K < 1 or N < 1 or w.shape[0] < K * N or wp.shape[0] < pynn_dense_panels_floats(K, N):
        raise ValueError(f"dense_pack_panels: expected w of at least {K} x {N} floats and wp "
                         f"of {pynn_dense_panels_floats(K, N)}, received {w.shape[0]} and "
                         f"{wp.shape[0]}")
    cdef int status
    with nogil:
        status = pynn_dense_pack_panels(&wp[0], &w[0], K, N)
    _check(status, "dense_pack_panels")
