"""One SGD and one Adam step of three graphs, on every backend, against PyTorch's autograd.

  ResNet-style   two residual blocks (Conv2D, BatchNormalization, Add), global pooling;
  two branches   a Concatenate of two branches, two outputs with weighted losses;
  shared layer   one Dense called on two inputs (its gradients summed), then merges.

The gradients come from tests/torch_mirror.py (the same graph written in torch, float64);
the update rules are Keras 3's, applied here in float64.  Each weight's update is compared
with the expected one to 2e-4 of its largest entry (the issue's bound: float32 steps
through a few layers of small sums, RTOL_SUMS with a factor 2 for the ResNet's depth), and
Adam's first moment m = (1 - beta_1) g checks the gradient values themselves (Adam's
first step is nearly lr * sign(g)).
"""
import numpy as np
import pytest

import pynn
from pynn import layers as L

from conftest import assert_close

torch_mirror = pytest.importorskip("torch_mirror")

RTOL = 2e-4


def resnet(small):
    size, filters = (4, 2) if small else (6, 4)
    inp = pynn.Input((size, size, 3))
    x = L.Conv2D(filters, 3, padding="same", activation="relu")(inp)
    for _ in range(2):
        y = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization()(y)
        y = L.Activation("relu")(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3, activation="softmax")(x)
    model = pynn.Model(inp, out)
    rng = np.random.default_rng(1)
    n = 3 if small else 5
    x = rng.normal(size=(n, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    return model, [x], [y], {"loss": "sparse_categorical_crossentropy"}


def two_branches(small):
    inp = pynn.Input((10,))
    h = L.Dense(16, activation="relu")(inp)
    a = L.Dense(8, activation="tanh", name="branch_a")(h)
    b = L.Dense(8, activation="sigmoid", name="branch_b")(h)
    joined = L.Concatenate()([a, b])
    joined = L.Dense(6, activation="relu")(joined)
    out1 = L.Dense(3, activation="softmax", name="classes")(joined)
    out2 = L.Dense(1, name="value")(a)
    model = pynn.Model(inp, [out1, out2])
    rng = np.random.default_rng(2)
    n = 4 if small else 9
    x = rng.normal(size=(n, 10)).astype(np.float32)
    y1 = rng.integers(0, 3, size=n)
    y2 = rng.normal(size=(n, 1)).astype(np.float32)
    return model, [x], [y1, y2], {"loss": {"classes": "sparse_categorical_crossentropy",
                                           "value": "mse"},
                                  "loss_weights": {"classes": 1.0, "value": 0.5}}


def shared_layer(small):
    a, b = pynn.Input((5,), name="left"), pynn.Input((5,), name="right")
    shared = L.Dense(7, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)
    prod = L.Multiply()([ha, hb])
    peak = L.Maximum()([ha, prod])
    mixed = L.Concatenate()([L.Subtract()([peak, hb]), L.Average()([ha, hb])])
    out = L.Dense(1, activation="sigmoid")(mixed)
    model = pynn.Model([a, b], out)
    rng = np.random.default_rng(3)
    n = 4 if small else 8
    xa, xb = (rng.normal(size=(n, 5)).astype(np.float32) for _ in range(2))
    y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    return model, [xa, xb], [y], {"loss": "binary_crossentropy"}


GRAPHS = {"resnet": resnet, "two_branches": two_branches, "shared_layer": shared_layer}


def expected_update(kind, g, lr):
    if kind == "sgd":
        return -lr * g, None
    b1, b2, eps = 0.9, 0.999, 1e-7
    m, v = (1 - b1) * g, (1 - b2) * g * g
    lr_t = lr * np.sqrt(1 - b2) / (1 - b1)
    return -lr_t * m / (np.sqrt(v) + eps), m


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_step_matches_torch(graph, optimizer, backend_name):
    pynn.utils.set_random_seed(7)
    model, xs, ys, compile_args = GRAPHS[graph](small=backend_name == "cuda")
    w0 = {id(v): v.numpy().astype(np.float64) for v in model.weights}
    specs = compile_args
    lr = 0.1 if optimizer == "sgd" else 0.01
    opt = pynn.optimizers.SGD(lr) if optimizer == "sgd" else pynn.optimizers.Adam(lr)
    model.compile(optimizer=opt, backend=backend_name, **specs)
    losses = [o.loss for o in model.engine.losses.outputs]
    weights = [o.weight for o in model.engine.losses.outputs]
    total, grads = torch_mirror.gradients(model, xs, ys, losses, weights)

    result = model.train_on_batch(xs if len(xs) > 1 else xs[0], ys if len(ys) > 1 else ys[0])
    loss = result[0] if isinstance(result, list) else result
    assert abs(loss - total) <= RTOL * abs(total), (loss, total)

    trainable = model.trainable_weights
    assert trainable, "the graph has trainable weights"
    state = model.optimizer.state_arrays() if optimizer == "adam" else None
    offsets = dict((id(v), start) for v, start in model.engine.store.layout.trainable_offsets)
    for v in trainable:
        step = v.numpy().astype(np.float64) - w0[id(v)]
        want, m = expected_update(optimizer, grads[id(v)], lr)
        # the update of a float32 weight is known to float32 rounding of the weight itself
        slack = 4 * np.finfo(np.float32).eps * np.abs(w0[id(v)]).max()
        scale = max(np.abs(want).max(), 1e-12)
        np.testing.assert_allclose(step, want, rtol=0, atol=RTOL * scale + slack,
                                   err_msg=f"{graph} {optimizer} {backend_name} {v.path}")
        if m is not None:
            start = offsets[id(v)]
            got_m = state["m"][start:start + v.size].reshape(v.shape)
            assert_close(got_m, m, rtol=RTOL, err_msg=f"m of {v.path}")


def test_shared_layer_has_one_set_of_weights():
    model, _, _, _ = shared_layer(small=True)
    shared = model.get_layer("shared")
    assert len(shared._inbound_nodes) == 2
    assert [v.path for v in model.weights].count("shared/kernel") == 1
    assert model.count_params() == sum(v.size for v in model.weights)
