"""Keras 3's functional API: Input, layer calls on tensors, Model(inputs, outputs) with one or
several inputs and outputs (tensors, lists, dicts), shared layers, nested models, merge
layers, eager calls, introspection, `trainable`, summary, and the graph errors."""
import io

import numpy as np
import pytest

import pynn
from pynn import layers as L

from conftest import assert_close


@pytest.fixture(autouse=True)
def seeded():
    pynn.utils.set_random_seed(0)


def mlp(in_dim=4, hidden=5, out=3, name=None):
    inp = pynn.Input((in_dim,))
    x = L.Dense(hidden, activation="relu")(inp)
    return pynn.Model(inp, L.Dense(out, activation="softmax")(x), name=name)


# ---- building ------------------------------------------------------------------------------

def test_input_is_a_symbolic_tensor():
    x = pynn.Input((784,), name="digits")
    assert x.shape == (None, 784) and x.dtype == "float32"
    assert pynn.layers.Input is pynn.Input
    assert isinstance(x._keras_history[0], pynn.InputLayer)
    assert pynn.Input(shape=(28, 28, 1), batch_size=16).shape == (None, 28, 28, 1)
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(x)


def test_layer_call_records_a_node_and_builds_with_the_batch_axis():
    seen = []

    class Spy(L.Dense):
        def build(self, input_shape):
            seen.append(input_shape)
            super().build(input_shape)

    inp = pynn.Input((7,))
    layer = Spy(3)
    out = layer(inp)
    assert seen == [(None, 7)]
    assert out.shape == (None, 3)
    assert layer.input is inp and layer.output is out
    assert len(layer._inbound_nodes) == 1


def test_model_introspection():
    inp = pynn.Input((4,), name="features")
    hidden = L.Dense(6, activation="relu", name="hidden")
    out = L.Dense(2, name="out")(hidden(inp))
    model = pynn.Model(inputs=inp, outputs=out, name="small")
    assert [l.name for l in model.layers] == ["features", "hidden", "out"]
    assert model.inputs == [inp] and model.outputs == [out]
    assert model.input is inp and model.output is out
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert model.get_layer("hidden") is hidden and model.get_layer(index=1) is hidden
    assert [v.path for v in model.weights] == ["hidden/kernel", "hidden/bias", "out/kernel",
                                               "out/bias"]
    assert model.count_params() == 4 * 6 + 6 + 6 * 2 + 2
    assert len(model.trainable_weights) == 4 and model.non_trainable_weights == []
    assert model.weights[0].shape == (4, 6) and model.weights[0].numpy().dtype == np.float32
    with pytest.raises(ValueError, match="no such layer"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index 9"):
        model.get_layer(index=9)


def test_dict_inputs_and_outputs_by_name():
    a, b = pynn.Input((3,), name="a"), pynn.Input((2,), name="b")
    joined = L.Concatenate()([a, b])
    model = pynn.Model({"a": a, "b": b}, {"score": L.Dense(1, name="score")(joined),
                                          "cls": L.Dense(4, activation="softmax", name="cls")(joined)})
    assert model.input_names == ["a", "b"] and model.output_names == ["cls", "score"]
    x = {"a": np.ones((2, 3), np.float32), "b": np.zeros((2, 2), np.float32)}
    out = model.predict(x, verbose=0)
    assert set(out) == {"cls", "score"} and out["cls"].shape == (2, 4)
    model.compile("sgd", loss={"score": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"score": 2.0})
    logs = model.fit(x, {"score": np.ones((2, 1)), "cls": np.array([0, 3])}, verbose=0).history
    assert set(logs) == {"loss", "cls_loss", "score_loss"}
    assert logs["loss"][0] == pytest.approx(logs["cls_loss"][0] + 2.0 * logs["score_loss"][0],
                                            rel=1e-6)


def test_eager_calls_build_and_return_numpy():
    layer = L.Dense(4)
    y = layer(np.ones((2, 3)))
    assert isinstance(y, np.ndarray) and y.shape == (2, 4) and layer.built
    assert_close(y, np.ones((2, 3)) @ layer.kernel.numpy() + layer.bias.numpy())
    model = mlp()
    p = model(np.ones((5, 4), np.float32))
    assert p.shape == (5, 3)
    assert_close(p, model.predict(np.ones((5, 4), np.float32), verbose=0))
    assert_close(p.sum(axis=1), np.ones(5))


def test_shared_layer_one_set_of_weights_and_summed_gradients():
    a, b = pynn.Input((3,)), pynn.Input((3,))
    shared = L.Dense(2, use_bias=False, name="shared")
    model = pynn.Model([a, b], L.Add()([shared(a), shared(b)]))
    assert len(model.weights) == 1
    model.compile(pynn.optimizers.SGD(1.0), loss="mse", backend="numpy")
    xa, xb = np.ones((1, 3), np.float32), 2 * np.ones((1, 3), np.float32)
    w0 = shared.kernel.numpy()
    model.train_on_batch([xa, xb], np.zeros((1, 2), np.float32))
    # y = (xa + xb) W, loss = mean(y^2): dW = (xa + xb)^T 2 y / 2, both calls' terms summed
    y = (xa + xb) @ w0
    assert_close(shared.kernel.numpy(), w0 - (xa + xb).T @ y, rtol=1e-5)


def test_nested_models_train_end_to_end():
    inner = mlp(4, 5, 6, name="inner")
    seq = pynn.Sequential([L.Dense(3, name="head")], name="head_seq")
    inp = pynn.Input((4,))
    model = pynn.Model(inp, seq(inner(inp)))
    assert [l.name for l in model.layers][1:] == ["inner", "head_seq"]
    assert len(model.weights) == 6
    before = [w.copy() for w in model.get_weights()]
    model.compile("adam", loss="mse", backend="numpy")
    model.fit(np.random.rand(8, 4), np.random.rand(8, 3), epochs=1, verbose=0)
    assert all(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))
    ensemble_in = pynn.Input((4,))
    members = [mlp(4, 3, 1) for _ in range(3)]
    avg = pynn.Model(ensemble_in, L.average([m(ensemble_in) for m in members]))
    x = np.random.rand(5, 4).astype(np.float32)
    want = sum(m.predict(x, verbose=0) for m in members) / 3
    assert_close(avg.predict(x, verbose=0), want)


