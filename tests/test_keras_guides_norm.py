"""Keras 3's own example code for the normalization and noise layers, run with
`import pynn as keras` (engineer E, issue #16).  The code is copied as the keras.io API
pages print it (the layers' docstrings), then used the way the keras.io guides use such
layers in a model; only the data is random and small.  Each test checks what Keras's
result guarantees."""
import numpy as np
import pytest

import pynn as keras
from pynn import layers


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1)


def test_layer_normalization_api_page_example():
    """https://keras.io/api/layers/normalization_layers/layer_normalization/"""
    layer = keras.layers.LayerNormalization(axis=[1, 2, 3])
    layer.build([5, 20, 30, 40])
    print(layer.beta.shape)
    print(layer.gamma.shape)
    assert tuple(layer.beta.shape) == (20, 30, 40)
    assert tuple(layer.gamma.shape) == (20, 30, 40)


def test_unit_normalization_api_page_example():
    """https://keras.io/api/layers/normalization_layers/unit_normalization/"""
    data = np.arange(6).reshape(2, 3)
    normalized_data = keras.layers.UnitNormalization()(data)
    assert np.sum(normalized_data[0, :] ** 2) == pytest.approx(1.0, abs=1e-6)


def test_sequential_guide_style_model_with_normalization_and_noise_layers():
    """The Sequential guide's way of stacking layers (https://keras.io/guides/sequential_model/),
    with the regularization layers of https://keras.io/api/layers/regularization_layers/
    and the normalization layers of https://keras.io/api/layers/normalization_layers/."""
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 3)),
            layers.GaussianNoise(0.1),
            layers.Conv2D(8, 3, activation="relu"),
            layers.GroupNormalization(groups=4),
            layers.SpatialDropout2D(0.2),
            layers.Conv2D(8, 3, activation="relu"),
            layers.LayerNormalization(),
            layers.GlobalAveragePooling2D(),
            layers.GaussianDropout(0.2),
            layers.Dense(16, activation="relu"),
            layers.UnitNormalization(),
            layers.Dense(4, activation="softmax"),
        ]
    )
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.rand(32, 8, 8, 3).astype("float32")
    y = np.random.randint(0, 4, size=(32,))
    history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.isfinite(history.history["loss"]).all()
    probs = model.predict(x[:5], verbose=0)
    assert probs.shape == (5, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # the noise layers are the identity in inference: predict repeats exactly
    np.testing.assert_array_equal(model.predict(x[:5], verbose=0), probs)
    # GroupNormalization(4) on 8 channels: gamma and beta of one per channel
    gn = model.layers[2]
    assert [tuple(w.shape) for w in gn.get_weights()] == [(8,), (8,)]
