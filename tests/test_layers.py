"""The layer harness: every layer passes the same checks (Keras's habit of one shared test
every layer goes through), then hand-computed cases, configuration round trips of whole
models, and refused arguments.

For each entry of LAYERS:
  output shape    compute_output_shape (batch axis included) matches what a symbolic call
                  and an eager call on arrays produce;
  weights         their names, Keras layouts, trainable flags and count;
  eager call      on arrays, against the layer written in float64 NumPy (tests/independent*.py
                  for activations, convolution and pooling), in inference mode;
  config          get_config() -> type(layer).from_config(config): the same config (through
                  JSON), and the same output given the same weights;
  training step   inside a model (a Dense before each input, so the layer's input gradient is
                  used; a Dense head after), one SGD step on each backend against finite
                  differences of the same model in float64 NumPy (the layer's training-mode
                  formula; not for Dropout, whose masks no formula replays) and against the
                  numpy backend's step; the layer's weights move as training says.
"""
import functools
import json

import numpy as np
import pytest

import pynn
import independent as ind
import independent_cnn as icnn
import independent_upsampling as iup   # issue 16, part C
import independent_conv_variants as icv   # engineer B
from pynn import layers as L

from conftest import RTOL_ELEMENTWISE, assert_bitwise, assert_close, assert_step_close

_AS_INFERENCE = object()


class Case:
    """A layer under test.  make(): a new layer; shapes: its inputs' shapes (batch axis
    left out); forward(xs, weights): its inference output in float64 NumPy; weights:
    [(name, shape, trainable)] it creates for those inputs; listed: called on a list;
    train_forward: its output in training mode (the same as inference unless given; None
    where it draws random numbers, which no NumPy formula can replay)."""

    def __init__(self, make, shapes, forward, weights=(), listed=False,
                 train_forward=_AS_INFERENCE, ids=None, path_prefix=None):
        self.make, self.shapes, self.forward = make, [tuple(s) for s in shapes], forward
        self.weights, self.listed = list(weights), listed
        self.train_forward = forward if train_forward is _AS_INFERENCE else train_forward
        # engineer G: ids (an int V): the inputs are integer ids in [0, V) (Embedding; no
        # Dense before them in the training step); path_prefix(layer): where the layer's
        # weight paths start (a wrapper's: "time_distributed/dense/")
        self.ids = ids
        self.path_prefix = path_prefix or (lambda layer: f"{layer.name}/")


def _bn(xs, w, epsilon, center=True, scale=True, training=False):
    """Batch normalization over the last axis: the moving statistics in inference, the
    batch's mean and biased variance in training (Keras 3)."""
    w = list(w)
    gamma = w.pop(0) if scale else 1.0
    beta = w.pop(0) if center else 0.0
    mean, var = w
    if training:
        axes = tuple(range(xs[0].ndim - 1))
        mean, var = xs[0].mean(axis=axes), xs[0].var(axis=axes)
    return (xs[0] - mean) / np.sqrt(var + epsilon) * gamma + beta



# engineer E: layer and group normalization in float64 (Keras 3: biased variance, epsilon
# added to it), before gamma and beta
def _ln(x, axes, epsilon):
    mean = x.mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + epsilon)


def _gn(x, groups, epsilon):
    g = x.reshape(x.shape[:-1] + (groups, x.shape[-1] // groups))
    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
    return _ln(g, axes, epsilon).reshape(x.shape)


# ---- recurrent layers (engineer H): Keras's recurrences in float64 NumPy ----------------------
def _sig(z):
    return 1 / (1 + np.exp(-z))


_NP_ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "sigmoid": _sig,
           "linear": lambda z: z}


def _rnn_np(kind, x, w, act="tanh", go_backwards=False, return_sequences=False):
    k, rk = w[0], w[1]
    b = w[2] if len(w) > 2 else 0
    u = rk.shape[0]
    f = _NP_ACT[act]
    h = np.zeros((x.shape[0], u))
    c = np.zeros_like(h)
    outs = []
    for t in (range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])):
        if kind == "lstm":
            z = x[:, t] @ k + h @ rk + b
            i, fg, g, o = (z[:, j * u:(j + 1) * u] for j in range(4))
            c = _sig(fg) * c + _sig(i) * f(g)
            h = _sig(o) * f(c)
        elif kind == "gru":
            xz, rz = x[:, t] @ k + b[0], h @ rk + b[1]
            zg, rg = _sig(xz[:, :u] + rz[:, :u]), _sig(xz[:, u:2 * u] + rz[:, u:2 * u])
            h = zg * h + (1 - zg) * f(xz[:, 2 * u:] + rg * rz[:, 2 * u:])
        else:
            h = f(x[:, t] @ k + h @ rk + b)
        outs.append(h)
    return np.stack(outs, axis=1) if return_sequences else h


def _rnn_weights(f, u, g, gru=False):
    return [("kernel", (f, g * u), True), ("recurrent_kernel", (u, g * u), True),
            ("bias", (2, g * u) if gru else (g * u,), True)]


