"""Every kernel of the backend interface (pynn/backend/base.py) on `cpu` and `cuda`, checked
against the `numpy` backend, the reference: arrays, matmul, dense forward / backward, the
bias gradient, activations, losses, metric sums, optimizer steps and rules, convolution
(on cpu both the direct kernel and im2col + GEMM; a frozen layer's dw=None), max / average
/ global pooling, batch normalization, dropout, merges, concatenation and scaling.

How a case runs.  `check(be, method, *args)` calls one backend method with every array
argument a fresh copy on that backend and every output (`Out`) full of NaN, so an element a
kernel forgets shows; plain inputs must come back unchanged; each output (`Out`, `InOut`,
`Same`) is compared with the numpy backend's at its own tolerance from the policy of
tests/conftest.py.  A sequence of calls (a convolution's forward, then its backward) goes
through `parity(be, fn, tolerances)` with fn(backend) -> {name: result}.  On cpu every case
runs on 1, 2 and 3 threads and must give the same bits (DESIGN.md's determinism rule); on
cuda the cases in CUDA_REPEATS (reductions over several blocks) run twice and must repeat
bitwise.

Shapes.  Each family has a cpu list (1, primes, rows just off the 256-row reduction chunks,
sizes above the 32768 elements at which a C kernel starts an OpenMP team) and a tiny cuda
list (the simulator runs every GPU thread as a Python thread); `@over(cpu=..., cuda=...)`
pairs each with the `kernel_backend` fixture.  Big cross products are covered pairwise
(`pairwise`, `cycle`), not exhaustively.

To add a case, append it to the family's CPU_* or CUDA_* list.  To add a kernel, write a
test parametrised by @over(...) that builds its arguments with Out / InOut / Same and calls
check().  After the families come the refusals (on every backend), then what only one
backend has: the C kernels reached through pynn._core alone, and the CUDA tile
configurations, internals, PTX build and availability.
"""
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import pynn
from pynn import _core, ids
from pynn import backend as backends
from pynn.backend import reference as ref
from pynn.layers.conv import output_size

from conftest import (RTOL_ELEMENTWISE, RTOL_SUMS, SIMULATED, assert_bitwise, assert_close,
                      usable_backend)

NUMPY, CPU = backends.get("numpy"), backends.get("cpu")
BITWISE = "bitwise"
THREADS = (1, 2, 3)                   # 3: a team that does not split chunks evenly
U32 = 2.0 ** -24                      # float32's unit roundoff
ACTIVATIONS = ref.ACTIVATIONS
ALPHA = 0.3                           # leaky_relu's slope in every case


# ---- the harness ------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _thread_count_restored(threads):
    """The cpu cases set the C thread count; conftest's `threads` restores it."""
    yield


def rng_for(*key):
    """A generator seeded by the case (crc32 of its repr: stable across runs)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def label(value):
    if isinstance(value, tuple) and value and all(type(v) is int for v in value):
        return "x".join(map(str, value))
    if isinstance(value, (tuple, list)):
        return "-".join(label(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def over(cpu, cuda, ids=label):
    """Parametrise (kernel_backend, case) by each backend's own cases."""
    params = [pytest.param(name, case, id=f"{name}-{ids(case)}")
              for name, group in (("cpu", cpu), ("cuda", cuda)) for case in group]
    return pytest.mark.parametrize("kernel_backend,case", params, indirect=["kernel_backend"])


def pairwise(first, second, third):
    """Every pair of values of the three lists in len(first) * len(second) cases: a Latin
    square, the third list cycling (so it must not be longer than the others)."""
    assert len(third) <= min(len(first), len(second))
    return [(a, b, third[(i + j) % len(third)])
            for i, a in enumerate(first) for j, b in enumerate(second)]


def cycle(first, *others):
    """One case per value of `first`, the other lists cycling beside it."""
    return [(a,) + tuple(o[i % len(o)] for o in others) for i, a in enumerate(first)]


class Out:
    """An output argument: a backend array full of NaN, compared with the reference's at
    `tol` (an rtol of the policy, or BITWISE)."""

    def __init__(self, name, shape, tol=RTOL_ELEMENTWISE):
        self.name, self.shape, self.tol = name, tuple(shape), tol

    def make(self, be):
        return be.from_host(np.full(self.shape, np.nan, np.float32))


class InOut:
    """An argument the kernel reads and overwrites (dense_backward's dy, the moving
    statistics, an optimizer's parameters and slots), compared like an Out."""

    def __init__(self, name, value, tol=RTOL_ELEMENTWISE):
        self.name, self.value, self.tol = name, np.asarray(value), tol

    def make(self, be):
        return be.from_host(self.value.copy())


class Same:
    """The backend array of argument `index` passed again (an in-place call: y is x),
    reported as `name`."""

    def __init__(self, index, name, tol=RTOL_ELEMENTWISE):
        self.index, self.name, self.tol = index, name, tol


def host(be, a):
    return np.array(be.to_host(a), copy=True)


def _on_backend(be, a):
    if isinstance(a, (Out, InOut)):
        return a.make(be)
    if isinstance(a, np.ndarray):
        return be.from_host(a.copy())
    if isinstance(a, list):
        return [_on_backend(be, e) for e in a]
    return a


def _flat(args):
    for a in args:
        if isinstance(a, list):
            yield from _flat(a)
        else:
            yield a


def invoke(be, method, args):
    """be.<method>(*args) on fresh copies: {name: host result} of every Out, InOut and Same,
    and "value", the return value.  Plain array inputs must come back unchanged."""
    dev = []
    for a in args:
        dev.append(dev[a.index] if isinstance(a, Same) else _on_backend(be, a))
    value = getattr(be, method)(*dev)
    assert value is None or isinstance(value, float), f"{be.name} {method} returned {value!r}"
    aliased = {a.index for a in args if isinstance(a, Same)}
    out = {} if value is None else {"value": np.float64(value)}
    for i, (a, d) in enumerate(zip(args, dev)):
        if isinstance(a, Same):
            out[a.name] = host(be, d)
        for spec, arr in zip(_flat([a]), _flat([d])):
            if isinstance(spec, (Out, InOut)):
                out[spec.name] = host(be, arr)
            elif isinstance(spec, np.ndarray) and i not in aliased:
                assert_bitwise(host(be, arr), spec, f"{be.name} {method} changed an input")
    return out


def results(be, fn, repeat=False):
    """fn(be) -> {name: result}.  cpu: on each thread count of THREADS, the same bits.
    cuda: once, or twice when `repeat` (a reduction over several blocks repeats bitwise)."""
    runs = []
    for threads in (THREADS if be.name == "cpu" else (None, None) if repeat else (None,)):
        if threads is not None:
            pynn.set_num_threads(threads)
        runs.append(fn(be))
    for other in runs[1:]:
        assert runs[0].keys() == other.keys()
        for name in runs[0]:
            assert_bitwise(other[name], runs[0][name], f"{be.name}: {name} of a second run "
                           f"({'another thread count' if be.name == 'cpu' else 'repeated'})")
    return runs[0]


def compare(got, want, tolerances, where):
    for name, tol in tolerances.items():
        if tol == BITWISE:
            assert_bitwise(got[name], want[name], f"{where}: {name}")
        else:
            assert_close(got[name], want[name], tol, f"{where}: {name}")


def parity(be, fn, tolerances, repeat=False):
    """fn on `be` against fn on the numpy backend, each result at its tolerance."""
    got = results(be, fn, repeat)
    want = fn(NUMPY)
    compare(got, want, tolerances, be.name)
    return got, want


def check(be, method, *args, value=None, repeat=False):
    """One call of `method` against the reference; `value`: the tolerance of the return
    value (a loss, a metric sum).  Returns (got, want)."""
    tolerances = {a.name: a.tol for a in _flat(args) if isinstance(a, (Out, InOut, Same))}
    if value is not None:
        tolerances["value"] = value
    return parity(be, lambda b: invoke(b, method, args), tolerances, repeat)


def exact_sum_bound(terms, axis):
    """Any float32 summation order of K terms lands within (K - 1) u sum|terms| of the
    exact sum (conftest.py's rigorous bound)."""
    k = terms.shape[axis]
    return max(k - 1, 0) * U32 * np.abs(terms.astype(np.float64)).sum(axis=axis)


# Shapes shared by the 2-D families: 1 x 1, one row or column, primes, rows just off the
# 256-row reduction chunks, and arrays past the 32768-element threshold (97 x 1031,
# 300 x 200) where a kernel starts a team.
CPU_2D = [(1, 1), (1, 300), (300, 1), (7, 13), (97, 1031), (257, 10), (255, 17), (256, 17),
          (513, 3), (300, 200)]


# ---- arrays --------------------------------------------------------------------------------

def test_arrays_and_views_share_memory(backend_name):
    be = backends.get(backend_name)
    flat = be.from_host(np.arange(10, dtype=np.float32))
    view = be.view(flat, 2, (2, 3))
    assert_bitwise(host(be, view), np.arange(2, 8, dtype=np.float32).reshape(2, 3))
    be.copy_from_host(view, np.full((2, 3), -1.0, np.float32))
    assert_bitwise(host(be, flat)[2:8], np.full(6, -1.0, np.float32))
    assert_bitwise(host(be, be.zeros((3, 4))), np.zeros((3, 4), np.float32))
    assert be.empty((2, 5)).shape == (2, 5)
    assert host(be, be.from_host(np.arange(3))).dtype == np.int64
    assert host(be, be.from_host(np.ones(3, np.float64))).dtype == np.float32


# ---- matmul and dense ------------------------------------------------------------------------

CPU_GEMM = [(1, 1, 1), (6, 5, 4), (7, 3, 9), (17, 19, 13), (2, 33, 17), (31, 1, 8), (257, 130, 300)]
CUDA_GEMM = [(1, 1, 1), (6, 5, 4), (7, 3, 9), (17, 19, 13), (2, 33, 17), (31, 1, 8)]
TRANSPOSES = [(False, False), (True, False), (False, True), (True, True)]


def gemm_operands(m, n, k, trans_a, trans_b):
    rng = rng_for("gemm", m, n, k, trans_a, trans_b)
    return (f32(rng.standard_normal((k, m) if trans_a else (m, k))),
            f32(rng.standard_normal((n, k) if trans_b else (k, n))))


def assert_gemm_exact_within_bound(got, a, b, trans_a, trans_b):
    """Against the float64 product with the rigorous bound (k + 1) u |op(a)| |op(b)|: each
    element is a float32 sum of k products (conftest.py's refinement for GEMM results)."""
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    bound = (op_a.shape[1] + 1) * U32 * (np.abs(op_a) @ np.abs(op_b))
    assert got.dtype == np.float32 and got.shape == bound.shape
    assert np.all(np.abs(got - op_a @ op_b) <= bound), np.abs(got - op_a @ op_b).max()


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "tn", "nt", "tt"])
@over(cpu=CPU_GEMM, cuda=CUDA_GEMM)
def test_matmul(kernel_backend, case, trans_a, trans_b):
    be, (m, n, k) = kernel_backend, case
    a, b = gemm_operands(m, n, k, trans_a, trans_b)
    got = results(be, lambda be: invoke(be, "matmul", [a, b, trans_a, trans_b, Out("c", (m, n))]))
    assert_gemm_exact_within_bound(got["c"], a, b, trans_a, trans_b)


def test_matmul_of_k_zero_is_zero_and_of_no_rows_is_nothing(kernel_backend):
    be = kernel_backend
    out = Out("c", (3, 2)).make(be)
    be.matmul(be.empty((3, 0)), be.empty((0, 2)), False, False, out)
    assert_bitwise(host(be, out), np.zeros((3, 2), np.float32))
    be.matmul(be.empty((0, 4)), be.empty((4, 2)), False, False, be.empty((0, 2)))


# (m, n_in, n_out)
CPU_DENSE = [(1, 1, 1), (7, 13, 5), (255, 17, 3), (256, 31, 10), (257, 64, 32), (300, 97, 131)]
CUDA_DENSE = [(7, 5, 3), (4, 6, 2), (1, 1, 1)]
DENSE_FORWARD_VARIANTS = ["bias", "no_bias", "y_is_z"]


@over(cpu=pairwise(CPU_DENSE, ACTIVATIONS, DENSE_FORWARD_VARIANTS),
      cuda=pairwise(CUDA_DENSE, ACTIVATIONS, DENSE_FORWARD_VARIANTS))
