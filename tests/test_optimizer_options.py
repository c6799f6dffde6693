"""The settings common to Keras 3's optimizers (keras/src/optimizers/base_optimizer.py):
clipnorm, clipvalue, global_clipnorm, use_ema / ema_momentum / ema_overwrite_frequency,
exclude_from_weight_decay and a callable learning_rate.

One step of each against float64 formulas written here from Keras's code, on every backend
(C, CUDA under the simulator, the reference), and the backends against each other; a fit
with each is one C call per epoch (a callable learning rate: one per step) and bitwise the
same whole-epoch, step by step, op by op and on 1 or 2 threads; the EMA replaces the
weights at the end of fit; excluded variables are not decayed; configs and saved models keep
the settings and the EMA; bad arguments are refused naming them, changing nothing.
"""
import math

import numpy as np
import pytest

import pynn
from pynn import _core, ids
from pynn import backend as backends
from pynn import layers as L
from pynn.backend import reference as ref

from conftest import EveryBatch, RTOL_SUMS, assert_bitwise, assert_close, usable_backend

O = pynn.optimizers


# ---- float64 formulas (Keras 3) ----------------------------------------------------------------
def keras_clip(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """base_optimizer._clip_gradients over a list of per-variable float64 gradients."""
    if clipnorm:
        return [g * clipnorm / max(math.sqrt(float(np.sum(g * g))), clipnorm) for g in grads]
    if global_clipnorm:
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        return [g * global_clipnorm * min(1.0 / norm, 1.0 / global_clipnorm) for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


def keras_step(kind, ws, grads, state, step, lr, wd, decays, clip, ema=None, ema_momentum=0.99,
               overwrite=None):
    """One apply of Keras 3's base optimizer in float64: clip, decay (per variable), the rule
    (SGD with momentum 0.9, or Adam), the EMA; returns new (ws, state, ema)."""
    grads = keras_clip([g.astype(np.float64) for g in grads], **clip)
    ws = [w.astype(np.float64) for w in ws]
    ws = [w - w * wd * lr if d else w for w, d in zip(ws, decays)]
    new_state = []
    out = []
    for w, g, s in zip(ws, grads, state):
        if kind == "sgd":
            m = 0.9 * s[0] - lr * g
            out.append(w + m)
            new_state.append((m,))
        else:
            m = s[0] + (g - s[0]) * 0.1
            v = s[1] + (g * g - s[1]) * 0.001
            lr_t = lr * math.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            out.append(w - lr_t * m / (np.sqrt(v) + 1e-7))
            new_state.append((m, v))
    if ema is not None:
        mom = 0.0 if step == 1 else ema_momentum
        ema = [mom * e + (1 - mom) * w for e, w in zip(ema, out)]
        if overwrite and step % overwrite == 0:
            out = [e.copy() for e in ema]
    return out, new_state, ema


CLIPS = {"none": {}, "clipnorm": {"clipnorm": 0.05}, "clipvalue": {"clipvalue": 0.02},
         "global_clipnorm": {"global_clipnorm": 0.1}, "clipnorm_loose": {"clipnorm": 100.0}}
SIZES = (5, 1, 12, 3)             # the variables of the flat array
DECAYS = (1, 0, 1, 0)


def flat_case(seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=n).astype(np.float32) for n in SIZES]
    gs = [(rng.normal(size=n) * 0.1).astype(np.float32) for n in SIZES]
    segments, off = [], 0
    for n, d in zip(SIZES, DECAYS):
        segments += [off, n, d]
        off += n
    return ws, gs, segments


def run_backend(name, kind, clip, steps=2, ema_momentum=0.9, overwrite=None, use_ema=True):
    """`steps` updates of the flat case on backend `name`: (w, ema) on the host."""
    be = backends.get(usable_backend(name))
    ws, gs, segments = flat_case()
    w = be.from_host(np.concatenate(ws))
    n = w.shape[0]
    slots = [be.zeros((n,)), be.zeros((n,)) if kind == "adam" else None, None]
    ema = be.zeros((n,)) if use_ema else None
    hyper = {"learning_rate": 0.1, "momentum": 0.9, "nesterov": 0.0, "beta_1": 0.9,
             "beta_2": 0.999, "rho": 0.0, "epsilon": 1e-7, "weight_decay": 0.2, "amsgrad": 0.0,
             "ema_momentum": ema_momentum, "ema_overwrite_frequency": overwrite or 0}
    hyper.update({k: float(v) for k, v in clip.items()})
    for step in range(1, steps + 1):
        g = be.from_host(np.concatenate(gs) * np.float32(step))
        be.optimizer_step(kind, w, slots, g, step, hyper, segments, ema)
    return np.array(be.to_host(w)), None if ema is None else np.array(be.to_host(ema))


def run_keras(kind, clip, steps=2, ema_momentum=0.9, overwrite=None):
    ws, gs, _ = flat_case()
    state = [(np.zeros(n), np.zeros(n)) for n in SIZES]
    ema = [np.zeros(n) for n in SIZES]
    for step in range(1, steps + 1):
        ws, state, ema = keras_step(kind, ws, [g * step for g in gs], state, step, 0.1, 0.2,
                                    DECAYS, clip, ema, ema_momentum, overwrite)
    return np.concatenate(ws), np.concatenate(ema)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("clip", list(CLIPS))
def test_steps_match_keras_formulas_on_every_backend(backend_name, kind, clip):
    w, ema = run_backend(backend_name, kind, CLIPS[clip], steps=3)
    want_w, want_ema = run_keras(kind, CLIPS[clip], steps=3)
    assert_close(w, want_w, rtol=1e-5, err_msg=f"{backend_name} {kind} {clip}")
    assert_close(ema, want_ema, rtol=1e-5, err_msg=f"{backend_name} {kind} {clip} ema")


@pytest.mark.parametrize("overwrite", [1, 2, 3])
def test_ema_overwrite_every_n_steps_matches_keras(backend_name, overwrite):
    w, ema = run_backend(backend_name, "sgd", {}, steps=4, ema_momentum=0.5, overwrite=overwrite)
    want_w, want_ema = run_keras("sgd", {}, steps=4, ema_momentum=0.5, overwrite=overwrite)
    assert_close(w, want_w, rtol=1e-5)
    assert_close(ema, want_ema, rtol=1e-5)
    if 4 % overwrite == 0:
        assert_bitwise(w, ema)


def test_ema_first_step_is_the_weights():
    """Keras: momentum (iterations != 0) * ema_momentum: the first average is the weights."""
    w, ema = run_backend("cpu", "adam", {}, steps=1, ema_momentum=0.99)
    assert_bitwise(ema, w)


@pytest.mark.parametrize("clip", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_cpu_cuda_and_reference_agree(clip):
    results = {name: run_backend(name, "adam", CLIPS[clip], steps=3)
               for name in ("cpu", "numpy", "cuda")}
    for name, (w, ema) in results.items():
        assert_close(w, results["numpy"][0], rtol=1e-5, err_msg=f"{name} {clip}")
        assert_close(ema, results["numpy"][1], rtol=1e-5, err_msg=f"{name} {clip}")


def test_norms_are_chunked_double_sums_the_same_in_c_and_the_reference():
    rng = np.random.default_rng(3)
    g = rng.normal(size=3 * ref.NORM_CHUNK + 17).astype(np.float32)
    segments = [0, 5, 1, 5, 2 * ref.NORM_CHUNK + 3, 0, 2 * ref.NORM_CHUNK + 8,
                ref.NORM_CHUNK + 9, 1]
    assert _core.NORM_CHUNK == ref.NORM_CHUNK
    got = _core.segment_sumsq(g, segments)
    want = [ref.sumsq(g[o:o + n]) for o, n in zip(segments[0::3], segments[1::3])]
    assert list(got) == want                  # the same additions in the same order
    assert_close(got, [float(np.sum(g[o:o + n].astype(np.float64) ** 2))
                       for o, n in zip(segments[0::3], segments[1::3])], rtol=1e-12)


def test_clip_by_global_norm_matches_torch():
    torch = pytest.importorskip("torch")
    ws, gs, segments = flat_case(5)
    tensors = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.float64)) for g in gs]
    for t, g in zip(tensors, gs):
        t.grad = torch.tensor(g.astype(np.float64))
    torch.nn.utils.clip_grad_norm_(tensors, 0.1)
    g = np.concatenate(gs)
    _core.optimizer_apply(np.zeros_like(g), [], None, g, ids.OPTIMIZERS["sgd"], 1,
                          [0.0] * len(ids.HYPER), [0, 0, 0.1, 0, 0], segments)
    assert_close(g, np.concatenate([t.grad.numpy() for t in tensors]), rtol=1e-5)


