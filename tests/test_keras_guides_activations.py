"""Keras's own code for activations and activation layers, as keras.io's API pages print it,
run with `import pynn as keras` and only the data changed (small random arrays):

  https://keras.io/api/layers/activation_layers/relu/     the ReLU layer's example
  https://keras.io/api/layers/activations/                "Usage of activations"
  https://keras.io/api/layers/activation_layers/prelu/    PReLU with shared_axes, as the
                                                          page's argument docs describe it

Each test checks what Keras's documentation promises for that code.
"""
import numpy as np
import pytest

import pynn as keras
from pynn import activations, layers


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(3)


def test_relu_layer_page_example():
    # https://keras.io/api/layers/activation_layers/relu/
    relu_layer = keras.layers.ReLU(
        max_value=10,
        negative_slope=0.5,
        threshold=0,
    )
    input = np.array([-10, -5, 0.0, 5, 10])
    result = relu_layer(input)
    # the page's formula: negative_slope * (x - threshold) below the threshold, x up to max
    np.testing.assert_allclose(result, [-5.0, -2.5, 0.0, 5.0, 10.0])


def test_usage_of_activations_page():
    # https://keras.io/api/layers/activations/ ("Usage of activations"), with the
    # activations this page lists beside relu
    model = keras.Sequential()
    model.add(keras.Input(shape=(16,)))
    model.add(layers.Dense(64, activation=activations.relu))

    model.add(layers.Dense(64))
    model.add(layers.Activation(activations.relu))

    model.add(layers.Dense(64, activation='relu'))
    for name in ("elu", "selu", "softplus", "softsign", "swish", "hard_sigmoid", "mish",
                 "relu6", "hard_silu"):
        model.add(layers.Dense(32, activation=name))
    model.add(layers.Dense(10, activation="log_softmax"))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    y = np.random.default_rng(1).normal(size=(64, 10)).astype("float32")
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.all(np.isfinite(history.history["loss"]))
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0, rtol=1e-5)   # log-probabilities
    # keras.activations.<name>(x) on arrays, the functions the page documents
    z = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], "float32")
    np.testing.assert_allclose(activations.relu6(z * 3), [0, 0, 0, 3, 6])
    np.testing.assert_allclose(activations.hard_sigmoid(z), [0, 1 / 3, 0.5, 2 / 3, 1],
                               rtol=1e-6)
    np.testing.assert_allclose(activations.exponential(z), np.exp(z), rtol=1e-6)


def test_prelu_shared_axes_page():
    # https://keras.io/api/layers/activation_layers/prelu/: "if the incoming feature maps are
    # from a 2D convolution with output shape (batch, height, width, channels), and you wish
    # to share parameters across space so that each filter only has one set of parameters,
    # set shared_axes=[1, 2]"
    inputs = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(4, 3)(inputs)
    x = layers.PReLU(shared_axes=[1, 2])(x)
    outputs = layers.Dense(2)(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    prelu = model.layers[2]
    assert [tuple(w.shape) for w in prelu.weights] == [(1, 1, 4)]
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(2)
    model.fit(rng.normal(size=(16, 8, 8, 3)).astype("float32"),
              rng.normal(size=(16, 2)).astype("float32"), epochs=1, verbose=0)
    assert np.abs(prelu.get_weights()[0]).max() > 0     # alpha starts at "Zeros" and learns
