"""pynn._core.sgemm and sgemm_bias_act against NumPy in float64, for every GEMM
micro-kernel this CPU supports.

Error bound.  A float32 dot product of length K, one rounding per multiply-add,
is within K * 2^-24 * sum_p |a_ip b_pj| of the exact value; alpha, beta and the
bias add a few roundings more.  So every element is checked against
(K + 8) * 2^-24 * (|alpha| |op(A)| |op(B)| + |beta C0| + |bias|), computed
elementwise in float64.  For K ~ 100..1000 that is a relative error of about
1e-5..1e-4 of the magnitudes, the usual float32 rtol, but tied to K and to the
actual terms so it is neither loose on small K nor flaky on cancellation.  A wrong
or missing product term is off by about |a b|, far above it.
"""
import math

import numpy as np
import pynn
import pytest

import pynn._core as core

U32 = 2.0 ** -24  # unit roundoff of float32

KERNELS = [core.KERNEL_GENERIC, core.KERNEL_AVX2, core.KERNEL_AVX512]


@pytest.fixture(params=KERNELS, ids=lambda k: core.KERNEL_NAMES[k])
def kernel(request):
    """Run the test once per micro-kernel the CPU supports, then restore AUTO."""
    which = request.param
    if not core.gemm_kernel_supported(which):
        pytest.skip(f"{core.KERNEL_NAMES[which]} kernel not supported on this CPU/build")
    core.gemm_select_kernel(which)
    assert core.gemm_kernel() == which
    yield which
    core.gemm_select_kernel(core.KERNEL_AUTO)


@pytest.fixture
def two_threads():
    before = core.get_num_threads()
    yield
    core.set_num_threads(before)


def rand(rng, *shape):
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)


def operands(rng, m, n, k, trans_a, trans_b):
    """Stored A and B (C-contiguous float32) and op(A), op(B) in float64."""
    a = rand(rng, *((k, m) if trans_a else (m, k)))
    b = rand(rng, *((n, k) if trans_b else (k, n)))
    op_a = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    op_b = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    return a, b, op_a, op_b


def gemm_bound(k, op_a, op_b, alpha=1.0, beta=0.0, c0=None, bias=None):
    mag = abs(alpha) * (np.abs(op_a) @ np.abs(op_b))
    if beta != 0.0:
        mag += np.abs(beta * c0.astype(np.float64))
    if bias is not None:
        mag += np.abs(bias.astype(np.float64))
    return (k + 8) * U32 * mag + 1e-30


def assert_within(got, expect, bound, what):
    err = np.abs(got.astype(np.float64) - expect)
    bad = ~(err <= bound)  # NaN counts as bad
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} elements outside the bound, "
        f"worst {np.nanmax(err / bound):.3g} x bound")


# Sizes one below, at and one past the register tiles (4x16, 6x16, 12x32) and
# cache blocks (MC 120 / 128 / 432, KC 256, NC 2048 / 4096) of the kernels, plus
# 1 and primes.  (The C test, tests/c/test_gemm.c, aims at every edge exactly.)
SHAPES = [
    (1, 1, 1), (1, 7, 3), (5, 1, 2), (3, 4, 1), (2, 3, 5), (7, 13, 11),
    (11, 15, 17), (12, 32, 8), (13, 33, 9), (6, 16, 255), (5, 17, 256),
    (4, 31, 257), (23, 47, 19), (119, 33, 31), (121, 31, 29), (127, 17, 13),
    (145, 65, 513), (129, 97, 300), (37, 129, 101), (431, 35, 9), (433, 17, 260),
    (3, 2049, 5), (2, 4097, 3),
]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_sgemm_matches_numpy(kernel, trans_a, trans_b):
    rng = np.random.default_rng(1 + 2 * trans_a + trans_b)
    for i, (m, n, k) in enumerate(SHAPES):
        alpha, beta = [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (2.0, 0.0), (0.75, -1.0)][i % 5]
        a, b, op_a, op_b = operands(rng, m, n, k, trans_a, trans_b)
        c0 = rand(rng, m, n) if beta != 0.0 else np.full((m, n), np.nan, np.float32)
        c = c0.copy()
        core.sgemm(c, a, b, trans_a, trans_b, alpha, beta)
        expect = alpha * (op_a @ op_b) + (beta * c0.astype(np.float64) if beta else 0.0)
        assert_within(c, expect, gemm_bound(k, op_a, op_b, alpha, beta, c0),
                      f"sgemm {m}x{n}x{k} trans_a={trans_a} trans_b={trans_b} "
                      f"alpha={alpha} beta={beta}")


