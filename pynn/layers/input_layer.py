"""InputLayer and Input: the entry points of a functional model."""
from ..checks import check_bool, check_optional_int, shown
from .base import Layer, check_shape_arg, shape_text
from .node import KerasTensor, Node


class InputLayer(Layer):
    """The layer behind `pynn.Input`: it has no weights and computes nothing; its one node
    holds the model's input tensor.  `shape` excludes the batch axis (Keras's name
    `input_shape` is accepted too); `batch_shape` includes it."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 input_shape=None, sparse=None, input_tensor=None, optional=False, **kwargs):
        where = "InputLayer" if name is None else f"InputLayer '{name}'"
        if input_shape is not None and shape is None:
            shape = input_shape
        if sparse is not None and check_bool(sparse, "sparse", where):
            raise ValueError(f"{where}: sparse inputs are not supported")
        if input_tensor is not None or check_bool(optional, "optional", where):
            raise ValueError(f"{where}: input_tensor and optional inputs are not supported")
        if batch_shape is not None:
            if shape is not None:
                raise ValueError(f"{where}: pass shape or batch_shape, not both")
            if not isinstance(batch_shape, (tuple, list)) or len(batch_shape) < 2:
                raise ValueError(f"{where}: expected batch_shape as (batch, ...features), "
                                 f"received {shown(batch_shape)}")
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is None:
            raise ValueError(f"{where}: expected the input's shape (without the batch axis), "
                             "received none")
        batch_size = check_optional_int(batch_size, "batch_size", where)
        # integer inputs (Embedding's ids; engineer G): fed as float32, which holds every
        # integer up to 2^24 exactly; the dtype is kept for the config
        int_dtype = _integer_dtype(dtype)
        super().__init__(name=name, dtype=None if int_dtype else dtype, **kwargs)
        self.input_dtype = int_dtype or "float32"
        self.shape = check_shape_arg(shape, "shape", f"InputLayer '{self.name}'",
                                     allow_none=True)
        self.batch_size = batch_size
        self.built = True
        self._build_input_shape = (None,) + self.shape
        tensor = KerasTensor((None,) + self.shape, dtype=self.input_dtype, name=self.name)
        Node(self, None, [], [tensor])
        self._tensor = tensor

    @property
    def batch_shape(self):
        return (self.batch_size,) + self.shape

    def compute_output_shape(self, input_shape=None):
        return (None,) + self.shape

    def __call__(self, *args, **kwargs):
        raise ValueError(f"InputLayer '{self.name}' is not called on tensors; use its output "
                         "(what pynn.Input returns) as a model input")

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_shape),
                "dtype": self.input_dtype}

    def __repr__(self):
        return f"<InputLayer name={self.name}, shape={shape_text((None,) + self.shape)}>"


_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _integer_dtype(dtype):
    """The name of an integer dtype (a string, NumPy dtype or Keras DTypePolicy config),
    else None."""
    config = dtype.get("config") if isinstance(dtype, dict) else None
    name = config.get("name") if isinstance(config, dict) else \
        getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype
    return name if isinstance(name, str) and name in _INT_DTYPES else None


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None, sparse=None,
          tensor=None, optional=False):
    """A symbolic input of a functional model: `shape` excludes the batch axis, as Keras.
    Returns a KerasTensor; call layers on it and pass it to pynn.Model."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                       name=name, sparse=sparse, input_tensor=tensor, optional=optional)
    return layer._tensor
