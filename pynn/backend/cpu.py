"""The `cpu` backend: pynn's C/OpenMP kernels (csrc/) through the Cython layer pynn._core.

Arrays are NumPy arrays; each method is one call into C with the GIL released.  The
methods that a plan's ops name call the very C function pynn_plan_run calls for that op
(csrc/plan.c), so a step run op by op from Python and a step run in C give bitwise the
same numbers."""
from .. import _core, ids
from .base import HostBackend, loss_option_kind


def _id(table, kind, where):
    """The C id of a name, or a ValueError naming those there are (as the reference)."""
    try:
        return table[kind]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: expected kind in {tuple(table)}, received {kind!r}") from None


def _act(activation, where):
    return _id(ids.ACTIVATIONS, activation, where)


def _flat(a):
    return a.reshape(-1)


class CpuBackend(HostBackend):
    name = "cpu"

    def matmul(self, a, b, transpose_a, transpose_b, out):
        _core.sgemm(out, a, b, transpose_a, transpose_b)

    def dense_forward(self, x, w, b, activation, alpha, z, y):
        _core.sgemm_bias_act(z, y, x, w, b, False, False, _act(activation, "dense_forward"), alpha)

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        _core.dense_backward(dw, db, dx, dy, x, w, z, y, _act(activation, "dense_backward"), alpha)

    def bias_grad(self, dz, out):
        _core.bias_grad(out, dz)

    def activation_forward(self, x, activation, alpha, out):
        _core.activation_forward(out, x, _act(activation, "activation_forward"), alpha)

    def activation_backward(self, x, y, dy, activation, alpha, out):
        _core.activation_backward(out, x, y, dy, _act(activation, "activation_backward"), alpha)

    def loss(self, kind, pred, target, from_logits, grad, param=1.0, weights=None,
             label_smoothing=0.0, ignore_class=None, reduce_sum=False):
        loss_option_kind(kind, label_smoothing, ignore_class, reduce_sum=reduce_sum)
        if kind == "scce":
            return _core.sparse_cce(grad, pred, target, from_logits, weights, label_smoothing,
                                    ignore_class, reduce_sum)
        return _core.loss(grad, pred, target, _id(ids.LOSSES, kind, "loss"), from_logits, param,
                          weights, label_smoothing, reduce_sum)

    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        _core.sgd_update(_flat(w), None if m is None else _flat(m), _flat(g), lr, momentum, nesterov)

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        _core.adam_update(_flat(w), _flat(m), _flat(v), _flat(g), lr_t, beta1, beta2, epsilon)

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        _core.rmsprop_update(_flat(w), _flat(v), None if mom is None else _flat(mom), _flat(g),
                             lr, rho, momentum, epsilon)

    # ---- convolution (csrc/layers.c): the direct kernel for tiny kernels, else im2col and
    # one GEMM; the backward's partial sums live in the plan's `work` array -------------
    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        _core.conv2d_forward(z, y, cols, x, w, b, strides, padding,
                             _act(activation, "conv2d_forward"), alpha)

    # ---- convolution variants (engineer B) ----
    def conv2d_general_forward(self, x, w, b, strides, padding, dilation, groups, activation,
                               alpha, z, y):
        _core.conv2d_general_forward(z, y, x, w, b, strides, padding, dilation, groups,
                                     _act(activation, "conv2d_general_forward"), alpha)

    def conv2d_general_work_size(self, x_shape, w_shape, groups):
        return _core.conv2d_general_work(x_shape, w_shape, groups)

    def conv2d_general_backward(self, x, w, z, y, dy, strides, padding, dilation, groups,
                                activation, alpha, work, dw, db, dx):
        _core.conv2d_general_backward(dw, db, dx, dy, work, x, w, z, y, strides, padding,
                                      dilation, groups,
                                      _act(activation, "conv2d_general_backward"), alpha)

    def transpose(self, x, perm, y):
        _core.transpose(y, x, perm)
    # ---- end of convolution variants (engineer B) ----

    def conv2d_backward_work_size(self, x_shape, w_shape, strides, out_hw):
        return _core.conv2d_backward_work(x_shape, w_shape, strides, out_hw)

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        work, dw, db, dx):
        _core.conv2d_backward(dw, db, dx, dy, cols, work, x, w, z, y, strides, padding,
                              _act(activation, "conv2d_backward"), alpha)

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

    # ---- engineer D (#16): sequence ops ----
    def global_maxpool_forward(self, x, y):
        _core.global_maxpool_forward(y, x)

    def global_maxpool_backward(self, x, dy, dx):
        _core.global_maxpool_backward(dx, x, dy)

    def masked_mean_forward(self, x, mask, y):
        _core.masked_mean_forward(y, x, mask)

    def masked_mean_backward(self, dy, mask, dx):
        _core.masked_mean_backward(dx, dy, mask)

    def repeat_vector_forward(self, x, y):
        _core.repeat_vector_forward(y, x)

    def repeat_vector_backward(self, dy, dx):
        _core.repeat_vector_backward(dx, dy)

    # ---- batch normalization and dropout ---------------------------------------------
    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        _core.batchnorm_forward_train(y, mean, inv_std, moving_mean, moving_variance, x, gamma,
                                      beta, momentum, epsilon)

    def batchnorm_forward_infer(self, x, gamma, beta, moving_mean, moving_variance, epsilon, y):
        _core.batchnorm_forward_infer(y, x, gamma, beta, moving_mean, moving_variance, epsilon)

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        _core.batchnorm_backward(dx, dgamma, dbeta, x, gamma, mean, inv_std, dy)

    def batchnorm_infer_backward(self, x, gamma, moving_mean, moving_variance, epsilon, dy,
                                 dgamma, dbeta, dx):
        _core.batchnorm_infer_backward(dx, dgamma, dbeta, x, gamma, moving_mean, moving_variance,
                                       dy, epsilon)

    def dropout_forward(self, x, seed, counter, rate, broadcast, mask, y):
        _core.dropout_forward(y, mask, x, broadcast, seed, counter, rate)

    def dropout_backward(self, dy, mask, dx):
        _core.multiply(_flat(dx), _flat(dy), _flat(mask))

    # ---- Embedding and Masking (engineer G) --------------------------------------------
    def embedding_forward(self, ids, table, y, mask):
        _core.embedding_forward(y, mask, ids, table)

    def embedding_backward(self, ids, dy, dtable, work):
        _core.embedding_backward(dtable, work, ids, dy)

    def embedding_grad_clear(self, dtable, work, n, whole=False):
        _core.embedding_grad_clear(dtable, work, n, whole)

    def embedding_sgd(self, table, dtable, work, n, lr):
        _core.embedding_sgd(table, dtable, work, n, 0.0 if lr is None else lr, lr is not None)

    def masking_forward(self, x, mask_value, y, mask):
        _core.masking_forward(y, mask, x, mask_value)

    def masking_backward(self, dy, mask, dx):
        _core.masking_backward(dx, dy, mask)

    # ---- recurrent layers (engineer H) ----------------------------------------------------
    def rnn_forward(self, x, kernel, rkernel, bias, mask, rec_mask, seq, cs, gates, hprev, aux,
                    work, h_last, c_last, *, T, f, u, cell, act, rec_act, go_backwards,
                    time_order, zero_output=False, out=None, in_mask=None, gate_masks=False):
        _core.rnn_forward(seq, cs, gates, hprev, aux, work, h_last, c_last, x, kernel, rkernel,
                          bias, mask, rec_mask, x.shape[0], T, f, u, cell,
                          _act(act, "rnn_forward"), _act(rec_act, "rnn_forward"), go_backwards,
                          time_order, out if zero_output else None, in_mask, gate_masks)

    def rnn_backward(self, x, kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask, dseq,
                     dh_last, dc_last, dgates, dgr, work, dkernel, drkernel, dbias, dx, *, T,
                     f, u, cell, act, rec_act, go_backwards, time_order, zero_output=False,
                     in_mask=None, gate_masks=False):
        _core.rnn_backward(dkernel, drkernel, dbias, dx, dgates, dgr, work, dseq, dh_last,
                           dc_last, x, kernel, rkernel, seq, cs, gates, hprev, aux, mask,
                           rec_mask, x.shape[0], T, f, u, cell, _act(act, "rnn_backward"),
                           _act(rec_act, "rnn_backward"), go_backwards, time_order, zero_output,
                           in_mask, gate_masks)

    # ---- geometric image ops ----------------------------------------------------------
    def affine_transform(self, x, params, interpolation, fill_mode, fill_value, y):
        _core.affine_transform(y, x, params, interpolation, fill_mode, fill_value)

    def resize(self, x, window, interpolation, fill_value, y):
        _core.resize(y, x, window, interpolation, fill_value)

    def flip(self, x, params, horizontal, vertical, y):
        _core.flip(y, x, params, horizontal, vertical)

    def crop(self, x, params, top, left, y):
        _core.crop(y, x, params, top, left)

    def image_random(self, kind, seed, counter, h, w, out_hw, ranges, params):
        _core.image_random(params, kind, h, w, out_hw[0], out_hw[1], ranges, seed, counter)

    # ---- transposed convolution, upsampling, padding, cropping (csrc/upsampling.c) ----
    def conv2d_transpose_work_size(self, x_shape, w_shape, out_hw):
        return _core.conv2d_transpose_work(x_shape, w_shape, out_hw)

    def conv2d_transpose_forward(self, x, w, b, strides, padding, activation, alpha, work, z,
                                 y):
        _core.conv2d_transpose_forward(z, y, work, x, w, b, strides, padding,
                                       _act(activation, "conv2d_transpose_forward"), alpha)

    def conv2d_transpose_backward(self, x, w, z, y, dy, strides, padding, activation, alpha,
                                  work, dw, db, dx):
        _core.conv2d_transpose_backward(dw, db, dx, dy, work, x, w, z, y, strides, padding,
                                        _act(activation, "conv2d_transpose_backward"), alpha)

    def upsample2d_backward(self, dy, size, interpolation, dx):
        _core.upsample2d_backward(dx, dy, size, interpolation)

    def pad_crop(self, x, top, left, y):
        _core.pad_crop(y, x, top, left)

    def kernel_dilate(self, src, dilation, inverse, dst):
        _core.kernel_dilate(dst, src, dilation, inverse)

    # ---- pixel preprocessing (csrc/pixel.c) -------------------------------------------
    def channel_affine(self, x, scale, offset, c, inner, y):
        _core.channel_affine(y, x, scale, offset, c, inner)

    def normalize(self, x, mean, variance, c, inner, invert, epsilon, y):
        _core.normalize(y, x, mean, variance, c, inner, invert, epsilon)

    def random_contrast(self, x, seed, counter, lower, upper, vmin, vmax, factors, y):
        _core.random_contrast(y, factors, x, seed, counter, lower, upper, vmin, vmax)

    def random_contrast_backward(self, x, factors, dy, vmin, vmax, dx):
        _core.random_contrast_backward(dx, x, factors, dy, vmin, vmax)

    def random_brightness(self, x, seed, counter, lower, upper, vmin, vmax, mask, y):
        _core.random_brightness(y, mask, x, seed, counter, lower, upper, vmin, vmax)

    # ---- merges, concatenation, scaling, metrics, optimizer steps -------------------
    def merge_forward(self, kind, xs, y):
        _core.merge_forward(y, xs, _id(ids.MERGES, kind, "merge_forward"))

    def merge_backward(self, kind, i, xs, dy, dx):
        _core.merge_backward(dx, dy, xs, _id(ids.MERGES, kind, "merge_backward"), i)

    def concat_forward(self, xs, y):
        _core.concat(y, xs)

    def concat_backward(self, dy, widths, dxs):
        _core.concat_backward(dxs, dy, widths)

    def scale(self, x, alpha, y):
        _core.scale(y, x, alpha)

    # activations (engineer A): flat views of C-contiguous arrays
    def relu_forward(self, x, negative_slope, threshold, max_value, y):
        _core.relu_forward(y.reshape(-1), x.reshape(-1), negative_slope, threshold,
                           float("inf") if max_value is None else max_value)

    def relu_backward(self, x, dy, negative_slope, threshold, max_value, dx):
        _core.relu_backward(dx.reshape(-1), x.reshape(-1), dy.reshape(-1), negative_slope,
                            threshold, float("inf") if max_value is None else max_value)

    def softmax_axis_forward(self, x, outer, length, inner, y, mask=None):
        _core.softmax_axis_forward(y.reshape(-1), x.reshape(-1), outer, length, inner,
                                   None if mask is None else mask.reshape(-1))

    def softmax_axis_backward(self, y, dy, outer, length, inner, dx):
        _core.softmax_axis_backward(dx.reshape(-1), y.reshape(-1), dy.reshape(-1), outer,
                                    length, inner)

    def prelu_forward(self, x, alpha, dims, shared, y):
        _core.prelu_forward(y.reshape(-1), x.reshape(-1), alpha.reshape(-1), dims, shared)

    def prelu_backward(self, x, alpha, dy, dims, shared, dalpha, dx):
        _core.prelu_backward(None if dx is None else dx.reshape(-1),
                             None if dalpha is None else dalpha.reshape(-1),
                             x.reshape(-1), alpha.reshape(-1), dy.reshape(-1), dims, shared)

    # regularizers and constraints (engineer F)
    def penalty(self, x, dx, l1, l2, scale=1.0, accumulate=True):
        return _core.penalty(x, dx, l1, l2, scale, accumulate)

    def constraint(self, w, outer, red, inner, kind, a=0.0, b=0.0, rate=1.0):
        _core.constraint(w, outer, red, inner, kind, a, b, rate)

    def metric_sum(self, kind, pred, target, k=5, threshold=0.5, weights=None, per_weight=1):
        return _core.metric_sum(pred, target, _id(ids.METRICS, kind, "metric_sum"), k, threshold,
                                weights, per_weight)

    def metric_confusion(self, pred, target, thresholds, weights=None, per_weight=1):
        return _core.metric_confusion(pred, target, thresholds, weights, per_weight)

    def optimizer_step(self, kind, w, slots, g, step, hyper, segments=None, ema=None):
        # A setting the rule reads must be given (a silent 0 for epsilon would divide by
        # zero); the others may be left out, as the reference allows.
        kind_id = _id(ids.OPTIMIZERS, kind, "optimizer_step")
        reads = _OPTIMIZER_READS[kind]
        _core.optimizer_apply(w, slots, ema, g, kind_id, step,
                              [float(hyper[name] if name in reads else hyper.get(name, 0.0))
                               for name in ids.HYPER],
                              [float(hyper.get(name, 0.0)) for name in ids.OPTIONS], segments)

    # ---- engineer E: normalization and noise layers (csrc/norm.c) -----------------------
    def group_norm_forward(self, x, gamma, beta, s, groups, k, epsilon, rms, mean, inv_std, y):
        _core.group_norm_forward(y, mean, inv_std, x, gamma, beta, s, groups, k, epsilon, rms)

    def group_norm_backward(self, x, gamma, mean, inv_std, dy, s, groups, k, rms, dgamma,
                            dbeta, dx):
        _core.group_norm_backward(dx, dgamma, dbeta, x, gamma, mean, inv_std, dy, s, groups, k,
                                  rms)

    def unit_norm_forward(self, x, cols, inv_norm, y):
        _core.unit_norm_forward(y, inv_norm, x, cols)

    def unit_norm_backward(self, x, inv_norm, dy, cols, dx):
        _core.unit_norm_backward(dx, x, inv_norm, dy, cols)

    def gaussian_noise(self, x, seed, counter, mode, scale, noise, y):
        _core.gaussian_noise(y, noise, x, seed, counter, mode, scale)


# the settings each update rule reads (pynn_optimizer_step, reference.optimizer_step)
_OPTIMIZER_READS = {"sgd": ("learning_rate", "momentum", "nesterov"),
                    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
                    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
                    "adagrad": ("learning_rate", "epsilon"),
                    "adadelta": ("learning_rate", "rho", "epsilon"),
                    "adamax": ("learning_rate", "beta_1", "beta_2", "epsilon"),
                    "nadam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
                    "lion": ("learning_rate", "beta_1", "beta_2")}