def test_sgemm_inputs_from_strided_views(kernel):
    """Non-contiguous and read-only inputs, made contiguous by the caller."""
    rng = np.random.default_rng(7)
    big_a = rand(rng, 90, 150)
    big_b = rand(rng, 200, 60)
    a = np.ascontiguousarray(big_a[::2, 1::3])        # (45, 50)
    b = np.ascontiguousarray(big_b[3:153:3, ::-1])    # (50, 60)
    a.setflags(write=False)
    b.setflags(write=False)
    c = np.empty((45, 60), np.float32)
    core.sgemm(c, a, b)
    op_a, op_b = a.astype(np.float64), b.astype(np.float64)
    assert_within(c, op_a @ op_b, gemm_bound(50, op_a, op_b), "strided inputs")


def test_sgemm_alpha_zero_and_empty(kernel):
    rng = np.random.default_rng(3)
    a = np.full((4, 5), np.nan, np.float32)
    b = np.full((5, 6), np.nan, np.float32)
    c = rand(rng, 4, 6)
    c0 = c.copy()
    core.sgemm(c, a, b, alpha=0.0, beta=0.5)          # A and B are not used
    np.testing.assert_array_equal(c, 0.5 * c0)
    c = np.full((4, 6), np.nan, np.float32)
    core.sgemm(c, np.zeros((4, 0), np.float32), np.zeros((0, 6), np.float32))   # K == 0
    np.testing.assert_array_equal(c, 0.0)
    core.sgemm(np.zeros((0, 6), np.float32), np.zeros((0, 5), np.float32), b)   # M == 0


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_sgemm_large_with_random_vector(trans_a, trans_b):
    """A big product checked cheaply: C t against A (B t) for a random vector t."""
    rng = np.random.default_rng(11)
    m, n, k = 1031, 1100, 1200
    a, b, op_a, op_b = operands(rng, m, n, k, trans_a, trans_b)
    c = np.empty((m, n), np.float32)
    core.sgemm(c, a, b, trans_a, trans_b)
    t = rng.uniform(-1.0, 1.0, size=n)
    got = c.astype(np.float64) @ t
    expect = op_a @ (op_b @ t)
    # |C - AB| <= (K + 8) u |A||B| elementwise, so |(C - AB) t| <= (K + 8) u |A||B||t|.
    bound = (k + 8) * U32 * (np.abs(op_a) @ (np.abs(op_b) @ np.abs(t)))
    assert_within(got, expect, bound, f"C t vs A (B t), trans_a={trans_a} trans_b={trans_b}")


def gelu(z):
    return 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


ACTIVATIONS = {
    # act id: (numpy reference on float64, act_alpha, Lipschitz constant)
    pynn.ids.ACTIVATIONS["linear"]: (lambda z: z, 0.0, 1.0),
    pynn.ids.ACTIVATIONS["relu"]: (lambda z: np.maximum(z, 0.0), 0.0, 1.0),
    pynn.ids.ACTIVATIONS["leaky_relu"]: (lambda z: np.where(z > 0, z, 0.2 * z), 0.2, 1.0),
    pynn.ids.ACTIVATIONS["sigmoid"]: (lambda z: 1.0 / (1.0 + np.exp(-z)), 0.0, 0.25),
    pynn.ids.ACTIVATIONS["tanh"]: (np.tanh, 0.0, 1.0),
    pynn.ids.ACTIVATIONS["gelu"]: (gelu, 0.0, 1.13),
}


