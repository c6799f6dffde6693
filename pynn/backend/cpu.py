"""The `cpu` backend: pynn's C/OpenMP kernels (csrc/) through the Cython layer pynn._core.

Arrays are NumPy arrays; each method is one call into C with the GIL released."""
from .. import _core
from .base import HostBackend

ACTIVATION_IDS = {
    "linear": _core.ACT_LINEAR, "relu": _core.ACT_RELU, "leaky_relu": _core.ACT_LEAKY_RELU,
    "sigmoid": _core.ACT_SIGMOID, "tanh": _core.ACT_TANH, "softmax": _core.ACT_SOFTMAX,
    "gelu": _core.ACT_GELU,
}
LOSS_IDS = {"mse": _core.LOSS_MSE, "bce": _core.LOSS_BCE, "cce": _core.LOSS_CCE}


def _flat(a):
    return a.reshape(-1)


class CpuBackend(HostBackend):
    name = "cpu"

    def matmul(self, a, b, transpose_a, transpose_b, out):
        _core.sgemm(out, a, b, transpose_a, transpose_b)

    def dense_forward(self, x, w, b, activation, alpha, z, y):
        _core.sgemm_bias_act(z, y, x, w, b, False, False, ACTIVATION_IDS[activation], alpha)

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        # the activation derivative and the bias gradient share one pass over dz
        if db is not None:
            _core.activation_backward_bias_grad(dy, db, z, y, dy, ACTIVATION_IDS[activation], alpha)
        else:
            _core.activation_backward(dy, z, y, dy, ACTIVATION_IDS[activation], alpha)
        _core.sgemm(dw, x, dy, True, False)          # dW = x^T dz
        if dx is not None:
            _core.sgemm(dx, dy, w, False, True)      # dx = dz W^T

    def bias_grad(self, dz, out):
        _core.bias_grad(out, dz)

    def activation_forward(self, x, activation, alpha, out):
        _core.activation_forward(out, x, ACTIVATION_IDS[activation], alpha)

    def activation_backward(self, x, y, dy, activation, alpha, out):
        _core.activation_backward(out, x, y, dy, ACTIVATION_IDS[activation], alpha)

    def loss(self, kind, pred, target, from_logits, grad):
        if kind == "scce":
            return _core.sparse_cce(grad, pred, target, from_logits)
        return _core.loss(grad, pred, target, LOSS_IDS[kind], from_logits)

    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        _core.sgd_update(_flat(w), None if m is None else _flat(m), _flat(g), lr, momentum, nesterov)

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        _core.adam_update(_flat(w), _flat(m), _flat(v), _flat(g), lr_t, beta1, beta2, epsilon)

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        _core.rmsprop_update(_flat(w), _flat(v), None if mom is None else _flat(mom), _flat(g),
                             lr, rho, momentum, epsilon)
