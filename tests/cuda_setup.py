"""What tests/test_cuda.py and tests/test_cuda_cnn.py share: the simulator switch and fixtures.

Without a GPU the CUDA tests run under Numba's CUDA simulator, which must be switched on
before numba is imported: importing this module first sets NUMBA_ENABLE_CUDASIM=1 unless the
variable is already set or nvidia-smi says a real GPU may be present, so the same tests run
unchanged on a GPU.  A test module that imports this is skipped only when numba-cuda is not
installed at all (the test extra installs it).
"""
import os
import shutil
import sys

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest                                                      # noqa: E402

from pynn import backend as backends                               # noqa: E402

REASON = backends.cuda_unavailable_reason()
if REASON is not None and "not installed" in REASON:
    pytest.skip(REASON, allow_module_level=True)

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


@pytest.fixture(scope="module", autouse=True)
def quick_simulator():
    """The simulator's scheduler polls its threads while holding the GIL; a short switch
    interval hands the GIL to the simulated threads sooner (5-7x faster on small kernels)."""
    if not SIMULATED:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(previous)


@pytest.fixture(scope="module")
def be():
    if REASON is not None:
        pytest.fail(f"backend 'cuda' is unusable: {REASON}")
    return backends.get("cuda")
