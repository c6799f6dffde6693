"""The `cuda` backend: pynn's kernels as Numba CUDA kernels, every array resident on the GPU.

This package is the only part of pynn that imports numba; pynn.backend imports it lazily,
when backend "cuda" is asked for or `pynn.cuda_available()` is called.  Under Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1, set before numba is imported) the same kernels run as
Python threads, which is how CI tests them on machines without a GPU.

Its modules mirror csrc/, one family of kernels each, with their launch functions:
  runtime        numba's cuda (real or simulated), float32 constants, launch sizes, argument
                 checks, the per-backend device workspace
  elementwise    activations and their derivatives (device functions shared with the GEMM
                 epilogue), softmax rows, activation backward fused with the bias gradient,
                 fill, multiply, scale
  gemm           the tiled SGEMM with its bias + activation epilogue and its launch
                 configuration; Dense forward and backward on top of it
  reduction      the fixed-order sum over rows that the losses and the metrics share
  losses, metrics, optimizers
  convolution    im2col into the SGEMM, col2im back (and the NHWC window geometry)
  pooling        max / average / global-average pooling
  normalization  batch normalization
  merge          add, subtract, multiply, average, maximum, minimum; concatenation
  random         the counter-based uniforms of csrc/pynn.h, drawn on the device; dropout
  image          the geometric image ops: affine resampling, resize, flip, crop, and the
                 random per-image parameters of the augmentation layers
and this file assembles them into CudaBackend, the interface of pynn/backend/base.py, and
says whether the backend can run here (unavailable_reason).

Determinism: every output element is written by one thread, and every reduction (bias
gradient, loss, metric, batch-norm statistics) adds in an order fixed by the array shapes
alone; there are no atomics, so a run repeats bitwise.  The adjoints of gathers (col2im, the
pooling backwards) are gathers too: each input element sums what reaches it in a fixed
order, rather than each output scattering into its window.
"""
import threading

import numpy as np

from ..base import Backend, loss_option_kind
from . import (convolution, elementwise, gemm, image, losses, merge, metrics,
               normalization, optimizers, pixel, pooling, random, runtime)
from . import activations   # activations (engineer A)
from . import seq1d   # engineer D (#16): sequence ops
from . import regularizers  # engineer F: regularizers and constraints
from . import embedding          # engineer G
# transposed convolution, upsampling, padding, cropping (issue 16, part C)
from . import upsampling as _upsampling
from .runtime import SIMULATOR, cuda
from . import norm   # engineer E: normalization and noise layers
from . import conv_variants   # engineer B: convolution variants


