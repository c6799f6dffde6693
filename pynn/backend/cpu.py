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

    def _scratch(self, tag, shape):
        """A reusable host array per (tag, shape) for kernels that need a temporary."""
        cache = self.__dict__.setdefault("_scratch_arrays", {})
        key = (tag, tuple(shape))
        if key not in cache:
            if len(cache) > 32:
                cache.clear()
            cache[key] = self.empty(shape)
        return cache[key]

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

    # ---- convolution: im2col into the GEMM, col2im back ---------------------------
    # Layers with a tiny kernel (a first layer over few channels) skip im2col: the direct
    # kernel builds each output row's windows on the stack (conv_direct.c; the rule is a
    # fixed one on the kernel's shape and the activation).
    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        kh, kw, c, f = w.shape
        act = ACTIVATION_IDS[activation]
        if _core.conv2d_direct_supported(w.shape, act):
            _core.conv2d_direct_forward(z, y, x, w, b, strides, padding, act, alpha)
            return
        _core.im2col(cols, x, (kh, kw), strides, padding, z.shape[1:3])
        _core.sgemm_bias_act(z.reshape(-1, f), y.reshape(-1, f), cols, w.reshape(kh * kw * c, f),
                             b, False, False, ACTIVATION_IDS[activation], alpha)

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        dw, db, dx):
        kh, kw, c, f = w.shape
        dz = dy.reshape(-1, f)
        act = ACTIVATION_IDS[activation]
        if _core.conv2d_direct_supported(w.shape, act):
            # cols, unused by the direct forward, holds the gradient's partial sums when it is
            # big enough (always, but for degenerate shapes): no allocation per step
            _core.conv2d_direct_backward_filter(dw, db, dy, x, z, y, dy, strides, padding, act,
                                                alpha, cols.reshape(-1))
            if dx is not None:
                _core.sgemm(cols, dz, w.reshape(kh * kw * c, f), False, True)   # dcols = dz W^T
                _core.col2im(dx, cols, (kh, kw), strides, padding, z.shape[1:3])
            return
        if db is not None:
            _core.activation_backward_bias_grad(dz, db, z.reshape(-1, f), y.reshape(-1, f), dz,
                                                act, alpha)
        else:
            _core.activation_backward(dz, z.reshape(-1, f), y.reshape(-1, f), dz, act, alpha)
        # dW^T = dz^T cols (F x KH*KW*C), then transposed into dW: the GEMM splits M and N,
        # and this orientation puts the long side (the kernel's rows) on N, where the
        # micro-kernel's wide NR tile is filled, instead of the few filters.
        # K (the batch's output positions) is long and the output small: the product is
        # cut along K into chunks fixed by the shape, one thread each (sgemm_ksplit).
        dw_t = self._scratch("conv_dw_t", (f, kh * kw * c))
        rows = dz.shape[0]
        partials = self._scratch("conv_dw_partials",
                                 (_core.sgemm_ksplit_chunks(f, kh * kw * c, rows) * f * kh * kw * c,))
        _core.sgemm_ksplit(dw_t, partials, dz, cols, True, False)
        dw.reshape(kh * kw * c, f)[...] = dw_t.T
        if dx is not None:
            _core.sgemm(cols, dz, w.reshape(kh * kw * c, f), False, True)   # dcols = dz W^T
            _core.col2im(dx, cols, (kh, kw), strides, padding, z.shape[1:3])

    # ---- pooling -------------------------------------------------------------------
    def maxpool2d_forward(self, x, pool_size, strides, padding, y):
        _core.maxpool2d_forward(y, x, pool_size, strides, padding)

    def maxpool2d_backward(self, x, y, dy, pool_size, strides, padding, dx):
        _core.maxpool2d_backward(dx, x, y, dy, pool_size, strides, padding)

    def avgpool2d_forward(self, x, pool_size, strides, padding, y):
        _core.avgpool2d_forward(y, x, pool_size, strides, padding)

    def avgpool2d_backward(self, dy, pool_size, strides, padding, dx):
        _core.avgpool2d_backward(dx, dy, pool_size, strides, padding)

    def global_avgpool2d_forward(self, x, y):
        _core.global_avgpool2d_forward(y, x)

    def global_avgpool2d_backward(self, dy, dx):
        _core.global_avgpool2d_backward(dx, dy)

    # ---- batch normalization and dropout ---------------------------------------------
    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        _core.batchnorm_forward_train(y, mean, inv_std, moving_mean, moving_variance, x, gamma,
                                      beta, momentum, epsilon)

    def batchnorm_forward_infer(self, x, gamma, beta, moving_mean, moving_variance, epsilon, y):
        _core.batchnorm_forward_infer(y, x, gamma, beta, moving_mean, moving_variance, epsilon)

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        _core.batchnorm_backward(dx, dgamma, dbeta, x, gamma, mean, inv_std, dy)

    def dropout_forward(self, x, mask, y):
        _core.multiply(_flat(y), _flat(x), _flat(mask))

    def dropout_backward(self, dy, mask, dx):
        _core.multiply(_flat(dx), _flat(dy), _flat(mask))
