"""Models: the graph (Model, Sequential), the plan compiled from it, the parameter store,
the engine and the trainer.  See functional.py for how the parts fit together."""
from .functional import Model
from .sequential import Sequential
from .trainer import NotCompiledError
from .. import serialization as _serialization

_serialization.register_model_class(Model, "Functional", "Model")
_serialization.register_model_class(Sequential, "Sequential")


def load_model(filepath, compile=True, backend=None):
    """`pynn.load_model`: the model saved at `filepath` by `model.save` (pynn/saving.py)."""
    from .. import saving
    return saving.load_model(filepath, compile=compile, backend=backend)


def model_from_json(json_string):
    """The model that `model.to_json()` described (with new weights)."""
    from .. import saving
    return saving.model_from_json(json_string)


Functional = Model

__all__ = ["Model", "Sequential", "Functional", "NotCompiledError", "load_model",
           "model_from_json"]
