"""One model, several threads (the contract in README "Threads"): concurrent predict and
evaluate give exactly the single-threaded results; a fit is bitwise the same with another
thread predicting meanwhile; two models trained in two threads are each their solo run;
nothing is shared between models."""
import threading

import numpy as np
import pytest

import pynn
from pynn import layers

from conftest import usable_backend


def mlp(seed=0):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([pynn.Input((20,)), layers.Dense(32, activation="relu"),
                            layers.Dropout(0.2), layers.Dense(10, activation="softmax")])


def cnn(seed=0):
    pynn.utils.set_random_seed(seed)
    return pynn.Sequential([pynn.Input((8, 8, 1)), layers.Conv2D(6, 3, activation="relu"),
                            layers.BatchNormalization(), layers.MaxPooling2D(),
                            layers.Flatten(), layers.Dense(10, activation="softmax")])


ARCH = {"mlp": (mlp, (20,)), "cnn": (cnn, (8, 8, 1))}


def data(shape, n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape, dtype=np.float32), rng.integers(0, 10, n)


def run_threads(fns):
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:           # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def compiled(arch, seed=0, backend="cpu"):
    make, shape = ARCH[arch]
    model = make(seed)
    model.compile(pynn.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


@pytest.mark.parametrize("arch,backend", [("mlp", "cpu"), ("cnn", "cpu"), ("cnn", "numpy")])
def test_concurrent_predict_and_evaluate_equal_the_single_threaded_results(arch, backend):
    model = compiled(arch, backend=backend)
    x, y = data(ARCH[arch][1])
    model.fit(x, y, epochs=1, verbose=0)
    # different inputs per thread, so that a shared buffer would show
    inputs = [data(ARCH[arch][1], n=64 + 16 * i, seed=10 + i)[0] for i in range(6)]
    want = [model.predict(xi, batch_size=16, verbose=0) for xi in inputs]
    want_eval = model.evaluate(x, y, batch_size=16, verbose=0)
    got = {i: [] for i in range(len(inputs))}
    evals = []

    def predictor(i):
        def fn():
            for _ in range(5):
                got[i].append(model.predict(inputs[i], batch_size=16, verbose=0))
                got[i].append(model(inputs[i]))
        return fn

    def evaluator():
        for _ in range(5):
            evals.append(model.evaluate(x, y, batch_size=16, verbose=0))
    run_threads([predictor(i) for i in range(len(inputs))] + [evaluator, evaluator])
    for i, results in got.items():
        assert len(results) == 10
        for r in results:
            np.testing.assert_array_equal(r, want[i])
    assert len(evals) == 10
    for e in evals:
        assert e == want_eval


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_fit_while_other_threads_predict_gives_the_solo_weights(arch):
    x, y = data(ARCH[arch][1], n=512)
    solo = compiled(arch)
    solo.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model = compiled(arch)
    stop, started = threading.Event(), threading.Event()
    shapes = []

    def predictor():
        while not stop.is_set():
            shapes.append(model.predict(x[:100], batch_size=32, verbose=0).shape)
            started.set()

    def trainer():
        try:
            started.wait(30)
            for _ in range(2):
                model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        finally:
            stop.set()
    run_threads([trainer, predictor, predictor])
    assert shapes and set(shapes) == {(100, 10)}
    assert model.optimizer.iterations == solo.optimizer.iterations
    for a, b in zip(model.get_weights(), solo.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_two_models_of_the_same_shapes_train_in_two_threads_as_they_do_alone():
    # (without shuffling: the order is drawn from the one global generator, so two
    # threads' draws would interleave)
    x2, y2 = data((8, 8, 1), n=256)
    models = [compiled("cnn", 1), compiled("cnn", 2)]
    solos = []
    for seed in (1, 2):
        m = compiled("cnn", seed)
        m.fit(x2, y2, batch_size=32, epochs=2, verbose=0, shuffle=False)
        solos.append(m.get_weights())
    run_threads([lambda m=m: m.fit(x2, y2, batch_size=32, epochs=2, verbose=0, shuffle=False)
                 for m in models])
    for m, want in zip(models, solos):
        for a, b in zip(m.get_weights(), want):
            np.testing.assert_array_equal(a, b)


def test_two_fits_on_one_model_take_turns():
    x, y = data((20,), n=128)
    model = compiled("mlp")
    run_threads([lambda: model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                                   shuffle=False)] * 2)
    assert model.optimizer.iterations == 2 * 3 * 4       # every step of both, none lost


def test_concurrent_eager_calls_of_one_layer():
    layer = layers.Dense(8, activation="tanh")
    inputs = [np.random.default_rng(i).random((5 + i, 3), dtype=np.float32) for i in range(6)]
    want = [layer(xi) for xi in inputs]
    got = []
    run_threads([lambda i=i: got.extend((i, layer(inputs[i])) for _ in range(20))
                 for i in range(6)])
    for i, r in got:
        np.testing.assert_array_equal(r, want[i])


def test_recompiling_onto_another_backend_uses_that_backend_s_buffers():
    x, y = data((20,), n=64)
    model = compiled("mlp")
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    weights = model.get_weights()
    want = model.evaluate(x, y, verbose=0)
    for backend in ("numpy", "cpu", "numpy"):
        model.compile(pynn.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                      metrics=["accuracy"], backend=backend)
        got = model.evaluate(x, y, verbose=0)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        for a, b in zip(model.get_weights(), weights):
            np.testing.assert_array_equal(a, b)


def test_the_pool_reuses_its_executors(monkeypatch):
    from pynn.models import engine as engine_module
    made = []
    real = engine_module.make_executor
    monkeypatch.setattr(engine_module, "make_executor",
                        lambda *a, **k: made.append(a[0]) or real(*a, **k))
    model = compiled("mlp")
    x, _ = data((20,), n=64)
    for _ in range(20):                       # one thread: one executor, made once
        model.predict(x, batch_size=16, verbose=0)
    assert len(made) == 1
    barrier = threading.Barrier(4)

    def predictor():
        barrier.wait()
        for _ in range(10):
            model.predict(x, batch_size=16, verbose=0)
    run_threads([predictor] * 4)
    assert 1 <= len(made) <= 4               # at most one per concurrent call
    run_threads([predictor] * 4)
    assert len(made) <= 4                     # steady state: the pool's, reused
    before = len(made)
    for _ in range(20):
        model.predict(x, batch_size=16, verbose=0)
    assert len(made) == before


def test_two_models_on_the_cuda_backend_in_two_threads():
    usable_backend("cuda")                   # the simulator without a GPU
    x, y = data((20,), n=32)

    def make(seed):
        pynn.utils.set_random_seed(seed)
        m = pynn.Sequential([pynn.Input((20,)), layers.Dense(8, activation="relu"),
                             layers.Dense(10, activation="softmax")])
        m.compile(pynn.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="cuda")
        return m
    solos = []
    for seed in (1, 2):
        m = make(seed)
        m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        solos.append(m.get_weights())
    models = [make(1), make(2)]
    run_threads([lambda m=m: m.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
                 for m in models])
    for m, want in zip(models, solos):
        for a, b in zip(m.get_weights(), want):
            np.testing.assert_array_equal(a, b)