@pytest.mark.parametrize("cls,expected", [
    (L.Add, lambda a, b: a + b), (L.Subtract, lambda a, b: a - b),
    (L.Multiply, lambda a, b: a * b), (L.Average, lambda a, b: (a + b) / 2),
    (L.Maximum, np.maximum), (L.Minimum, np.minimum),
])
def test_merge_layers(cls, expected):
    a, b = pynn.Input((3,)), pynn.Input((3,))
    model = pynn.Model([a, b], cls()([a, b]))
    xa, xb = np.random.rand(4, 3).astype(np.float32), np.random.rand(4, 3).astype(np.float32)
    assert_close(model.predict([xa, xb], verbose=0), expected(xa, xb))


def test_concatenate_axes():
    a, b = pynn.Input((2, 3)), pynn.Input((2, 5))
    y = L.Concatenate(axis=-1)([a, b])
    assert y.shape == (None, 2, 8)
    xa, xb = np.random.rand(3, 2, 3), np.random.rand(3, 2, 5)
    assert_close(pynn.Model([a, b], y).predict([xa, xb], verbose=0), np.concatenate([xa, xb], -1))
    c = pynn.Input((4, 3))
    z = L.concatenate([a, c], axis=1)
    assert z.shape == (None, 6, 3)
    xc = np.random.rand(3, 4, 3)
    assert_close(pynn.Model([a, c], z).predict([xa, xc], verbose=0), np.concatenate([xa, xc], 1))


def test_subclassed_model_traces_its_call():
    class Classifier(pynn.Model):
        def __init__(self, classes=3):
            super().__init__()
            self.hidden = L.Dense(8, activation="relu")
            self.dropout = L.Dropout(0.5)
            self.out = L.Dense(classes, activation="softmax")

        def call(self, inputs, training=False):
            return self.out(self.dropout(self.hidden(inputs), training=training))

    model = Classifier()
    assert model.weights == []
    model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.rand(16, 5).astype(np.float32), np.random.randint(0, 3, 16)
    model.fit(x, y, epochs=1, verbose=0)
    assert len(model.weights) == 4 and model.count_params() == 5 * 8 + 8 + 8 * 3 + 3
    assert "dropout" in [op.name for op in model.plan.ops]        # active in training
    assert model.predict([x], verbose=0).shape == (16, 3)          # [x]: one input, as Keras


# ---- trainable ---------------------------------------------------------------------------------

def test_trainable_flags_follow_keras():
    layer = L.Dense(3)
    layer.build((None, 4))
    assert (len(layer.weights), len(layer.trainable_weights), len(layer.non_trainable_weights)) == (2, 2, 0)
    bn = L.BatchNormalization()
    bn.build((None, 4))
    assert (len(bn.weights), len(bn.trainable_weights), len(bn.non_trainable_weights)) == (4, 2, 2)
    layer.trainable = False
    assert (len(layer.weights), len(layer.trainable_weights), len(layer.non_trainable_weights)) == (2, 0, 2)
    inner = pynn.Sequential([pynn.Input((3,)), L.Dense(3, activation="relu"), L.Dense(3)])
    model = pynn.Sequential([pynn.Input((3,)), inner, L.Dense(3, activation="sigmoid")])
    model.trainable = False
    assert inner.trainable is False and inner.layers[0].trainable is False
    assert model.trainable_weights == []