# ---- fits --------------------------------------------------------------------------------
ROWS, BATCH, EPOCHS = 40, 8, 2
STEPS = ROWS // BATCH


def data(features=6):
    rng = np.random.default_rng(5)
    return (rng.normal(size=(ROWS, features)).astype(np.float32),
            rng.normal(size=(ROWS, 2)).astype(np.float32))


def model(optimizer, backend="cpu", features=6, units=8):
    pynn.utils.set_random_seed(2)
    m = pynn.Sequential([L.Input((features,)), L.Dense(units, activation="tanh"), L.Dense(2)])
    m.compile(optimizer=optimizer, loss="mse", backend=backend)
    return m




FIT_OPTIONS = {
    "clipnorm": lambda: O.SGD(0.1, momentum=0.9, clipnorm=0.05),
    "clipvalue": lambda: O.Adam(0.01, clipvalue=0.01),
    "global_clipnorm": lambda: O.AdamW(0.01, global_clipnorm=0.1),
    "ema": lambda: O.Adam(0.01, use_ema=True, ema_momentum=0.9),
    "ema_overwrite": lambda: O.SGD(0.1, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=3),
    "exclude": lambda: _excluding(O.AdamW(0.01, weight_decay=0.5, clipnorm=1.0)),
    "schedule_and_all": lambda: O.Adam(O.schedules.ExponentialDecay(0.01, 3, 0.5),
                                       global_clipnorm=0.5, use_ema=True,
                                       ema_overwrite_frequency=4, weight_decay=0.1),
}