@pytest.mark.parametrize("act", list(ACTIVATIONS) + [pynn.ids.ACTIVATIONS["softmax"]],
                         ids=lambda a: {pynn.ids.ACTIVATIONS["linear"]: "linear", pynn.ids.ACTIVATIONS["relu"]: "relu",
                                        pynn.ids.ACTIVATIONS["leaky_relu"]: "leaky_relu",
                                        pynn.ids.ACTIVATIONS["sigmoid"]: "sigmoid", pynn.ids.ACTIVATIONS["tanh"]: "tanh",
                                        pynn.ids.ACTIVATIONS["softmax"]: "softmax", pynn.ids.ACTIVATIONS["gelu"]: "gelu"}[a])
def test_sgemm_bias_act_matches_numpy(kernel, act):
    rng = np.random.default_rng(100 + act)
    for m, n, k, trans_a, trans_b, y_mode in [(1, 1, 1, False, False, "separate"),
                                              (13, 33, 29, True, False, "separate"),
                                              (37, 10, 300, False, True, "alias"),
                                              (25, 70, 17, True, True, "none")]:
        a, b, op_a, op_b = operands(rng, m, n, k, trans_a, trans_b)
        bias = rand(rng, n)
        z = np.full((m, n), np.nan, np.float32)
        y = {"separate": np.full((m, n), np.nan, np.float32), "alias": z, "none": None}[y_mode]
        act_alpha = ACTIVATIONS.get(act, (None, 0.0))[1]
        core.sgemm_bias_act(z, y, a, b, bias, trans_a, trans_b, act, act_alpha)

        z_ref = op_a @ op_b + bias.astype(np.float64)
        z_bound = gemm_bound(k, op_a, op_b, bias=bias)
        what = f"act {act} {m}x{n}x{k} trans_a={trans_a} trans_b={trans_b} Y {y_mode}"
        if y_mode != "alias":
            assert_within(z, z_ref, z_bound, what + ": Z")
        if y is None:
            continue
        if act == pynn.ids.ACTIVATIONS["softmax"]:
            e = np.exp(z_ref - z_ref.max(axis=1, keepdims=True))
            y_ref = e / e.sum(axis=1, keepdims=True)
            # dy_i = y_i (dz_i - sum_j y_j dz_j): at most 2 y_i max|dz| from Z's error,
            # plus float32 roundings of exp, the n-term sum and the division.
            y_bound = y_ref * (2.0 * z_bound.max(axis=1, keepdims=True) + (n + 10) * 2 * U32)
        else:
            ref, _, lipschitz = ACTIVATIONS[act]
            y_ref = ref(z_ref)
            # Z's error through the activation, plus a few ulps of the float32 libm call.
            y_bound = lipschitz * z_bound + 4 * 2 * U32 * np.abs(y_ref) + 1e-37
        assert_within(y, y_ref, y_bound, what + ": Y")


def test_sgemm_bias_act_equals_sgemm_plus_bias(kernel):
    """The fused epilogue adds the bias after the product, as GEMM-then-bias does."""
    rng = np.random.default_rng(5)
    m, n, k = 70, 90, 600
    a, b = rand(rng, m, k), rand(rng, k, n)
    bias = rand(rng, n)
    z = np.empty((m, n), np.float32)
    core.sgemm_bias_act(z, None, a, b, bias, False, False, pynn.ids.ACTIVATIONS["linear"], 0.0)
    c = np.empty((m, n), np.float32)
    core.sgemm(c, a, b)
    np.testing.assert_array_equal(z, c + bias)
    y = np.empty((m, n), np.float32)
    core.sgemm_bias_act(z, y, a, b, bias, False, False, pynn.ids.ACTIVATIONS["relu"], 0.0)
    np.testing.assert_array_equal(y, np.maximum(c + bias, np.float32(0.0)))