class CudaBackend(Backend):
    """Backend arrays are Numba device arrays; nothing crosses to the host except through
    from_host / copy_from_host (in) and to_host / the loss and metric values (out).

    The methods are the kernel modules' functions; those that launch an SGEMM get the
    device's SM count (the tile choice), those that reduce get the calling thread's
    workspace: a reduction's partial sums live there only while its call runs, so calls
    from several threads (models trained or used side by side) each have their own."""
    name = "cuda"

    def __init__(self):
        if SIMULATOR:
            self.sm_count = 132        # as an H100, so tile choices match a real GPU's
        else:
            from ... import distributed
            if distributed.is_initialized() and len(cuda.gpus) > 0:
                # one GPU per rank of a machine (pynn.distributed): GPU local_rank()
                cuda.select_device(distributed.local_rank() % len(cuda.gpus))
            device = cuda.get_current_device()
            self.sm_count = int(device.MULTIPROCESSOR_COUNT)
        self._local = threading.local()

    @property
    def workspace(self):
        ws = getattr(self._local, "workspace", None)
        if ws is None:
            ws = self._local.workspace = runtime.Workspace()
        return ws

    # ---- arrays ----------------------------------------------------------------------------
    def from_host(self, x):
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.int64):
            x = x.astype(np.float32)
        return cuda.to_device(np.ascontiguousarray(x))

    def to_host(self, a):
        return a.copy_to_host()

    def empty(self, shape, dtype=np.float32):
        return cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        a = cuda.device_array(shape, dtype=dtype)
        elementwise.fill(a, 0)
        return a

    def copy_from_host(self, dst, src):
        src = np.ascontiguousarray(src, dtype=dst.dtype).reshape(np.shape(src))   # 0-d stays 0-d
        if src.shape != tuple(dst.shape):
            raise ValueError(f"copy_from_host: expected an array of shape {tuple(dst.shape)}, "
                             f"received shape {src.shape}")
        if 0 in src.strides and src.size > 1:
            # a C-contiguous array can still have stride 0 on a length-1 axis (what
            # ascontiguousarray keeps of np.broadcast_to); Numba strips such axes before
            # copying, and the simulator then fails on the shape mismatch
            src = src.copy()
        dst.copy_to_device(src)

    # ---- GEMM, dense, activations, losses ------------------------------------------------------
    def matmul(self, a, b, transpose_a, transpose_b, out, cfg=None):
        gemm.matmul(a, b, transpose_a, transpose_b, out, self.sm_count, cfg)

    def dense_forward(self, x, w, b, activation, alpha, z, y, cfg=None):
        gemm.dense_forward(x, w, b, activation, alpha, z, y, self.sm_count, cfg)

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        gemm.dense_backward(x, w, z, y, dy, activation, alpha, dw, db, dx, self.sm_count)

    bias_grad = staticmethod(elementwise.bias_grad)
    activation_forward = staticmethod(elementwise.activation_forward)
    activation_backward = staticmethod(elementwise.activation_backward)

    def loss(self, kind, pred, target, from_logits, grad, param=1.0, weights=None,
             label_smoothing=0.0, ignore_class=None, reduce_sum=False):
        """The loss (a float: one double copied back) and, when grad is given, its
        gradient written on the device.  Semantics of reference.loss / sparse_cce."""
        loss_option_kind(kind, label_smoothing, ignore_class, reduce_sum=reduce_sum)
        return losses.loss(kind, pred, target, from_logits, grad, self.workspace, param,
                           weights, label_smoothing, ignore_class, bool(reduce_sum))

    # ---- convolution, pooling ------------------------------------------------------------------
    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        convolution.conv2d_forward(x, w, b, strides, padding, activation, alpha, cols, z, y,
                                   self.sm_count)

    conv2d_backward_work_size = staticmethod(convolution.conv2d_backward_work_size)

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        work, dw, db, dx):
        convolution.conv2d_backward(x, w, z, y, dy, strides, padding, activation, alpha, cols,
                                    work, dw, db, dx, self.sm_count)

    # ---- convolution variants (engineer B) ----
    conv2d_general_forward = staticmethod(conv_variants.conv2d_general_forward)
    conv2d_general_work_size = staticmethod(conv_variants.conv2d_general_work_size)
    conv2d_general_backward = staticmethod(conv_variants.conv2d_general_backward)
    transpose = staticmethod(conv_variants.transpose)
    # ---- end of convolution variants (engineer B) ----

    maxpool2d_forward = staticmethod(pooling.maxpool2d_forward)
    maxpool2d_backward = staticmethod(pooling.maxpool2d_backward)
    avgpool2d_forward = staticmethod(pooling.avgpool2d_forward)
    avgpool2d_backward = staticmethod(pooling.avgpool2d_backward)
    global_avgpool2d_forward = staticmethod(pooling.global_avgpool2d_forward)
    global_avgpool2d_backward = staticmethod(pooling.global_avgpool2d_backward)

    # engineer D (#16): sequence ops
    global_maxpool_forward = staticmethod(seq1d.global_maxpool_forward)
    global_maxpool_backward = staticmethod(seq1d.global_maxpool_backward)
    masked_mean_forward = staticmethod(seq1d.masked_mean_forward)
    masked_mean_backward = staticmethod(seq1d.masked_mean_backward)
    repeat_vector_forward = staticmethod(seq1d.repeat_vector_forward)
    repeat_vector_backward = staticmethod(seq1d.repeat_vector_backward)

    # ---- batch normalization, dropout ------------------------------------------------------------
    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        normalization.batchnorm_forward_train(x, gamma, beta, moving_mean, moving_variance,
                                              momentum, epsilon, mean, inv_std, y,
                                              self.workspace)

    batchnorm_forward_infer = staticmethod(normalization.batchnorm_forward_infer)

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        normalization.batchnorm_backward(x, gamma, mean, inv_std, dy, dgamma, dbeta, dx,
                                         self.workspace)

    def batchnorm_infer_backward(self, x, gamma, moving_mean, moving_variance, epsilon, dy,
                                 dgamma, dbeta, dx):
        normalization.batchnorm_infer_backward(x, gamma, moving_mean, moving_variance, epsilon,
                                               dy, dgamma, dbeta, dx, self.workspace)

    def dropout_forward(self, x, seed, counter, rate, broadcast, mask, y):
        random.dropout_forward(x, seed, counter, rate, broadcast, mask, y, self.workspace)

    def dropout_backward(self, dy, mask, dx):
        elementwise.multiply("dropout_backward", dx, dy, mask)

    # ---- recurrent layers (engineer H) -----------------------------------------------------
    def rnn_forward(self, *args, **kwargs):
        from . import rnn
        rnn.rnn_forward(*args, sm_count=self.sm_count, **kwargs)

    def rnn_backward(self, *args, **kwargs):
        from . import rnn
        rnn.rnn_backward(*args, sm_count=self.sm_count, **kwargs)

    # ---- geometric image ops ------------------------------------------------------------------
    affine_transform = staticmethod(image.affine_transform)
    resize = staticmethod(image.resize)
    flip = staticmethod(image.flip)
    crop = staticmethod(image.crop)
    image_random = staticmethod(image.image_random)
    # ---- transposed convolution, upsampling, padding, cropping (upsampling.py; part C) -----
    conv2d_transpose_work_size = staticmethod(_upsampling.conv2d_transpose_work_size)

    def conv2d_transpose_forward(self, x, w, b, strides, padding, activation, alpha, work, z,
                                 y):
        _upsampling.conv2d_transpose_forward(x, w, b, strides, padding, activation, alpha,
                                             work, z, y, self.sm_count)

    def conv2d_transpose_backward(self, x, w, z, y, dy, strides, padding, activation, alpha,
                                  work, dw, db, dx):
        _upsampling.conv2d_transpose_backward(x, w, z, y, dy, strides, padding, activation,
                                              alpha, work, dw, db, dx, self.sm_count)

    upsample2d_backward = staticmethod(_upsampling.upsample2d_backward)
    pad_crop = staticmethod(_upsampling.pad_crop)
    kernel_dilate = staticmethod(_upsampling.kernel_dilate)
    # ---- pixel preprocessing (pixel.py) --------------------------------------------------------
    channel_affine = staticmethod(pixel.channel_affine)
    normalize = staticmethod(pixel.normalize)
    random_contrast = staticmethod(pixel.random_contrast)
    random_contrast_backward = staticmethod(pixel.random_contrast_backward)
    random_brightness = staticmethod(pixel.random_brightness)

    # ---- merges, concatenation, scaling, metrics, optimizers ---------------------------------
    # ---- Embedding and Masking (engineer G) ----
    embedding_forward = staticmethod(embedding.embedding_forward)
    embedding_backward = staticmethod(embedding.embedding_backward)
    embedding_grad_clear = staticmethod(embedding.embedding_grad_clear)
    embedding_sgd = staticmethod(embedding.embedding_sgd)
    masking_forward = staticmethod(embedding.masking_forward)
    masking_backward = staticmethod(embedding.masking_backward)

    merge_forward = staticmethod(merge.merge_forward)
    merge_backward = staticmethod(merge.merge_backward)
    concat_forward = staticmethod(merge.concat_forward)
    concat_backward = staticmethod(merge.concat_backward)
    scale = staticmethod(elementwise.scale)
    # activations (engineer A): Keras's ReLU layer, softmax over any axis, PReLU
    relu_forward = staticmethod(activations.relu_forward)
    relu_backward = staticmethod(activations.relu_backward)
    softmax_axis_forward = staticmethod(activations.softmax_axis_forward)
    softmax_axis_backward = staticmethod(activations.softmax_axis_backward)
    prelu_forward = staticmethod(activations.prelu_forward)
    prelu_backward = staticmethod(activations.prelu_backward)
    # regularizers and constraints (engineer F)
    penalty = staticmethod(regularizers.penalty)
    constraint = staticmethod(regularizers.constraint)

    def metric_sum(self, kind, pred, target, k=5, threshold=0.5, weights=None, per_weight=1):
        return metrics.metric_sum(kind, pred, target, self.workspace, k, threshold, weights,
                                  per_weight)

    def metric_confusion(self, pred, target, thresholds, weights=None, per_weight=1):
        return metrics.metric_confusion(pred, target, thresholds, self.workspace, weights,
                                        per_weight)

    optimizer_step = staticmethod(optimizers.optimizer_step)
    sgd_update = staticmethod(optimizers.sgd_update)
    adam_update = staticmethod(optimizers.adam_update)
    rmsprop_update = staticmethod(optimizers.rmsprop_update)


    # ---- engineer E: normalization and noise layers (norm.py) -------------------------------
    group_norm_forward = staticmethod(norm.group_norm_forward)
    group_norm_backward = staticmethod(norm.group_norm_backward)
    unit_norm_forward = staticmethod(norm.unit_norm_forward)
    unit_norm_backward = staticmethod(norm.unit_norm_backward)
    gaussian_noise = staticmethod(norm.gaussian_noise)

def unavailable_reason():
    """None when kernels can run here (a GPU, or the simulator), else why not."""
    if SIMULATOR:
        return None
    try:
        count = len(cuda.gpus)
    except Exception as exc:     # CudaSupportError: no driver library, driver init failed
        detail = " ".join(str(exc).split()).rstrip(" :")
        return f"the CUDA driver could not be initialised ({detail or type(exc).__name__})"
    if count == 0:
        return "the CUDA driver found no NVIDIA GPU"
    try:
        if not cuda.is_available():
            return "numba-cuda reports no usable GPU (cuda.is_available() is False)"
    except Exception as exc:
        return f"numba-cuda could not use the GPU ({' '.join(str(exc).split())})"
    return None