def test_dense_forward(kernel_backend, case):
    (m, n_in, n_out), activation, variant = case
    rng = rng_for("dense", case)
    x, w = f32(rng.standard_normal((m, n_in))), f32(rng.standard_normal((n_in, n_out)))
    b = None if variant == "no_bias" else f32(rng.standard_normal(n_out))
    if variant == "y_is_z":
        check(kernel_backend, "dense_forward", x, w, b, activation, ALPHA,
              Out("y", (m, n_out), RTOL_SUMS), Same(5, "y", RTOL_SUMS))
    else:
        check(kernel_backend, "dense_forward", x, w, b, activation, ALPHA,
              Out("z", (m, n_out), RTOL_SUMS), Out("y", (m, n_out), RTOL_SUMS))


# which of dw, db, dx a backward is asked for (None for the others): a frozen layer has no
# dw, a first layer no dx
WANTED = {"all": (True, True, True), "frozen": (False, True, True),
          "no_db": (True, False, True), "dw_only": (True, False, False),
          "dx_only": (False, False, True), "none": (False, False, False)}


@over(cpu=pairwise(CPU_DENSE, ACTIVATIONS, list(WANTED)),
      cuda=[(s, a, w) for a, s, w in cycle(ACTIVATIONS, CUDA_DENSE, list(WANTED))])
def test_dense_backward(kernel_backend, case):
    """Both backends read the same z and y = activation(z); dy is overwritten with dz."""
    (m, n_in, n_out), activation, wanted = case
    rng = rng_for("dense backward", case)
    x, w = f32(rng.standard_normal((m, n_in))), f32(rng.standard_normal((n_in, n_out)))
    z = f32(rng.standard_normal((m, n_out)) * 2)
    y = ref.activation_forward(z, activation, ALPHA)
    want_dw, want_db, want_dx = WANTED[wanted]
    check(kernel_backend, "dense_backward", x, w, z, y,
          InOut("dz", rng.standard_normal((m, n_out)).astype(np.float32)), activation, ALPHA,
          Out("dw", (n_in, n_out), RTOL_SUMS) if want_dw else None,
          Out("db", (n_out,), RTOL_SUMS) if want_db else None,
          Out("dx", (m, n_in), RTOL_SUMS) if want_dx else None)


# ---- bias gradient ---------------------------------------------------------------------------

CUDA_BIAS = [(1, 1), (9, 3), (13, 37), (2, 40), (23, 37)]


@over(cpu=CPU_2D + [(0, 5), (1000, 37)], cuda=CUDA_BIAS + [(0, 5)])
def test_bias_grad(kernel_backend, case):
    """Column sums.  Floats: within the rigorous bound of the exact sums (dropping or
    repeating one row at a chunk boundary is off by ~1, far above it).  Small integers:
    exact in any order, so bitwise the reference's."""
    be, cols = kernel_backend, case[1]
    rng = rng_for("bias grad", case)
    dz = f32(rng.standard_normal(case))
    got = results(be, lambda be: invoke(be, "bias_grad", [dz, Out("db", (cols,))]),
                  repeat=True)["db"]
    exact = dz.astype(np.float64).sum(axis=0)
    assert got.dtype == np.float32
    assert np.all(np.abs(got - exact) <= exact_sum_bound(dz, 0)), np.abs(got - exact).max()
    integers = f32(rng.integers(-8, 9, size=case))
    check(be, "bias_grad", integers, Out("db", (cols,), BITWISE))


# ---- activations -----------------------------------------------------------------------------

CUDA_ACTIVATION = [(1, 1), (5, 7), (3, 1)]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@over(cpu=CPU_2D, cuda=CUDA_ACTIVATION)
def test_activation_forward_and_backward(kernel_backend, case, activation):
    be, shape = kernel_backend, case
    rng = rng_for("activation", shape, activation)
    # x wide enough for sigmoid's and tanh's saturation and gelu's far left tail
    x, dy = f32(rng.standard_normal(shape) * 4), f32(rng.standard_normal(shape))
    got, _ = check(be, "activation_forward", x, activation, ALPHA, Out("y", shape))
    y = ref.activation_forward(x, activation, ALPHA)      # both backwards read the same y
    got_dx, _ = check(be, "activation_backward", x, y, dy, activation, ALPHA, Out("dx", shape))
    # in place (y may be x, dx may be dy): bitwise the out-of-place results
    in_place = results(be, lambda be: invoke(be, "activation_forward",
                                             [x, activation, ALPHA, Same(0, "y")]))
    assert_bitwise(in_place["y"], got["y"])
    in_place = results(be, lambda be: invoke(be, "activation_backward",
                                             [x, y, dy, activation, ALPHA, Same(2, "dx")]))
    assert_bitwise(in_place["dx"], got_dx["dx"])


def test_softmax_of_extreme_logits_is_finite(kernel_backend):
    x = f32([[100.0, -100.0, 0.0], [-100.0, -100.0, -100.0], [1000.0, -1000.0, 50.0]])
    got, _ = check(kernel_backend, "activation_forward", x, "softmax", 0.0, Out("y", x.shape))
    assert np.isfinite(got["y"]).all()


# ---- losses ----------------------------------------------------------------------------------

LOSS_KINDS = [(kind, from_logits) for kind in ("mse", "bce", "cce", "scce")
              for from_logits in (False, True)]
# (shape, kind, from_logits); on cuda 1027 rows: two blocks of ROWS_PER_BLOCK, summed in order
CPU_LOSS = [(shape, kind, fl) for shape in CPU_2D for kind, fl in LOSS_KINDS]
CUDA_LOSS = [(shape, kind, fl) for shape in [(5, 3), (1, 1), (4, 1)] for kind, fl in LOSS_KINDS]
CUDA_LOSS_LONG = ((1027, 2), "cce", True)
CUDA_REPEATS = [CUDA_LOSS_LONG]


def loss_label(case):
    shape, kind, from_logits = case
    return f"{label(shape)}-{kind}-{'logits' if from_logits else 'probs'}"


def loss_inputs(kind, from_logits, shape):
    """(pred, target).  Probabilities include 0 (and 1 for BCE) where clipping makes the
    loss flat; CCE targets are soft, row 0 not normalised (the gradient goes through the
    normalisation); SCCE targets are int64 labels."""
    rng = rng_for("loss", kind, from_logits, shape)
    rows, cols = shape
    if from_logits or kind == "mse":
        pred = rng.standard_normal(shape) * (4 if kind == "bce" else 3)
    else:
        pred = rng.uniform(0.01, 1, shape) if kind in ("cce", "scce") else rng.uniform(0, 1, shape)
        if cols > 1:                 # a 1-wide CCE row of 0 would be 0/0
            pred[0, 0] = 0.0
            if kind == "bce":
                pred[0, 1] = 1.0
    if kind == "scce":
        return f32(pred), rng.integers(0, cols, size=rows).astype(np.int64)
    if kind == "mse":
        return f32(pred), f32(rng.standard_normal(shape))
    target = rng.uniform(0, 1, shape)
    if kind == "cce":
        target[1:] /= target[1:].sum(axis=1, keepdims=True)
    return f32(pred), f32(target)


def check_loss(be, kind, from_logits, pred, target, repeat=False):
    got, _ = check(be, "loss", kind, pred, target, from_logits, Out("grad", pred.shape),
                   value=RTOL_ELEMENTWISE, repeat=repeat)
    assert np.isfinite(got["value"])
    # without a gradient: the same number
    alone = results(be, lambda be: invoke(be, "loss", [kind, pred, target, from_logits, None]))
    assert_bitwise(alone["value"], got["value"])
    return got


@over(cpu=CPU_LOSS, cuda=CUDA_LOSS + [CUDA_LOSS_LONG], ids=loss_label)
def test_loss(kernel_backend, case):
    shape, kind, from_logits = case
    pred, target = loss_inputs(kind, from_logits, shape)
    check_loss(kernel_backend, kind, from_logits, pred, target, repeat=case in CUDA_REPEATS)


# Keras 3's other losses (no logits forms): every kind on cpu's awkward shapes, on cuda's tiny
# ones; Huber at delta 0.7 (both branches) and 1.0; hinge targets {0, 1} (mapped to -1, 1)
# on odd row counts, others elsewhere
OTHER_LOSSES = ["mae", "mape", "huber", "log_cosh", "kld", "hinge", "squared_hinge",
                "categorical_hinge", "poisson", "cosine_similarity"]
CPU_OTHER_LOSS = [(shape, kind) for shape in CPU_2D for kind in OTHER_LOSSES]
CUDA_OTHER_LOSS = [(shape, kind) for shape in [(5, 3), (1, 1), (4, 2)] for kind in OTHER_LOSSES]


def other_loss_inputs(kind, shape):
    """(pred, target, param) with the edges each loss has: p = t (MAE's sign(0)), a zero
    target (MAPE's epsilon), probabilities beyond [1e-7, 1] (KLD's clipping), a zero
    prediction row (cosine similarity's clamped norm), p = 0 (Poisson's epsilon)."""
    rng = rng_for("other loss", kind, shape)
    rows, cols = shape
    pred = rng.standard_normal(shape) * 2
    target = rng.standard_normal(shape)
    param = 0.7 if rows % 2 else 1.0
    if kind in ("mae", "mape", "huber"):
        pred[0, 0] = target[0, 0]
        target[-1, -1] = 0.0
    elif kind == "kld":
        pred, target = rng.uniform(-0.1, 1.2, shape), rng.uniform(0, 1, shape)
        target[0, 0] = 0.0
    elif kind in ("hinge", "squared_hinge"):
        target = (rng.random(shape) > 0.5) * 1.0 if rows % 2 else rng.uniform(-1, 1, shape)
    elif kind == "categorical_hinge":
        target = np.eye(cols)[rng.integers(0, cols, size=rows)]
    elif kind == "poisson":
        pred, target = rng.uniform(0, 3, shape), rng.poisson(1.5, shape) * 1.0
        pred[0, 0] = 0.0
    elif kind == "cosine_similarity" and rows > 1:
        pred[1] = 0.0
    return f32(pred), f32(target), param


@over(cpu=CPU_OTHER_LOSS, cuda=CUDA_OTHER_LOSS, ids=lambda c: f"{label(c[0])}-{c[1]}")
def test_other_losses(kernel_backend, case):
    shape, kind = case
    pred, target, param = other_loss_inputs(kind, shape)
    got, _ = check(kernel_backend, "loss", kind, pred, target, False, Out("grad", pred.shape),
                   param, value=RTOL_ELEMENTWISE)
    assert np.isfinite(got["value"])
    alone = results(kernel_backend,
                    lambda be: invoke(be, "loss", [kind, pred, target, False, None, param]))
    assert_bitwise(alone["value"], got["value"])


def test_hinge_maps_binary_targets_only_when_the_whole_batch_is_binary(backend_name):
    """Keras's convert_binary_labels_to_hinge looks at every target: one 0.5 anywhere keeps
    the other rows' 0s and 1s as they are."""
    be = backends.get(backend_name)
    pred = np.array([[0.5], [-0.5]], np.float32)
    binary = be.loss("hinge", be.from_host(pred), be.from_host(np.array([[1.0], [0.0]], np.float32)),
                     False, None)
    assert binary == pytest.approx(0.5)               # targets 1, -1: max(1 - 0.5, 0) each
    mixed = be.loss("hinge", be.from_host(pred), be.from_host(np.array([[1.0], [0.5]], np.float32)),
                    False, None)
    assert mixed == pytest.approx((0.5 + 1.25) / 2)


# The losses' options (csrc/pynn.h's pynn_loss_options): per-sample weights with zeros (one
# per row, or one per 2 or 3 rows: a per-position output), label smoothing (BCE, CCE, SCCE;
# probabilities and logits), ignore_class (some rows, every row, a class outside [0, cols)).
# Every kind with weights on cpu's shapes pairwise with the variants, tiny ones on cuda.
OPTION_KINDS = [("mse", False), ("bce", False), ("bce", True), ("cce", False), ("cce", True),
                ("scce", False), ("scce", True)] + [(k, False) for k in OTHER_LOSSES]
OPTION_VARIANTS = ["weights", "per-position", "smoothing", "ignore", "ignore-all",
                   "ignore-outside"]
CPU_OPTION_SHAPES = [(1, 1), (6, 13), (258, 10), (513, 3), (300, 200), (99, 1031)]
CPU_LOSS_OPTIONS = [(shape, kind, fl, variant)
                    for shape, (kind, fl), variant in pairwise(CPU_OPTION_SHAPES, OPTION_KINDS,
                                                               OPTION_VARIANTS)]
CUDA_LOSS_OPTIONS = [((6, 3), kind, fl, variant)
                     for (kind, fl), variant in cycle(OPTION_KINDS, OPTION_VARIANTS)] + \
    [((4, 2), "scce", fl, v) for fl, v in [(True, "ignore"), (False, "ignore-all"),
                                           (True, "ignore-outside"), (False, "smoothing")]] + \
    [((4, 3), "cce", True, "smoothing"), ((4, 3), "bce", False, "smoothing")]