def _excluding(opt):
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


def fit(make, path="whole epoch", threads=1, features=6, units=8, backend="cpu"):
    x, y = data(features)
    before = pynn.get_num_threads()
    pynn.set_num_threads(threads)
    try:
        m = model(make(), backend, features, units)
        m.engine.force_python = path == "op by op"
        m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[EveryBatch()] if path == "step by step" else [])
    finally:
        pynn.set_num_threads(before)
    return m


@pytest.mark.parametrize("case", list(FIT_OPTIONS))
def test_a_fit_with_each_option_is_one_c_call_per_epoch_and_the_same_bits_on_every_path(
        case, c_calls):
    runs = {}
    for path, calls in [("whole epoch", [STEPS] * EPOCHS), ("step by step", [1] * STEPS * EPOCHS),
                        ("op by op", [])]:
        c_calls.clear()
        runs[path] = fit(FIT_OPTIONS[case], path).get_weights()
        assert c_calls == calls, path
    for path, weights in runs.items():
        for a, b in zip(weights, runs["whole epoch"]):
            assert_bitwise(a, b, err_msg=f"{case}: {path}")


@pytest.mark.parametrize("case", ["clipnorm", "global_clipnorm", "ema_overwrite"])
def test_one_and_two_threads_give_the_same_bits(case):
    """Big enough (over 32768 weights in a variable, several norm chunks) that the norms
    and the EMA run on two threads."""
    one = fit(FIT_OPTIONS[case], threads=1, features=160, units=256).get_weights()
    two = fit(FIT_OPTIONS[case], threads=2, features=160, units=256).get_weights()
    for a, b in zip(one, two):
        assert_bitwise(a, b, err_msg=case)


@pytest.mark.parametrize("case", ["clipvalue", "global_clipnorm", "ema_overwrite"])
def test_cpu_and_numpy_fits_agree(case):
    cpu = fit(FIT_OPTIONS[case]).get_weights()
    ref_ = fit(FIT_OPTIONS[case], backend="numpy").get_weights()
    for a, b in zip(cpu, ref_):
        assert_close(a, b, rtol=RTOL_SUMS, err_msg=case)