def test_frozen_layer_is_bitwise_unchanged_and_recompile_unfreezes(backend_name):
    layer1 = L.Dense(3, activation="relu")
    layer2 = L.Dense(3, activation="sigmoid")
    model = pynn.Sequential([pynn.Input((3,)), layer1, layer2])
    layer1.trainable = False
    before = layer1.get_weights()
    model.compile(optimizer="adam", loss="mse", backend=backend_name)
    x, y = np.random.random((4, 3)), np.random.random((4, 3))
    model.fit(x, y, epochs=2, verbose=0)
    for b, a in zip(before, layer1.get_weights()):
        np.testing.assert_array_equal(a, b)
    layer1.trainable = True               # takes effect at the next compile
    model.fit(x, y, epochs=1, verbose=0)
    for b, a in zip(before, layer1.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.compile(optimizer="adam", loss="mse", backend=backend_name)
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before[0], layer1.get_weights()[0])


def test_frozen_pretrained_base_keeps_weights_and_statistics(backend_name):
    """The transfer-learning recipe: a trained base with BatchNormalization, frozen inside a
    new model (called with training=False): its weights and moving statistics are bitwise
    unchanged by fit; unfrozen and recompiled, it trains (its BN still in inference mode)."""
    base_in = pynn.Input((6, 6, 2))
    h = L.Conv2D(3, 3, activation="relu")(base_in)
    h = L.BatchNormalization()(h)
    base = pynn.Model(base_in, L.GlobalAveragePooling2D()(h), name="base")
    base.compile("sgd", loss="mse", backend=backend_name)
    x = np.random.rand(6, 6, 6, 2).astype(np.float32)
    base.fit(x, np.random.rand(6, 3), epochs=1, verbose=0)    # "pretraining" moves the stats
    pretrained = base.get_weights()
    base.trainable = False
    inp = pynn.Input((6, 6, 2))
    out = L.Dense(1)(base(inp, training=False))
    model = pynn.Model(inp, out)
    model.compile(pynn.optimizers.Adam(0.01), loss="mse", backend=backend_name)
    model.fit(x, np.random.rand(6, 1), epochs=2, batch_size=3, verbose=0)
    for want, got in zip(pretrained, base.get_weights()):
        np.testing.assert_array_equal(got, want)
    base.trainable = True
    model.compile(pynn.optimizers.Adam(1e-3), loss="mse", backend=backend_name)
    model.fit(x, np.random.rand(6, 1), epochs=1, batch_size=3, verbose=0)
    after = base.get_weights()
    assert not np.array_equal(after[0], pretrained[0])            # the kernel trains
    np.testing.assert_array_equal(after[4], pretrained[4])        # moving mean: inference mode
    np.testing.assert_array_equal(after[5], pretrained[5])


def test_batchnorm_frozen_runs_in_inference_mode():
    inp = pynn.Input((3,))
    bn = L.BatchNormalization()
    model = pynn.Model(inp, L.Dense(1)(bn(inp)))
    bn.trainable = False
    model.compile("sgd", loss="mse", backend="numpy")
    stats = [w.copy() for w in bn.get_weights()]
    model.fit(np.random.rand(8, 3) * 10, np.random.rand(8, 1), verbose=0)
    for s, w in zip(stats, bn.get_weights()):
        np.testing.assert_array_equal(s, w)


# ---- Sequential ---------------------------------------------------------------------------------

def test_sequential_add_pop_and_deferred_build():
    model = pynn.Sequential()
    model.add(L.Dense(2, activation="relu"))
    model.add(L.Dense(3))
    assert not model.built and model.weights == []
    y = model(np.ones((1, 4), np.float32))
    assert y.shape == (1, 3) and len(model.weights) == 4 and model.built
    model.pop()
    assert len(model.layers) == 1 and model.output_shape == (None, 2)
    model.add(L.Dense(5))
    assert model.output_shape == (None, 5)
    seq = pynn.Sequential([L.Dense(2, input_shape=(4,))])
    assert seq.built and seq.input_shape == (None, 4)
    seq2 = pynn.Sequential()
    seq2.add(pynn.Input((4,)))
    seq2.add(L.Dense(2))
    assert [type(l).__name__ for l in seq2.layers] == ["Dense"]


