"""A Dense or Conv2D layer with a ReLU keeps one buffer for z and relu(z) (pynn.activations
SHARES_OUTPUT): the backward reads relu's derivative off the output, which is positive
exactly where z is.  Training such a layer gives bitwise the weights of the same layer
linear followed by a separate ReLU activation, which keeps z."""
import numpy as np
import pytest

import pynn
from pynn import ids

L = pynn.layers


def _pair(kind, fused):
    pynn.utils.set_random_seed(11)
    act = "relu" if fused else None
    if kind == "dense":
        layers = [L.Input((9,)), L.Dense(13, activation=act)]
    else:
        layers = [L.Input((7, 7, 2)), L.Conv2D(5, 3, padding="same", activation=act),
                  L.Flatten()]
    if not fused:
        layers.insert(2, L.Activation("relu"))
    model = pynn.Sequential(layers + [L.Dense(3)])
    model.compile(optimizer=pynn.optimizers.SGD(0.1),
                  loss=pynn.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("kind", ["dense", "conv2d"])
def test_relu_over_z_trains_as_a_separate_relu(kind):
    rng = np.random.default_rng(0)
    shape = (9,) if kind == "dense" else (7, 7, 2)
    x = rng.standard_normal((40,) + shape).astype(np.float32)
    x[:, :2] = 0.0                       # some z exactly 0 at the kink
    y = rng.integers(0, 3, 40)
    fused, separate = _pair(kind, True), _pair(kind, False)
    for m in (fused, separate):
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(fused.get_weights(), separate.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused.predict(x, verbose=0), separate.predict(x, verbose=0))
    # one buffer: the op's z and y operands are the same
    ex, epoch = fused.engine.take("train", 8)
    fused.engine.put_back("train", ex, epoch)
    op = next(o for o in ex.plan.ops if o.name == kind)
    z, y = (op.bufs[3], op.bufs[4]) if kind == "dense" else (op.bufs[4], op.bufs[5])
    assert op.ints[-1 if kind == "dense" else 12] == ids.ACTIVATIONS["relu"] and z == y


def _resnet_block(extra_use=False, producer="bn", backend=None):
    pynn.utils.set_random_seed(5)
    inp = pynn.Input((6, 6, 3))
    t = L.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    if producer == "bn":
        t = L.BatchNormalization()(t)
    elif producer == "tanh":
        t = L.Conv2D(4, 1, activation="tanh")(t)
    r = L.Activation("relu")(t)
    y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(r))
    x = L.ReLU()(L.Add()([y, r]))                  # Keras's ReLU layer: the same rule
    if extra_use:                                  # the BN output read a second time
        x = L.Add()([x, t])
    out = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    model = pynn.Model(inp, out)
    model.compile(optimizer=pynn.optimizers.SGD(0.05),
                  loss=pynn.losses.SparseCategoricalCrossentropy(from_logits=True),
                  backend=backend)
    return model


def _over_input(model, kind="train"):
    ex, epoch = model.engine.take(kind, 8)
    model.engine.put_back(kind, ex, epoch)
    return [op for op in ex.plan.ops if op.name == "activation" and op.bufs[0] == op.bufs[1]]


@pytest.mark.parametrize("case", [{}, {"extra_use": True}, {"producer": "tanh"},
                                  {"backend": "numpy"}])
def test_relu_over_its_input_trains_as_with_its_own_buffer(case, monkeypatch):
    """Activation("relu") after a layer whose backward never reads its output (BN, Add, a
    linear Conv2D/Dense), reading a value nothing else reads, writes over it: the same
    weights bit for bit as with a buffer of its own; a value read twice, or a producer
    whose backward reads its output (tanh), keeps its own buffer."""
    from pynn.models import plan as plan_module
    rng = np.random.default_rng(1)
    rows = 24
    x = rng.standard_normal((rows, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 3, rows)
    over = _resnet_block(**case)
    over.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # both ReLUs, or the second (after Add) alone where the first's input is read twice or
    # comes from a tanh
    expect = 1 if "extra_use" in case or "producer" in case else 2
    assert len(_over_input(over)) == expect
    monkeypatch.setattr(plan_module, "_relu_over_input_calls", lambda *a: set())
    own = _resnet_block(**case)
    own.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert not _over_input(own)
    for a, b in zip(over.get_weights(), own.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(over.predict(x, verbose=0), own.predict(x, verbose=0))
