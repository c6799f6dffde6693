"""Learning-rate schedules (pynn.optimizers.schedules, Keras 3's): their values against
float64 formulas written here from Keras's definitions
(keras/src/optimizers/schedules/learning_rate_schedule.py), evaluated at
optimizer.iterations before each update; a scheduled fit is still one C call per epoch and
the same bits whole-epoch, step by step and op by op; it follows a hand loop of
train_on_batch at the expected rates; cpu against numpy; save/load; configs; bad arguments.
"""
import math

import numpy as np
import pytest

import pynn
from pynn import layers as L
from pynn.optimizers import schedules as S

from conftest import EveryBatch, RTOL_SUMS, assert_bitwise, assert_close


# ---- Keras 3's formulas, in float64 -----------------------------------------------------
def exponential(lr0, decay_steps, rate, staircase=False):
    def f(step):
        p = step / decay_steps
        return lr0 * rate ** (math.floor(p) if staircase else p)
    return f


def piecewise(boundaries, values):
    def f(step):
        for b, v in zip(boundaries, values):
            if step <= b:
                return v
        return values[-1]
    return f


def polynomial(lr0, decay_steps, end=0.0001, power=1.0, cycle=False):
    def f(step):
        steps = decay_steps
        if cycle:
            steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))
        else:
            step = min(step, decay_steps)
        return (lr0 - end) * (1 - step / steps) ** power + end
    return f


def inverse_time(lr0, decay_steps, rate, staircase=False):
    def f(step):
        p = step / decay_steps
        return lr0 / (1 + rate * (math.floor(p) if staircase else p))
    return f


def cosine(lr0, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decay(step, start):
        return start * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)

    def f(step):
        if warmup_target is None:
            return decay(min(step, decay_steps), lr0)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (warmup_target - lr0) * (step / warmup_steps) + lr0
        return decay(step - warmup_steps, warmup_target)
    return f