def test_fit_finalizes_with_the_moving_average():
    """After fit the weights are the EMA of the weights after each step (Keras's
    finalize_variable_values); train_on_batch leaves them alone."""
    x, y = data()
    fitted = fit(FIT_OPTIONS["ema"])
    hand = model(O.Adam(0.01))
    ema = None
    for step in range(STEPS * EPOCHS):
        i = step % STEPS * BATCH
        hand.train_on_batch(x[i:i + BATCH], y[i:i + BATCH])
        ws = [w.astype(np.float64) for w in hand.get_weights()]
        ema = ws if ema is None else [0.9 * e + 0.1 * w for e, w in zip(ema, ws)]
    for a, b in zip(fitted.get_weights(), ema):
        assert_close(a, b, rtol=1e-5)
    average = fitted.optimizer.state_arrays()["average"]
    assert_bitwise(np.concatenate([w.reshape(-1) for w in fitted.get_weights()]), average)
    # train_on_batch does not finalize
    stepped = model(O.Adam(0.01, use_ema=True, ema_momentum=0.9))
    stepped.train_on_batch(x[:BATCH], y[:BATCH])
    stepped.train_on_batch(x[BATCH:2 * BATCH], y[BATCH:2 * BATCH])
    flat = np.concatenate([w.reshape(-1) for w in stepped.get_weights()])
    assert not np.array_equal(flat, stepped.optimizer.state_arrays()["average"])
    stepped.optimizer.finalize_variable_values(stepped.trainable_weights)
    assert_bitwise(np.concatenate([w.reshape(-1) for w in stepped.get_weights()]),
                   stepped.optimizer.state_arrays()["average"])


@pytest.mark.parametrize("how", ["var_names", "var_list"])
def test_excluded_variables_are_not_decayed(backend_name, how):
    """x = 0: the kernel's gradient is exactly 0, so only weight decay moves it."""
    be = usable_backend(backend_name)
    x = np.zeros((4, 3), np.float32)
    y = np.ones((4, 2), np.float32)
    for exclude in (False, True):
        pynn.utils.set_random_seed(1)
        m = pynn.Sequential([L.Input((3,)), L.Dense(2)])
        opt = O.SGD(0.1, weight_decay=0.5)
        if exclude:
            if how == "var_names":
                opt.exclude_from_weight_decay(var_names=["kernel"])
            else:
                opt.exclude_from_weight_decay(var_list=[m.layers[0].kernel])
        m.compile(optimizer=opt, loss="mse", backend=be)
        kernel, bias = m.get_weights()
        m.train_on_batch(x, y)
        k2, b2 = m.get_weights()
        if exclude:
            assert_bitwise(k2, kernel)
        else:
            assert_close(k2, kernel * np.float32(1 - 0.05), rtol=1e-6)
        assert not np.array_equal(b2, bias)


def test_the_op_carries_segments_and_options():
    m = fit(FIT_OPTIONS["exclude"])
    op = m.engine.plan("train").ops[m.engine.plan("train").optimizer_op]
    assert op.ints[1] == 4
    flags = op.ints[4::3]
    assert list(flags) == [1, 0, 1, 0]            # kernels decay, biases not
    assert len(op.reals) == _core.OPT_REALS_OPTIONS
    assert op.reals[_core.OPT_REALS + ids.OPTIONS.index("clipnorm")] == 1.0


def test_a_callable_learning_rate_is_called_per_step_and_fits_step_by_step(c_calls):
    calls = []

    def lr():
        calls.append(1)
        return 0.01

    called = fit(lambda: O.Adam(lr, clipnorm=0.5))
    assert c_calls == [1] * STEPS * EPOCHS
    assert len(calls) >= STEPS * EPOCHS
    plain = fit(lambda: O.Adam(0.01, clipnorm=0.5))
    for a, b in zip(called.get_weights(), plain.get_weights()):
        assert_bitwise(a, b)
    assert called.optimizer.learning_rate == 0.01


def test_a_callable_learning_rate_follows_its_value():
    rate = {"now": 0.1}
    x, y = data()
    m = model(O.SGD(lambda: rate["now"]))
    before = m.get_weights()
    m.train_on_batch(x[:BATCH], y[:BATCH])          # rate 0.1
    after_one = m.get_weights()
    rate["now"] = 0.0
    m.train_on_batch(x[:BATCH], y[:BATCH])          # rate 0: unchanged
    for a, b in zip(m.get_weights(), after_one):
        assert_bitwise(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after_one))