LAYERS = {
    "dense": Case(lambda: L.Dense(4, activation="tanh", bias_initializer="ones",
                                  kernel_initializer=pynn.initializers.RandomNormal(0.5, 0.1,
                                                                                    seed=3)),
                  [(3,)],
                  lambda xs, w: np.tanh(xs[0] @ w[0] + w[1]),
                  [("kernel", (3, 4), True), ("bias", (4,), True)]),
    "dense_rank3_no_bias": Case(lambda: L.Dense(3, use_bias=False, activation="leaky_relu"),
                                [(2, 5)], lambda xs, w: ind.activation("leaky_relu", xs[0] @ w[0]),
                                [("kernel", (5, 3), True)]),
    "activation_gelu": Case(lambda: L.Activation("gelu"), [(4,)],
                            lambda xs, w: ind.activation("gelu", xs[0])),
    "activation_softmax_rank3": Case(lambda: L.Activation("softmax"), [(2, 5)],
                                     lambda xs, w: ind.activation("softmax", xs[0])),
    "leaky_relu": Case(lambda: L.LeakyReLU(), [(5,)],     # Keras 3's default slope, 0.3
                       lambda xs, w: np.where(xs[0] > 0, xs[0], 0.3 * xs[0])),
    "relu": Case(lambda: L.ReLU(), [(2, 5)], lambda xs, w: np.maximum(xs[0], 0.0)),
    "relu_negative_slope": Case(lambda: L.ReLU(negative_slope=0.2), [(5,)],
                                lambda xs, w: np.where(xs[0] > 0, xs[0], 0.2 * xs[0])),
    "softmax_rank3": Case(lambda: L.Softmax(), [(2, 5)],
                          lambda xs, w: ind.activation("softmax", xs[0])),
    # activations (engineer A)
    "relu_max_value_threshold": Case(
        lambda: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2), [(2, 5)],
        lambda xs, w: np.clip(np.where(xs[0] > 0.2, xs[0], 0.0), 0.0, 0.8) -
        0.1 * np.maximum(0.2 - xs[0], 0.0)),
    "softmax_axis1": Case(lambda: L.Softmax(axis=1), [(3, 4)],
                          lambda xs, w: np.exp(xs[0]) / np.exp(xs[0]).sum(axis=1, keepdims=True)),
    "elu": Case(lambda: L.ELU(alpha=0.5), [(5,)],
                lambda xs, w: np.where(xs[0] > 0, xs[0], 0.5 * np.expm1(xs[0]))),
    "prelu_shared_axes": Case(lambda: L.PReLU(shared_axes=[1]), [(3, 4)],
                              lambda xs, w: np.where(xs[0] > 0, xs[0], w[0] * xs[0]),
                              [("alpha", (1, 4), True)]),
    "conv2d_same_strided": Case(
        lambda: L.Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="relu",
                         kernel_initializer="he_uniform"),
        [(5, 4, 2)], lambda xs, w: icnn.conv(xs[0], w[0], w[1], (2, 1), "same", "relu"),
        [("kernel", (3, 2, 2, 3), True), ("bias", (3,), True)]),
    "conv2d_valid_no_bias": Case(
        lambda: L.Conv2D(2, 2, use_bias=False), [(4, 4, 3)],
        lambda xs, w: icnn.conv(xs[0], w[0], np.zeros(2), (1, 1), "valid", "linear"),
        [("kernel", (2, 2, 3, 2), True)]),
    # ---- convolution variants (engineer B) ----
    "conv2d_dilated_grouped": Case(
        lambda: L.Conv2D(4, (3, 2), padding="same", dilation_rate=(2, 1), groups=2,
                         activation="tanh"),
        [(5, 4, 6)], lambda xs, w: icv.conv(xs[0], w[0], w[1], (1, 1), "same", (2, 1), 2, "tanh"),
        [("kernel", (3, 2, 3, 4), True), ("bias", (4,), True)]),
    "conv2d_channels_first_strided": Case(
        lambda: L.Conv2D(3, 2, strides=(2, 1), data_format="channels_first"),
        [(2, 5, 4)], lambda xs, w: icv.nchw(icv.conv)(xs[0], w[0], w[1], (2, 1), "valid"),
        [("kernel", (2, 2, 2, 3), True), ("bias", (3,), True)]),
    "depthwise_conv2d": Case(
        lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                  activation="relu", bias_initializer="ones"),
        [(5, 4, 3)], lambda xs, w: icv.depthwise(xs[0], w[0], w[1], (2, 2), "same", act="relu"),
        [("depthwise_kernel", (3, 3, 3, 2), True), ("bias", (6,), True)]),
    "depthwise_conv2d_dilated_channels_first": Case(
        lambda: L.DepthwiseConv2D(2, dilation_rate=2, use_bias=False,
                                  data_format="channels_first"),
        [(2, 5, 4)], lambda xs, w: icv.nchw(icv.depthwise)(xs[0], w[0], None, (1, 1), "valid",
                                                          (2, 2)),
        [("depthwise_kernel", (2, 2, 2, 1), True)]),
    "separable_conv2d": Case(
        lambda: L.SeparableConv2D(3, 3, padding="same", depth_multiplier=2, activation="tanh"),
        [(4, 4, 2)], lambda xs, w: icv.separable(xs[0], w[0], w[1], w[2], (1, 1), "same",
                                                 act="tanh"),
        [("depthwise_kernel", (3, 3, 2, 2), True), ("pointwise_kernel", (1, 1, 4, 3), True),
         ("bias", (3,), True)]),
    "separable_conv2d_strided_no_bias": Case(
        lambda: L.SeparableConv2D(2, (2, 3), strides=(2, 1), use_bias=False),
        [(5, 4, 3)], lambda xs, w: icv.separable(xs[0], w[0], w[1], None, (2, 1), "valid"),
        [("depthwise_kernel", (2, 3, 3, 1), True), ("pointwise_kernel", (1, 1, 3, 2), True)]),
    "permute": Case(lambda: L.Permute((3, 1, 2)), [(2, 3, 4)],
                    lambda xs, w: xs[0].transpose(0, 3, 1, 2)),
    # ---- end of convolution variants (engineer B) ----
    "max_pooling2d_same_overlapping": Case(
        lambda: L.MaxPooling2D(2, strides=1, padding="same"), [(5, 4, 2)],
        lambda xs, w: icnn.pool(xs[0], (2, 2), (1, 1), "same", "max")),
    "max_pooling2d_default": Case(lambda: L.MaxPooling2D(), [(5, 5, 2)],
                                  lambda xs, w: icnn.pool(xs[0], (2, 2), (2, 2), "valid", "max")),
    "average_pooling2d_same": Case(
        lambda: L.AveragePooling2D((2, 3), padding="same"), [(5, 4, 2)],
        lambda xs, w: icnn.pool(xs[0], (2, 3), (2, 3), "same", "avg")),
    "global_average_pooling2d": Case(lambda: L.GlobalAveragePooling2D(), [(3, 4, 2)],
                                     lambda xs, w: xs[0].mean(axis=(1, 2))),
    "global_average_pooling2d_keepdims": Case(
        lambda: L.GlobalAveragePooling2D(keepdims=True), [(3, 4, 2)],
        lambda xs, w: xs[0].mean(axis=(1, 2), keepdims=True)),
    "flatten": Case(lambda: L.Flatten(), [(3, 2, 4)],        # row-major: Keras's (H, W, C)
                    lambda xs, w: xs[0].reshape(len(xs[0]), -1)),
    "reshape": Case(lambda: L.Reshape((4, -1)), [(3, 2, 4)],
                    lambda xs, w: xs[0].reshape(len(xs[0]), 4, 6)),
    "dropout": Case(lambda: L.Dropout(0.4, seed=5), [(6,)], lambda xs, w: xs[0],
                    train_forward=None),
    "dropout_noise_shape": Case(lambda: L.Dropout(0.3, noise_shape=(None, 1, 1, 2), seed=1),
                                [(3, 3, 2)], lambda xs, w: xs[0], train_forward=None),
    "batch_normalization": Case(
        lambda: L.BatchNormalization(momentum=0.9, epsilon=0.01), [(3, 2, 4)],
        lambda xs, w: _bn(xs, w, 0.01),
        [("gamma", (4,), True), ("beta", (4,), True), ("moving_mean", (4,), False),
         ("moving_variance", (4,), False)],
        train_forward=lambda xs, w: _bn(xs, w, 0.01, training=True)),
    "batch_normalization_no_affine": Case(
        lambda: L.BatchNormalization(center=False, scale=False), [(5,)],
        lambda xs, w: _bn(xs, w, 0.001, center=False, scale=False),
        [("moving_mean", (5,), False), ("moving_variance", (5,), False)],
        train_forward=lambda xs, w: _bn(xs, w, 0.001, center=False, scale=False,
                                        training=True)),
    "rescaling": Case(lambda: L.Rescaling(0.5, offset=-1.0), [(3, 4)],
                      lambda xs, w: xs[0] * 0.5 - 1.0),
    "rescaling_per_channel": Case(lambda: L.Rescaling([1.0, -2.0, 0.5], [0.1, 0.0, -0.3]),
                                  [(2, 3)],
                                  lambda xs, w: xs[0] * np.array([1.0, -2.0, 0.5]) +
                                  np.array([0.1, 0.0, -0.3])),
    "normalization": Case(          # Keras 3: (x - mean) / max(sqrt(variance), 1e-7)
        lambda: L.Normalization(), [(2, 3)],
        lambda xs, w: (xs[0] - w[0]) / np.maximum(np.sqrt(w[1]), 1e-7),
        [("mean", (3,), False), ("variance", (3,), False), ("count", (), False)]),
    "normalization_given_inverted": Case(
        lambda: L.Normalization(axis=None, mean=0.5, variance=4.0, invert=True), [(3, 2)],
        lambda xs, w: 0.5 + xs[0] * 2.0),
    "random_contrast": Case(lambda: L.RandomContrast(0.3, seed=2), [(3, 3, 2)],
                            lambda xs, w: xs[0], train_forward=None),
    "random_brightness": Case(lambda: L.RandomBrightness(0.2, seed=2), [(3, 3, 2)],
                              lambda xs, w: xs[0], train_forward=None),
    "input_layer": Case(lambda: L.InputLayer(shape=(3, 2)), [(3, 2)], lambda xs, w: xs[0]),
    "add": Case(lambda: L.Add(), [(2, 3)] * 3, lambda xs, w: xs[0] + xs[1] + xs[2], listed=True),
    "subtract": Case(lambda: L.Subtract(), [(2, 3)] * 2, lambda xs, w: xs[0] - xs[1],
                     listed=True),
    "multiply": Case(lambda: L.Multiply(), [(4,)] * 3, lambda xs, w: xs[0] * xs[1] * xs[2],
                     listed=True),
    "average": Case(lambda: L.Average(), [(2, 3)] * 2, lambda xs, w: (xs[0] + xs[1]) / 2,
                    listed=True),
    "maximum": Case(lambda: L.Maximum(), [(4,)] * 3,
                    lambda xs, w: np.maximum(np.maximum(xs[0], xs[1]), xs[2]), listed=True),
    "minimum": Case(lambda: L.Minimum(), [(2, 3)] * 2, lambda xs, w: np.minimum(xs[0], xs[1]),
                    listed=True),
    "concatenate": Case(lambda: L.Concatenate(), [(2, 3), (2, 4)],
                        lambda xs, w: np.concatenate(xs, axis=-1), listed=True),
    "concatenate_axis1": Case(lambda: L.Concatenate(axis=1), [(2, 3), (4, 3)],
                              lambda xs, w: np.concatenate(xs, axis=1), listed=True),
    # engineer D (#16): 1-D convolution and pooling, global max pooling, RepeatVector
    "conv1d_same_strided": Case(
        lambda: L.Conv1D(3, 3, strides=2, padding="same", activation="relu"), [(7, 2)],
        lambda xs, w: _conv1d(xs[0], w[0], w[1], 2, "same", "relu"),
        [("kernel", (3, 2, 3), True), ("bias", (3,), True)]),
    "conv1d_causal_no_bias": Case(
        lambda: L.Conv1D(2, 3, padding="causal", use_bias=False), [(5, 3)],
        lambda xs, w: _conv1d(xs[0], w[0], np.zeros(2), 1, "causal", "linear"),
        [("kernel", (3, 3, 2), True)]),
    "max_pooling1d_same": Case(
        lambda: L.MaxPooling1D(3, strides=2, padding="same"), [(6, 2)],
        lambda xs, w: icnn.pool(xs[0][:, None], (1, 3), (1, 2), "same", "max")[:, 0]),
    "average_pooling1d": Case(
        lambda: L.AveragePooling1D(2), [(5, 3)],
        lambda xs, w: icnn.pool(xs[0][:, None], (1, 2), (1, 2), "valid", "avg")[:, 0]),
    "global_max_pooling1d": Case(lambda: L.GlobalMaxPooling1D(), [(4, 3)],
                                 lambda xs, w: xs[0].max(axis=1)),
    "global_max_pooling2d_keepdims": Case(
        lambda: L.GlobalMaxPooling2D(keepdims=True), [(3, 2, 2)],
        lambda xs, w: xs[0].max(axis=(1, 2), keepdims=True)),
    "global_average_pooling1d_keepdims": Case(
        lambda: L.GlobalAveragePooling1D(keepdims=True), [(4, 3)],
        lambda xs, w: xs[0].mean(axis=1, keepdims=True)),
    "repeat_vector": Case(lambda: L.RepeatVector(3), [(4,)],
                          lambda xs, w: np.repeat(xs[0][:, None, :], 3, axis=1)),
    # engineer F: the identity whose penalty joins the loss (no finite differences here: the
    # harness's NumPy loss is the MSE alone; tests/test_regularizers.py checks the penalty)
    "activity_regularization": Case(lambda: L.ActivityRegularization(l1=0.01, l2=0.02),
                                    [(2, 3)], lambda xs, w: xs[0], train_forward=None),
    # ---- engineer G: Embedding, Masking, TimeDistributed ----
    "embedding": Case(lambda: L.Embedding(7, 3), [(5,)],
                      lambda xs, w: w[0][xs[0].astype(np.int64)],
                      [("embeddings", (7, 3), True)], ids=7),
    "embedding_mask_zero_rank3": Case(lambda: L.Embedding(4, 2, mask_zero=True), [(2, 3)],
                                      lambda xs, w: w[0][xs[0].astype(np.int64)],
                                      [("embeddings", (4, 2), True)], ids=4),
    "masking": Case(lambda: L.Masking(0.25), [(4, 3)],
                    lambda xs, w: xs[0] * np.any(xs[0] != np.float32(0.25), axis=-1)[..., None]),
    "time_distributed_dense": Case(
        lambda: L.TimeDistributed(L.Dense(3, activation="tanh")), [(4, 2)],
        lambda xs, w: np.tanh(xs[0] @ w[0] + w[1]),
        [("kernel", (2, 3), True), ("bias", (3,), True)],
        path_prefix=lambda layer: f"{layer.name}/{layer.layer.name}/"),
    "time_distributed_conv2d": Case(
        lambda: L.TimeDistributed(L.Conv2D(2, 2, activation="relu")), [(3, 4, 4, 2)],
        lambda xs, w: icnn.conv(xs[0].reshape(-1, 4, 4, 2), w[0], w[1], (1, 1), "valid",
                                "relu").reshape(len(xs[0]), 3, 3, 3, 2),
        [("kernel", (2, 2, 2, 2), True), ("bias", (2,), True)],
        path_prefix=lambda layer: f"{layer.name}/{layer.layer.name}/"),
    # engineer E: normalization and noise layers (tests/test_layers_norm.py has the rest)
    "layer_normalization": Case(
        lambda: L.LayerNormalization(epsilon=0.01), [(3, 4)],
        lambda xs, w: _ln(xs[0], (-1,), 0.01) * w[0] + w[1],
        [("gamma", (4,), True), ("beta", (4,), True)]),
    "layer_normalization_trailing_axes": Case(
        lambda: L.LayerNormalization(axis=[-2, -1], center=False), [(2, 3)],
        lambda xs, w: _ln(xs[0], (-2, -1), 1e-3) * w[0], [("gamma", (2, 3), True)]),
    "group_normalization": Case(
        lambda: L.GroupNormalization(2, epsilon=0.01), [(3, 2, 4)],
        lambda xs, w: _gn(xs[0], 2, 0.01) * w[0] + w[1],
        [("gamma", (4,), True), ("beta", (4,), True)]),
    "unit_normalization": Case(
        lambda: L.UnitNormalization(), [(2, 5)],
        lambda xs, w: xs[0] / np.sqrt(np.maximum((xs[0] ** 2).sum(-1, keepdims=True), 1e-24))),
    "spatial_dropout2d": Case(lambda: L.SpatialDropout2D(0.4, seed=3), [(3, 3, 2)],
                              lambda xs, w: xs[0], train_forward=None),
    "gaussian_noise": Case(lambda: L.GaussianNoise(0.2, seed=1), [(5,)], lambda xs, w: xs[0],
                           train_forward=None),
    "gaussian_dropout": Case(lambda: L.GaussianDropout(0.3, seed=2), [(2, 3)],
                             lambda xs, w: xs[0], train_forward=None),
    # transposed convolution, upsampling, padding, cropping (issue 16, part C)
    "conv2d_transpose_same_strided": Case(
        lambda: L.Conv2DTranspose(3, (3, 2), strides=(2, 1), padding="same", activation="relu"),
        [(3, 2, 2)], lambda xs, w: iup.conv_transpose(xs[0], w[0], w[1], (2, 1), "same", None,
                                                      "relu"),
        [("kernel", (3, 2, 3, 2), True), ("bias", (3,), True)]),
    "conv2d_transpose_valid_output_padding_no_bias": Case(
        lambda: L.Conv2DTranspose(2, 2, strides=3, output_padding=(1, 2), use_bias=False),
        [(2, 2, 3)], lambda xs, w: iup.conv_transpose(xs[0], w[0], None, (3, 3), "valid",
                                                      (1, 2), "linear"),
        [("kernel", (2, 2, 2, 3), True)]),
    "conv2d_transpose_dilated": Case(
        lambda: L.Conv2DTranspose(2, (2, 3), dilation_rate=(2, 1), padding="same",
                                  activation="tanh"),
        [(3, 2, 2)], lambda xs, w: iup.conv_transpose(xs[0], w[0], w[1], (1, 1), "same", None,
                                                      "tanh", dilation=(2, 1)),
        [("kernel", (2, 3, 2, 2), True), ("bias", (2,), True)]),
    "up_sampling2d_nearest": Case(lambda: L.UpSampling2D((2, 3)), [(2, 3, 2)],
                                  lambda xs, w: iup.upsampling2d(xs[0], (2, 3), "nearest")),
    "up_sampling2d_bilinear": Case(lambda: L.UpSampling2D((3, 2), interpolation="bilinear"),
                                   [(2, 3, 2)],
                                   lambda xs, w: iup.upsampling2d(xs[0], (3, 2), "bilinear")),
    "up_sampling1d": Case(lambda: L.UpSampling1D(3), [(3, 2)],
                          lambda xs, w: np.repeat(xs[0], 3, axis=1)),
    "zero_padding2d": Case(lambda: L.ZeroPadding2D(((1, 0), (2, 1))), [(2, 3, 2)],
                           lambda xs, w: iup.zero_padding2d(xs[0], ((1, 0), (2, 1)))),
    "cropping2d": Case(lambda: L.Cropping2D(((1, 0), (1, 2))), [(3, 5, 2)],
                       lambda xs, w: iup.cropping2d(xs[0], ((1, 0), (1, 2)))),
    # recurrent layers (engineer H)
    "lstm": Case(lambda: L.LSTM(3), [(4, 2)], lambda xs, w: _rnn_np("lstm", xs[0], w),
                 _rnn_weights(2, 3, 4)),
    "gru_sequences_backwards": Case(
        lambda: L.GRU(3, return_sequences=True, go_backwards=True), [(3, 2)],
        lambda xs, w: _rnn_np("gru", xs[0], w, go_backwards=True, return_sequences=True),
        _rnn_weights(2, 3, 3, gru=True)),
    "simple_rnn_relu": Case(lambda: L.SimpleRNN(2, activation="relu"), [(3, 3)],
                            lambda xs, w: _rnn_np("rnn", xs[0], w, act="relu"),
                            _rnn_weights(3, 2, 1)),
    "bidirectional_lstm": Case(
        lambda: L.Bidirectional(L.LSTM(2, return_sequences=True)), [(3, 2)],
        lambda xs, w: np.concatenate(
            [_rnn_np("lstm", xs[0], w[:3], return_sequences=True),
             _rnn_np("lstm", xs[0], w[3:], go_backwards=True, return_sequences=True)[:, ::-1]],
            axis=-1),
        _rnn_weights(2, 2, 4) * 2),
}


