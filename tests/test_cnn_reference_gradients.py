"""The NumPy reference of every CNN kernel against float64 central finite differences:
each backward is the derivative of its forward."""
import numpy as np
import pytest

from pynn.backend import reference as ref
from pynn.layers.conv import output_size

H = 1e-6


def geometry(h, w, window, strides, padding):
    (oh, pt), (ow, pl) = (output_size(s, k, st, padding)
                          for s, k, st in zip((h, w), window, strides))
    return (oh, ow), (pt, pl)


def numeric_grad(f, arr, rng, samples=25):
    """(indices, d f / d arr at those indices) for a few random entries."""
    flat = arr.reshape(-1)
    idx = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
    out = []
    for i in idx:
        old = flat[i]
        flat[i] = old + H
        up = f()
        flat[i] = old - H
        down = f()
        flat[i] = old
        out.append((up - down) / (2 * H))
    return idx, np.array(out)


CASES = [((2, 6, 5, 3), (3, 2), (1, 1), "valid"), ((1, 7, 7, 2), (3, 3), (2, 2), "same"),
         ((2, 5, 8, 1), (2, 4), (3, 2), "same"), ((1, 9, 4, 2), (4, 1), (2, 3), "valid")]


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "softmax"])
@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_conv2d_backward_is_the_derivative(shape, window, strides, padding, activation):
    rng = np.random.default_rng(sum(shape))
    (oh, ow), pads = geometry(shape[1], shape[2], window, strides, padding)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(window + (shape[3], 4))
    b = rng.standard_normal(4)
    probe = rng.standard_normal((shape[0], oh, ow, 4))

    def f():
        return float((ref.conv2d_forward(x, w, b, strides, pads, (oh, ow), activation)[2] * probe).sum())

    _, z, y = ref.conv2d_forward(x, w, b, strides, pads, (oh, ow), activation)
    _, dw, db, dx = ref.conv2d_backward(x, w, z, y, probe.copy(), strides, pads, activation)
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        idx, num = numeric_grad(f, arr, rng)
        np.testing.assert_allclose(grad.reshape(-1)[idx], num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_pooling_backward_is_the_derivative(shape, window, strides, padding, kind):
    rng = np.random.default_rng(sum(shape) + 1)
    (oh, ow), pads = geometry(shape[1], shape[2], window, strides, padding)
    x = rng.standard_normal(shape)
    probe = rng.standard_normal((shape[0], oh, ow, shape[3]))
    forward = getattr(ref, f"{kind}pool2d_forward")

    def f():
        return float((forward(x, window, strides, pads, (oh, ow)) * probe).sum())

    if kind == "max":
        dx = ref.maxpool2d_backward(x, probe, window, strides, pads)
    else:
        dx = ref.avgpool2d_backward(probe, x.shape, window, strides, pads)
    idx, num = numeric_grad(f, x, rng, samples=40)
    np.testing.assert_allclose(dx.reshape(-1)[idx], num, rtol=1e-5, atol=1e-7)


def test_global_average_pooling_backward_is_the_derivative():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    probe = rng.standard_normal((2, 5))
    dx = ref.global_avgpool2d_backward(probe, x.shape)
    idx, num = numeric_grad(lambda: float((ref.global_avgpool2d_forward(x) * probe).sum()), x, rng)
    np.testing.assert_allclose(dx.reshape(-1)[idx], num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_backward_is_the_derivative(affine):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 4)) * 2 + 1
    gamma, beta = (rng.standard_normal(4), rng.standard_normal(4)) if affine else (None, None)
    probe = rng.standard_normal((9, 4))
    ones, zeros = np.ones(4), np.zeros(4)

    def f():
        return float((ref.batchnorm_forward_train(x, gamma, beta, zeros, ones, 0.99, 1e-3)[0]
                      * probe).sum())

    _, mean, inv_std, _, _ = ref.batchnorm_forward_train(x, gamma, beta, zeros, ones, 0.99, 1e-3)
    dgamma, dbeta, dx = ref.batchnorm_backward(x, gamma, mean, inv_std, probe)
    pairs = [(x, dx)] + ([(gamma, dgamma), (beta, dbeta)] if affine else [])
    for arr, grad in pairs:
        idx, num = numeric_grad(f, arr, rng)
        np.testing.assert_allclose(grad.reshape(-1)[idx], num, rtol=1e-5, atol=1e-7)
