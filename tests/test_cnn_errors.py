"""Bad arguments and bad inputs of the CNN layers: clear ValueErrors naming the value."""
import numpy as np
import pytest

import pynn
from pynn import layers as L


@pytest.mark.parametrize("make,match", [
    (lambda: L.Conv2D(0, 3), "filters"),
    (lambda: L.Conv2D(2.5, 3), "filters"),
    (lambda: L.Conv2D(4, 0), "kernel_size"),
    (lambda: L.Conv2D(4, (3, 3, 3)), "kernel_size"),
    (lambda: L.Conv2D(4, 3, strides=0), "strides"),
    (lambda: L.Conv2D(4, 3, padding="full"), "padding"),
    (lambda: L.Conv2D(4, 3, padding="causal"), "padding"),
    (lambda: L.Conv2D(4, 3, data_format="channels_first"), "channels_last"),
    (lambda: L.Conv2D(4, 3, dilation_rate=2), "dilation_rate"),
    (lambda: L.Conv2D(4, 3, activation="swishy"), "activation"),
    (lambda: L.MaxPooling2D(pool_size=-1), "pool_size"),
    (lambda: L.AveragePooling2D(strides=(1, 0)), "strides"),
    (lambda: L.MaxPooling2D(padding="SAME!"), "padding"),
    (lambda: L.Dropout(1.0), "rate"),
    (lambda: L.Dropout(-0.1), "rate"),
    (lambda: L.Dropout("half"), "rate"),
    (lambda: L.BatchNormalization(momentum=1.5), "momentum"),
    (lambda: L.BatchNormalization(epsilon=0), "epsilon"),
    (lambda: L.Reshape((0, 3)), "target_shape"),
    (lambda: L.Reshape((-1, -1)), "target_shape"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_padding_names_are_case_insensitive_like_keras():
    assert L.Conv2D(2, 3, padding="SAME").padding == "same"


@pytest.mark.parametrize("layers,match", [
    ([L.Input((10,)), L.Conv2D(2, 3)], "height, width, channels"),
    ([L.Input((4, 4)), L.MaxPooling2D()], "height, width, channels"),
    ([L.Input((4, 4, 1)), L.Conv2D(2, 5)], "does not fit"),
    ([L.Input((3, 8, 1)), L.MaxPooling2D((4, 2))], "does not fit"),
    ([L.Input((4, 4, 2)), L.Reshape((3, 3))], "cannot reshape"),
    ([L.Input((4, 4, 2)), L.BatchNormalization(axis=1)], "last axis"),
    ([L.Input((8,)), L.GlobalAveragePooling2D()], "height, width, channels"),
])
def test_bad_input_shapes_are_refused_at_build(layers, match):
    with pytest.raises(ValueError, match=match):
        pynn.Sequential(layers)


def test_wrong_input_rank_at_fit_names_the_shapes():
    model = pynn.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="6, 6, 1"):
        model.fit(np.zeros((4, 36), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    with pytest.raises(ValueError, match="6, 6, 1"):
        model.predict(np.zeros((4, 6, 6), np.float32), verbose=0)


def test_model_ending_in_images_needs_a_flatten():
    model = pynn.Sequential([L.Input((6, 6, 1)), L.Conv2D(2, 3)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="Flatten"):
        model.fit(np.zeros((2, 6, 6, 1), np.float32), np.zeros((2, 4, 4, 2), np.float32), verbose=0)
