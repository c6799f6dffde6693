"""Optimizers with Keras 3's update rules.

An optimizer holds its hyperparameters, its step count (`iterations`) and its state
("slots": Adam's m and v, ...) as flat arrays laid out like the model's flat array of
trainable weights (pynn/models/params.py).  The update itself is one backend kernel call
over the whole array (`optimizer_step`, pynn_optimizer_step in C), made by the plan's
OP_OPTIMIZER; Adam's bias correction is computed there, once per backend.
"""
import numpy as np

from . import ids
from .checks import check_bool, check_name, check_number


class Optimizer:
    kind = None                  # the kernel (pynn.ids.OPTIMIZERS)

    def __init__(self, learning_rate, name, **kwargs):
        for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            if kwargs.pop(key, None) is not None:
                raise ValueError(f"{type(self).__name__}: `{key}` is not supported yet")
        for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                    "gradient_accumulation_steps"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword arguments {sorted(kwargs)}")
        self.name = check_name(name, "name", type(self).__name__)
        self.learning_rate = learning_rate
        self.iterations = 0
        self._slots = None       # {slot name: flat backend array}
        self._layout = None      # the ParameterStore layout the slots follow

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = check_number(value, "learning_rate", type(self).__name__, 0)

    # ---- what the plan needs -------------------------------------------------------------
    def slot_names(self):
        """The two slot arrays pynn_optimizer_step takes (None: not used)."""
        return (None, None)

    def __setattr__(self, name, value):
        if name != "iterations" and not name.startswith("_hyper"):
            object.__setattr__(self, "_hyper_cache", None)      # a setting changed
        object.__setattr__(self, name, value)

    def hyper(self):
        """The settings in pynn.ids.HYPER order, as pynn_optimizer_step reads them (the same
        list object until a setting changes)."""
        cached = self.__dict__.get("_hyper_cache")
        if cached is None:
            cached = self._hyper_cache = self._hyper_values()
        return cached

    def _hyper_values(self):
        values = {"learning_rate": self.learning_rate, "momentum": getattr(self, "momentum", 0.0),
                  "nesterov": float(getattr(self, "nesterov", False)),
                  "beta_1": getattr(self, "beta_1", 0.0), "beta_2": getattr(self, "beta_2", 0.0),
                  "rho": getattr(self, "rho", 0.0), "epsilon": getattr(self, "epsilon", 0.0)}
        return [float(values[k]) for k in ids.HYPER]

    def spec(self):
        return self.kind, self.hyper(), self.slot_names()

    @property
    def built(self):
        return self._slots is not None

    def build(self, store):
        """State arrays for the flat trainable weights of `store`, zeros; the state of the
        weights the previous layout also had is carried over (a recompile after
        freezing or unfreezing layers)."""
        layout = store.layout
        if self._slots is not None and self._layout is layout and \
                all(self._slots[n].shape == (store.n_trainable,) for n in self._slots):
            return
        old, old_layout = self._slots, self._layout
        be = store.backend
        self._slots = {n: be.zeros((store.n_trainable,)) for n in self.slot_names() if n}
        if old and old_layout is not None:
            old_at = {id(v): (start, v.size) for v, start in old_layout.trainable_offsets}
            for v, start in layout.trainable_offsets:
                if id(v) in old_at and v.size == old_at[id(v)][1]:
                    for n, arr in self._slots.items():
                        if n in old:
                            o = old_at[id(v)][0]
                            host = np.asarray(old_layout.backend.to_host(old[n]))[o:o + v.size]
                            be.copy_from_host(be.view(arr, start, (v.size,)),
                                              np.ascontiguousarray(host))
        self._layout = layout

    def slot(self, name):
        return None if name is None else self._slots[name]

    def state_arrays(self):
        """{slot name: host copy} of the state, or None before the first step."""
        if self._slots is None:
            return None
        be = self._layout.backend
        return {n: np.array(be.to_host(a), dtype=np.float32) for n, a in self._slots.items()}

    def state_shapes(self):
        return {n: tuple(a.shape) for n, a in (self._slots or {}).items()}

    def state_paths(self):
        """The paths of the weights the state arrays cover, in their order (each weight's
        entries one after the other), or None before the state exists."""
        if self._slots is None:
            return None
        return [v.path for v, _ in self._layout.trainable_offsets]

    def set_state_arrays(self, values):
        """Set the state from {slot name: array} (as state_arrays returns, checked by the
        caller)."""
        be = self._layout.backend
        for n, value in values.items():
            be.copy_from_host(self._slots[n], np.ascontiguousarray(value, dtype=np.float32))

    @property
    def variables(self):
        """The optimizer's state arrays (host copies), as Keras lists them after iterations
        and the learning rate."""
        if self._slots is None:
            return []
        be = self._layout.backend
        return [np.array(be.to_host(a)) for a in self._slots.values()]

    def count_params(self):
        """Keras's count of optimizer variables: iterations, learning rate, slots."""
        return 0 if self._slots is None else 2 + sum(a.size for a in self._slots.values())

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SGD(Optimizer):
    kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = check_number(momentum, "momentum", "SGD", 0, 1)
        self.nesterov = check_bool(nesterov, "nesterov", "SGD")

    def slot_names(self):
        return ("momentum" if self.momentum != 0.0 else None, None)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        if check_bool(amsgrad, "amsgrad", "Adam"):
            raise ValueError("Adam: amsgrad=True is not supported yet")
        self.beta_1 = check_number(beta_1, "beta_1", "Adam", 0, 1, high_open=True)
        self.beta_2 = check_number(beta_2, "beta_2", "Adam", 0, 1, high_open=True)
        self.epsilon = check_number(epsilon, "epsilon", "Adam", 0)

    def slot_names(self):
        return ("m", "v")

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 name="rmsprop", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        if check_bool(centered, "centered", "RMSprop"):
            raise ValueError("RMSprop: centered=True is not supported yet")
        self.rho = check_number(rho, "rho", "RMSprop", 0, 1, high_open=True)
        self.momentum = check_number(momentum, "momentum", "RMSprop", 0, 1)
        self.epsilon = check_number(epsilon, "epsilon", "RMSprop", 0)

    def slot_names(self):
        return ("velocity", "momentum" if self.momentum != 0.0 else None)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}
CLASSES = {cls.__name__: cls for cls in (SGD, Adam, RMSprop)}


def get(identifier, where="compile"):
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"{where}: unknown optimizer {identifier!r}; expected one of "
                             f"{', '.join(sorted(_BY_NAME))} or a pynn.optimizers.Optimizer instance")
        return cls()
    raise TypeError(f"{where}: expected an optimizer name or pynn.optimizers.Optimizer instance, "
                    f"received {type(identifier).__name__} {identifier!r}")
