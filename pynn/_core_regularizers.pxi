# ---- regularizers and constraints (csrc/regularizers.c; engineer F): the L1/L2 penalty of
# an array with its gradient, and Keras's weight constraints in place.  -------------------

cdef extern from "pynn.h" nogil:
    int pynn_penalty(double *value, float *dx, const float *x, int64_t n, double l1, double l2,
                     double scale, int accumulate)
    int pynn_constraint(float *w, int64_t outer, int64_t red, int64_t inner, int kind,
                        double a, double b, double rate)

CONSTRAINT_KINDS = {"max_norm": 0, "min_max_norm": 1, "non_neg": 2, "unit_norm": 3}


def penalty(x, dx, double l1, double l2, double scale=1.0, bint accumulate=True):
    """scale * (l1 * sum|x| + l2 * sum x^2) as a float (a fixed-order double sum); when dx
    (x's shape) is given, scale * (l1 * sign(x) + 2 l2 x) is added into it (accumulate) or
    written to it."""
    cdef str where = "penalty"
    cdef int64_t n
    cdef const float *px = _f32_ptr(x, "x", where, &n, False)
    cdef float *pd = NULL
    if dx is not None:
        pd = _f32_same(dx, x, "dx", where, True)
    cdef double value = 0.0
    cdef int status
    cdef int acc = 1 if accumulate else 0
    with nogil:
        status = pynn_penalty(&value, pd, px, n, l1, l2, scale, acc)
    _check(status, where)
    return value


def constraint(w, int64_t outer, int64_t red, int64_t inner, str kind, double a=0.0,
               double b=0.0, double rate=1.0):
    """Keras's constraint `kind` (CONSTRAINT_KINDS) applied in place to w, viewed as
    (outer, red, inner) with the norms over `red`."""
    cdef str where = "constraint"
    cdef int64_t n
    if kind not in CONSTRAINT_KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; expected one of "
                         f"{', '.join(CONSTRAINT_KINDS)}")
    cdef int k = CONSTRAINT_KINDS[kind]
    cdef float *pw = _f32_ptr(w, "w", where, &n, True)
    if outer < 0 or red < 0 or inner < 0 or n != outer * red * inner:
        raise ValueError(f"{where}: {n} values are not ({outer}, {red}, {inner})")
    cdef int status
    with nogil:
        status = pynn_constraint(pw, outer, red, inner, k, a, b, rate)
    _check(status, where)