def _conv1d(x, kernel, bias, stride, padding, act):
    """Conv1D in float64: the 2-D convolution of a one-row image; "causal" is a left pad
    of kernel_size - 1 and "valid"."""
    if padding == "causal":
        x = np.pad(x, ((0, 0), (kernel.shape[0] - 1, 0), (0, 0)))
        padding = "valid"
    return icnn.conv(x[:, None], kernel[None], bias, (1, stride), padding, act)[:, 0]
NAMES = list(LAYERS)


# The image preprocessing layers compute no gradient (this harness trains through each layer
# with a Dense before it): tests/test_image_layers.py is their harness.
IMAGE_LAYERS = {L.Resizing, L.CenterCrop, L.RandomCrop, L.RandomFlip, L.RandomRotation,
                L.RandomZoom, L.RandomTranslation}


def test_every_layer_class_is_in_the_harness():
    classes = {type(case.make()) for case in LAYERS.values()}
    exported = {getattr(L, name) for name in L.__all__ if isinstance(getattr(L, name), type)}
    assert exported - {L.Layer, L.KerasTensor} - IMAGE_LAYERS == classes


# ---- harness helpers -----------------------------------------------------------------------

def sample(case, n, seed=0):
    rng = np.random.default_rng(seed)
    if case.ids:                     # integer ids, as float32 (engineer G)
        return [rng.integers(0, case.ids, size=(n,) + s).astype(np.float32)
                for s in case.shapes]
    return [rng.normal(size=(n,) + s).astype(np.float32) for s in case.shapes]


