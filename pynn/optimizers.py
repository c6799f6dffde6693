"""Optimizers with Keras 3's update rules.

An optimizer holds its hyperparameters, its step count (`iterations`) and one set of
state arrays ("slots") per parameter, created on the backend the model trains on.
The arithmetic of every update is one backend kernel call per parameter.
"""
import math

import numpy as np


def _check_number(cls, name, value, lo, hi, lo_open=False, hi_open=False):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and \
            (value < hi if hi_open else value <= hi)
    if not ok:
        lo_b, hi_b = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{cls}: expected {name} in {lo_b}{lo}, {hi}{hi_b}, received {name}={value!r}")
    return float(value)


class Optimizer:
    slot_names = ()

    def __init__(self, learning_rate, name):
        self.name = name
        self.learning_rate = learning_rate
        self.iterations = 0
        self._slots = None     # list (one per parameter) of dict slot name -> backend array
        self._backend = None

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_number(type(self).__name__, "learning_rate", value,
                                            0.0, math.inf, hi_open=True)

    def build(self, backend, params):
        """Create zeroed state arrays for `params` on `backend` (once per model binding)."""
        self._backend = backend
        self._slots = [{s: backend.zeros(p.shape) for s in self.slot_names if self._needs(s)}
                       for p in params]

    def _needs(self, slot):
        return True

    @property
    def built(self):
        return self._slots is not None

    def apply(self, backend, params, grads):
        """One update of every parameter from its gradient."""
        self.iterations += 1
        for p, g, slots in zip(params, grads, self._slots):
            self._update(backend, p, g, slots)

    def _update(self, backend, param, grad, slots):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD"):
        super().__init__(learning_rate, name)
        self.momentum = _check_number("SGD", "momentum", momentum, 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: expected nesterov to be a bool, received {nesterov!r}")
        self.nesterov = bool(nesterov)

    def _needs(self, slot):
        return self.momentum != 0.0

    def _update(self, backend, param, grad, slots):
        backend.sgd_update(param, slots.get("momentum"), grad, self.learning_rate,
                           self.momentum, self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="adam"):
        super().__init__(learning_rate, name)
        self.beta_1 = _check_number("Adam", "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check_number("Adam", "beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check_number("Adam", "epsilon", epsilon, 0.0, math.inf, hi_open=True)

    def apply(self, backend, params, grads):
        from .backend import reference
        self.iterations += 1
        # Bias correction folded into the step size, once per step (Keras 3).
        lr_t = reference.adam_lr_t(self.learning_rate, self.beta_1, self.beta_2, self.iterations)
        for p, g, s in zip(params, grads, self._slots):
            backend.adam_update(p, s["m"], s["v"], g, lr_t, self.beta_1, self.beta_2, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    slot_names = ("velocity", "momentum")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, name="rmsprop"):
        super().__init__(learning_rate, name)
        self.rho = _check_number("RMSprop", "rho", rho, 0.0, 1.0, hi_open=True)
        self.momentum = _check_number("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check_number("RMSprop", "epsilon", epsilon, 0.0, math.inf, hi_open=True)

    def _needs(self, slot):
        return slot == "velocity" or self.momentum != 0.0

    def _update(self, backend, param, grad, slots):
        backend.rmsprop_update(param, slots["velocity"], slots.get("momentum"), grad,
                               self.learning_rate, self.rho, self.momentum, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}


_BY_NAME = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


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
