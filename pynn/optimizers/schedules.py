"""Learning-rate schedules: Keras 3's keras.optimizers.schedules, same classes, arguments,
defaults and formulas.

A schedule is handed to an optimizer as its `learning_rate`.  Like Keras, the update of
step t (pynn's 1-based step numbers) uses the schedule at `optimizer.iterations` before
the update, t - 1.  The schedule travels into the plan as numbers (`kind`, `params()`:
a kind of pynn.ids.SCHEDULES and PYNN_SCHEDULE_PARAMS doubles) and is evaluated at every
step by pynn_schedule_lr in C (csrc/optimizers.c), inside the whole-epoch call; the Python
executor and `schedule(step)` call the same C function, so every backend uses the same
double.  PiecewiseConstantDecay takes at most SCHEDULE_MAX_BOUNDARIES boundaries.
"""


from .. import _core, ids
from ..checks import check_bool, check_name, check_number, invalid, is_int, shown

MAX_BOUNDARIES = _core.SCHEDULE_MAX_BOUNDARIES


def _steps(value, arg, where):
    """decay_steps and its kin: a finite number > 0 (Keras casts it to the rate's dtype)."""
    number = check_number(value, arg, where, 0, low_open=True)
    return int(value) if is_int(value) else number


def _rate(value, arg, where):
    """A learning rate or decay rate: a finite number >= 0."""
    return check_number(value, arg, where, 0)


class LearningRateSchedule:
    """The base class: a callable of the step count (optimizer.iterations)."""
    kind = None                  # pynn.ids.SCHEDULES name

    def params(self):
        """The PYNN_SCHEDULE_PARAMS doubles pynn_schedule_lr reads (csrc/pynn.h)."""
        values = [float(v) for v in self._params()]
        return values + [0.0] * (_core.SCHEDULE_PARAMS - len(values))

    def _params(self):
        raise NotImplementedError

    def __call__(self, step):
        step = int(step)
        if step < 0:
            raise ValueError(f"{type(self).__name__}: expected a step >= 0, received {step}")
        return _core.schedule_lr(ids.SCHEDULES[self.kind], self.params(), step)

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class ExponentialDecay(LearningRateSchedule):
    kind = "ExponentialDecay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        where = type(self).__name__
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate", where)
        self.decay_steps = _steps(decay_steps, "decay_steps", where)
        self.decay_rate = _rate(decay_rate, "decay_rate", where)
        self.staircase = check_bool(staircase, "staircase", where)
        self.name = check_name(name, "name", where)

    def _params(self):
        return (self.initial_learning_rate, self.decay_steps, self.decay_rate, self.staircase)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(ExponentialDecay):
    kind = "InverseTimeDecay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)


class PiecewiseConstantDecay(LearningRateSchedule):
    kind = "PiecewiseConstantDecay"

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        where = type(self).__name__
        if not isinstance(boundaries, (list, tuple)) or len(boundaries) > MAX_BOUNDARIES:
            raise invalid(where, "boundaries", f"a list of at most {MAX_BOUNDARIES} numbers",
                          boundaries)
        if not isinstance(values, (list, tuple)) or len(values) != len(boundaries) + 1:
            raise invalid(where, "values", f"a list of len(boundaries) + 1 = "
                          f"{len(boundaries) + 1} learning rates", values)
        for b in boundaries:
            check_number(b, "boundaries", where)
        if any(not b0 < b1 for b0, b1 in zip(boundaries, boundaries[1:])):
            raise invalid(where, "boundaries", "strictly increasing numbers", boundaries)
        for v in values:
            _rate(v, "values", where)
        self.boundaries = [int(b) if is_int(b) else float(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.name = check_name(name, "name", where)

    def _params(self):
        return (len(self.boundaries), *self.boundaries, *self.values)

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    kind = "PolynomialDecay"

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        where = type(self).__name__
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate", where)
        self.decay_steps = _steps(decay_steps, "decay_steps", where)
        self.end_learning_rate = _rate(end_learning_rate, "end_learning_rate", where)
        self.power = check_number(power, "power", where, 0)
        self.cycle = check_bool(cycle, "cycle", where)
        self.name = check_name(name, "name", where)

    def _params(self):
        return (self.initial_learning_rate, self.decay_steps, self.end_learning_rate,
                self.power, self.cycle)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class CosineDecay(LearningRateSchedule):
    kind = "CosineDecay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        where = type(self).__name__
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate", where)
        self.decay_steps = _steps(decay_steps, "decay_steps", where)
        self.alpha = check_number(alpha, "alpha", where, 0, 1)
        self.name = check_name(name, "name", where)
        self.warmup_target = None if warmup_target is None else \
            _rate(warmup_target, "warmup_target", where)
        self.warmup_steps = int(warmup_steps) if is_int(warmup_steps) and warmup_steps >= 0 \
            else check_number(warmup_steps, "warmup_steps", where, 0)

    def _params(self):
        return (self.initial_learning_rate, self.decay_steps, self.alpha,
                self.warmup_target is not None, self.warmup_target or 0.0, self.warmup_steps)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    kind = "CosineDecayRestarts"

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        where = type(self).__name__
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate", where)
        self.first_decay_steps = _steps(first_decay_steps, "first_decay_steps", where)
        self._t_mul = check_number(t_mul, "t_mul", where, 0, low_open=True)
        self._m_mul = _rate(m_mul, "m_mul", where)
        self.alpha = check_number(alpha, "alpha", where, 0, 1)
        self.name = check_name(name, "name", where)

    def _params(self):
        return (self.initial_learning_rate, self.first_decay_steps, self._t_mul, self._m_mul,
                self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self._t_mul,
                "m_mul": self._m_mul, "alpha": self.alpha, "name": self.name}


_ALL = (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay,
        CosineDecay, CosineDecayRestarts)
CLASSES = {cls.__name__: cls for cls in _ALL}


def serialize(learning_rate_schedule):
    """{"module", "class_name", "config", "registered_name"}, as Keras writes a schedule."""
    return {"module": "pynn.optimizers.schedules",
            "class_name": type(learning_rate_schedule).__name__,
            "config": learning_rate_schedule.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """The schedule a serialize() entry describes (ValueError for anything else)."""
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"schedules.deserialize: expected {{'class_name': ..., 'config': "
                         f"{{...}}}}, received {shown(config)}")
    cls = CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"schedules.deserialize: unknown learning rate schedule "
                         f"{shown(config.get('class_name'))}; expected one of "
                         f"{', '.join(sorted(CLASSES))}")
    return cls.from_config(dict(config.get("config", {})))
