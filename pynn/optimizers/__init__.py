"""Optimizers with Keras 3's update rules.

An optimizer holds its hyperparameters, its step count (`iterations`) and its state
("slots": Adam's m and v, ...) as flat arrays laid out like the model's flat array of
trainable weights (pynn/models/params.py).  The update itself is one backend kernel call
over the whole array (`optimizer_step`, pynn_optimizer_step in C), made by the plan's
OP_OPTIMIZER; Adam's bias correction is computed there, once per backend.

Every optimizer takes Keras 3's `weight_decay` (decoupled: before the update,
w -= w * weight_decay * learning_rate, over all trainable weights); AdamW is Adam with a
default weight_decay of 0.004.

Keras 3's base-optimizer settings act inside the same op (pynn_optimizer_apply), in Keras's
order: the gradients clipped (`clipnorm` per variable, `global_clipnorm`, `clipvalue`: at
most one), weight decay on the variables `exclude_from_weight_decay` did not exclude (each
variable is a segment of the flat array, with a "decay applies" flag, in the op's ints), the
rule, then with `use_ema` the moving average ("average", a slot saved with the others)
updated and, every `ema_overwrite_frequency` steps, copied over the weights; fit ends with
`finalize_variable_values`.  A callable `learning_rate` (no arguments, Keras 3) is called in
Python before each step, so fit then makes one C call per step; schedules stay in C.
"""
import numbers
import re

import numpy as np

from .. import _core, ids
from ..checks import (check_bool, check_name, check_number, check_optional_int, resolve_named,
                      shown)
from . import schedules
from .schedules import LearningRateSchedule