def test_one_and_two_threads_bitwise(kernel, two_threads):
    rng = np.random.default_rng(9)
    m, n, k = 301, 4200, 530   # several blocks in M, N (NC) and K, ragged edges
    a, b = rand(rng, k, m), rand(rng, n, k)
    c0 = rand(rng, m, n)
    bias = rand(rng, n)
    results = []
    for threads in (1, 2):
        core.set_num_threads(threads)
        c = c0.copy()
        core.sgemm(c, a, b, True, True, 0.75, -1.25)
        z = np.empty((m, 200), np.float32)
        y = np.empty((m, 200), np.float32)
        core.sgemm_bias_act(z, y, a, np.ascontiguousarray(b[:200]), bias[:200], True, True,
                            pynn.ids.ACTIVATIONS["softmax"], 0.0)
        results.append((c, z, y))
    for one, two, name in zip(results[0], results[1], ("sgemm C", "fused Z", "fused softmax Y")):
        assert np.array_equal(one, two), f"{name}: 1 and 2 threads differ"


def test_wrong_shapes_raise():
    a = np.zeros((4, 5), np.float32)
    b = np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"expected B of shape \(5, 6\), received shape \(6, 5\)"):
        core.sgemm(np.zeros((4, 6), np.float32), a, np.zeros((6, 5), np.float32))
    with pytest.raises(ValueError, match="expected A of shape"):
        core.sgemm(np.zeros((3, 6), np.float32), a, b)
    with pytest.raises(ValueError, match=r"expected B of shape \(6, 5\)"):
        core.sgemm(np.zeros((4, 6), np.float32), a, b, trans_b=True)
    with pytest.raises(ValueError, match="expected A of shape"):
        core.sgemm(np.zeros((4, 6), np.float32), a, b, trans_a=True)
    with pytest.raises(ValueError, match="expected B of shape"):
        core.sgemm(np.zeros((4, 7), np.float32), a, b)
    with pytest.raises(ValueError):   # float64 is refused by the typed memoryview
        core.sgemm(np.zeros((4, 6)), a, b)
    z = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"expected Y of shape \(4, 6\), received shape \(6, 4\)"):
        core.sgemm_bias_act(z, np.zeros((6, 4), np.float32), a, b, None, False, False,
                            pynn.ids.ACTIVATIONS["relu"], 0.0)
    with pytest.raises(ValueError, match=r"expected bias of shape \(6,\), received shape \(5,\)"):
        core.sgemm_bias_act(z, None, a, b, np.zeros(5, np.float32), False, False,
                            pynn.ids.ACTIVATIONS["relu"], 0.0)
    with pytest.raises(ValueError, match="expected act"):
        core.sgemm_bias_act(z, None, a, b, None, False, False, 42, 0.0)


