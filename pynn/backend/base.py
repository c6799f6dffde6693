"""The backend interface: every number a model computes goes through these methods.

Layers and models call only these; they never touch NumPy math or C directly, and they
never ask where an array lives.  A backend array is whatever the backend keeps (a NumPy
array for `numpy` and `cpu`, a device array for `cuda`); it crosses to the host only
through `to_host`.

Conventions: float32, row-major, C-contiguous; outputs are allocated by the caller
(`empty`/`zeros`) and passed in, so a training step reuses its buffers.  Activation names
come from `pynn.activations`; loss kinds are "mse", "bce", "cce" and "scce" (integer labels).
"""
import numpy as np


class Backend:
    name = None

    # ---- arrays ------------------------------------------------------------------
    def from_host(self, x):
        """A backend array with the contents of the NumPy array `x` (float32 or int64,
        C-contiguous); may share memory with `x` where the backend lives on the host."""
        raise NotImplementedError

    def to_host(self, a):
        """A NumPy array with the contents of `a` (may be a view: copy before keeping)."""
        raise NotImplementedError

    def empty(self, shape, dtype=np.float32):
        raise NotImplementedError

    def zeros(self, shape, dtype=np.float32):
        raise NotImplementedError

    def copy_from_host(self, dst, src):
        """dst[...] = src (src a NumPy array of the same shape)."""
        raise NotImplementedError

    def view(self, flat, start, shape):
        """The elements flat[start : start + prod(shape)] of a 1-D array, as an array of
        `shape` sharing its memory."""
        n = 1
        for d in shape:
            n *= d
        return flat[start:start + n].reshape(shape)

    # ---- kernels -------------------------------------------------------------------
    def matmul(self, a, b, transpose_a, transpose_b, out):
        """out = op(a) @ op(b)."""
        raise NotImplementedError

    def dense_forward(self, x, w, b, activation, alpha, z, y):
        """z = x @ w + b (b may be None); y = activation(z).  y may be z."""
        raise NotImplementedError

    def bias_grad(self, dz, out):
        """out = column sums of dz."""
        raise NotImplementedError

    def activation_forward(self, x, activation, alpha, out):
        raise NotImplementedError

    def activation_backward(self, x, y, dy, activation, alpha, out):
        """out = activation'(x) applied to dy (y = activation(x)); out may be dy."""
        raise NotImplementedError

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        """Backward of dense_forward.  dy is overwritten with dz; db and dx may be None."""
        self.activation_backward(z, y, dy, activation, alpha, dy)
        self.matmul(x, dy, True, False, dw)          # dW = x^T dz
        if db is not None:
            self.bias_grad(dy, db)                   # db = column sums of dz
        if dx is not None:
            self.matmul(dy, w, False, True, dx)      # dx = dz W^T

    def loss(self, kind, pred, target, from_logits, grad):
        """The batch-mean loss as a Python float; grad (may be None) = d loss / d pred."""
        raise NotImplementedError

    # ---- optimizers (in place; Keras 3 rules, see csrc/pynn.h) ----------------------
    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        raise NotImplementedError

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        raise NotImplementedError

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        raise NotImplementedError

    def __repr__(self):
        return f"<pynn backend {self.name!r}>"


class HostBackend(Backend):
    """Shared array handling of the backends whose arrays are NumPy arrays."""

    def from_host(self, x):
        if x.dtype not in (np.float32, np.int64):
            x = x.astype(np.float32)
        return np.ascontiguousarray(x)

    def to_host(self, a):
        return a

    def empty(self, shape, dtype=np.float32):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)

    def copy_from_host(self, dst, src):
        np.copyto(dst, src, casting="same_kind")