class Optimizer:
    kind = None                  # the kernel (pynn.ids.OPTIMIZERS)

    def __init__(self, learning_rate, name, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, **kwargs):
        for key in ("loss_scale_factor", "gradient_accumulation_steps"):
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unrecognized keyword arguments {sorted(kwargs)}")
        where = type(self).__name__
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        checked = {k: None if v is None else check_number(v, k, where, 0) for k, v in clips.items()}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError(f"{where}: Only one of `clipnorm`, `clipvalue` and "
                             f"`global_clipnorm` can be set. Received: clipnorm={clipnorm!r}, "
                             f"clipvalue={clipvalue!r}, global_clipnorm={global_clipnorm!r}")
        use_ema = check_bool(use_ema, "use_ema", where)
        ema_momentum = check_number(ema_momentum, "ema_momentum", where, 0, 1)
        ema_overwrite_frequency = check_optional_int(ema_overwrite_frequency,
                                                     "ema_overwrite_frequency", where, 0)
        self.name = check_name(name, "name", where)
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else \
            check_number(weight_decay, "weight_decay", where, 0)
        object.__setattr__(self, "_clip", checked)
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.iterations = 0
        self._exclude_ids = frozenset()         # exclude_from_weight_decay's variables
        self._exclude_pattern = None            #   and its var_names, as a regex
        self._exclude_keep = []
        self._slots = None       # {slot name: flat backend array}
        self._layout = None      # the ParameterStore layout the slots follow

    # ---- Keras 3's base-optimizer settings ------------------------------------------------
    # clipnorm, clipvalue and global_clipnorm: at most one is set (Keras refuses more);
    # setting one checks it, and refuses it while another is set, changing nothing.
    def _clip_property(key):
        def get(self):
            return self._clip[key]

        def set_(self, value):
            where = type(self).__name__
            value = None if value is None else check_number(value, key, where, 0)
            others = {k: v for k, v in self._clip.items() if k != key and v is not None}
            if value is not None and others:
                other, v = next(iter(others.items()))
                raise ValueError(f"{where}: Only one of `clipnorm`, `clipvalue` and "
                                 f"`global_clipnorm` can be set. Received: {key}={value!r} "
                                 f"while {other}={v!r}")
            self._clip = dict(self._clip, **{key: value})
        return property(get, set_)

    clipnorm = _clip_property("clipnorm")
    clipvalue = _clip_property("clipvalue")
    global_clipnorm = _clip_property("global_clipnorm")
    del _clip_property

    @property
    def use_ema(self):
        return self._use_ema

    @use_ema.setter
    def use_ema(self, value):
        value = check_bool(value, "use_ema", type(self).__name__)
        if self.__dict__.get("_slots") is not None and value != self._use_ema:
            raise ValueError(f"{type(self).__name__}: `use_ema` can only be changed before the "
                             f"optimizer is built (its moving averages are made then). "
                             f"Received: use_ema={value!r}")
        self._use_ema = value

    @property
    def ema_momentum(self):
        return self._ema_momentum

    @ema_momentum.setter
    def ema_momentum(self, value):
        self._ema_momentum = check_number(value, "ema_momentum", type(self).__name__, 0, 1)

    @property
    def ema_overwrite_frequency(self):
        return self._ema_overwrite_frequency

    @ema_overwrite_frequency.setter
    def ema_overwrite_frequency(self, value):
        self._ema_overwrite_frequency = check_optional_int(
            value, "ema_overwrite_frequency", type(self).__name__, 0)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras 3's: weight decay is not applied to the variables of `var_list` nor to
        those whose name any of the strings `var_names` is found in (as a regular
        expression, re.search, as Keras matches them).  Only before the optimizer is built
        (its first step, or a fit/train_on_batch/optimizer state read)."""
        where = f"{type(self).__name__}.exclude_from_weight_decay"
        if self.built:
            raise ValueError(f"{where}: `exclude_from_weight_decay()` can only be configured "
                             f"before the optimizer is built.")
        from ..variables import Variable
        ids_ = set()
        if var_list:
            if not isinstance(var_list, (list, tuple)):
                raise TypeError(f"{where}: expected `var_list` to be a list of variables, "
                                f"received var_list={shown(var_list)}")
            for v in var_list:
                if not isinstance(v, Variable):
                    raise TypeError(f"{where}: expected `var_list` to hold variables, received "
                                    f"{shown(v)} in var_list")
                ids_.add(id(v))
        pattern = None
        if var_names:
            if not isinstance(var_names, (list, tuple)) or \
                    not all(isinstance(n, str) for n in var_names):
                raise TypeError(f"{where}: expected `var_names` to be a list of strings, "
                                f"received var_names={shown(var_names)}")
            try:
                pattern = re.compile("|".join(sorted(set(var_names))))
            except re.error as exc:
                raise ValueError(f"{where}: received an invalid value for `var_names`: {exc}. "
                                 f"Received: var_names={shown(var_names)}") from None
        self._exclude_ids = frozenset(ids_)
        self._exclude_pattern = pattern
        self._exclude_keep = list(var_list or ())      # the ids stay those variables'

    def _use_weight_decay(self, variable):
        """Keras 3's: False for a variable exclude_from_weight_decay named."""
        if id(variable) in self._exclude_ids:
            return False
        pattern = self._exclude_pattern
        return pattern is None or pattern.search(variable.name) is None

    @property
    def learning_rate(self):
        """The learning rate; with a schedule, its value at the current `iterations` (the
        rate the next update uses), as Keras 3 reads it; a callable's value (called now)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return lr(self.iterations)
        if callable(lr):
            return self._called_learning_rate()
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule) or \
                (callable(value) and not isinstance(value, (numbers.Real, np.ndarray))):
            self._learning_rate = value
            return
        if isinstance(self.__dict__.get("_learning_rate"), LearningRateSchedule):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as "
                            "its `learning_rate` constructor argument, hence its learning rate "
                            "is not settable. If you need the learning rate to be settable, you "
                            "should instantiate the optimizer with a float `learning_rate` "
                            "argument.")
        self._learning_rate = check_number(value, "learning_rate", type(self).__name__, 0)

    def _called_learning_rate(self):
        """A callable learning rate's value now, checked as a learning rate is."""
        where = type(self).__name__
        try:
            value = self._learning_rate()
        except TypeError as exc:
            raise TypeError(f"{where}: a callable `learning_rate` is called with no arguments "
                            f"(Keras 3); calling {shown(self._learning_rate)} failed: {exc}") from None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        return check_number(value, "learning_rate", f"{where} (the value its callable "
                            f"learning_rate returned)", 0)

    @property
    def schedule(self):
        """The LearningRateSchedule the learning rate follows, or None."""
        lr = self._learning_rate
        return lr if isinstance(lr, LearningRateSchedule) else None

    @property
    def steps_in_python(self):
        """True when the learning rate is a callable (not a schedule): it is called in
        Python before each step, so fit then runs one C call per step instead of one per
        epoch (everything else, schedules included, runs inside the epoch's C call)."""
        lr = self._learning_rate
        return callable(lr) and not isinstance(lr, LearningRateSchedule)

    # ---- what the plan needs -------------------------------------------------------------
    def slot_names(self):
        """The ids.OPT_SLOTS slot arrays pynn_optimizer_step takes (None: not used)."""
        return (None,) * ids.OPT_SLOTS

    def slot_initial_value(self, name):
        """The value a slot array starts at (Adagrad's accumulator: not 0)."""
        return 0.0

    def __setattr__(self, name, value):
        if name != "iterations" and not name.startswith("_hyper"):
            object.__setattr__(self, "_hyper_cache", None)      # a setting changed
        object.__setattr__(self, name, value)

    def hyper(self):
        """The optimizer op's reals: the settings in pynn.ids.HYPER order, as
        pynn_optimizer_step reads them, then the schedule block (kind, params: kind 0,
        "none", without a schedule; with one, the learning rate entry is 0 and each step's
        rate is the schedule's), then the options block (pynn.ids.OPTIONS: clipping, EMA;
        0 for an option not set); the same list object until a setting changes (a callable
        learning rate: a new list, the callable called, at each call)."""
        cached = self.__dict__.get("_hyper_cache")
        if cached is None:
            cached = self._hyper_values()
            if not self.steps_in_python:
                self._hyper_cache = cached
        return cached

    def _hyper_values(self):
        schedule = self.schedule
        values = {"learning_rate": 0.0 if schedule else self.learning_rate,
                  "momentum": getattr(self, "momentum", 0.0),
                  "nesterov": float(getattr(self, "nesterov", False)),
                  "beta_1": getattr(self, "beta_1", 0.0), "beta_2": getattr(self, "beta_2", 0.0),
                  "rho": getattr(self, "rho", 0.0), "epsilon": getattr(self, "epsilon", 0.0),
                  "weight_decay": self.weight_decay or 0.0,
                  "amsgrad": float(getattr(self, "amsgrad", False))}
        block = [0.0] * (1 + _core.SCHEDULE_PARAMS) if schedule is None else \
            [float(ids.SCHEDULES[schedule.kind])] + schedule.params()
        options = {"clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                   "global_clipnorm": self.global_clipnorm,
                   "ema_momentum": self.ema_momentum if self.use_ema else 0.0,
                   "ema_overwrite_frequency": (self.ema_overwrite_frequency or 0)
                   if self.use_ema else 0}
        return [float(values[k]) for k in ids.HYPER] + block + \
            [float(options[k] or 0.0) for k in ids.OPTIONS]

    def ema_slot(self):
        """The name of the slot holding the moving averages (use_ema), or None."""
        return "average" if self.use_ema else None

    def segments(self, layout):
        """The flat (offset, size, flags) triples of the trainable weights of `layout`, in
        its order: flags 1 where weight decay applies (exclude_from_weight_decay)."""
        out = []
        for v, start in layout.trainable_offsets:
            out += [start, v.size, _core.SEGMENT_DECAY if self._use_weight_decay(v) else 0]
        return out

    def spec(self, store):
        """What compile_plan needs for the optimizer op of `store`'s weights."""
        return self.kind, self.hyper(), self.slot_names(), self.ema_slot(), \
            self.segments(store.layout)

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
        self._slots = {}
        for n in self.slot_names() + (self.ema_slot(),):
            if n:
                init = self.slot_initial_value(n)
                self._slots[n] = be.zeros((store.n_trainable,)) if init == 0.0 else \
                    be.from_host(np.full(store.n_trainable, init, dtype=np.float32))
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

    def finalize_variable_values(self, var_list=None):
        """Keras 3's: with use_ema, the trainable weights the optimizer updates are
        overwritten with their moving averages (fit does it after its last epoch).  The
        averages cover the weights of the optimizer's layout; var_list (Keras passes the
        model's trainable weights) is accepted for Keras's signature."""
        if not self.use_ema or self._slots is None or "average" not in self._slots or \
                self.iterations == 0:          # no average taken yet
            return
        layout = self._layout
        average = np.array(layout.backend.to_host(self._slots["average"]), dtype=np.float32)
        wanted = None if var_list is None else {id(v) for v in var_list}
        for v, start in layout.trainable_offsets:
            if wanted is None or id(v) in wanted:
                v._write(np.ascontiguousarray(average[start:start + v.size].reshape(v.shape)))

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
        lr = self._learning_rate
        return {"name": self.name,
                "learning_rate": schedules.serialize(lr) if self.schedule else lr,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency}

    @classmethod
    def from_config(cls, config):
        if isinstance(config.get("learning_rate"), dict):
            config = dict(config, learning_rate=schedules.deserialize(config["learning_rate"]))
        return cls(**config)