def test_concurrent_calls_from_python_threads():
    """sgemm releases the GIL: calls from several Python threads at once must not
    share packing buffers (a busy workspace makes the caller allocate its own)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(21)
    shapes = [(300, 200, 260), (97, 513, 301), (450, 65, 700), (33, 1000, 90)] * 4
    problems = [(rand(rng, m, k), rand(rng, k, n)) for m, n, k in shapes]
    expected = []
    for a, b in problems:
        c = np.empty((a.shape[0], b.shape[1]), np.float32)
        core.sgemm(c, a, b)
        expected.append(c)

    def run(i):
        a, b = problems[i]
        c = np.empty((a.shape[0], b.shape[1]), np.float32)
        core.sgemm(c, a, b)
        return c

    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(5):  # a race shows only sometimes: give it several chances
            results = list(pool.map(run, range(len(problems))))
            for i, (got, want) in enumerate(zip(results, expected)):
                assert np.array_equal(got, want), f"problem {i}: concurrent result differs"


# The small path: products of at most 64^3 multiply-adds run unpacked on one thread
# (csrc/gemm.c, PYNN_GEMM_SMALL_MACS).  Its tiles are 8 x 32 / 8 x 16 (AVX-512),
# 6 x 16 / 6 x 8 (AVX2) and 4 x 16 (generic); a transposed B goes through a stack
# buffer of 4096 floats, or the workspace when larger.
SMALL_MACS = 64 ** 3
SMALL_SHAPES = [
    (1, 1, 1), (1, 33, 2), (7, 1, 9), (5, 8, 3), (8, 16, 1), (9, 17, 10), (6, 9, 33),
    (13, 31, 7), (16, 32, 4), (17, 33, 11), (3, 47, 5), (12, 48, 2), (31, 49, 3),
    (33, 65, 5), (32, 32, 64), (32, 10, 32), (64, 32, 32), (3, 64, 100), (2, 70, 300),
    (1, 1, 5000),
]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_small_path_matches_numpy(kernel, trans_a, trans_b):
    rng = np.random.default_rng(30 + 2 * trans_a + trans_b)
    for i, (m, n, k) in enumerate(SMALL_SHAPES):
        assert m * n * k <= SMALL_MACS
        alpha, beta = [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (2.0, 0.0), (0.75, -1.0)][i % 5]
        a, b, op_a, op_b = operands(rng, m, n, k, trans_a, trans_b)
        c0 = rand(rng, m, n) if beta != 0.0 else np.full((m, n), np.nan, np.float32)
        c = c0.copy()
        core.sgemm(c, a, b, trans_a, trans_b, alpha, beta)
        expect = alpha * (op_a @ op_b) + (beta * c0.astype(np.float64) if beta else 0.0)
        assert_within(c, expect, gemm_bound(k, op_a, op_b, alpha, beta, c0),
                      f"small sgemm {m}x{n}x{k} trans_a={trans_a} trans_b={trans_b} "
                      f"alpha={alpha} beta={beta}")


@pytest.mark.parametrize("act", list(ACTIVATIONS) + [pynn.ids.ACTIVATIONS["softmax"]])
def test_small_path_epilogue_equals_sgemm_then_activation(kernel, act):
    """The fused epilogue on the small path: Z = sgemm + bias, Y = act(Z) bitwise."""
    rng = np.random.default_rng(200 + act)
    act_alpha = ACTIVATIONS.get(act, (None, 0.2))[1]
    for m, n, k in [(1, 1, 1), (9, 17, 5), (32, 32, 64), (33, 10, 32), (13, 33, 30)]:
        a, b = rand(rng, m, k), rand(rng, k, n)
        bias = rand(rng, n)
        c = np.empty((m, n), np.float32)
        core.sgemm(c, a, b)
        z_plain = c + bias
        y_plain = np.empty_like(z_plain)
        core.activation_forward(y_plain, z_plain, act, act_alpha)
        for alias in (False, True):
            z = np.full((m, n), np.nan, np.float32)
            y = z if alias else np.full((m, n), np.nan, np.float32)
            core.sgemm_bias_act(z, y, a, b, bias, False, False, act, act_alpha)
            if not alias:
                np.testing.assert_array_equal(z, z_plain)
            np.testing.assert_array_equal(y, y_plain)


@pytest.mark.parametrize("shape", [(64, 64, 64), (64, 64, 65), (65, 64, 64), (1, 1, SMALL_MACS),
                                   (1, 1, SMALL_MACS + 1), (1024, 16, 16), (1025, 16, 16),
                                   (8, 512, 64), (8, 513, 64)])
def test_small_limit_one_and_two_threads_bitwise(kernel, two_threads, shape):
    """On both sides of the small path's limit the result must not depend on the
    thread count (the path is chosen by the shape alone)."""
    m, n, k = shape
    rng = np.random.default_rng(m + n + k)
    for trans_a in (False, True):
        for trans_b in (False, True):
            a, b, op_a, op_b = operands(rng, m, n, k, trans_a, trans_b)
            c0 = rand(rng, m, n)
            results = []
            for threads in (1, 2):
                core.set_num_threads(threads)
                c = c0.copy()
                core.sgemm(c, a, b, trans_a, trans_b, 0.75, -1.25)
                results.append(c)
            assert np.array_equal(results[0], results[1]), (
                f"{shape} trans_a={trans_a} trans_b={trans_b}: 1 and 2 threads differ")
            assert_within(results[0], 0.75 * (op_a @ op_b) - 1.25 * c0.astype(np.float64),
                          gemm_bound(k, op_a, op_b, 0.75, -1.25, c0), f"{shape}")