def random_weights(layer, seed=1):
    """Values for every weight of a built layer (positive variances, gammas near 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for v in layer.weights:
        if v.name in ("moving_variance", "variance"):
            out.append(rng.uniform(0.5, 1.5, size=v.shape))
        elif v.name == "gamma":
            out.append(rng.normal(1.0, 0.3, size=v.shape))
        else:
            out.append(rng.normal(0.0, 0.5, size=v.shape))
    return [w.astype(np.float32) for w in out]


def symbolic_call(case, layer):
    """(input tensors, output tensor) of a call of `layer` on new Inputs."""
    if isinstance(layer, L.InputLayer):
        return [layer.output], layer.output
    inputs = [pynn.Input(s) for s in case.shapes]
    return inputs, layer(inputs if case.listed else inputs[0])


def eager(case, layer, xs):
    """The layer called on arrays (an InputLayer is not callable: through a Model)."""
    if isinstance(layer, L.InputLayer):
        return pynn.Model(layer.output, layer.output).predict(xs[0], verbose=0)
    return layer(xs if case.listed else xs[0])


def batch_shapes(case, batch):
    shapes = [(batch,) + s for s in case.shapes]
    return shapes if case.listed else shapes[0]


# ---- the harness -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_output_shape_matches_a_call(name):
    case = LAYERS[name]
    layer = case.make()
    _, out = symbolic_call(case, layer)
    if isinstance(layer, L.InputLayer):
        assert out.shape == layer.compute_output_shape() == (None,) + case.shapes[0]
    else:
        assert out.shape == tuple(layer.compute_output_shape(batch_shapes(case, None)))
    for n in (3, 1):
        y = eager(case, layer, sample(case, n))
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
        assert y.shape == (n,) + out.shape[1:]
        if not isinstance(layer, L.InputLayer):
            assert y.shape == tuple(layer.compute_output_shape(batch_shapes(case, n)))


@pytest.mark.parametrize("name", NAMES)
def test_weights_have_keras_names_layouts_and_flags(name):
    case = LAYERS[name]
    layer = case.make()
    symbolic_call(case, layer)
    assert [(v.name, v.shape, v.trainable) for v in layer.weights] == case.weights
    if isinstance(layer, L.Bidirectional):      # engineer H: the sublayers' own paths
        assert [v.path for v in layer.weights] == \
            [f"{sub.name}/{w[0]}" for sub in (layer.forward_layer, layer.backward_layer)
             for w in case.weights[:3]]
    else:
        assert [v.path for v in layer.weights] == [case.path_prefix(layer) + w[0]
                                                   for w in case.weights]
    assert layer.count_params() == sum(int(np.prod(w[1])) for w in case.weights)
    assert [v.name for v in layer.trainable_weights] == [w[0] for w in case.weights if w[2]]
    assert [v.name for v in layer.non_trainable_weights] == [w[0] for w in case.weights
                                                             if not w[2]]
    values = random_weights(layer)
    layer.set_weights(values)
    for got, want in zip(layer.get_weights(), values):
        assert got.dtype == np.float32
        assert_bitwise(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_eager_call_matches_numpy(name):
    case = LAYERS[name]
    layer = case.make()
    xs = sample(case, 3)
    eager(case, layer, xs)                      # builds the layer
    weights = random_weights(layer)
    layer.set_weights(weights)
    want = case.forward([x.astype(np.float64) for x in xs], [w.astype(np.float64)
                                                            for w in weights])
    assert_close(eager(case, layer, xs), want, rtol=RTOL_ELEMENTWISE)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    case = LAYERS[name]
    layer = case.make()
    xs = sample(case, 2)
    eager(case, layer, xs)
    layer.set_weights(random_weights(layer))
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(layer).from_config(json.loads(json.dumps(config)))
    assert type(clone) is type(layer) and clone.get_config() == config
    eager(case, clone, xs)
    clone.set_weights(layer.get_weights())
    assert_bitwise(eager(case, clone, xs), eager(case, layer, xs))


LR = 0.1


def step_model(case):
    """The layer inside a model: Dense(tanh) before each input (so the layer's input
    gradient is used), Flatten and Dense after.  Returns (model, layer, the Denses before,
    the Dense after)."""
    layer = case.make()
    if isinstance(layer, L.InputLayer):
        inputs, before, y = [layer.output], [], layer.output
    elif case.ids:                   # ids take no gradient: no Dense before (engineer G)
        inputs = [pynn.Input(s) for s in case.shapes]
        before, y = [], layer(inputs if case.listed else inputs[0])
    else:
        inputs = [pynn.Input(s) for s in case.shapes]
        before = [L.Dense(s[-1], activation="tanh") for s in case.shapes]
        feeds = [d(t) for d, t in zip(before, inputs)]
        y = layer(feeds if case.listed else feeds[0])
    if len(y.shape) > 2:
        y = L.Flatten()(y)
    head = L.Dense(2)
    return pynn.Model(inputs, head(y)), layer, before, head


def step_data(case):
    return sample(case, 4), np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)


def training_step(case, backend):
    """One SGD step of the layer's model on `backend`: (model, layer, weights before,
    weights after, the layer's weights before, loss)."""
    pynn.utils.set_random_seed(0)
    model, layer, _, _ = step_model(case)
    model.set_weights(random_weights(model))
    before, layer_before = model.get_weights(), layer.get_weights()
    model.compile(optimizer=pynn.optimizers.SGD(LR), loss="mse", backend=backend)
    xs, y = step_data(case)
    loss = model.train_on_batch(xs if len(xs) > 1 else xs[0], y)
    return model, layer, before, model.get_weights(), layer_before, loss


