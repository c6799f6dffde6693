"""Shared fixtures and the one tolerance policy of the test suite.

Backends.  `backend_name` runs a test on every backend: "cpu" (the C kernels), "numpy"
(the reference) and "cuda", which without a GPU runs Numba's CUDA simulator: it must be
switched on before numba is imported, so this file sets NUMBA_ENABLE_CUDASIM=1 unless
the variable is set or nvidia-smi says a GPU may be present.  The simulator runs every
GPU thread as a Python thread: tests keep their cuda shapes tiny.

Tolerances (`assert_close`).  Results computed in float32 by different kernels differ by
rounding only: elementwise formulas by an ulp or two of libm, sums of K terms by about
K * 2^-24 of the sum of the terms' magnitudes.  The policy, used everywhere:
  rtol = 1e-5 for elementwise results and short sums, 1e-4 for long sums (GEMMs and
         whole training steps, where K runs to the thousands), always relative to the
         largest magnitude of the expected array (atol = rtol * max|expected|), since
         entries near zero come from the cancellation of large terms;
  bitwise where two paths run the same float32 operations in the same order (threads,
         whole-epoch vs step-by-step, cpu plan in C vs op by op from Python, a copy, a
         routing, a mask, one IEEE operation per element): `assert_bitwise` compares the
         bits, so -0.0 differs from +0.0 and NaN equals only NaN.
Justified refinements (each says why in the test that uses it):
  a sum may instead be checked against its exact float64 value with the rigorous bound
         (K - 1) * 2^-24 * sum|terms| that any float32 summation order of K terms obeys
         (bias gradients, GEMM tile edges), which is tighter than a relative tolerance
         for short sums and never flaky for long ones;
  a float64 reference checked against float64 finite differences uses the budget of
         tests/test_reference.py (truncation ~h^2, rounding ~eps/h).
Kernel exceptions (tests/test_kernels.py says why where each is used): the GPU contracts
  a * b + c into FMAs, so the cuda optimizer rules are close (rtol 1e-5) where the C ones
  are bitwise; cpu max pooling adds what overlapping windows route to one element in
  another order than the reference (rtol 1e-5; bitwise where windows do not overlap);
  which zero a maximum or minimum of -0.0 and +0.0 returns is unspecified (rtol 0: equal
  values, the gradient's routing still bitwise).
Never widen a tolerance to make a test pass: a parity failure is a bug to find.

Kernel tests.  `kernel_backend` is the Backend object of each backend that is checked
against the reference, "cpu" and "cuda"; tests/test_kernels.py pairs it with shapes of
each backend's own (awkward ones for cpu, tiny ones for the simulator) by indirect
parametrisation.  `poisoned_simulator` fills all of the simulator's fresh memory (device,
shared, local) with NaN, so that a kernel reading memory it never wrote fails every time,
not just now and then.
"""
import os
import shutil
import sys
import time

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np                                                  # noqa: E402
import pytest                                                       # noqa: E402

import pynn                                                         # noqa: E402
from pynn import backend as backends                                # noqa: E402

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
BACKENDS = ("cpu", "numpy", "cuda")

RTOL_ELEMENTWISE = 1e-5
RTOL_SUMS = 1e-4


def assert_close(actual, expected, rtol=RTOL_ELEMENTWISE, err_msg=""):
    """actual == expected to rtol of the largest finite |expected| (the policy above);
    infinities and NaN where expected has them."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    finite = np.abs(expected[np.isfinite(expected)])      # inf and NaN must match exactly
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * max(scale, 1e-30),
                               err_msg=err_msg)


def assert_bitwise(actual, expected, err_msg=""):
    """The same dtype, shape and bits (the sign of zero included; NaN where both are NaN,
    whatever its payload)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{err_msg}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape} != {expected.shape}"
    if actual.dtype.kind == "f":
        both_nan = np.isnan(actual) & np.isnan(expected)
        bits = np.dtype(f"u{actual.dtype.itemsize}")
        actual = np.where(both_nan, 0, actual.view(bits))
        expected = np.where(both_nan, 0, expected.view(bits))
    np.testing.assert_array_equal(actual, expected, err_msg=err_msg)


def cuda_usable():
    return backends.cuda_unavailable_reason() is None