class SGD(Optimizer):
    kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name="SGD", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = check_number(momentum, "momentum", "SGD", 0, 1)
        self.nesterov = check_bool(nesterov, "nesterov", "SGD")

    def slot_names(self):
        return ("momentum" if self.momentum != 0.0 else None, None, None)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name="adam", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        where = type(self).__name__
        self.amsgrad = check_bool(amsgrad, "amsgrad", where)
        self.beta_1 = check_number(beta_1, "beta_1", where, 0, 1, high_open=True)
        self.beta_2 = check_number(beta_2, "beta_2", where, 0, 1, high_open=True)
        self.epsilon = check_number(epsilon, "epsilon", where, 0)

    def slot_names(self):
        return ("m", "v", "v_hat" if self.amsgrad else None)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


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
        return ("velocity", "momentum" if self.momentum != 0.0 else None, None)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with Keras 3's decoupled weight decay (the same kernel: weight_decay is a
    setting of every optimizer)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name="adamw", **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: expected `weight_decay` to be a float, received "
                             "weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name,
                         weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    kind = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name="adagrad", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.initial_accumulator_value = check_number(
            initial_accumulator_value, "initial_accumulator_value", "Adagrad", 0)
        self.epsilon = check_number(epsilon, "epsilon", "Adagrad", 0)

    def slot_names(self):
        return ("accumulator", None, None)

    def slot_initial_value(self, name):
        return self.initial_accumulator_value

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    kind = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, name="adadelta", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.rho = check_number(rho, "rho", "Adadelta", 0, 1)
        self.epsilon = check_number(epsilon, "epsilon", "Adadelta", 0)

    def slot_names(self):
        return ("accumulated_grad", "accumulated_delta_var", None)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(Optimizer):
    kind = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name="adamax", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_number(beta_1, "beta_1", "Adamax", 0, 1, high_open=True)
        self.beta_2 = check_number(beta_2, "beta_2", "Adamax", 0, 1)
        self.epsilon = check_number(epsilon, "epsilon", "Adamax", 0)

    def slot_names(self):
        return ("m", "u", None)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Nadam(Optimizer):
    """Keras 3's Nadam.  Its scalar state u_product is a function of the step count and
    beta_1, recomputed at each step (pynn_nadam_factors), so it needs no slot."""
    kind = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name="nadam", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = check_number(beta_1, "beta_1", "Nadam", 0, 1, high_open=True)
        self.beta_2 = check_number(beta_2, "beta_2", "Nadam", 0, 1, high_open=True)
        self.epsilon = check_number(epsilon, "epsilon", "Nadam", 0)

    def slot_names(self):
        return ("m", "v", None)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Lion(Optimizer):
    kind = "lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, name="lion", **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        # Keras: beta_1 in (0, 1] (0 degenerates to signSGD)
        self.beta_1 = check_number(beta_1, "beta_1", "Lion", 0, 1, low_open=True)
        self.beta_2 = check_number(beta_2, "beta_2", "Lion", 0, 1)

    def slot_names(self):
        return ("m", None, None)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


_ALL = (SGD, Adam, RMSprop, AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion)
_BY_NAME = {cls.__name__.lower(): cls for cls in _ALL}     # as Keras resolves names
CLASSES = {cls.__name__: cls for cls in _ALL}


def get(identifier, where="compile"):
    """An Optimizer from an instance, an Optimizer class or a Keras name."""
    return resolve_named(identifier, Optimizer, _BY_NAME, "an optimizer",
                         "pynn.optimizers.Optimizer", where)
