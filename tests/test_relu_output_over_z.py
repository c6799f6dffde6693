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