def loss_option_args(kind, from_logits, shape, variant):
    """(pred, target, param, weights, label_smoothing, ignore_class) of a case: weights always
    (zeros among them); smoothing where the kind takes it; ignore_class for scce."""
    rows, cols = shape
    rng = rng_for("loss options", kind, from_logits, shape, variant)
    if kind in OTHER_LOSSES:
        pred, target, param = other_loss_inputs(kind, shape)
    else:
        (pred, target), param = loss_inputs(kind, from_logits, shape), 1.0
    per = 3 if rows % 3 == 0 else 2 if rows % 2 == 0 else 1
    weights = rng.uniform(0, 2, rows // per if variant == "per-position" else rows)
    weights[rng.random(weights.shape[0]) < 0.3] = 0.0
    smoothing = 0.0
    if kind in ("bce", "cce", "scce") and variant in ("smoothing", "per-position", "ignore"):
        smoothing = 0.15 if variant == "smoothing" else 1.0 if rows % 2 else 0.05
    ignore = None
    if kind == "scce" and variant.startswith("ignore"):
        ignore = -1 if variant == "ignore-outside" else int(target[0])
        if variant == "ignore-all":
            target = np.full_like(target, ignore)
        elif variant == "ignore-outside":
            target = np.where(rng.random(rows) < 0.4, -1, target)
    return pred, target, param, f32(weights), smoothing, ignore


@over(cpu=CPU_LOSS_OPTIONS, cuda=CUDA_LOSS_OPTIONS)
def test_loss_options(kernel_backend, case):
    """Weights, smoothing and ignore_class against the reference; on cpu bitwise on 1, 2 and 3
    threads; without a gradient the same value."""
    shape, kind, from_logits, variant = case
    pred, target, param, weights, smoothing, ignore = loss_option_args(kind, from_logits, shape,
                                                                       variant)
    args = [kind, pred, target, from_logits, Out("grad", pred.shape), param, weights, smoothing,
            ignore]
    got, want = check(kernel_backend, "loss", *args, value=RTOL_ELEMENTWISE)
    assert np.isfinite(got["value"])
    if variant == "ignore-all" and kind == "scce":
        assert got["value"] == 0.0 and not got["grad"].any()
    alone = results(kernel_backend, lambda be: invoke(be, "loss", args[:4] + [None] + args[5:]))
    assert_bitwise(alone["value"], got["value"])


@pytest.mark.parametrize("kind,from_logits", [("mse", False), ("bce", True), ("cce", False),
                                              ("cce", True), ("scce", True), ("huber", False)])
def test_loss_options_that_change_nothing_keep_the_default_bits(kind, from_logits):
    """Weights of 1, smoothing 0 and an ignore_class no label has take the options path (the
    per-row functions) and give bitwise the default path's value and gradient (the blocked CCE
    paths included)."""
    shape = (513, 7)
    pred, target = (loss_inputs(kind, from_logits, shape) if kind != "huber" else
                    other_loss_inputs(kind, shape)[:2])
    ones = np.ones(shape[0], np.float32)
    want_grad, got_grad = np.empty(shape, np.float32), np.empty(shape, np.float32)
    want = CPU.loss(kind, pred, target, from_logits, want_grad, 0.7)
    got = CPU.loss(kind, pred, target, from_logits, got_grad, 0.7, ones, 0.0,
                   shape[1] + 5 if kind == "scce" else None)
    assert_bitwise(np.float64(got), np.float64(want))
    assert_bitwise(got_grad, want_grad)


# reduce_sum (Keras 3's reduction "sum", pynn_loss_options.reduce_sum): the options path with
# nothing divided by the rows, alone ("plain") and with each variant's options, every kind.
SUM_VARIANTS = ["plain"] + OPTION_VARIANTS
CPU_LOSS_SUM = [(shape, kind, fl, variant) for (kind, fl), shape, variant in
                cycle(OPTION_KINDS, CPU_OPTION_SHAPES, SUM_VARIANTS)] + \
    [(shape, kind, fl, variant) for (kind, fl), shape, variant in
     cycle(OPTION_KINDS, CPU_OPTION_SHAPES[::-1], SUM_VARIANTS[3:] + SUM_VARIANTS[:3])]
CUDA_LOSS_SUM = [((6, 3), kind, fl, variant)
                 for (kind, fl), variant in cycle(OPTION_KINDS, SUM_VARIANTS)] + \
    [((4, 2), "scce", True, "ignore-outside"), ((4, 3), "cce", True, "plain")]


@over(cpu=CPU_LOSS_SUM, cuda=CUDA_LOSS_SUM)
def test_loss_reduce_sum(kernel_backend, case):
    """reduce_sum against the reference (on cpu bitwise on 1, 2 and 3 threads); the value
    and the gradient are n times the mean's, n the rows (not ignored); every row ignored: 0
    and a zero gradient; without a gradient the same value."""
    shape, kind, from_logits, variant = case
    pred, target, param, weights, smoothing, ignore = loss_option_args(
        kind, from_logits, shape, "weights" if variant == "plain" else variant)
    if variant == "plain":
        weights, smoothing, ignore = None, 0.0, None
    args = [kind, pred, target, from_logits, Out("grad", pred.shape), param, weights, smoothing,
            ignore]
    got, _ = check(kernel_backend, "loss", *args, True, value=RTOL_ELEMENTWISE)
    mean = results(kernel_backend, lambda be: invoke(be, "loss", args + [False]))
    n = shape[0] if ignore is None else int(np.count_nonzero(target != ignore))
    if n == 0:
        assert got["value"] == 0.0 and not got["grad"].any()
    else:
        assert_close(got["value"], n * mean["value"], RTOL_ELEMENTWISE, "value")
        assert_close(got["grad"], n * mean["grad"].astype(np.float64), RTOL_ELEMENTWISE, "grad")
    alone = results(kernel_backend, lambda be: invoke(be, "loss", args[:4] + [None] + args[5:]
                                                      + [True]))
    assert_bitwise(alone["value"], got["value"])


def test_reduce_sum_false_is_the_default_path():
    """reduce_sum=False given is bitwise no reduce_sum at all (the blocked CCE path too)."""
    for kind, from_logits in [("cce", True), ("mse", False), ("scce", False)]:
        pred, target = loss_inputs(kind, from_logits, (513, 7))
        grads = [np.empty((513, 7), np.float32) for _ in range(2)]
        a = CPU.loss(kind, pred, target, from_logits, grads[0])
        b = CPU.loss(kind, pred, target, from_logits, grads[1], reduce_sum=False)
        assert_bitwise(np.float64(a), np.float64(b))
        assert_bitwise(grads[0], grads[1])


def test_loss_options_refused(backend_name):
    """Bad options are refused on every backend before anything is written."""
    be = backends.get(backend_name)
    pred = be.from_host(np.full((4, 3), 0.5, np.float32))
    target = be.from_host(np.full((4, 3), 0.5, np.float32))
    labels = be.from_host(np.array([0, 1, 2, -1], np.int64))

    def w(*values):
        return be.from_host(np.array(values, np.float32))
    for kind, tgt, kwargs in [
            ("bce", target, dict(weights=w(1, 1, -1, 1))),
            ("bce", target, dict(weights=w(1, np.nan, 1, 1))),
            ("bce", target, dict(weights=w(1, np.inf, 1, 1))),
            ("bce", target, dict(weights=w(1, 1, 1))),            # 3 does not divide 4 rows
            ("bce", target, dict(label_smoothing=1.5)),
            ("cce", target, dict(label_smoothing=-0.1)),
            ("mse", target, dict(label_smoothing=0.1)),           # no smoothing for mse
            ("cce", target, dict(ignore_class=0))] + ([] if backend_name == "cuda" else [
            # labels out of range (cuda does not range-check labels, its metrics.py says why)
            ("scce", labels, dict(ignore_class=5)),               # -1 is a label out of range
            ("scce", labels, dict())]):
        grad = be.from_host(np.full((4, 3), 7.0, np.float32))
        with pytest.raises(ValueError):
            be.loss(kind, pred, tgt, False, grad, **kwargs)
        assert_bitwise(host(be, grad), np.full((4, 3), 7.0, np.float32))
    with pytest.raises(TypeError):
        be.loss("scce", pred, labels, False, None, ignore_class="x")
    with pytest.raises(TypeError, match="reduce_sum"):
        be.loss("mse", pred, target, False, None, reduce_sum=1)


def test_losses_of_extreme_logits_are_finite(kernel_backend):
    rng = rng_for("extreme logits")
    z = f32(rng.choice([-1000.0, -100.0, 0.0, 3.0, 100.0, 1000.0], size=(9, 4)))
    check_loss(kernel_backend, "bce", True, z, f32(rng.integers(0, 2, size=(9, 4))))
    check_loss(kernel_backend, "cce", True, z, ref.one_hot(rng.integers(0, 4, size=9), 4))
    check_loss(kernel_backend, "scce", True, z, rng.integers(0, 4, size=9))


def test_probabilities_at_0_and_1_are_clipped(kernel_backend):
    # confidently right and confidently wrong rows; every row has a positive sum
    p = f32([[0, 1, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 0, 1]])
    t = f32([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    got = check_loss(kernel_backend, "bce", False, p, t)
    assert (got["grad"][(p == 0) | (p == 1)] == 0).all()      # flat where clipped
    check_loss(kernel_backend, "cce", False, p, t)
    check_loss(kernel_backend, "scce", False, p, np.array([1, 1, 0, 2]))


# ---- metric sums -----------------------------------------------------------------------------

# (shape, kind, labels): float rows or int64 labels; on cuda 1029 rows: two blocks
CPU_METRIC = [(shape, kind, labels) for shape in [(1, 1), (1, 10), (7, 3), (257, 10), (300, 131)]
              for kind in ref.METRICS for labels in (False, True)]
CUDA_METRIC = [(shape, kind, labels) for shape in [(1, 1), (6, 3), (5, 11)]
               for kind in ref.METRICS for labels in (False, True)]
CUDA_METRIC_LONG = [((1029, 2), "mean_squared_error", False),
                    ((1029, 2), "sparse_categorical_accuracy", True)]
CUDA_REPEATS += CUDA_METRIC_LONG


def metric_inputs(kind, shape, labels):
    """Probabilities with ties (row 0 all 0.5: `> 0.5` is false and argmax takes the
    first; row 1 two equal maxima) against float rows or int64 labels."""
    rng = rng_for("metric", kind, shape, labels)
    rows, cols = shape
    pred = f32(rng.random(shape))
    pred[0, :] = 0.5
    if rows > 1 and cols > 1:
        pred[1, -1] = pred[1, 0] = pred[1].max() + 0.25
    if labels:
        return pred, rng.integers(0, cols, size=rows).astype(np.int64)
    if kind in ("mean_absolute_error", "mean_squared_error"):
        return pred, f32(rng.random(shape))
    if kind == "binary_accuracy":
        return pred, f32(rng.random(shape) > 0.5)
    if kind.endswith(("_positives", "_negatives")):      # any non-zero target is positive
        return pred, f32((rng.random(shape) > 0.5) * rng.choice([1.0, 0.5, -2.0], shape))
    return pred, f32(np.eye(cols)[rng.integers(0, cols, size=rows)])


@over(cpu=CPU_METRIC, cuda=CUDA_METRIC + CUDA_METRIC_LONG,
      ids=lambda c: f"{label(c[0])}-{c[1]}-{'labels' if c[2] else 'rows'}")
def test_metric_sum(kernel_backend, case):
    """Accuracies that count whole rows sum 0s and 1s: exact.  The others average a row in
    float32 (in another order than NumPy's pairwise sum): to rounding."""
    shape, kind, labels = case
    pred, target = metric_inputs(kind, shape, labels)
    counts = kind in ("categorical_accuracy", "sparse_categorical_accuracy") or \
        kind.endswith(("_positives", "_negatives", "top_k_categorical_accuracy"))
    check(kernel_backend, "metric_sum", kind, pred, target,
          value=BITWISE if counts else RTOL_ELEMENTWISE, repeat=case in CUDA_REPEATS)


# ---- optimizers ------------------------------------------------------------------------------

HYPER = {"learning_rate": 0.01, "momentum": 0.9, "nesterov": 0.0, "beta_1": 0.9,
         "beta_2": 0.999, "rho": 0.9, "epsilon": 1e-7}
RULES = [("sgd", {"momentum": 0.0}), ("sgd", {}), ("sgd", {"nesterov": 1.0}), ("adam", {}),
         ("rmsprop", {"momentum": 0.0}), ("rmsprop", {"momentum": 0.5})]
RULE_IDS = ["sgd", "sgd_momentum", "sgd_nesterov", "adam", "rmsprop", "rmsprop_momentum"]
# pynn_optimizer_step's other rules and settings (no per-rule method of their own)
STEP_RULES = RULES + [("adam", {"amsgrad": 1.0}), ("adam", {"weight_decay": 0.05}),
                      ("sgd", {"momentum": 0.0, "weight_decay": 0.1}), ("adagrad", {}),
                      ("adadelta", {"learning_rate": 1.0}), ("adamax", {}), ("nadam", {}),
                      ("lion", {"beta_2": 0.99})]
STEP_RULE_IDS = RULE_IDS + ["adam_amsgrad", "adamw", "sgd_weight_decay", "adagrad", "adadelta",
                            "adamax", "nadam", "lion"]
CPU_SIZES = [1, 7, 1031, 40000]          # 40000: past the threshold of a team


def optimizer_tolerance(be):
    """The C update rules evaluate the reference's float32 expressions in the same order,
    built with -ffp-contract=off (and sqrt is correctly rounded): bitwise.  The GPU
    contracts a * b + c into FMAs: to rounding."""
    return BITWISE if be.name == "cpu" else RTOL_ELEMENTWISE


def slots_of(kind, changes, n, rng, spare):
    """slot1, slot2 as pynn_optimizer_step takes them (SGD: momentum; Adam: m, v; RMSprop:
    velocity, momentum), non-negative; `spare`: arrays even where the rule reads none (it
    must leave them alone), else None there."""
    settings = dict(HYPER, **changes)
    used = {"sgd": (settings["momentum"] != 0, False, False),
            "adam": (True, True, bool(settings.get("amsgrad", 0))),
            "rmsprop": (True, settings["momentum"] != 0, False), "adagrad": (True, False, False),
            "adadelta": (True, True, False), "adamax": (True, True, False),
            "nadam": (True, True, False), "lion": (True, False, False)}[kind]
    return [f32(rng.random(n) * 0.1) if u or spare else None for u in used]


@pytest.mark.parametrize("rule", range(len(STEP_RULES)), ids=STEP_RULE_IDS)
@over(cpu=CPU_SIZES, cuda=[29])
def test_optimizer_step(kernel_backend, case, rule):
    """Steps 1, 2, 3 (Adam's bias correction changes with the step)."""
    be, n = kernel_backend, case
    (kind, changes), tol = STEP_RULES[rule], optimizer_tolerance(kernel_backend)
    rng = rng_for("optimizer", kind, changes, n)
    w, gs = f32(rng.standard_normal(n)), [f32(rng.standard_normal(n)) for _ in range(3)]
    slots = slots_of(kind, changes, n, rng, spare=(rule + n) % 2 == 0)
    hyper = dict(HYPER, **changes)

    def steps(be):
        state = [be.from_host(a.copy()) if a is not None else None for a in [w] + slots]
        for step, g in enumerate(gs, start=1):
            be.optimizer_step(kind, state[0], state[1:], be.from_host(g), step, hyper)
        return {name: host(be, a) for name, a in zip(("w", "slot0", "slot1", "slot2"), state)
                if a is not None}
    parity(be, steps, {name: tol for name, a in zip(("w", "slot0", "slot1", "slot2"),
                                                     [w] + slots) if a is not None})


# The per-rule methods every backend still offers beside optimizer_step.
UPDATE_RULES = [("sgd", dict(lr=0.1, momentum=0.0, nesterov=False)),
                ("sgd", dict(lr=0.1, momentum=0.9, nesterov=False)),
                ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
                ("adam", dict(lr_t=0.003, beta1=0.9, beta2=0.999, epsilon=1e-7)),
                ("rmsprop", dict(lr=0.01, rho=0.9, momentum=0.0, epsilon=1e-7)),
                ("rmsprop", dict(lr=0.01, rho=0.9, momentum=0.5, epsilon=1e-7))]


@pytest.mark.parametrize("rule", range(len(UPDATE_RULES)), ids=RULE_IDS)
@over(cpu=CPU_SIZES, cuda=[37])
def test_update_rules(kernel_backend, case, rule):
    be, n = kernel_backend, case
    kind, settings = UPDATE_RULES[rule]
    rng = rng_for("update rule", rule, n)
    w, s1, s2 = f32(rng.standard_normal(n)), f32(rng.random(n) * 0.1), f32(rng.random(n) * 0.1)
    gs = [f32(rng.standard_normal(n)) for _ in range(3)]
    momentum = settings.get("momentum", 1.0) != 0

    def steps(be):
        w_, a, b = (be.from_host(v.copy()) for v in (w, s1, s2))
        for g in gs:
            g = be.from_host(g)
            if kind == "sgd":
                be.sgd_update(w_, a if momentum else None, g, **settings)
            elif kind == "adam":
                be.adam_update(w_, a, b, g, **settings)
            else:
                be.rmsprop_update(w_, a, b if momentum else None, g, **settings)
        return {"w": host(be, w_), "slot1": host(be, a), "slot2": host(be, b)}
    parity(be, steps, dict.fromkeys(("w", "slot1", "slot2"), optimizer_tolerance(be)))


# ---- convolution -----------------------------------------------------------------------------

def window_geometry(h, w, window, strides, padding):
    """((OH, OW), (pad_top, pad_left)): Keras's for "valid" / "same"; an explicit padding
    is ((pad_top, pad_left), (OH, OW))."""
    if isinstance(padding, str):
        (oh, pt), (ow, pl) = (output_size(s, k, st, padding)
                              for s, k, st in zip((h, w), window, strides))
        return (oh, ow), (pt, pl)
    return tuple(padding[1]), tuple(padding[0])


def symmetric(h, w, window, strides, pad):
    """An explicit padding of `pad` rows / columns on every side (the plan's geometry)."""
    return ((pad, pad), ((h + 2 * pad - window[0]) // strides[0] + 1,
                         (w + 2 * pad - window[1]) // strides[1] + 1))


# (n, h, w, c, window, strides, padding, f): strides 1/2/3, odd sizes, one channel,
# overlapping and gapped windows, channels past one 64-wide block
CONV_GEOMETRIES = [
    (2, 7, 6, 3, (3, 2), (1, 1), "valid", 5),
    (3, 9, 8, 1, (5, 5), (2, 3), "same", 6),
    (1, 5, 5, 2, (3, 3), (3, 3), "same", 5),
    (2, 11, 13, 7, (4, 3), (2, 2), "same", 5),
    (1, 1, 1, 5, (1, 1), (1, 1), "valid", 5),
    (2, 3, 17, 3, (3, 3), (2, 1), "same", 5),
    (1, 8, 8, 1, (2, 2), (3, 3), "valid", 6),          # gaps between the windows
    (4, 28, 28, 1, (5, 5), (1, 1), "same", 6),          # LeNet's first layer
    (2, 6, 6, 67, (2, 2), (1, 2), "same", 5),
    (3, 28, 28, 6, (2, 2), (2, 2), "valid", 5),
    (2, 9, 11, 5, (2, 2), (2, 2), "valid", 5),
    (2, 10, 10, 16, (2, 2), (2, 2), "same", 5),
]
# The direct convolution (conv_direct.c) takes kh*kw*c <= 32 and f <= 16 (not softmax):
# shapes on both sides of that rule, of its 64-column blocks (ow 70, 130) and of its 8-lane
# and 4-filter tiles (f 1, 5, 9, 16, 17); one channel at column stride 1 spreads lanes over
# (position, filter) (xe_* in conv_direct.c).
DIRECT_GEOMETRIES = [
    (3, 28, 28, 1, (5, 5), (1, 1), "same", 6),
    (2, 9, 70, 3, (3, 3), (1, 1), "same", 9),
    (1, 5, 131, 2, (2, 4), (1, 2), "valid", 16),
    (2, 7, 7, 2, (4, 4), (1, 1), "same", 1),        # kh*kw*c = 32: the largest direct kernel
    (2, 7, 7, 3, (3, 4), (2, 1), "same", 5),        # 36: the GEMM path
    (2, 6, 6, 1, (3, 3), (1, 1), "valid", 17),      # 17 filters: the GEMM path
    (1, 1, 1, 1, (1, 1), (1, 1), "valid", 3),
    (2, 13, 12, 1, (4, 8), (2, 1), "same", 16),     # kw 8, row stride 2, ow*f 192: the widest
    (1, 5, 13, 1, (3, 3), (1, 1), "same", 16),      # ow*f 208: the patch route
    (2, 40, 9, 1, (3, 3), (1, 1), "same", 5),       # 40 rows: two row blocks per image
    (2, 9, 10, 1, (2, 7), (1, 1), "valid", 7),      # kw 7: the loop without a fixed width
    (2, 40, 7, 1, (5, 5), (1, 1), "same", 3),       # 5x5 at row stride 1, two row blocks
    (2, 3, 12, 1, (5, 5), (1, 1), "same", 16),      # 5x5 with fewer rows than the window
]
# The plan's layers: explicit symmetric padding; 64 x 14 x 14 x 6 under a 5x5x6x16 kernel
# (LeNet's second layer) has 6400 positions: the filter gradient's K split in 8 chunks.
PLAN_GEOMETRIES = [
    (2, 8, 8, 1, (3, 3), (1, 1), symmetric(8, 8, (3, 3), (1, 1), 0), 8),
    (1, 1, 1, 1, (1, 1), (1, 1), symmetric(1, 1, (1, 1), (1, 1), 0), 1),
    (3, 9, 70, 3, (3, 3), (1, 1), symmetric(9, 70, (3, 3), (1, 1), 1), 9),
    (2, 11, 13, 7, (4, 3), (2, 2), symmetric(11, 13, (4, 3), (2, 2), 1), 5),
    (64, 14, 14, 6, (5, 5), (1, 1), symmetric(14, 14, (5, 5), (1, 1), 0), 16),
]
# Winograd's F(2x2, 3x3) (conv_winograd.c) takes 3x3 stride-1 layers over at least 16
# channels and filters (8 for the forward alone) with outputs of at least 4 x 4 and 128 tiles of 2 x 2 outputs in
# the batch, and its F(3x3, 2x2) their filter gradient up to c f = 4096: odd outputs
# (half-filled last tiles), "valid" (the input gradient padded 2), batch 1, a 16-filter
# last chunk (48), 20 channels and 50 filters (partial vectors, a last chunk of 18
# filters, the filter gradient's last tile of channels past c), and c f past 4096 (the
# filter gradient back on the implicit GEMM); the last has too few tiles (16) and takes the
# implicit GEMM throughout.
WINOGRAD_GEOMETRIES = [
    (8, 7, 9, 16, (3, 3), (1, 1), "same", 32),
    (12, 10, 8, 32, (3, 3), (1, 1), "valid", 48),
    (1, 24, 23, 48, (3, 3), (1, 1), "same", 16),
    (8, 9, 7, 20, (3, 3), (1, 1), "same", 50),
    (16, 6, 6, 64, (3, 3), (1, 1), "same", 80),
    (1, 7, 7, 32, (3, 3), (1, 1), "same", 32),
]
CONV_WANTED = ["all", "frozen", "dx_only", "dw_only"]
DIRECT_ACTIVATIONS = [a for a in ACTIVATIONS if a != "softmax"]

# (geometry, activation, bias, wanted)
CPU_CONV = ([(g, a, True, w) for g, a, w in pairwise(CONV_GEOMETRIES, ACTIVATIONS, CONV_WANTED)]
            + [(g, a, bias, "all" if bias else "dw_only") for g, a, bias in
               cycle(DIRECT_GEOMETRIES, DIRECT_ACTIVATIONS, [True, False])]
            + [(g, a, True, w) for g, w, a in
               pairwise(PLAN_GEOMETRIES, CONV_WANTED, ["relu", "softmax"])]
            + [(g, a, bias, w) for (g, a), w, bias in
               zip(zip(WINOGRAD_GEOMETRIES, ["relu", "linear", "tanh", "relu", "leaky_relu", "relu"]),
                   ["all", "dx_only", "dw_only", "all", "all", "all"],
                   [True, False, True, True, True, True])])
CUDA_CONV = [
    ((2, 5, 7, 2, (3, 3), (1, 1), "same", 3), "relu", True, "all"),
    ((3, 5, 7, 1, (3, 3), (2, 2), "valid", 2), "tanh", True, "dw_only"),
    ((2, 5, 7, 3, (2, 2), (2, 2), "same", 2), "linear", False, "all"),     # pad bottom/right only
    ((2, 5, 7, 2, (3, 3), (2, 2), "same", 3), "softmax", True, "all"),     # pad on every side
    ((2, 6, 5, 2, (2, 2), (1, 1), "valid", 1), "leaky_relu", True, "frozen"),
    ((2, 5, 7, 2, (3, 2), (2, 1), "same", 2), "gelu", True, "all"),        # non-square window
]
CUDA_REPEATS.append(CUDA_CONV[3])


def conv_label(case):
    (n, h, w, c, window, strides, padding, f), activation, bias, wanted = case
    pad = padding if isinstance(padding, str) else f"pad{padding[0][0]}"
    return (f"{n}x{h}x{w}x{c}-k{label(window)}-s{label(strides)}-{pad}-f{f}-{activation}"
            f"{'' if bias else '-nobias'}-{wanted}")


def conv_problem(case):
    (n, h, w, c, window, strides, padding, f), activation, bias, wanted = case
    rng = rng_for("conv", case)
    out_hw, pads = window_geometry(h, w, window, strides, padding)
    x = f32(rng.standard_normal((n, h, w, c)))
    k = f32(rng.standard_normal(window + (c, f)) * 0.5)
    b = f32(rng.standard_normal(f)) if bias else None
    dy = f32(rng.standard_normal((n,) + out_hw + (f,)))
    return x, k, b, dy, out_hw, pads


def conv_forward(be, x, k, b, strides, pads, out_hw, activation, y_is_z=False):
    n, f = x.shape[0], k.shape[3]
    cols = Out("cols", (n * out_hw[0] * out_hw[1], k.shape[0] * k.shape[1] * k.shape[2])).make(be)
    z = Out("z", (n,) + out_hw + (f,)).make(be)
    y = z if y_is_z else Out("y", z.shape).make(be)
    be.conv2d_forward(be.from_host(x), be.from_host(k), None if b is None else be.from_host(b),
                      strides, pads, activation, ALPHA, cols, z, y)
    return cols, z, y


def conv_step(be, case, wanted, z_ref, y_ref):
    """Forward, then backward from the reference's z and y (so dz compares elementwise) and
    the cols this backend's forward left; a work array of the size the backend asks."""
    x, k, b, dy, out_hw, pads = conv_problem(case)
    strides, f, activation = case[0][5], case[0][7], case[1]
    cols, z, y = conv_forward(be, x, k, b, strides, pads, out_hw, activation)
    out = {"cols": host(be, cols), "z": host(be, z), "y": host(be, y)}
    size = be.conv2d_backward_work_size(x.shape, k.shape, strides, out_hw)
    assert isinstance(size, int) and size >= 1
    want_dw, want_db, want_dx = WANTED[wanted]
    want_db = want_db and b is not None
    grads = {"dz": be.from_host(dy.copy()),
             "dw": Out("dw", k.shape).make(be) if want_dw else None,
             "db": Out("db", (f,)).make(be) if want_db else None,
             "dx": Out("dx", x.shape).make(be) if want_dx else None}
    be.conv2d_backward(be.from_host(x), be.from_host(k), be.from_host(z_ref), be.from_host(y_ref),
                       grads["dz"], strides, pads, activation, ALPHA, cols,
                       Out("work", (size,)).make(be), grads["dw"], grads["db"], grads["dx"])
    out.update({name: host(be, a) for name, a in grads.items() if a is not None})
    return out


@over(cpu=CPU_CONV, cuda=CUDA_CONV, ids=conv_label)
def test_conv2d_forward_and_backward(kernel_backend, case):
    be = kernel_backend
    (n, h, w, c, window, strides, padding, f), activation, bias, wanted = case
    direct = be.name == "cpu" and _core.conv2d_direct_supported(window + (c, f),
                                                                ids.ACTIVATIONS[activation])
    if be.name == "cpu":
        # row-wise activations (softmax, log_softmax: engineer A) take the GEMM path
        assert direct == (window[0] * window[1] * c <= 32 and f <= 16 and
                          activation not in ("softmax", "log_softmax"))
    x, k, b, dy, out_hw, pads = conv_problem(case)
    _, z_ref, y_ref = ref.conv2d_forward(x, k, b, strides, pads, out_hw, activation, ALPHA)
    tolerances = {"z": RTOL_SUMS, "y": RTOL_SUMS, "dz": RTOL_ELEMENTWISE}
    if be.name != "cpu":              # where the backend leaves im2col(x) in cols: a copy
        tolerances["cols"] = BITWISE  # (cpu's implicit GEMM reads x and leaves cols alone)
    tolerances.update({name: RTOL_SUMS for name, wanted_ in zip(("dw", "db", "dx"), WANTED[wanted])
                       if wanted_ and (name != "db" or bias)})
    parity(be, lambda be: conv_step(be, case, wanted, z_ref, y_ref), tolerances,
           repeat=case in CUDA_REPEATS)


def test_cpu_convolution_cases_reach_both_paths():
    paths = {_core.conv2d_direct_supported(g[4] + (g[3], g[7]), ids.ACTIVATIONS[a])
             for g, a, _, _ in CPU_CONV}
    assert paths == {True, False}


def test_cpu_convolution_cases_reach_winograd():
    """The Winograd geometries take F(2x2, 3x3) (forward and input gradient) and, but for
    the fifth, F(3x3, 2x2) (filter gradient), the last (16 tiles) neither; none of the
    others does."""
    def paths(g, a):
        out_hw, _ = window_geometry(g[1], g[2], g[4], g[5], g[6])
        return _core.conv2d_winograd_supported(g[0], g[4] + (g[3], g[7]), g[5], out_hw,
                                               ids.ACTIVATIONS[a])
    taken = [paths(g, a) for g, a, _, _ in CPU_CONV if g in WINOGRAD_GEOMETRIES]
    assert taken == [(True, True)] * 4 + [(True, False), (False, False)]
    assert not any(paths(g, a)[0] for g, a, _, _ in CPU_CONV if g not in WINOGRAD_GEOMETRIES)


@over(cpu=[(DIRECT_GEOMETRIES[0], "relu", True, "all"), (PLAN_GEOMETRIES[-1], "relu", True, "all")],
      cuda=CUDA_CONV[:1], ids=conv_label)
def test_a_frozen_convolution_computes_the_same_dz_db_and_dx(kernel_backend, case):
    """dw=None skips the filter gradient; what is still computed is bitwise what the
    trainable layer computes (the direct path derives db in the filter gradient's pass)."""
    be = kernel_backend
    x, k, b, dy, out_hw, pads = conv_problem(case)
    _, z_ref, y_ref = ref.conv2d_forward(x, k, b, case[0][5], pads, out_hw, case[1], ALPHA)
    full = results(be, lambda be: conv_step(be, case, "all", z_ref, y_ref))
    frozen = results(be, lambda be: conv_step(be, case, "frozen", z_ref, y_ref))
    assert "dw" not in frozen
    for name in frozen:
        assert_bitwise(frozen[name], full[name], name)


@over(cpu=[(CONV_GEOMETRIES[0], "tanh", True, "all"), (DIRECT_GEOMETRIES[0], "relu", True, "all")],
      cuda=CUDA_CONV[:1], ids=conv_label)
def test_conv2d_forward_in_place(kernel_backend, case):
    """y may be z: bitwise the out-of-place y."""
    be = kernel_backend
    x, k, b, _, out_hw, pads = conv_problem(case)
    strides, activation = case[0][5], case[1]

    def forward(be, y_is_z):
        _, _, y = conv_forward(be, x, k, b, strides, pads, out_hw, activation, y_is_z)
        return {"y": host(be, y)}
    assert_bitwise(results(be, lambda be: forward(be, True))["y"],
                   results(be, lambda be: forward(be, False))["y"])


# ---- pooling ---------------------------------------------------------------------------------

# (n, h, w, c, window, strides, padding)
POOL_GEOMETRIES = [g[:7] for g in CONV_GEOMETRIES]
# The 2x2 / stride-2 loops of pool.c: odd leftover rows and columns, channels past 64, and
# 16 x 28 x 28 x 6 (past the threshold of a team)
POOL_2X2 = [(n, h, w, c, (2, 2), (2, 2), "valid") for n, h, w, c in
            [(16, 28, 28, 6), (3, 9, 11, 5), (2, 10, 10, 16), (1, 2, 2, 1), (2, 3, 3, 67)]]
# windows made of padding only (the first row and column of windows): Keras never makes
# one, the interface gives 0
PADDING_ONLY = (2, 4, 5, 2, (2, 2), (2, 2), ((2, 2), (3, 4)))
# The 3x3 / stride-2 gather (windows inside x) with several images a thread: its threads
# once shared the image index and skipped each other's images (dx left unwritten), which
# the thread counts' bitwise comparison and the parity catch
POOL_3X3_S2 = [(16, 30, 30, 48, (3, 3), (2, 2), "valid")]
CPU_POOL = POOL_GEOMETRIES + POOL_2X2 + POOL_3X3_S2 + [PADDING_ONLY]
CUDA_POOL = [
    (2, 5, 7, 2, (2, 2), (2, 2), "valid"),
    (2, 5, 7, 2, (2, 2), (2, 2), "same"),
    (3, 5, 7, 1, (3, 3), (1, 1), "same"),           # overlapping windows
    (2, 5, 7, 3, (3, 3), (2, 2), "same"),
    (2, 5, 7, 2, (3, 2), (1, 2), "valid"),
    PADDING_ONLY,
]
CUDA_REPEATS.append(CUDA_POOL[2])


def pool_label(case):
    n, h, w, c, window, strides, padding = case
    pad = padding if isinstance(padding, str) else "explicit"
    return f"{n}x{h}x{w}x{c}-p{label(window)}-s{label(strides)}-{pad}"


@over(cpu=CPU_POOL, cuda=CUDA_POOL, ids=pool_label)
def test_maxpool2d(kernel_backend, case):
    """Integer-valued inputs tie in most windows: the gradient goes to the first maximum in
    row-major window order; -inf inputs (a -inf window gives 0, as the reference).  The
    forward is a selection: exact.  The backward adds what overlapping windows route to one
    element: exact where windows do not overlap, and on cuda, whose gather adds in the
    reference's order; a short sum in another order on cpu."""
    be = kernel_backend
    n, h, w, c, window, strides, padding = case
    out_hw, pads = window_geometry(h, w, window, strides, padding)
    rng = rng_for("maxpool", case)
    x = f32(rng.integers(-2, 3, size=(n, h, w, c)))
    x[0, 0, :2, 0] = -np.inf
    dy = f32(rng.standard_normal((n,) + out_hw + (c,)))
    got, _ = check(be, "maxpool2d_forward", x, window, strides, pads,
                   Out("y", (n,) + out_hw + (c,), BITWISE))
    y = ref.maxpool2d_forward(x, window, strides, pads, out_hw)
    overlap = any(s < k for s, k in zip(strides, window))
    tol = RTOL_ELEMENTWISE if overlap and be.name == "cpu" else BITWISE
    check(be, "maxpool2d_backward", x, y, dy, window, strides, pads, Out("dx", x.shape, tol),
          repeat=case in CUDA_REPEATS)


@pytest.mark.parametrize("name", [pytest.param("cpu", marks=pytest.mark.xfail(
    strict=True, reason="pool.c's max keeps a NaN only when it is the window's first element")),
    "cuda"])
def test_maxpool2d_propagates_nan(name):
    """A NaN in a window wins the max (np.max) and takes the window's gradient, wherever it
    sits in the window, as the reference."""
    be = backends.get(usable_backend(name))
    x = f32([1.0, np.nan, 2.0, 0.0, np.nan, 1.0, 3.0, 4.0]).reshape(2, 2, 2, 1)
    y = ref.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1))
    assert np.isnan(y).all()
    check(be, "maxpool2d_forward", x, (2, 2), (2, 2), (0, 0), Out("y", (2, 1, 1, 1), BITWISE))
    check(be, "maxpool2d_backward", x, y, f32([[[[5.0]]], [[[6.0]]]]), (2, 2), (2, 2), (0, 0),
          Out("dx", x.shape, BITWISE))


@over(cpu=CPU_POOL, cuda=CUDA_POOL, ids=pool_label)
def test_avgpool2d(kernel_backend, case):
    be = kernel_backend
    n, h, w, c, window, strides, padding = case
    out_hw, pads = window_geometry(h, w, window, strides, padding)
    rng = rng_for("avgpool", case)
    x, dy = f32(rng.standard_normal((n, h, w, c))), f32(rng.standard_normal((n,) + out_hw + (c,)))
    check(be, "avgpool2d_forward", x, window, strides, pads, Out("y", (n,) + out_hw + (c,)))
    check(be, "avgpool2d_backward", dy, window, strides, pads, Out("dx", x.shape),
          repeat=case in CUDA_REPEATS)


@over(cpu=[(1, 1, 1, 1), (3, 5, 7, 2), (2, 4, 4, 67), (16, 28, 28, 6)],
      cuda=[(2, 5, 7, 3), (3, 1, 1, 2), (1, 4, 3, 1)])
def test_global_avgpool2d(kernel_backend, case):
    """The backward is one division per element: exact."""
    rng = rng_for("global avgpool", case)
    x, dy = f32(rng.standard_normal(case)), f32(rng.standard_normal((case[0], case[3])))
    check(kernel_backend, "global_avgpool2d_forward", x, Out("y", (case[0], case[3])))
    check(kernel_backend, "global_avgpool2d_backward", dy, Out("dx", case, BITWISE))


# ---- batch normalization ---------------------------------------------------------------------

# (rows, C, scale, center): rows = N*H*W of an image batch; 255 / 257 / 300 / 1000 rows
# around and across the 256-row chunks of the column sums
CPU_BN = [(1, 3, True, True), (7, 1, True, True), (255, 5, True, False), (257, 5, False, False),
          (257, 6, False, True), (1000, 6, True, True), (300, 131, True, True),
          (1000, 33, False, True)]
CUDA_BN = [(70, 3, True, True), (7, 1, True, True), (300, 2, True, False), (12, 3, False, True),
           (5, 2, False, False)]
CUDA_REPEATS.append(CUDA_BN[2])
MOMENTUM, EPSILON = 0.9, 1e-3


def bn_label(case):
    rows, c, scale, center = case
    return f"{rows}x{c}" + ("" if scale else "-noscale") + ("" if center else "-nocenter")


def bn_problem(case):
    rows, c, scale, center = case
    rng = rng_for("batchnorm", case)
    x = f32(rng.standard_normal((rows, c)) * 3 + 2)
    gamma = f32(rng.standard_normal(c)) if scale else None
    beta = f32(rng.standard_normal(c)) if center else None
    moving = f32(rng.standard_normal(c)), f32(rng.random(c) + 0.5)
    return x, gamma, beta, moving, f32(rng.standard_normal((rows, c)))


def optional(name, shape, wanted, tol):
    return Out(name, shape, tol) if wanted else None


@over(cpu=CPU_BN, cuda=CUDA_BN, ids=bn_label)
def test_batchnorm(kernel_backend, case):
    """Training forward; inference forward with the reference's updated statistics;
    backward through the batch statistics from the reference's mean and inv_std; the
    inference-form backward.  Sums over rows (statistics, dgamma, dbeta) to RTOL_SUMS, and
    dx of the training backward, a difference of nearly equal terms, judged against its
    largest entry at the same rtol."""
    be, (rows, c, scale, center) = kernel_backend, case
    x, gamma, beta, (mm, mv), dy = bn_problem(case)
    repeat = case in CUDA_REPEATS
    _, want = check(be, "batchnorm_forward_train", x, gamma, beta,
                    InOut("moving_mean", mm, RTOL_SUMS), InOut("moving_variance", mv, RTOL_SUMS),
                    MOMENTUM, EPSILON,
                    Out("mean", (c,), RTOL_SUMS), Out("inv_std", (c,), RTOL_SUMS),
                    Out("y", (rows, c), RTOL_SUMS), repeat=repeat)
    check(be, "batchnorm_forward_infer", x, gamma, beta, want["moving_mean"],
          want["moving_variance"], EPSILON, Out("y", (rows, c)))
    mean, inv_std = want["mean"], want["inv_std"]
    full, _ = check(be, "batchnorm_backward", x, gamma, mean, inv_std, dy,
                    optional("dgamma", (c,), scale, RTOL_SUMS),
                    optional("dbeta", (c,), center, RTOL_SUMS), Out("dx", (rows, c), RTOL_SUMS),
                    repeat=repeat)
    infer, _ = check(be, "batchnorm_infer_backward", x, gamma, mm, mv, EPSILON, dy,
                     optional("dgamma", (c,), scale, RTOL_SUMS),
                     optional("dbeta", (c,), center, RTOL_SUMS), Out("dx", (rows, c)))
    # each output may be None; what is computed does not depend on what is not
    for method, args, computed in (("batchnorm_backward", [x, gamma, mean, inv_std, dy], full),
                                   ("batchnorm_infer_backward", [x, gamma, mm, mv, EPSILON, dy],
                                    infer)):
        alone = results(be, lambda be: invoke(be, method,
                                              args + [None, None, Out("dx", (rows, c))]))
        assert_bitwise(alone["dx"], computed["dx"], f"{method}: dx alone")
        sums, want_sums = check(be, method, *args, Out("dgamma", (c,), RTOL_SUMS),
                                Out("dbeta", (c,), RTOL_SUMS), None)
        for name in ("dgamma", "dbeta"):
            if name in computed:
                assert_bitwise(sums[name], computed[name], f"{method}: {name} without dx")


# ---- dropout ---------------------------------------------------------------------------------

# (shape, broadcast): broadcast[a] true where Keras's noise shape is 1 (the mask repeats)
CPU_DROPOUT = [
    ((1,), (False,)),
    ((37,), (False,)),
    ((5, 7), (False, False)),
    ((5, 7), (True, False)),
    ((3, 5, 7, 2), (False, True, True, False)),      # SpatialDropout2D's noise shape
    ((3, 5, 7, 2), (False, False, False, True)),
    ((2, 1, 4), (True, True, True)),                 # one uniform for the whole array
    ((64, 29, 23), (False, False, False)),           # 42688 elements: a team
    ((64, 29, 23), (False, True, False)),
]
CUDA_DROPOUT = [((3, 5, 7, 2), (False, False, False, False)),
                ((3, 5, 7, 2), (False, True, True, False)),
                ((4, 3), (True, False)),
                ((2, 1, 3), (False, False, True)),
                ((5,), (False,))]
# (seed, counter): seed + G (counter + 1) wraps modulo 2^64 in the last two
STREAMS = [(0, 0), (12345, 7), (2 ** 63 + 5, 2 ** 40), (2 ** 64 - 3, 41)]
RATES = [0.0, 0.3, 0.9]


def dropout_label(case):
    shape, broadcast = case
    return label(shape) + "-" + "".join("b" if b else "." for b in broadcast)


@over(cpu=CPU_DROPOUT, cuda=CUDA_DROPOUT, ids=dropout_label)
def test_dropout(kernel_backend, case):
    """The counter-based masks are reference.dropout_mask bit for bit, y = x * mask and
    dx = dy * mask one float32 product each: exact; in place (y may be x, dx may be dy)."""
    be, (shape, broadcast) = kernel_backend, case
    rng = rng_for("dropout", case)
    x, dy = f32(rng.standard_normal(shape)), f32(rng.standard_normal(shape))
    if be.name == "cpu":
        runs = [(rate, stream) for rate in RATES for stream in STREAMS]
    else:                  # one rate and stream a case, the wrapping stream first
        i = CUDA_DROPOUT.index(case)
        runs = [(RATES[1 + i % 2], STREAMS[-1 - i % len(STREAMS)])]
    for rate, (seed, counter) in runs:
        got, _ = check(be, "dropout_forward", x, seed, counter, rate, broadcast,
                       Out("mask", shape, BITWISE), Out("y", shape, BITWISE))
        assert_bitwise(got["mask"], ref.dropout_mask(shape, broadcast, seed, counter, rate))
        in_place = results(be, lambda be: invoke(be, "dropout_forward", [
            x, seed, counter, rate, broadcast, Out("mask", shape), Same(0, "y")]))
        assert_bitwise(in_place["y"], got["y"])
    back, _ = check(be, "dropout_backward", dy, got["mask"], Out("dx", shape, BITWISE))
    in_place = results(be, lambda be: invoke(be, "dropout_backward",
                                             [dy, got["mask"], Same(0, "dx")]))
    assert_bitwise(in_place["dx"], back["dx"])


def test_dropout_streams_repeat_and_differ(kernel_backend):
    """The same (seed, counter): the same mask; another counter (the step) or seed:
    another mask.  Rate 0 keeps everything."""
    be, shape, broadcast = kernel_backend, (4, 6, 5), (False, False, False)
    x = f32(rng_for("dropout streams").standard_normal(shape))
    masks = []
    for seed, counter in ((7, 0), (7, 0), (7, 1), (8, 0)):
        masks.append(invoke(be, "dropout_forward", [x, seed, counter, 0.5, broadcast,
                                                    Out("mask", shape), Out("y", shape)])["mask"])
    assert_bitwise(masks[1], masks[0])
    assert len({m.tobytes() for m in masks}) == 3
    kept = invoke(be, "dropout_forward",
                  [x, 7, 0, 0.0, broadcast, Out("mask", shape), Out("y", shape)])
    assert_bitwise(kept["mask"], np.ones(shape, np.float32))
    assert_bitwise(kept["y"], x)


# ---- merges, concatenation, scaling ----------------------------------------------------------

MERGE_KINDS = [(kind, k) for kind in ref.MERGES
               for k in ((2,) if kind == "subtract" else (1, 2, 3))]
MERGE_KINDS_CPU = MERGE_KINDS + [("average", 5)]


def merge_inputs(kind, k, shape):
    """k arrays of `shape`; for maximum / minimum integer-valued, so most positions tie and
    the gradient must go to the first input holding the extreme."""
    rng = rng_for("merge", kind, k, shape)
    if kind in ("maximum", "minimum"):
        xs = [f32(rng.integers(-1, 2, size=shape)) for _ in range(k)]
    else:
        xs = [f32(rng.standard_normal(shape)) for _ in range(k)]
    return xs, f32(rng.standard_normal(shape))


@over(cpu=[(kind, k, (n,)) for kind, k in MERGE_KINDS_CPU for n in CPU_SIZES],
      cuda=[(kind, k, (3, 5)) for kind, k in MERGE_KINDS])
def test_merge(kernel_backend, case):
    """One float32 operation per element and input, folded left to right as the reference:
    bitwise.  In place: y may be xs[0], or xs[1] of two (the plan sums gradients that way),
    dx may be dy."""
    be, (kind, k, shape) = kernel_backend, case
    xs, dy = merge_inputs(kind, k, shape)
    got, _ = check(be, "merge_forward", kind, xs, Out("y", shape, BITWISE))
    for i in range(k):
        grad, _ = check(be, "merge_backward", kind, i, xs, dy, Out("dx", shape, BITWISE))

    def in_place(be):
        d_xs, d_dy = [be.from_host(x.copy()) for x in xs], be.from_host(dy.copy())
        be.merge_backward(kind, k - 1, d_xs, d_dy, d_dy)
        be.merge_forward(kind, d_xs, d_xs[0])
        return {"y": host(be, d_xs[0]), "dx": host(be, d_dy)}
    done = results(be, in_place)
    assert_bitwise(done["y"], got["y"])
    assert_bitwise(done["dx"], grad["dx"])           # i = k - 1, the last of the loop
    if k == 2:
        def over_second(be):
            d_xs = [be.from_host(x.copy()) for x in xs]
            be.merge_forward(kind, d_xs, d_xs[1])
            return {"y": host(be, d_xs[1])}
        assert_bitwise(results(be, over_second)["y"], got["y"])


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_merge_extremes_with_nan_and_signed_zeros(kernel_backend, kind):
    """NaN anywhere wins the forward and routes no gradient (np.maximum / the reference's
    x == max test); -0 and +0 tie, and the first one gets the gradient (bitwise).  Which
    zero a tie of -0 and +0 returns is unspecified: the forward compares values (rtol 0,
    NaN where NaN)."""
    nan = np.nan
    xs = [f32([nan, 1.0, 2.0, 0.0, -0.0, 3.0]), f32([1.0, nan, 2.0, -0.0, 0.0, 3.0]),
          f32([0.5, 0.5, nan, 0.0, 0.0, 3.0])]
    dy = f32([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    check(kernel_backend, "merge_forward", kind, xs, Out("y", dy.shape, 0.0))
    for i in range(3):
        check(kernel_backend, "merge_backward", kind, i, xs, dy, Out("dx", dy.shape, BITWISE))
    # one input: x0 itself is the extreme, except where it is NaN
    check(kernel_backend, "merge_backward", kind, 0, xs[:1], dy, Out("dx", dy.shape, BITWISE))


@over(cpu=[(outer, widths) for outer in (1, 7, 300)
           for widths in ((1,), (3, 1, 130), (64, 64), (0, 5))],
      cuda=[(5, (1, 4, 2))])
def test_concat(kernel_backend, case):
    """Copies: bitwise.  dxs entries may be None (not wanted)."""
    outer, widths = case
    rng = rng_for("concat", case)
    xs = [f32(rng.standard_normal((outer, w))) for w in widths]
    check(kernel_backend, "concat_forward", xs, Out("y", (outer, sum(widths)), BITWISE))
    dy = f32(rng.standard_normal((outer, sum(widths))))
    check(kernel_backend, "concat_backward", dy, list(widths),
          [None if i == 1 else Out(f"dx{i}", (outer, w), BITWISE) for i, w in enumerate(widths)])


@pytest.mark.parametrize("alpha", [0.0, -1.5, 1 / 3])
@over(cpu=[(n,) for n in CPU_SIZES], cuda=[(3, 7)])
def test_scale(kernel_backend, case, alpha):
    """One product per element: bitwise; y may be x."""
    x = f32(rng_for("scale", case).standard_normal(case) * 1e3)
    got, _ = check(kernel_backend, "scale", x, alpha, Out("y", case, BITWISE))
    in_place = results(kernel_backend, lambda be: invoke(be, "scale", [x, alpha, Same(0, "y")]))
    assert_bitwise(in_place["y"], got["y"])


# ---- refusals, on every backend --------------------------------------------------------------

def test_unknown_kinds_are_refused_with_the_kinds_there_are(backend_name):
    be = backends.get(backend_name)
    a, flat = be.zeros((2, 3)), be.zeros((6,))
    for one_of_them, call in (
            ("relu", lambda: be.activation_forward(a, "swish", 0.0, be.zeros((2, 3)))),
            ("mse", lambda: be.loss("dice", a, a, False, None)),
            ("binary_accuracy", lambda: be.metric_sum("auc", a, a)),
            ("maximum", lambda: be.merge_forward("concatenate", [a, a], be.zeros((2, 3)))),
            ("rmsprop", lambda: be.optimizer_step("adafactor", flat, (None,), flat, 1, HYPER))):
        with pytest.raises(ValueError, match=f"expected .*{one_of_them}.* received"):
            call()


@pytest.mark.parametrize("name", ["cpu", "numpy", pytest.param("cuda", marks=pytest.mark.xfail(
    strict=True, reason="the cuda loss and metric do not check labels on the device"))])
def test_labels_out_of_range_are_refused_before_anything_is_written(name):
    """A sparse loss or metric given a label outside [0, cols) raises, and the gradient
    stays as it was."""
    be = backends.get(usable_backend(name))
    pred = be.from_host(np.full((4, 3), 1 / 3, np.float32))
    for bad in (3, -1):
        labels = be.from_host(np.array([0, 1, bad, 2], np.int64))
        grad = be.from_host(np.full((4, 3), 7.0, np.float32))
        with pytest.raises(ValueError, match="label"):
            be.loss("scce", pred, labels, False, grad)
        assert_bitwise(host(be, grad), np.full((4, 3), 7.0, np.float32))
        with pytest.raises(ValueError, match="label"):
            be.metric_sum("sparse_categorical_accuracy", pred, labels)


def test_matmul_refuses_mismatched_shapes(kernel_backend):
    be = kernel_backend
    with pytest.raises(ValueError, match="expected"):
        be.matmul(be.zeros((3, 4)), be.zeros((5, 2)), False, False, be.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected"):
        be.matmul(be.zeros((3, 4)), be.zeros((4, 2)), False, False, be.zeros((2, 3)))


def test_merges_refuse_bad_arguments(kernel_backend):
    be = kernel_backend
    a, b = be.zeros((2, 3)), be.zeros((3, 2))
    with pytest.raises(ValueError, match="xs"):
        be.merge_forward("add", [a, b], be.zeros((2, 3)))
    with pytest.raises(ValueError, match="subtract"):
        be.merge_forward("subtract", [a, a, a], be.zeros((2, 3)))
    with pytest.raises(ValueError, match="i=|input index"):
        be.merge_backward("add", 2, [a, a], a, be.zeros((2, 3)))


def test_metric_sum_refuses_labels_of_another_length(kernel_backend):
    be = kernel_backend
    with pytest.raises(ValueError, match="labels"):
        be.metric_sum("sparse_categorical_accuracy", be.zeros((2, 3)),
                      be.from_host(np.zeros(3, np.int64)))


def test_dropout_refuses_bad_arguments(kernel_backend):
    be = kernel_backend
    x = be.zeros((2, 3))
    with pytest.raises(ValueError, match="rate"):
        be.dropout_forward(x, 0, 0, 1.0, (False, False), be.zeros((2, 3)), be.zeros((2, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        be.dropout_forward(x, 0, 0, 0.5, (False,), be.zeros((2, 3)), be.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask"):
        be.dropout_forward(x, 0, 0, 0.5, (False, False), be.zeros((3, 2)), be.zeros((2, 3)))


# ---- cpu only: the C kernels reached through pynn._core alone --------------------------------

def on_threads(fn):
    """fn() -> a list of arrays, on each thread count of THREADS: the same bits."""
    runs = []
    for threads in THREADS:
        pynn.set_num_threads(threads)
        runs.append(fn())
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert_bitwise(b, a)
    return runs[0]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (257, 10), (300, 200)], ids=label)
def test_activation_backward_bias_grad(shape, activation):
    """The fused dz = act'(z) dy and db = column sums of dz: dz bitwise activation_backward's,
    db within the bound of dz's exact column sums."""
    rng = rng_for("fused backward", shape, activation)
    z, dy = f32(rng.standard_normal(shape) * 3), f32(rng.standard_normal(shape))
    y = ref.activation_forward(z, activation, ALPHA)
    act = ids.ACTIVATIONS[activation]

    def run():
        dz, db = np.full(shape, np.nan, np.float32), np.full(shape[1], np.nan, np.float32)
        _core.activation_backward_bias_grad(dz, db, z, y, dy, act, ALPHA)
        return [dz, db]
    dz, db = on_threads(run)
    separate = np.empty_like(dz)
    _core.activation_backward(separate, z, y, dy, act, ALPHA)
    assert_bitwise(dz, separate)
    assert np.all(np.abs(db - dz.astype(np.float64).sum(axis=0)) <= exact_sum_bound(dz, 0))


def test_kernels_accept_read_only_inputs():
    rng = rng_for("read only")
    x, dy = f32(rng.standard_normal((7, 13))), f32(rng.standard_normal((7, 13)))
    y = ref.activation_forward(x, "tanh")
    for a in (x, y, dy):
        a.flags.writeable = False
    out = np.empty_like(x)
    _core.activation_forward(out, x, ids.ACTIVATIONS["tanh"])
    _core.activation_backward(out, x, y, dy, ids.ACTIVATIONS["tanh"])
    assert_close(out, ref.activation_backward(x, y, dy, "tanh"))


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=lambda g: pool_label(g[:7]))
def test_im2col_and_col2im(geometry):
    """im2col is a copy (bitwise); col2im adds each input element's entries (short sums)."""
    n, h, w, c, window, strides, padding, _ = geometry
    out_hw, pads = window_geometry(h, w, window, strides, padding)
    rng = rng_for("im2col", geometry)
    x = f32(rng.standard_normal((n, h, w, c)))
    cols = np.full((n * out_hw[0] * out_hw[1], window[0] * window[1] * c), np.nan, np.float32)
    _core.im2col(cols, x, window, strides, pads, out_hw)
    assert_bitwise(cols, ref.im2col(x, window, strides, pads, out_hw))
    g = f32(rng.standard_normal(cols.shape))
    dx = np.full(x.shape, np.nan, np.float32)
    _core.col2im(dx, g, window, strides, pads, out_hw)
    assert_close(dx, ref.col2im(g, x.shape, window, strides, pads, out_hw))


@pytest.mark.parametrize("n,h,w,c,window,strides,f", [
    (16, 28, 28, 1, (5, 5), (1, 1), 6),
    (8, 40, 9, 1, (3, 3), (1, 1), 5), (8, 40, 7, 1, (5, 5), (1, 1), 3),   # one channel
    (6, 13, 12, 1, (4, 8), (2, 1), 16)])
def test_direct_convolution_on_1_and_2_threads(n, h, w, c, window, strides, f):
    rng = rng_for("direct threads", n, h, w, f)
    out_hw, pads = window_geometry(h, w, window, strides, "same")
    x, k, b = f32(rng.standard_normal((n, h, w, c))), f32(rng.standard_normal(window + (c, f))), \
        f32(rng.standard_normal(f))
    dy = f32(rng.standard_normal((n,) + out_hw + (f,)))
    relu = ids.ACTIVATIONS["relu"]

    def run():
        z, y = np.empty_like(dy), np.empty_like(dy)
        _core.conv2d_direct_forward(z, y, x, k, b, strides, pads, relu, 0.0)
        dz, dw, db = dy.copy(), np.empty_like(k), np.empty_like(b)
        _core.conv2d_direct_backward_filter(dw, db, dz, x, z, y, dz, strides, pads, relu, 0.0)
        return [z, y, dz, dw, db]
    on_threads(run)


@pytest.mark.parametrize("n,h,w,c,window,strides,f", [(64, 28, 28, 1, (5, 5), (1, 1), 6),
                                                      (5, 13, 11, 2, (3, 3), (2, 1), 7),
                                                      (3, 9, 40, 1, (3, 4), (1, 2), 16)])
def test_direct_filter_gradient_in_the_layers_scratch(n, h, w, c, window, strides, f):
    """The layer's cols buffer (unused by the direct forward) holds the filter gradient's
    partial sums, so a step allocates nothing; with or without that scratch, the same
    bits; a scratch too small is not used."""
    rng = rng_for("direct scratch", n, h, w, f)
    out_hw, pads = window_geometry(h, w, window, strides, "same")
    x, k, b = f32(rng.standard_normal((n, h, w, c))), f32(rng.standard_normal(window + (c, f))), \
        f32(rng.standard_normal(f))
    need = _core.conv2d_direct_filter_work(x.shape, k.shape, strides, out_hw)
    assert 0 < need <= n * out_hw[0] * out_hw[1] * window[0] * window[1] * c
    relu = ids.ACTIVATIONS["relu"]
    z, y = np.empty((n,) + out_hw + (f,), np.float32), np.empty((n,) + out_hw + (f,), np.float32)
    _core.conv2d_direct_forward(z, y, x, k, b, strides, pads, relu, 0.0)
    dy = f32(rng.standard_normal(z.shape))
    runs = []
    for work in (None, np.full(need, np.nan, np.float32), np.empty(need - 1, np.float32)):
        dz, dw, db = dy.copy(), np.empty_like(k), np.empty_like(b)
        _core.conv2d_direct_backward_filter(dw, db, dz, x, z, y, dz, strides, pads, relu, 0.0, work)
        runs.append((dz, dw, db))
    for other in runs[1:]:
        for a, r in zip(runs[0], other):
            assert_bitwise(r, a)


def test_direct_convolution_refuses_what_it_does_not_handle():
    x, z = np.zeros((1, 5, 5, 3), np.float32), np.zeros((1, 5, 5, 4), np.float32)
    with pytest.raises(ValueError, match="direct"):      # kh*kw*c = 48
        _core.conv2d_direct_forward(z, z, x, np.zeros((4, 4, 3, 4), np.float32), None, (1, 1),
                                    (1, 1), ids.ACTIVATIONS["relu"], 0.0)
    with pytest.raises(ValueError, match="direct"):
        _core.conv2d_direct_forward(z, z, x, np.zeros((3, 3, 3, 4), np.float32), None, (1, 1),
                                    (1, 1), ids.ACTIVATIONS["softmax"], 0.0)


# sgemm_ksplit: the filter gradient's GEMM with K cut into chunks fixed by the shape
# (csrc/gemm.c): K on both sides of one chunk (256) and of the 8-chunk cap, M and N off
# the micro-kernel's tiles.
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("m,n,k", [(16, 150, 6400), (1, 1, 1), (7, 33, 255), (13, 29, 257),
                                   (5, 3, 2049), (17, 1, 3001), (24, 40, 512)])
def test_sgemm_ksplit(m, n, k, trans_a, trans_b):
    a, b = gemm_operands(m, n, k, trans_a, trans_b)
    chunks = _core.sgemm_ksplit_chunks(m, n, k)

    def run():
        c = np.full((m, n), np.nan, np.float32)
        _core.sgemm_ksplit(c, np.full(chunks * m * n, np.nan, np.float32), a, b, trans_a, trans_b)
        return [c]
    assert_gemm_exact_within_bound(on_threads(run)[0], a, b, trans_a, trans_b)
    with pytest.raises(ValueError, match="partials"):
        _core.sgemm_ksplit(np.empty((m, n), np.float32), np.zeros(chunks * m * n - 1, np.float32),
                           a, b, trans_a, trans_b)


def test_c_kernels_name_themselves_and_the_argument_in_errors():
    def z(*shape):
        return np.zeros(shape, np.float32)
    x, pred = z(2, 3) + 1, z(2, 3) + 1 / 3
    mse, relu = ids.LOSSES["mse"], ids.ACTIVATIONS["relu"]
    cases = [
        (r"loss: expected target of shape \(2, 3\)", lambda: _core.loss(None, pred, z(2, 4), mse, False)),
        (r"loss: expected grad of shape \(2, 3\)", lambda: _core.loss(z(3, 2), pred, pred, mse, False)),
        ("loss", lambda: _core.loss(None, pred, pred, 99, False)),
        ("loss", lambda: _core.loss(None, z(0, 3), z(0, 3), mse, False)),     # no mean of 0 rows
        (r"sparse_cce: expected labels of shape \(2,\)",
         lambda: _core.sparse_cce(None, pred, np.array([0, 1, 2]), False)),
        (r"activation_forward: expected y of shape \(2, 3\)",
         lambda: _core.activation_forward(z(3, 2), x, relu)),
        ("activation_forward", lambda: _core.activation_forward(z(2, 3), x, 42)),
        ("activation_backward", lambda: _core.activation_backward(z(2, 3), x, x, x, -1)),
        (r"bias_grad: expected db of shape \(3,\)", lambda: _core.bias_grad(z(4), x)),
        (r"adam_update: expected v of shape \(4,\)",
         lambda: _core.adam_update(z(4), z(4), z(3), z(4), 0.1, 0.9, 0.999, 1e-7)),
        ("rmsprop_update", lambda: _core.rmsprop_update(z(4), z(4), None, z(4), 0.1, 0.9, 0.5, 1e-7)),
        ("sgd_update", lambda: _core.sgd_update(z(4), None, z(4), 0.1, 0.9, False)),
        ("cols", lambda: _core.im2col(z(10, 27), z(2, 5, 5, 3), (3, 3), (1, 1), (0, 0), (3, 3))),
        ("window", lambda: _core.maxpool2d_forward(z(2, 2, 2, 3), z(2, 5, 5, 3), (0, 2), (1, 1), (0, 0))),
        ("batchnorm", lambda: _core.batchnorm_forward_train(z(4, 3), z(2), z(2), z(2), z(2), z(4, 3),
                                                            None, None, 0.9, 1e-3)),
        ("dw", lambda: _core.dense_backward(z(2, 3), None, None, z(4, 2), z(4, 3), z(3, 2), z(4, 2),
                                            z(4, 2), relu)),
        ("dx", lambda: _core.dense_backward(None, None, z(4, 2), z(4, 2), z(4, 3), z(3, 2), z(4, 2),
                                            z(4, 2), relu)),
    ]
    for pattern, call in cases:
        with pytest.raises(ValueError, match=pattern):
            call()


def test_sgd_without_momentum_leaves_its_slot_alone():
    rng = rng_for("sgd slot")
    w, m, g = (f32(rng.standard_normal(5)) for _ in range(3))
    m_before = m.copy()
    _core.sgd_update(w, m, g, 0.1, 0.0, False)
    assert_bitwise(m, m_before)


def test_cpu_optimizer_step_refuses_missing_state_and_bad_steps():
    w = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="state"):
        CPU.optimizer_step("adam", w, (None, None), w.copy(), 1, HYPER)
    with pytest.raises(ValueError, match="state"):
        CPU.optimizer_step("adam", w, (w.copy(), w.copy()), w.copy(), 1, dict(HYPER, amsgrad=1.0))
    with pytest.raises(ValueError, match="step"):
        CPU.optimizer_step("sgd", w, (w.copy(),), w.copy(), 0, HYPER)
    with pytest.raises(KeyError, match="epsilon"):    # a setting the rule reads, as the reference
        CPU.optimizer_step("adam", w, (w.copy(), w.copy()), w.copy(), 1,
                           {k: v for k, v in HYPER.items() if k != "epsilon"})
    # SGD without momentum needs no state, nor the settings of other rules
    CPU.optimizer_step("sgd", w, (), w.copy(), 1,
                       {"learning_rate": 0.01, "momentum": 0.0, "nesterov": 0.0})
    assert_bitwise(w, np.full(5, np.float32(1) - np.float32(0.01) * np.float32(1), np.float32))


def test_hyper_order_is_the_c_order():
    assert [_core.HYPER_INDEX[name] for name in ids.HYPER] == list(range(len(ids.HYPER)))


def test_cpu_conv2d_backward_refuses_a_small_work_array():
    rng = rng_for("conv work")
    x, k = f32(rng.standard_normal((2, 8, 8, 1))), f32(rng.standard_normal((3, 3, 1, 8)))
    cols = np.empty((72, 9), np.float32)
    z, y = np.empty((2, 6, 6, 8), np.float32), np.empty((2, 6, 6, 8), np.float32)
    CPU.conv2d_forward(x, k, None, (1, 1), (0, 0), "relu", 0.0, cols, z, y)
    need = CPU.conv2d_backward_work_size(x.shape, k.shape, (1, 1), (6, 6))
    with pytest.raises(ValueError, match="work"):
        CPU.conv2d_backward(x, k, z, y, z.copy(), (1, 1), (0, 0), "relu", 0.0, cols,
                            np.empty(need - 1, np.float32), np.empty_like(k), None, None)


def test_cpu_metric_sum_refuses_a_label_out_of_range():
    pred = np.full((3, 4), 0.25, np.float32)
    for bad in (4, -1):
        with pytest.raises(_core.KernelInputError):
            CPU.metric_sum("sparse_categorical_accuracy", pred, np.array([0, bad, 1], np.int64))


# ---- cuda only: tile configurations, internals, the GPU build, availability ------------------

@pytest.fixture
def cuda_package():
    """pynn.backend.cuda (importing it imports numba: after conftest set the simulator)."""
    backends.get(usable_backend("cuda"))
    from pynn.backend import cuda
    return cuda


# Every production tile configuration on a shape crossing its M, N and K tile edges.
TILE_CASES = [("large", 130, 3, 9, False, False), ("large", 3, 130, 9, True, True),
              ("medium", 66, 65, 9, True, False), ("small", 33, 34, 17, False, True),
              ("tiny", 17, 18, 9, False, False), ("tiny", 17, 18, 9, True, True)]


@pytest.mark.parametrize("name,m,n,k,trans_a,trans_b", TILE_CASES, ids=[
    f"{c[0]}-{c[1]}x{c[2]}x{c[3]}-{'nt'[c[4]]}{'nt'[c[5]]}" for c in TILE_CASES])
def test_cuda_every_tile_config_across_tile_edges(cuda_package, name, m, n, k, trans_a, trans_b):
    be = backends.get("cuda")
    cfg = {c.name: c for c in cuda_package.gemm.GEMM_CONFIGS}[name]
    a, b = gemm_operands(m, n, k, trans_a, trans_b)
    out = Out("c", (m, n)).make(be)
    be.matmul(be.from_host(a), be.from_host(b), trans_a, trans_b, out, cfg=cfg)
    assert_gemm_exact_within_bound(host(be, out), a, b, trans_a, trans_b)


# Every kernel with shared memory, each on the simulator with its fresh memory full of NaN and
# a forced thread switch inside the simulator's creation of each shared array (conftest's
# poisoned_simulator).  All threads of a block must still see one array per call site.  The
# simulator's own unlocked check-then-set let two threads each create the array, one of them
# then working on a private copy (pynn.backend.cuda.runtime does it under a lock): on a loaded
# machine a training step came out wrong now and then (a NaN loss; a 5 x 3 weight whose
# gradient x^T dz, the first case here, was off by hundreds).
SHARED_MEMORY_CASES = {
    "gemm": lambda rng: ("matmul", f32(rng.standard_normal((6, 5))),
                         f32(rng.standard_normal((6, 3))), True, False, Out("c", (5, 3))),
    "reduction": lambda rng: ("loss", "scce", f32(rng.standard_normal((6, 3))),
                              rng.integers(0, 3, 6), True, Out("grad", (6, 3))),
    "bias_grad": lambda rng: ("bias_grad", f32(rng.standard_normal((6, 5))), Out("db", (5,))),
    "batchnorm": lambda rng: ("batchnorm_forward_train", f32(rng.standard_normal((6, 3))),
                              None, None, InOut("mm", np.zeros(3, np.float32)),
                              InOut("mv", np.ones(3, np.float32)), MOMENTUM, EPSILON,
                              Out("mean", (3,), RTOL_SUMS), Out("inv_std", (3,), RTOL_SUMS),
                              Out("y", (6, 3), RTOL_SUMS)),
}


@pytest.mark.parametrize("name", list(SHARED_MEMORY_CASES))
def test_cuda_threads_of_a_block_see_one_shared_array(poisoned_simulator, name):
    poisoned_simulator.switch_in_shared_lookup = 0.02
    method, *args = SHARED_MEMORY_CASES[name](rng_for("shared memory", name))
    check(backends.get("cuda"), method, *args, value=RTOL_ELEMENTWISE if method == "loss" else None)


def test_cuda_gemm_config_by_shape(cuda_package):
    gemm = cuda_package.gemm
    assert gemm.gemm_config(4096, 4096, 132) is gemm.GEMM_LARGE
    assert gemm.gemm_config(1024, 1024, 132) is gemm.GEMM_MEDIUM
    assert gemm.gemm_config(6, 5, 132) is gemm.GEMM_TINY


def test_cuda_col2im_gathers_in_the_reference_order(cuda_package):
    """col2im alone (no GEMM rounding in between): each input element adds its entries in
    the order of the reference's scatter, so the sums agree bitwise."""
    be = backends.get("cuda")
    x_shape, window, strides, pads, out_hw = (2, 5, 7, 3), (3, 3), (1, 2), (1, 1), (5, 4)
    cols = f32(rng_for("col2im").standard_normal((2 * 5 * 4, 27)) * 1e3)
    dx = Out("dx", x_shape).make(be)
    cuda_package.convolution.col2im(dx, be.from_host(cols), window, strides, pads, out_hw)
    assert_bitwise(host(be, dx), ref.col2im(cols, x_shape, window, strides, pads, out_hw))


def test_cuda_uniforms_are_the_reference_uniforms(cuda_package):
    be = backends.get("cuda")
    u = Out("u", (1000,)).make(be)
    cuda_package.random.random_uniform(123456789, 2 ** 40 + 3, u)
    assert_bitwise(host(be, u), ref.random_uniform(123456789, 2 ** 40 + 3, 1000))


def test_every_cuda_kernel_compiles_for_a_gpu():
    """The simulator never types a kernel as the GPU build does: compile each one to PTX
    (tests/cuda_ptx.py; needs NVVM, not a GPU, and the simulator off, so in a subprocess)."""
    if not SIMULATED:
        pytest.skip("on a GPU every cuda case above compiles its kernels for real")
    root = Path(__file__).resolve().parents[1]
    # the source tree first: the installed copy of pynn may be older
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    run = subprocess.run([sys.executable, str(root / "tests" / "cuda_ptx.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip() +
                    " (pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12)")
    assert run.returncode == 0, run.stdout + run.stderr


def test_cuda_available_is_true_here(cuda_package):
    assert pynn.cuda_available() is True
    assert backends.cuda_unavailable_reason() is None
    assert "cuda" in repr(backends.get("cuda"))


def test_an_unusable_gpu_raises_an_error_that_says_why(cuda_package, monkeypatch):
    reason = "the CUDA driver could not be initialised (CUDA driver library cannot be found)"
    monkeypatch.setattr(cuda_package, "unavailable_reason", lambda: reason)
    monkeypatch.setattr(backends, "_instances", {})
    assert pynn.cuda_available() is False
    model = pynn.Sequential([pynn.layers.Input((3,)), pynn.layers.Dense(2)])
    with pytest.raises(backends.BackendUnavailableError, match="driver could not be initialised"):
        model.compile(optimizer="sgd", loss="mse", backend="cuda")
    with pytest.raises(RuntimeError, match="backend 'cuda' cannot run here"):
        pynn.set_backend("cuda")
    assert pynn.get_backend() == "cpu"


def test_missing_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)          # import numba -> ImportError
    for name in [m for m in sys.modules
                 if m == "pynn.backend.cuda" or m.startswith("pynn.backend.cuda.")]:
        monkeypatch.delitem(sys.modules, name)               # the package and its kernel modules
    monkeypatch.delattr(backends, "cuda", raising=False)
    monkeypatch.setattr(backends, "_instances", {})
    reason = backends.cuda_unavailable_reason()
    assert "numba-cuda is not installed" in reason and 'pip install "pynn[cuda]"' in reason
    assert pynn.cuda_available() is False
    with pytest.raises(ValueError, match=r"pynn\[cuda\]"):
        backends.get("cuda")


def test_unknown_backend_lists_cuda():
    with pytest.raises(ValueError, match="'cpu', 'numpy', 'cuda'"):
        backends.get("tpu")