@functools.lru_cache(maxsize=None)
def finite_difference_step(name):
    """(loss, trainable weights after one SGD step) of the layer's model written in float64
    NumPy (the case's training forward), its gradient by central differences."""
    case = LAYERS[name]
    pynn.utils.set_random_seed(0)
    model, layer, before, head = step_model(case)
    model.set_weights(random_weights(model))
    values = {v.path: v.numpy().astype(np.float64) for v in model.weights}
    xs, y = step_data(case)
    xs = [x.astype(np.float64) for x in xs]

    def loss():
        feeds = [np.tanh(x @ values[d.kernel.path] + values[d.bias.path])
                 for d, x in zip(before, xs)] or xs
        h = case.train_forward(feeds, [values[v.path] for v in layer.weights])
        out = h.reshape(len(h), -1) @ values[head.kernel.path] + values[head.bias.path]
        return np.mean((out - y) ** 2)

    start = loss()
    after = []
    for v in model.trainable_weights:
        w = values[v.path]
        grad = np.zeros_like(w)
        flat, gflat = w.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            gflat[i] = (up - down) / 2e-6
        after.append(w - LR * grad)
    return start, after


@pytest.mark.parametrize("name", NAMES)
def test_training_step_inside_a_model(name, backend_name):
    """One step on each backend: against the finite differences of the NumPy model (the
    trainable weights) and against the numpy backend (every weight, batch normalization's
    moving statistics included; cpu for numpy itself)."""
    case = LAYERS[name]
    model, layer, before, after, layer_before, loss = training_step(case, backend_name)
    reference = "cpu" if backend_name == "numpy" else "numpy"
    ref = training_step(case, reference)
    label = f"{name} on {backend_name}"
    assert_close(loss, ref[5], rtol=RTOL_ELEMENTWISE, err_msg=f"{label}: loss")
    assert_step_close(before, after, ref[3], err_msg=f"{label} vs {reference}")
    if case.train_forward is not None:
        fd_loss, fd_after = finite_difference_step(name)
        assert_close(loss, fd_loss, rtol=RTOL_ELEMENTWISE, err_msg=f"{label}: loss")
        trainable = {v.path for v in model.trainable_weights}
        start = [w for v, w in zip(model.weights, before) if v.path in trainable]
        assert_step_close(start, [v.numpy() for v in model.trainable_weights], fd_after,
                          err_msg=f"{label} vs finite differences")
    for v, b, a in zip(layer.weights, layer_before, layer.get_weights()):
        # trainable weights and BatchNormalization's statistics (training mode) move;
        # Normalization's statistics change only by adapt (Keras 3)
        if isinstance(layer, L.Normalization):
            assert_bitwise(a, b, err_msg=v.path)
        else:
            assert not np.array_equal(a, b), v.path


# ---- hand-computed cases -----------------------------------------------------------------