def cosine_restarts(lr0, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    def f(step):
        # walk the periods: period i lasts first * t_mul^i steps at m_mul^i
        start, length, i = 0.0, float(first), 0
        while step >= start + length:
            start, length, i = start + length, length * t_mul, i + 1
        frac = (step - start) / length
        return lr0 * ((1 - alpha) * 0.5 * m_mul ** i * (1 + math.cos(math.pi * frac)) + alpha)
    return f


# id -> (schedule, independent formula)
CASES = {
    "exponential": (lambda: S.ExponentialDecay(0.1, 7, 0.5), exponential(0.1, 7, 0.5)),
    "exponential_staircase": (lambda: S.ExponentialDecay(0.2, 5, 0.7, staircase=True),
                              exponential(0.2, 5, 0.7, True)),
    "piecewise": (lambda: S.PiecewiseConstantDecay([3, 10, 20], [0.1, 0.05, 0.02, 0.01]),
                  piecewise([3, 10, 20], [0.1, 0.05, 0.02, 0.01])),
    "polynomial": (lambda: S.PolynomialDecay(0.1, 30, power=0.5),
                   polynomial(0.1, 30, power=0.5)),
    "polynomial_cycle": (lambda: S.PolynomialDecay(0.1, 9, 0.01, 2.0, cycle=True),
                         polynomial(0.1, 9, 0.01, 2.0, True)),
    "inverse_time": (lambda: S.InverseTimeDecay(0.1, 4, 0.5), inverse_time(0.1, 4, 0.5)),
    "inverse_time_staircase": (lambda: S.InverseTimeDecay(0.1, 4, 0.5, staircase=True),
                               inverse_time(0.1, 4, 0.5, True)),
    "cosine": (lambda: S.CosineDecay(0.1, 25, alpha=0.1), cosine(0.1, 25, 0.1)),
    "cosine_warmup": (lambda: S.CosineDecay(0.0, 20, warmup_target=0.1, warmup_steps=6),
                      cosine(0.0, 20, 0.0, 0.1, 6)),
    "cosine_restarts": (lambda: S.CosineDecayRestarts(0.1, 4, alpha=0.05, m_mul=0.8),
                        cosine_restarts(0.1, 4, 2.0, 0.8, 0.05)),
    "cosine_restarts_t1": (lambda: S.CosineDecayRestarts(0.1, 5, t_mul=1.0, m_mul=0.5),
                           cosine_restarts(0.1, 5, 1.0, 0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_values_match_keras_formulas(case):
    make, formula = CASES[case]
    schedule = make()
    for step in list(range(200)) + [1000, 12345]:
        expected = formula(step)
        assert math.isclose(schedule(step), expected, rel_tol=1e-12, abs_tol=1e-15), (case, step)


# ---- fits ---------------------------------------------------------------------------------
ROWS, BATCH, EPOCHS = 40, 8, 3
STEPS = ROWS // BATCH


def data():
    rng = np.random.default_rng(5)
    return rng.normal(size=(ROWS, 6)).astype(np.float32), rng.normal(size=(ROWS, 2)).astype(np.float32)


def model(optimizer, backend="cpu"):
    pynn.utils.set_random_seed(2)
    m = pynn.Sequential([L.Input((6,)), L.Dense(8, activation="tanh"), L.Dense(2)])
    m.compile(optimizer=optimizer, loss="mse", backend=backend)
    return m




def fit(case, path="whole epoch", backend="cpu", optimizer=pynn.optimizers.SGD):
    x, y = data()
    m = model(optimizer(CASES[case][0]()), backend)
    m.engine.force_python = path == "op by op"
    m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
          callbacks=[EveryBatch()] if path == "step by step" else [])
    return m


@pytest.mark.parametrize("case", list(CASES))
def test_a_scheduled_fit_is_one_c_call_per_epoch_and_the_same_bits_on_every_path(case, c_calls):
    runs = {}
    for path, calls in [("whole epoch", [STEPS] * EPOCHS), ("step by step", [1] * STEPS * EPOCHS),
                        ("op by op", [])]:
        c_calls.clear()
        runs[path] = fit(case, path).get_weights()
        assert c_calls == calls, path
    for path, weights in runs.items():
        for a, b in zip(weights, runs["whole epoch"]):
            assert_bitwise(a, b, err_msg=f"{case}: {path}")


@pytest.mark.parametrize("case", list(CASES))
def test_a_scheduled_fit_follows_train_on_batch_at_the_expected_rates(case):
    formula = CASES[case][1]
    fitted = fit(case)
    assert fitted.optimizer.iterations == STEPS * EPOCHS
    assert fitted.optimizer.learning_rate == pytest.approx(formula(STEPS * EPOCHS), rel=1e-12)
    x, y = data()
    hand = model(pynn.optimizers.SGD(1.0))
    for step in range(STEPS * EPOCHS):
        hand.optimizer.learning_rate = formula(step)       # Keras: the rate at iterations
        i = step % STEPS * BATCH
        hand.train_on_batch(x[i:i + BATCH], y[i:i + BATCH])
    for a, b in zip(fitted.get_weights(), hand.get_weights()):
        assert_close(a, b, rtol=1e-5, err_msg=case)


@pytest.mark.parametrize("case", ["piecewise", "cosine_warmup", "cosine_restarts"])
def test_cpu_and_numpy_agree_with_a_schedule(case):
    cpu = fit(case, optimizer=pynn.optimizers.Adam).get_weights()
    ref = fit(case, backend="numpy", optimizer=pynn.optimizers.Adam).get_weights()
    for a, b in zip(cpu, ref):
        assert_close(a, b, rtol=RTOL_SUMS, err_msg=case)


@pytest.mark.parametrize("case", ["exponential_staircase", "polynomial_cycle", "cosine_restarts"])
def test_save_and_load_continue_a_schedule_bitwise(case, tmp_path):
    x, y = data()
    straight = model(pynn.optimizers.Adam(CASES[case][0]()))
    straight.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    first = model(pynn.optimizers.Adam(CASES[case][0]()))
    first.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "m.pynn")
    loaded = pynn.load_model(tmp_path / "m.pynn")
    assert isinstance(loaded.optimizer.schedule, type(first.optimizer.schedule))
    assert loaded.optimizer.get_config() == first.optimizer.get_config()
    assert loaded.optimizer.learning_rate == first.optimizer.learning_rate
    loaded.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), straight.get_weights()):
        assert_bitwise(a, b, err_msg=case)


# ---- the optimizer's learning_rate, configs ---------------------------------------------
def test_learning_rate_reads_the_schedule_at_iterations_and_is_not_settable_to_a_float():
    opt = pynn.optimizers.Adam(S.ExponentialDecay(0.1, 2, 0.5))
    assert opt.learning_rate == 0.1
    opt.iterations = 4
    assert opt.learning_rate == pytest.approx(0.025, rel=1e-15)
    with pytest.raises(TypeError, match="not settable"):        # as Keras 3
        opt.learning_rate = 0.01
    opt.learning_rate = S.PiecewiseConstantDecay([1], [0.3, 0.2])   # another schedule: fine
    assert opt.learning_rate == 0.2
    plain = pynn.optimizers.SGD(0.5)
    plain.learning_rate = S.InverseTimeDecay(0.5, 1, 1.0)
    assert plain.learning_rate == 0.5 and plain.schedule is not None