def usable_backend(name):
    """`name`, after failing the test if it is "cuda" and the backend cannot run here."""
    if name == "cuda":
        reason = backends.cuda_unavailable_reason()
        if reason is not None:
            pytest.fail(f"backend 'cuda' is unusable here: {reason} (the test extra installs "
                        "numba-cuda, whose simulator runs without a GPU)")
    return name


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Each backend in turn (cuda through the simulator when there is no GPU)."""
    return usable_backend(request.param)


@pytest.fixture(params=("cpu", "cuda"))
def kernel_backend(request):
    """The Backend object of each backend checked against the reference ("numpy"): "cpu"
    and "cuda".  Indirect parametrisation may pick one: parametrize("kernel_backend,case",
    [("cpu", ...), ("cuda", ...)], indirect=["kernel_backend"])."""
    return backends.get(usable_backend(request.param))


@pytest.fixture(autouse=True)
def _quick_simulator(request):
    """The simulator's scheduler polls its threads while holding the GIL; a short switch
    interval hands the GIL to the simulated threads sooner (5-7x faster on small kernels)."""
    if not SIMULATED:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(previous)


class _SimulatorPoison:
    """What `poisoned_simulator` does; `switch_in_shared_lookup` (seconds, 0: off) is a sleep,
    which hands the GIL to another simulated thread, after the simulator looks up a block's
    shared array and finds none, before it stores the new one."""
    switch_in_shared_lookup = 0.0

    @staticmethod
    def fill(a):
        if a.dtype.kind == "f":
            a.fill(np.nan)
        elif a.dtype.kind in "iu":
            a.fill(np.iinfo(a.dtype).max // 3)
        return a


@pytest.fixture
def poisoned_simulator(monkeypatch):
    """The cuda backend on the simulator with every piece of fresh memory full of NaN (integers:
    a large value): device arrays (cuda.device_array: backend.empty, the workspace), a block's
    shared arrays when created and again when each block starts, local arrays.  On the
    simulator fresh memory is NumPy's np.empty, which mostly holds zeros or old floats, so a
    kernel reading memory it never wrote is wrong only sometimes; poisoned, it gives NaN every
    time.  Yields the _SimulatorPoison whose settings the test may change."""
    if not SIMULATED:
        pytest.skip("poisons the simulator's memory (on a GPU, compute-sanitizer's initcheck)")
    backends.get(usable_backend("cuda"))          # numba imported, as the simulator
    from numba import cuda
    from numba.cuda.simulator import kernel as sim_kernel
    from numba.cuda.simulator import kernelapi

    poison = _SimulatorPoison()

    class Allocations(dict):
        """A block's shared arrays by call site (the simulator's FakeCUDAShared._allocations)."""

        def get(self, key, default=None):
            found = super().get(key, default)
            if found is None and poison.switch_in_shared_lookup:
                time.sleep(poison.switch_in_shared_lookup)
            return found

        def __setitem__(self, key, array):
            super().__setitem__(key, poison.fill(array))

    device_array, shared_init = cuda.device_array, kernelapi.FakeCUDAShared.__init__
    local_array, block_run = kernelapi.FakeCUDALocal.array, sim_kernel.BlockManager.run

    def shared_init_poisoned(self, *args, **kwargs):
        shared_init(self, *args, **kwargs)
        self._allocations = Allocations(self._allocations)

    def block_run_poisoned(self, *args, **kwargs):
        context = sim_kernel._kernel_context      # the launch's fake cuda module
        if context is not None:                    # blocks run in turn, sharing the arrays
            for array in context.shared._allocations.values():
                poison.fill(array)
        return block_run(self, *args, **kwargs)

    def device_array_poisoned(*args, **kwargs):
        array = device_array(*args, **kwargs)
        poison.fill(array._ary)         # the simulator's device array wraps a NumPy array
        return array

    monkeypatch.setattr(cuda, "device_array", device_array_poisoned)
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "__init__", shared_init_poisoned)
    monkeypatch.setattr(kernelapi.FakeCUDALocal, "array",
                        lambda self, *a, **k: poison.fill(local_array(self, *a, **k)))
    monkeypatch.setattr(sim_kernel.BlockManager, "run", block_run_poisoned)
    yield poison


# ---- the fused path's C calls --------------------------------------------------------------
class EveryBatch(pynn.callbacks.Callback):
    """A callback with a per-batch hook: fit then runs its steps one C call each (the "step
    by step" path, which must give bitwise the whole-epoch call's weights)."""

    def on_train_batch_end(self, batch, logs=None):
        pass


class StopAtBatch(pynn.callbacks.Callback):
    """Raises KeyboardInterrupt after training batch `batch` of epoch `epoch` (a run
    interrupted in the middle of an epoch)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


@pytest.fixture
def c_calls(monkeypatch):
    """The steps each training C call (CExecutor.run) of the test ran, in call order: a
    whole-epoch fit is [steps] per epoch, a step-by-step one [1, 1, ...]."""
    from pynn.models import executor as executor_module
    calls = []
    real = executor_module.CExecutor.run

    def counting(self, *args, **kwargs):
        if self.plan.kind == "train":
            calls.append(args[7])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(executor_module.CExecutor, "run", counting)
    return calls


@pytest.fixture
def threads():
    """Set the C kernels' thread count inside a test; restored afterwards."""
    before = pynn.get_num_threads()
    yield pynn.set_num_threads
    pynn.set_num_threads(before)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: timings and pixel-exact pictures (not in the default "
                            "run, see addopts in pyproject.toml: run them with pytest -m slow)")


def assert_step_close(before, actual, expected, rtol=RTOL_SUMS, err_msg=""):
    """The tolerance policy for training steps: weights after a step (or a few), `actual`
    - `before` == `expected` - `before` (lists of arrays).  A step is compared on the weight
    *changes*: the change is what the step computes, and the weights themselves would hide
    an error in it behind their own magnitude.  The scale is the step's largest change, and
    each weight's own largest change where that is not itself within the tolerance of zero
    (a weight whose changes cancel, such as the bias of a convolution followed by batch
    normalization: its computed change is the rounding the cancellation leaves)."""
    changes = []
    for start, a, e in zip(before, actual, expected):
        start = np.asarray(start, dtype=np.float64)
        changes.append((np.asarray(a, dtype=np.float64) - start,
                        np.asarray(e, dtype=np.float64) - start))
    assert len(changes) == len(before) == len(actual) == len(expected), err_msg
    assert_close(np.concatenate([a.ravel() for a, _ in changes]),
                 np.concatenate([e.ravel() for _, e in changes]), rtol=rtol,
                 err_msg=f"{err_msg}: the step")
    largest = max((float(np.abs(e).max()) for _, e in changes if e.size), default=0.0)
    for i, (a, e) in enumerate(changes):
        if e.size and np.abs(e).max() > rtol * largest:
            assert_close(a, e, rtol=rtol, err_msg=f"{err_msg}: weight {i}")
