"""pynn: train neural networks from Python with Keras's API over readable, fast C kernels.

    import pynn
    model = pynn.Sequential([pynn.layers.Input((64,)),
                             pynn.layers.Dense(32, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5)
"""

def _find_core():
    """Import the compiled core.  Run from a source checkout (python -m pynn in the
    repository root puts the uncompiled pynn/ first on sys.path), borrow the compiled
    pynn._core of the installed copy so the command still works."""
    import importlib
    import os
    import sys
    try:
        return importlib.import_module(__name__ + "._core")
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        for entry in sys.path:
            other = os.path.join(os.path.abspath(entry or os.getcwd()), "pynn")
            if other != here and os.path.isdir(other) and any(
                    f.startswith("_core.") and f.endswith((".so", ".pyd")) for f in os.listdir(other)):
                __path__.append(other)
                return importlib.import_module(__name__ + "._core")
        raise ImportError("pynn's compiled core (pynn._core) is missing: install pynn with "
                          "`pip install .` from the repository root") from None


_core = _find_core()
from . import activations, callbacks, data, datasets, initializers, layers, losses, metrics, ops, optimizers, utils
from .backend import cuda_available, get_backend, set_backend
from .layers import Input, InputLayer, KerasTensor
from .models import Model, NotCompiledError, Sequential, load_model, model_from_json
from .variables import Variable
from . import models, saving
from . import distributed
from . import constraints, regularizers  # engineer F
from .regularizers import Regularizer  # noqa: F401  (keras.Regularizer)

__version__ = "0.1.0"


def set_num_threads(n):
    """Threads the C kernels use (default: OpenMP's, so OMP_NUM_THREADS is honoured)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"pynn.set_num_threads: expected a positive integer, received {n!r}")
    _core.set_num_threads(n)


def get_num_threads():
    return _core.get_num_threads()


__all__ = ["Model", "Sequential", "Input", "InputLayer", "KerasTensor", "Variable", "models",
           "model_from_json", "layers", "losses", "metrics", "optimizers", "initializers", "callbacks",
           "datasets", "utils", "ops", "activations", "set_backend", "get_backend", "cuda_available",
           "set_num_threads", "get_num_threads", "NotCompiledError", "load_model", "saving",
           "regularizers", "constraints", "Regularizer"]