def test_feature_extractor_from_a_sequential():
    initial = pynn.Sequential([pynn.Input((9, 9, 1)), L.Conv2D(2, 3, activation="relu"),
                               L.Conv2D(2, 3, activation="relu", name="mid"),
                               L.Conv2D(2, 3, activation="relu")])
    features = pynn.Model(initial.inputs, [layer.output for layer in initial.layers])
    out = features(np.ones((1, 9, 9, 1), np.float32))
    assert [o.shape for o in out] == [(1, 7, 7, 2), (1, 5, 5, 2), (1, 3, 3, 2)]
    mid = pynn.Model(initial.inputs, initial.get_layer(name="mid").output)
    assert_close(mid(np.ones((1, 9, 9, 1), np.float32)), out[1])


# ---- summary -----------------------------------------------------------------------------------

def summary_text(model, **kwargs):
    out = io.StringIO()
    model.summary(print_fn=lambda s: out.write(s + "\n"), **kwargs)
    return out.getvalue()


def test_summary_shows_what_keras_shows():
    inner = mlp(4, 5, 3, name="inner")
    inp = pynn.Input((4,), name="x")
    bn = L.BatchNormalization(name="bn")
    model = pynn.Model(inp, L.Add(name="sum")([inner(inp), L.Dense(3, name="skip")(bn(inp))]),
                       name="graph")
    text = summary_text(model)
    assert 'Model: "graph"' in text
    for part in ("Layer (type)", "Output Shape", "Param #", "Connected to", "x (InputLayer)",
                 "inner (Functional)", "(None, 3)",
                 "sum (Add)", "skip[0][0]"):
        assert part in text, part
    trainable = 4 * 5 + 5 + 5 * 3 + 3 + 4 * 3 + 3 + 8
    assert f"Total params: {trainable + 8:,} (" in text
    assert f"Trainable params: {trainable:,} ({trainable * 4:.2f} B)" in text
    assert "Non-trainable params: 8 (32.00 B)" in text
    nested = summary_text(model, expand_nested=True, show_trainable=True)
    assert "└ dense" in nested and "Trainable" in nested
    seq = pynn.Sequential([L.Dense(2), L.Dense(1)])
    assert "0 (unbuilt)" in summary_text(seq)


# ---- graph errors -------------------------------------------------------------------------------

def test_disconnected_graph_names_the_layers():
    a, b = pynn.Input((3,), name="a"), pynn.Input((3,), name="b")
    out = L.Dense(2, name="d")(L.Add(name="plus")([a, b]))
    with pytest.raises(ValueError, match=r"disconnected.*'b'.*'plus'"):
        pynn.Model(a, out)


def test_inputs_must_be_pynn_inputs():
    a = pynn.Input((3,))
    h = L.Dense(4, name="hidden")(a)
    out = L.Dense(2)(h)
    with pytest.raises(ValueError, match="hidden.*not a pynn.Input"):
        pynn.Model(h, out)
    with pytest.raises(ValueError, match="made by pynn.Input"):
        pynn.Model(np.ones((2, 3)), out)


def test_incompatible_shapes_at_a_merge_name_both_layers():
    a = pynn.Input((3,))
    left, right = L.Dense(4, name="left")(a), L.Dense(5, name="right")(a)
    with pytest.raises(ValueError, match=r"\(None, 4\).*'left'.*\(None, 5\).*'right'"):
        L.Add(name="merge")([left, right])
    with pytest.raises(ValueError, match="Concatenate"):
        L.Concatenate()([pynn.Input((2, 3)), pynn.Input((3, 4))])


def test_wrong_rank_names_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"conv.*ndim=4.*\(None, 8\)"):
        L.Conv2D(2, 3, name="conv")(pynn.Input((8,)))
    dense = L.Dense(2, name="d")
    dense(pynn.Input((3,)))
    with pytest.raises(ValueError, match=r"'d'.*value 3.*\(None, 5\)"):
        dense(pynn.Input((5,)))


def test_calling_a_model_wrongly_is_refused_and_leaves_it_unchanged():
    model = mlp()
    model.compile("sgd", loss="sparse_categorical_crossentropy", backend="numpy")
    weights = model.get_weights()
    with pytest.raises(ValueError, match=r"expected x of shape \(None, 4\).*\(2, 5\)"):
        model.predict(np.ones((2, 5)), verbose=0)
    with pytest.raises(ValueError, match="expects 1 input"):
        model([pynn.Input((4,)), pynn.Input((4,))])
    with pytest.raises(ValueError, match=r"expects shape \(None, 4\)"):
        model(pynn.Input((6,)))
    with pytest.raises(ValueError):
        model.fit(np.ones((3, 4)), np.array([0, 1, 7]), verbose=0)
    for w, v in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_layer_build_takes_the_batch_axis():
    layer = L.Dense(3)
    layer.build((None, 784))
    assert layer.kernel.shape == (784, 3)
