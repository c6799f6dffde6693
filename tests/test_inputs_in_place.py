"""An inference plan reads a batch's inputs where the caller holds them when its ops only
read them (pynn/models/executor.py input_direct_flags, csrc/pynn.h input_direct): the
same bits as copying them into the plan's buffer first, the caller's array never
written, and a copy wherever an op might write the input's memory or an output shares
it."""
import numpy as np
import pytest

import pynn
from pynn.models import executor as executor_module


def _models():
    pynn.utils.set_random_seed(3)
    mlp = pynn.Sequential([pynn.layers.Input((12,)), pynn.layers.Dense(9, activation="relu"),
                           pynn.layers.Dense(4, activation="softmax")])
    cnn = pynn.Sequential([pynn.layers.Input((8, 8, 3)),
                           pynn.layers.Conv2D(5, 3, padding="same", activation="relu"),
                           pynn.layers.MaxPooling2D(), pynn.layers.Flatten(),
                           pynn.layers.Dense(3)])
    flat = pynn.Sequential([pynn.layers.Input((4, 3)), pynn.layers.Flatten(),
                            pynn.layers.Dense(2)])
    rnn = pynn.Sequential([pynn.layers.Input((5, 3)), pynn.layers.LSTM(4)])
    return {"mlp": (mlp, (12,)), "cnn": (cnn, (8, 8, 3)), "flatten": (flat, (4, 3)),
            "lstm": (rnn, (5, 3))}


def _plan_of(model, rows, kind="predict"):
    model.predict_on_batch(np.zeros((rows,) + tuple(model.inputs[0].shape[1:]), np.float32))
    ex, epoch = model.engine.take(kind, rows)
    model.engine.put_back(kind, ex, epoch)
    return ex.plan


@pytest.mark.parametrize("name", ["mlp", "cnn", "flatten", "lstm"])
def test_read_in_place_gives_the_bits_of_a_copy(name, monkeypatch):
    model, shape = _models()[name]
    x = np.random.default_rng(1).standard_normal((37,) + shape).astype(np.float32)
    before = x.copy()
    assert executor_module.input_direct_flags(_plan_of(model, 37)) == [True]
    in_place = [model.predict_on_batch(x), model(x), model.predict(x, batch_size=8, verbose=0)]
    np.testing.assert_array_equal(x, before)            # never written
    x.flags.writeable = False                            # a read-only array is enough
    np.testing.assert_array_equal(model.predict_on_batch(x), in_place[0])
    monkeypatch.setattr(executor_module, "input_direct_flags", lambda plan: None)
    model.engine.invalidate()                            # plans bound anew: copying
    copied = [model.predict_on_batch(x), model(x), model.predict(x, batch_size=8, verbose=0)]
    for a, b in zip(in_place, copied):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_plans_copy_their_inputs():
    model, _ = _models()["mlp"]
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(2).standard_normal((16, 12)).astype(np.float32)
    model.fit(x, np.zeros((16, 4), np.float32), epochs=1, verbose=0)
    ex, epoch = model.engine.take("train", 16)
    model.engine.put_back("train", ex, epoch)
    assert executor_module.input_direct_flags(ex.plan) is None


def test_an_input_an_unlisted_op_touches_is_copied():
    pynn.utils.set_random_seed(4)
    inp = pynn.layers.Input((6,))
    dense = pynn.layers.Dense(6)
    out = pynn.layers.Add()([inp, dense(inp)])      # merge: not a listed reader
    model = pynn.Model(inp, out)
    plan = _plan_of(model, 3)
    assert [op.name for op in plan.ops if plan.input_bufs[0] in op.bufs] == ["dense", "merge"]
    assert executor_module.input_direct_flags(plan) == [False]
    x = np.random.default_rng(5).standard_normal((3, 6)).astype(np.float32)
    w, b = dense.get_weights()
    np.testing.assert_allclose(model.predict_on_batch(x), x + x @ w + b, rtol=1e-5, atol=1e-6)


def test_an_input_that_is_also_an_output_is_copied():
    pynn.utils.set_random_seed(6)
    inp = pynn.layers.Input((5,))
    model = pynn.Model(inp, [inp, pynn.layers.Dense(2)(inp)])
    plan = _plan_of(model, 4)
    assert executor_module.input_direct_flags(plan) == [False]
    x = np.random.default_rng(7).standard_normal((4, 5)).astype(np.float32)
    same, _ = model.predict_on_batch(x)
    np.testing.assert_array_equal(same, x)