def test_batchnorm_moving_statistics_follow_keras(backend_name):
    """Training normalizes with the batch's mean and biased variance and moves the
    statistics by momentum; they are not trained; inference reads them."""
    pynn.utils.set_random_seed(0)
    bn = L.BatchNormalization(momentum=0.9, epsilon=1e-3)
    model = pynn.Sequential([L.Input((3, 2, 4)), bn, L.Flatten(),
                             L.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy",
                  backend=backend_name)
    assert model.count_params() == 4 * 4 + 24 * 2 + 2
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(5, 3, 2, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=5)
    mm0, mv0 = bn.get_weights()[2:]
    model.train_on_batch(x, y)
    gamma, beta, mm, mv = bn.get_weights()
    rows = x.reshape(-1, 4).astype(np.float64)
    mean, var = rows.mean(axis=0), rows.var(axis=0)                 # biased, as Keras 3
    assert_close(mm, mm0 * 0.9 + mean * 0.1)
    assert_close(mv, mv0 * 0.9 + var * 0.1)
    assert not np.allclose(gamma, 1.0) and not np.allclose(beta, 0.0)   # SGD at lr 1 moved them
    out = pynn.Model(model.inputs, bn.output).predict(x, verbose=0)
    assert_close(out, (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta)
    batch_out = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    assert not np.allclose(out, batch_out, atol=1e-3)


def test_dropout_masks_repeat_by_seed_and_inference_is_the_identity():
    x = np.ones((4, 6, 5, 3), np.float32)
    layer = L.Dropout(0.4)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    outs = []
    for _ in range(2):
        pynn.utils.set_random_seed(11)         # a layer without a seed draws one at build
        outs.append(L.Dropout(0.4)(x, training=True))
    np.testing.assert_array_equal(outs[0], outs[1])
    kept = outs[0] != 0
    assert_close(outs[0][kept], np.full(kept.sum(), 1 / 0.6))
    assert 0.45 < kept.mean() < 0.75
    layer = L.Dropout(0.4, seed=3)
    assert not np.array_equal(layer(x, training=True), layer(x, training=True))  # new draws
    # a layer's own seed is independent of the global generator
    first = L.Dropout(0.5, seed=4)(x, training=True)
    pynn.utils.set_random_seed(99)
    np.testing.assert_array_equal(first, L.Dropout(0.5, seed=4)(x, training=True))
    # noise_shape: one draw per (sample, channel), shared by every position
    shared = L.Dropout(0.5, noise_shape=(None, 1, 1, 3), seed=2)(x, training=True)
    assert (shared == shared[:, :1, :1, :]).all()
    assert 0 < np.count_nonzero(shared[:, 0, 0, :]) < shared[:, 0, 0, :].size


def test_activation_layer_equals_the_dense_activation():
    """Dense(4) + Activation("softmax") and Dense(4, activation="softmax") train bitwise
    alike (both hand the loss their logits)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)).astype(np.float32), rng.integers(0, 4, size=6)
    models = [pynn.Sequential([L.Input((4,)), L.Dense(5, activation="tanh"), L.Dense(4),
                               L.Activation("softmax")]),
              pynn.Sequential([L.Input((4,)), L.Dense(5, activation="tanh"),
                               L.Dense(4, activation="softmax")])]
    weights = random_weights(models[1])
    for m in models:
        m.compile(optimizer=pynn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        m.set_weights(weights)
        m.train_on_batch(x, y)
    for wa, wb in zip(models[0].get_weights(), models[1].get_weights()):
        assert_bitwise(wa, wb)


def test_seeded_initializer_survives_the_config():
    d = L.Dense(4, kernel_initializer=pynn.initializers.RandomNormal(0.5, 0.1, seed=3))
    twin = L.Dense.from_config({**d.get_config(), "name": "twin"})
    d.build((None, 5))
    twin.build((None, 5))
    assert_bitwise(twin.get_weights()[0], d.get_weights()[0])


@pytest.mark.parametrize("layer,shape,expected", [
    (lambda: L.Conv2D(2, 3, strides=2, padding="same"), (7, 8, 1), (4, 4, 2)),
    (lambda: L.Conv2D(2, 3, strides=2), (7, 8, 1), (3, 3, 2)),
    (lambda: L.Conv2D(2, (1, 5), strides=(3, 1), padding="same"), (10, 5, 3), (4, 5, 2)),
    (lambda: L.MaxPooling2D(), (7, 7, 3), (3, 3, 3)),
    (lambda: L.MaxPooling2D(padding="same"), (7, 7, 3), (4, 4, 3)),
    (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (8, 5, 2), (4, 3, 2)),
    (lambda: L.GlobalAveragePooling2D(), (4, 5, 6), (6,)),
    (lambda: L.Flatten(), (4, 5, 6), (120,)),
    (lambda: L.Reshape((-1, 3)), (4, 5, 6), (40, 3)),
    (lambda: L.Dense(7), (4, 5), (4, 7)),
])
def test_keras_output_shapes(layer, shape, expected):
    assert tuple(layer().compute_output_shape((None,) + shape)) == (None,) + expected


def test_keras_default_names_and_options():
    for layer, base in [(L.Conv2D(1, 1), "conv2d"), (L.MaxPooling2D(), "max_pooling2d"),
                        (L.AveragePooling2D(), "average_pooling2d"),
                        (L.GlobalAveragePooling2D(), "global_average_pooling2d"),
                        (L.LeakyReLU(), "leaky_re_lu"), (L.ReLU(), "re_lu"),
                        (L.Softmax(), "softmax"),
                        (L.BatchNormalization(), "batch_normalization"),
                        (L.Dense(1), "dense"), (L.Concatenate(), "concatenate")]:
        assert layer.name == base or layer.name.startswith(base + "_"), (layer.name, base)
    a, b = L.Dense(2), L.Dense(2)
    assert a.name != b.name
    assert L.Conv2D(2, 3, padding="SAME").padding == "same"      # case-insensitive, as Keras
    assert L.LeakyReLU().get_config()["negative_slope"] == 0.3


# ---- models: configuration round trips ----------------------------------------------------

def sequential_model():
    return pynn.Sequential([L.Input((6,)), L.Dense(8, activation="relu"), L.LeakyReLU(0.1),
                            L.BatchNormalization(), L.Dropout(0.25, seed=3),
                            L.Dense(3, activation="softmax")], name="seq")


def graph_model():
    """Two inputs, a shared layer, a frozen nested Sequential, a nested functional base with
    batch normalization called with training=False, merges and two outputs."""
    base_in = pynn.Input((5,), name="base_in")
    h = L.Dense(5, activation="tanh", name="base_dense")(base_in)
    base = pynn.Model(base_in, L.BatchNormalization(name="base_bn")(h), name="base")
    frozen = pynn.Sequential([L.Dense(5, activation="relu", name="frozen_dense")],
                             name="frozen")
    frozen.build((None, 5))
    frozen.trainable = False
    a, b = pynn.Input((5,), name="a"), pynn.Input((5,), name="b")
    shared = L.Dense(5, activation="sigmoid", name="shared")
    ha, hb = shared(a), shared(b)
    left = base(ha, training=False)
    right = frozen(hb)
    joined = L.Concatenate(name="joined")([L.Add(name="sum")([left, right]),
                                           L.Multiply(name="product")([ha, hb])])
    head = L.Dense(4, name="head")
    head.trainable = False
    scores = L.Dense(3, activation="softmax", name="scores")(head(joined))
    value = L.Dense(1, name="value")(L.Dropout(0.5, seed=1)(left))
    return pynn.Model([a, b], [scores, value], name="graph")


def graph_data(n=6):
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(n, 5)).astype(np.float32) for _ in range(2)]
    return xs, [rng.integers(0, 3, size=n), rng.normal(size=(n, 1)).astype(np.float32)]


def seq_data(n=6):
    rng = np.random.default_rng(6)
    return [rng.normal(size=(n, 6)).astype(np.float32)], [rng.integers(0, 3, size=n)]


MODELS = {"sequential": (sequential_model, seq_data,
                         dict(loss="sparse_categorical_crossentropy")),
          "graph": (graph_model, graph_data,
                    dict(loss=["sparse_categorical_crossentropy", "mse"]))}


def all_layers(model):
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, pynn.Model):
            out += all_layers(layer)
    return out


def assert_same_model(clone, model, xs):
    """Same architecture, flags and (given the same weights) the same outputs."""
    assert clone.get_config() == model.get_config()
    assert [(type(l), l.name, l.trainable) for l in all_layers(clone)] == \
        [(type(l), l.name, l.trainable) for l in all_layers(model)]
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]
    assert [v.path for v in clone.trainable_weights] == [v.path for v in model.trainable_weights]
    clone.set_weights(model.get_weights())
    got, want = clone.predict(xs, verbose=0), model.predict(xs, verbose=0)
    for g, w in zip(got if isinstance(got, list) else [got],
                    want if isinstance(want, list) else [want]):
        assert_bitwise(g, w)


def assert_same_training(clone, model, xs, ys, compile_args):
    """One step of each: bitwise the same weights (frozen flags and training=False calls
    behave alike), the frozen ones unchanged."""
    frozen = [v.numpy() for v in model.non_trainable_weights]
    for m in (model, clone):
        m.compile(optimizer=pynn.optimizers.Adam(0.01), **compile_args)
        m.train_on_batch(xs, ys)
    for a, b in zip(clone.get_weights(), model.get_weights()):
        assert_bitwise(a, b)
    moved = [v.path for v, before in zip(model.non_trainable_weights, frozen)
             if not np.array_equal(v.numpy(), before)]
    # only statistics of batch normalization called in training mode may move
    assert all(p.endswith(("moving_mean", "moving_variance")) and not p.startswith("base_bn")
               for p in moved), moved


@pytest.mark.parametrize("name", list(MODELS))
def test_model_config_round_trip(name):
    make, data, compile_args = MODELS[name]
    model = make()
    xs, ys = data()
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(model).from_config(json.loads(json.dumps(config)))
    assert type(clone) is type(model)
    assert_same_model(clone, model, xs if len(xs) > 1 else xs[0])
    assert_same_training(clone, model, xs if len(xs) > 1 else xs[0],
                         ys if len(ys) > 1 else ys[0], compile_args)


@pytest.mark.parametrize("name", list(MODELS))
def test_model_to_json_round_trip(name):
    make, data, compile_args = MODELS[name]
    model = make()
    xs, ys = data()
    clone = pynn.models.model_from_json(model.to_json())
    assert type(clone) is type(model)
    assert_same_model(clone, model, xs if len(xs) > 1 else xs[0])
    assert_same_training(clone, model, xs if len(xs) > 1 else xs[0],
                         ys if len(ys) > 1 else ys[0], compile_args)


def test_graph_config_keeps_shared_calls_and_training_arguments():
    config = graph_model().get_config()
    entries = {e["name"]: e for e in config["layers"]}
    assert len(entries["shared"]["inbound_nodes"]) == 2
    assert entries["base"]["inbound_nodes"][0]["kwargs"] == {"training": False}
    assert entries["base"]["class_name"] == "Functional"
    assert entries["frozen"]["class_name"] == "Sequential"
    assert entries["frozen"]["config"]["trainable"] is False
    assert entries["head"]["config"]["trainable"] is False
    assert config["input_layers"] == [["a", 0, 0], ["b", 0, 0]]


def test_unbuilt_sequential_config_round_trip():
    model = pynn.Sequential([L.Dense(4, activation="relu"), L.Dense(2)], name="lazy")
    clone = pynn.Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert not clone.built and [l.get_config() for l in clone.layers] == \
        [l.get_config() for l in model.layers]
    x = np.ones((2, 3), np.float32)
    model(x)
    clone(x)
    clone.set_weights(model.get_weights())
    assert_bitwise(clone.predict(x, verbose=0), model.predict(x, verbose=0))


# ---- refused arguments ---------------------------------------------------------------------

BAD_ARGUMENTS = [
    (lambda: L.Dense(0), ValueError, ["units", "units=0"]),
    (lambda: L.Dense(-2), ValueError, ["units=-2"]),
    (lambda: L.Dense(2.5), ValueError, ["units=2.5"]),
    (lambda: L.Dense("8"), ValueError, ["units='8'"]),
    (lambda: L.Dense(3, activation="relux"), ValueError, ["activation", "'relux'", "relu"]),
    (lambda: L.Dense(3, activation=5), TypeError, ["activation", "5"]),
    (lambda: L.Dense(3, kernel_initializer="glorot"), ValueError,
     ["kernel_initializer", "'glorot'", "glorot_uniform"]),
    (lambda: L.Dense(3, bias_initializer=3.0), TypeError, ["bias_initializer", "3.0"]),
    (lambda: L.Dense(3, input_shape=(0,)), ValueError, ["input_shape", "(0,)"]),
    (lambda: L.Dense(3, kernel_regularizer="l3"), ValueError, ["kernel_regularizer", "'l3'"]),
    (lambda: L.Dense(3, name=""), ValueError, ["name", "''"]),
    (lambda: L.Dense(3, trainable="yes"), ValueError, ["trainable", "'yes'"]),
    (lambda: L.Dense(3, dtype="float64"), ValueError, ["dtype", "'float64'"]),
    (lambda: L.Dense(3, unit=4), TypeError, ["unit"]),
    (lambda: L.Activation("swishy"), ValueError, ["activation", "'swishy'"]),
    (lambda: L.LeakyReLU(-0.1), ValueError, ["negative_slope", "-0.1"]),
    (lambda: L.LeakyReLU(float("nan")), ValueError, ["negative_slope", "nan"]),
    # activations (engineer A): max_value, threshold and any axis are supported now
    (lambda: L.ReLU(max_value=-6.0), ValueError, ["max_value", "-6.0"]),
    (lambda: L.ReLU(negative_slope=-1.0), ValueError, ["negative_slope", "-1.0"]),
    (lambda: L.Softmax(axis=None), ValueError, ["axis", "None"]),
    (lambda: L.Softmax(axis=3)(pynn.Input((3, 4))), ValueError,
     ["Softmax", "axis=3", "rank 3"]),
    (lambda: L.Input((3, -1)), ValueError, ["shape", "(3, -1)"]),
    (lambda: L.Input((3,), batch_size=0), ValueError, ["batch_size", "0"]),
    (lambda: L.Conv2D(0, 3), ValueError, ["filters", "filters=0"]),
    (lambda: L.Conv2D(2.5, 3), ValueError, ["filters=2.5"]),
    (lambda: L.Conv2D(4, 0), ValueError, ["kernel_size", "kernel_size=0"]),
    (lambda: L.Conv2D(4, (3, 3, 3)), ValueError, ["kernel_size=(3, 3, 3)"]),
    (lambda: L.Conv2D(4, 3, strides=0), ValueError, ["strides=0"]),
    (lambda: L.Conv2D(4, 3, padding="full"), ValueError, ["padding='full'"]),
    (lambda: L.Conv2D(4, 3, padding="causal"), ValueError, ["padding='causal'"]),
    # engineer B: channels_first, dilation and groups are supported; their bad values are not
    (lambda: L.Conv2D(4, 3, data_format="channels_middle"), ValueError,
     ["data_format='channels_middle'", "channels_last"]),
    (lambda: L.Conv2D(4, 3, strides=2, dilation_rate=2), ValueError,
     ["dilation_rate=(2, 2)", "strides=(2, 2)"]),
    (lambda: L.Conv2D(4, 3, groups=3), ValueError, ["groups=3", "filters=4"]),
    (lambda: L.Conv2D(4, 3, activation="swishy"), ValueError, ["activation", "'swishy'"]),
    (lambda: L.MaxPooling2D(pool_size=-1), ValueError, ["pool_size=-1"]),
    (lambda: L.AveragePooling2D(strides=(1, 0)), ValueError, ["strides=(1, 0)"]),
    (lambda: L.MaxPooling2D(padding="SAME!"), ValueError, ["padding='SAME!'"]),
    (lambda: L.GlobalAveragePooling2D(data_format="channels_first"), ValueError,
     ["data_format='channels_first'"]),
    (lambda: L.Flatten(data_format="channels_first"), ValueError,
     ["data_format='channels_first'"]),
    (lambda: L.Dropout(1.0), ValueError, ["rate=1.0"]),
    (lambda: L.Dropout(-0.1), ValueError, ["rate=-0.1"]),
    (lambda: L.Dropout("half"), ValueError, ["rate='half'"]),
    (lambda: L.Dropout(0.5, seed=-1), ValueError, ["seed=-1"]),
    (lambda: L.Dropout(0.5, noise_shape=(None, 0)), ValueError, ["noise_shape", "(None, 0)"]),
    (lambda: L.BatchNormalization(momentum=1.5), ValueError, ["momentum=1.5"]),
    (lambda: L.BatchNormalization(epsilon=0), ValueError, ["epsilon=0"]),
    (lambda: L.BatchNormalization(axis="x"), ValueError, ["axis='x'"]),
    (lambda: L.Reshape((0, 3)), ValueError, ["target_shape=(0, 3)"]),
    (lambda: L.Reshape((-1, -1)), ValueError, ["target_shape=(-1, -1)"]),
    (lambda: L.Concatenate(axis=1.5), ValueError, ["axis=1.5"]),
    # types are checked, not coerced (a file's config goes through the same checks)
    (lambda: L.Dense(3, use_bias="no"), ValueError, ["use_bias", "boolean", "use_bias='no'"]),
    (lambda: L.Dense(3, use_bias=0), ValueError, ["use_bias", "use_bias=0"]),
    (lambda: L.Dense(True), ValueError, ["units=True"]),
    (lambda: L.Dense(2**31), ValueError, ["units", "at most 2147483647", "units=2147483648"]),
    (lambda: L.Conv2D(4, 3, use_bias="yes"), ValueError, ["use_bias='yes'"]),
    (lambda: L.Conv2D(4, 2**31), ValueError, ["kernel_size=2147483648"]),
    (lambda: L.Conv2D(4, 3, groups=1.0), ValueError, ["groups", "groups=1.0"]),
    (lambda: L.GlobalAveragePooling2D(keepdims="no"), ValueError, ["keepdims='no'"]),
    (lambda: L.BatchNormalization(center="no"), ValueError, ["center", "center='no'"]),
    (lambda: L.BatchNormalization(scale=1), ValueError, ["scale=1"]),
    (lambda: L.BatchNormalization(epsilon=1e308), ValueError, ["epsilon", "1e+308"]),
    (lambda: L.BatchNormalization(momentum=float("nan")), ValueError, ["momentum=nan"]),
    (lambda: L.Dropout(0.5, seed=2**70), ValueError, ["seed", str(2**70)]),
    (lambda: L.Dropout(0.5, noise_shape=(None, 2**40)), ValueError, ["noise_shape"]),
    (lambda: L.LeakyReLU(1e308), ValueError, ["negative_slope", "1e+308"]),
    (lambda: L.Input((2**16, 2**16)), ValueError, ["shape", "at most 2147483647 values",
                                                   "(65536, 65536)"]),
    (lambda: L.Input((3,), sparse="no"), ValueError, ["sparse='no'"]),
    (lambda: L.Input((3,), batch_size=2.0), ValueError, ["batch_size=2.0"]),
    (lambda: L.Reshape((2**20, 2**20)), ValueError, ["target_shape", "(1048576, 1048576)"]),
    (lambda: L.Concatenate(axis=10**9), ValueError, ["axis=1000000000"]),
    (lambda: L.Dense(3, name=["x"] * 10**6), ValueError, ["name", "'x', '..."]),
    (lambda: L.Dense(3, kernel_initializer={"class_name": "RandomNormal",
                                            "config": {"stddev": "1"}}), ValueError,
     ["kernel_initializer", "stddev='1'"]),
    (lambda: L.Dense(3, kernel_initializer={"class_name": "HeNormal", "config": {"seed": -1}}),
     ValueError, ["kernel_initializer", "seed=-1"]),
    (lambda: L.Dense(3, kernel_initializer={"class_name": ["x"]}), ValueError,
     ["kernel_initializer", "class_name"]),
    (lambda: L.Dense(3, bias_initializer={"class_name": "Zeros", "config": {"mean": 1}}),
     ValueError, ["bias_initializer", "mean"]),
    (lambda: pynn.Sequential([L.Dense(2), "dense"]), ValueError, ["layer", "'dense'"]),
    (lambda: pynn.Sequential(L.Dense(2)), TypeError, ["list of layers", "Dense"]),
    (lambda: pynn.Model(None, None), ValueError, ["inputs=None", "outputs=None"]),
    (lambda: pynn.Sequential([L.Dense(2, name="a"), L.Dense(2, name="a")]), ValueError,
     ["unique", "'a'"]),
]


@pytest.mark.parametrize("make,exc,words", BAD_ARGUMENTS)
def test_constructors_refuse_bad_arguments_naming_them(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("make,shape,words", [
    (lambda: L.Conv2D(2, 3, name="c"), (10,), ["'c'", "ndim=4", "(None, 10)"]),
    (lambda: L.MaxPooling2D(name="p"), (4, 4), ["'p'", "ndim=4", "(None, 4, 4)"]),
    (lambda: L.Conv2D(2, 5, name="c"), (4, 4, 1), ["'c'", "does not fit", "(4, 4)"]),
    (lambda: L.MaxPooling2D((4, 2), name="p"), (3, 8, 1), ["'p'", "does not fit", "(3, 8)"]),
    (lambda: L.Reshape((3, 3), name="r"), (4, 4, 2), ["'r'", "cannot reshape",
                                                      "(None, 4, 4, 2)"]),
    (lambda: L.BatchNormalization(axis=1, name="bn"), (4, 4, 2), ["'bn'", "last axis",
                                                                  "axis=1"]),
    (lambda: L.GlobalAveragePooling2D(name="g"), (8,), ["'g'", "height, width, channels",
                                                        "(None, 8)"]),
    (lambda: L.Dropout(0.5, noise_shape=(None, 3), name="do"), (4,), ["'do'", "(None, 3)",
                                                                      "(None, 4)"]),
])
def test_inputs_a_layer_cannot_take_are_refused_naming_it(make, shape, words):
    with pytest.raises(ValueError) as info:
        make()(pynn.Input(shape))
    for w in words:
        assert w in str(info.value), (w, str(info.value))