@pytest.mark.parametrize("case", list(CASES))
def test_configs_round_trip(case):
    schedule = CASES[case][0]()
    clone = type(schedule).from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config() and clone == schedule
    entry = S.serialize(schedule)
    assert entry["class_name"] == type(schedule).__name__
    assert S.deserialize(entry) == schedule
    opt = pynn.optimizers.RMSprop(schedule)
    config = opt.get_config()
    assert config["learning_rate"]["config"] == schedule.get_config()
    again = pynn.optimizers.RMSprop.from_config(config)
    assert again.get_config() == config and again.hyper() == opt.hyper()


def test_keras_defaults_and_names():
    assert S.PolynomialDecay(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1, "decay_steps": 10, "end_learning_rate": 0.0001,
        "power": 1.0, "cycle": False, "name": "PolynomialDecay"}
    assert S.CosineDecayRestarts(0.1, 10).get_config() == {
        "initial_learning_rate": 0.1, "first_decay_steps": 10, "t_mul": 2.0, "m_mul": 1.0,
        "alpha": 0.0, "name": "SGDRDecay"}
    assert S.CosineDecay(0.1, 10).get_config()["warmup_target"] is None
    assert S.PiecewiseConstantDecay([1], [1.0, 0.5]).name == "PiecewiseConstant"


BAD = [
    (lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps", "0"),
    (lambda: S.ExponentialDecay(0.1, 10, -0.5), "decay_rate", "-0.5"),
    (lambda: S.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate", "-0.1"),
    (lambda: S.InverseTimeDecay(0.1, -3, 0.5), "decay_steps", "-3"),
    (lambda: S.PolynomialDecay(0.1, 0), "decay_steps", "0"),
    (lambda: S.PolynomialDecay(0.1, 10, end_learning_rate=-1.0), "end_learning_rate", "-1.0"),
    (lambda: S.CosineDecay(0.1, 0), "decay_steps", "0"),
    (lambda: S.CosineDecay(0.1, 10, warmup_target=-0.1), "warmup_target", "-0.1"),
    (lambda: S.CosineDecayRestarts(0.1, 0), "first_decay_steps", "0"),
    (lambda: S.CosineDecayRestarts(0.1, 10, t_mul=0.0), "t_mul", "0.0"),
    (lambda: S.PiecewiseConstantDecay([5, 3], [0.1, 0.2, 0.3]), "boundaries", "[5, 3]"),
    (lambda: S.PiecewiseConstantDecay([3, 3], [0.1, 0.2, 0.3]), "boundaries", "[3, 3]"),
    (lambda: S.PiecewiseConstantDecay([3], [0.1]), "values", "[0.1]"),
    (lambda: S.PiecewiseConstantDecay([3], [0.1, -0.2]), "values", "-0.2"),
    (lambda: S.PiecewiseConstantDecay(list(range(17)), [0.1] * 18), "boundaries", "[0, 1"),
    (lambda: S.ExponentialDecay(0.1, 10, 0.5, staircase="yes"), "staircase", "'yes'"),
]


@pytest.mark.parametrize("make,arg,value", BAD, ids=[f"{b[1]}={b[2]}" for b in BAD])
def test_bad_arguments_are_refused_naming_them(make, arg, value):
    with pytest.raises(ValueError, match=f"`{arg}`.*{arg}={value}".replace("[", r"\[")):
        make()


def test_sixteen_boundaries_run_in_c():
    boundaries = list(range(1, 17))
    values = [0.1 / (i + 1) for i in range(17)]
    schedule = S.PiecewiseConstantDecay(boundaries, values)
    formula = piecewise(boundaries, values)
    assert [schedule(s) for s in range(20)] == [formula(s) for s in range(20)]


def test_a_file_with_a_bad_schedule_is_refused():
    config = pynn.optimizers.SGD(S.ExponentialDecay(0.1, 5, 0.5)).get_config()
    config["learning_rate"]["config"]["decay_steps"] = 0
    with pytest.raises(ValueError, match="decay_steps"):
        pynn.optimizers.SGD.from_config(config)
    config["learning_rate"] = {"class_name": "Nope", "config": {}}
    with pytest.raises(ValueError, match="Nope"):
        pynn.optimizers.SGD.from_config(config)