# ---- configs, saving ---------------------------------------------------------------------
def test_configs_round_trip_and_keep_keras_defaults():
    opt = O.Adam(0.01, clipnorm=0.5, use_ema=True, ema_momentum=0.9, ema_overwrite_frequency=7)
    config = opt.get_config()
    for key, value in {"clipnorm": 0.5, "clipvalue": None, "global_clipnorm": None,
                       "use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 7}.items():
        assert config[key] == value, key
    again = O.Adam.from_config(config)
    assert again.get_config() == config
    default = O.SGD().get_config()
    assert (default["clipnorm"], default["clipvalue"], default["global_clipnorm"],
            default["use_ema"], default["ema_momentum"], default["ema_overwrite_frequency"]) \
        == (None, None, None, False, 0.99, None)


def test_save_and_load_keep_the_options_and_the_ema(tmp_path):
    x, y = data()
    make = FIT_OPTIONS["schedule_and_all"]
    straight = model(make())
    straight.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    first = model(make())
    first.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "m.pynn")
    loaded = pynn.load_model(tmp_path / "m.pynn")
    assert loaded.optimizer.get_config() == first.optimizer.get_config()
    assert_bitwise(loaded.optimizer.state_arrays()["average"],
                   first.optimizer.state_arrays()["average"])
    loaded.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    first.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), first.get_weights()):
        assert_bitwise(a, b)


# ---- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"clipnorm": -1}, "clipnorm=-1"),
    ({"clipvalue": "x"}, "clipvalue='x'"),
    ({"global_clipnorm": float("nan")}, "global_clipnorm=nan"),
    ({"clipnorm": 1.0, "clipvalue": 1.0}, "Only one of"),
    ({"clipnorm": 1.0, "global_clipnorm": 2.0}, "Only one of"),
    ({"ema_momentum": 1.5}, "ema_momentum=1.5"),
    ({"ema_momentum": -0.1}, "ema_momentum=-0.1"),
    ({"use_ema": True, "ema_overwrite_frequency": 1.5}, "ema_overwrite_frequency=1.5"),
    ({"use_ema": True, "ema_overwrite_frequency": -2}, "ema_overwrite_frequency=-2"),
    ({"use_ema": "yes"}, "use_ema='yes'"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        O.Adam(**kwargs)


def test_refused_settings_change_nothing():
    opt = O.SGD(clipnorm=1.0)
    with pytest.raises(ValueError, match="Only one of"):
        opt.clipvalue = 0.5
    assert (opt.clipnorm, opt.clipvalue) == (1.0, None)
    with pytest.raises(ValueError, match="ema_momentum=2"):
        opt.ema_momentum = 2
    assert opt.ema_momentum == 0.99
    opt.clipnorm = None
    opt.clipvalue = 0.5                         # once clipnorm is unset: fine
    assert opt.hyper()[_core.OPT_REALS + ids.OPTIONS.index("clipvalue")] == 0.5


def test_exclude_and_use_ema_only_before_the_optimizer_is_built():
    x, y = data()
    m = model(O.AdamW(0.01))
    m.train_on_batch(x[:BATCH], y[:BATCH])
    with pytest.raises(ValueError, match="before the optimizer is built"):
        m.optimizer.exclude_from_weight_decay(var_names=["bias"])
    with pytest.raises(ValueError, match="use_ema"):
        m.optimizer.use_ema = True
    assert m.optimizer.use_ema is False
    with pytest.raises(TypeError, match="var_names"):
        O.AdamW().exclude_from_weight_decay(var_names=[3])
    with pytest.raises(TypeError, match="var_list"):
        O.AdamW().exclude_from_weight_decay(var_list=["kernel"])


def test_a_bad_callable_learning_rate_is_refused_before_the_step():
    x, y = data()
    m = model(O.SGD(lambda: -1.0))
    before = m.get_weights()
    with pytest.raises(ValueError, match="learning_rate"):
        m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    for a, b in zip(m.get_weights(), before):
        assert_bitwise(a, b)
    assert m.optimizer.iterations == 0


def test_a_malformed_optimizer_op_is_refused_before_anything_changes():
    m = fit(FIT_OPTIONS["clipnorm"])
    plan = m.engine.plan("train")
    ex = m.engine.executor("train", BATCH)
    before = m.get_weights()
    reals = list(m.optimizer.hyper())
    reals[_core.OPT_REALS + ids.OPTIONS.index("clipvalue")] = 1.0      # two clips
    ex.runner.set_reals(plan.optimizer_op, reals)
    x, y = data()
    with pytest.raises(ValueError):
        ex.run([x], [y], None, None, ROWS, 0, BATCH, STEPS, m.optimizer.iterations)
    for a, b in zip(m.get_weights(), before):
        assert_bitwise(a, b)


def test_saving_a_callable_learning_rate_is_refused_clearly(tmp_path):
    m = model(O.SGD(lambda: 0.1))
    with pytest.raises(TypeError, match="learning_rate is a Python callable"):
        m.save(tmp_path / "m.pynn")
    assert not (tmp_path / "m.pynn").exists()
