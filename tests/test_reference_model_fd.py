"""The NumPy reference, composed into a whole multi-layer model's backward pass,
checked against float64 central finite differences of its own forward pass."""
import numpy as np
import pytest

from pynn.backend import reference as ref


def forward(weights, acts, x):
    saved, a = [], x
    for i, act in enumerate(acts):
        z = ref.gemm(a, weights[2 * i]) + weights[2 * i + 1]
        y = ref.activation_forward(z, act)
        saved.append((a, z, y))
        a = y
    return a, saved


def backward(weights, acts, saved, grad):
    grads = [None] * len(weights)
    for i in reversed(range(len(acts))):
        a, z, y = saved[i]
        dz = ref.activation_backward(z, y, grad, acts[i])
        grads[2 * i] = ref.gemm(a, dz, transpose_a=True)
        grads[2 * i + 1] = ref.bias_grad(dz)
        grad = ref.gemm(dz, weights[2 * i], transpose_b=True)
    return grads


@pytest.mark.parametrize("acts,kind,from_logits", [
    (["relu", "tanh", "softmax"], "cce", False),
    (["gelu", "sigmoid", "linear"], "cce", True),
    (["leaky_relu", "softmax", "sigmoid"], "bce", False),
    (["tanh", "relu", "linear"], "mse", False),
    (["sigmoid", "gelu", "linear"], "scce", True),
])
def test_whole_model_gradient_matches_finite_differences(acts, kind, from_logits):
    rng = np.random.default_rng(5)
    sizes = [5, 6, 4, 3]
    weights = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        weights += [rng.normal(0, 0.6, size=(a, b)), rng.normal(0, 0.2, size=(b,))]
    x = rng.normal(size=(7, 5))
    if kind == "scce":
        target = rng.integers(0, 3, size=7)
    elif kind == "mse":
        target = rng.normal(size=(7, 3))
    else:
        target = np.eye(3)[rng.integers(0, 3, size=7)]

    def loss_value(ws):
        out, _ = forward(ws, acts, x)
        if kind == "scce":
            return ref.sparse_cce(out, target, from_logits)[0]
        return ref.loss(out, target, kind, from_logits)[0]

    out, saved = forward(weights, acts, x)
    if kind == "scce":
        _, g = ref.sparse_cce(out, target, from_logits)
    else:
        _, g = ref.loss(out, target, kind, from_logits)
    grads = backward(weights, acts, saved, g)
    h = 1e-6
    for w, gw in zip(weights, grads):
        fd = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + h
            up = loss_value(weights)
            w[idx] = old - h
            down = loss_value(weights)
            w[idx] = old
            fd[idx] = (up - down) / (2 * h)
        # float64 central differences: truncation ~h^2, rounding ~1e-16/h = 1e-10
        np.testing.assert_allclose(gw, fd, rtol=1e-5, atol=1e-8)
