"""The `numpy` backend: the reference kernels of `reference.py` behind the backend
interface.  Slow and plain on purpose: it is the truth the C and CUDA kernels are
checked against."""
import numpy as np

from . import reference as ref
from .base import HostBackend, loss_option_kind


def _rnn_rec_mask(rec_mask, n, G, u, gate_masks):
    """rec_mask as the reference takes it: (n, u), or (n, G, u) with a mask per gate."""
    if rec_mask is None:
        return None
    if gate_masks:
        return rec_mask.reshape(-1)[:n * G * u].reshape(n, G, u)
    return rec_mask.reshape(-1)[:n * u].reshape(n, u)


class NumpyBackend(HostBackend):
    name = "numpy"

    def matmul(self, a, b, transpose_a, transpose_b, out):
        out[...] = ref.gemm(a, b, transpose_a, transpose_b)

    def dense_backward(self, x, w, z, y, dy, activation, alpha, dw, db, dx):
        dy[...] = ref.activation_backward(z, y, dy, activation, alpha)
        if dw is not None:
            dw[...] = ref.gemm(x, dy, transpose_a=True)
        if db is not None:
            db[...] = ref.bias_grad(dy)
        if dx is not None:
            dx[...] = ref.gemm(dy, w, transpose_b=True)

    def dense_forward(self, x, w, b, activation, alpha, z, y):
        zz = ref.gemm(x, w)
        if b is not None:
            zz = zz + b
        z[...] = zz
        y[...] = ref.activation_forward(z, activation, alpha)

    def bias_grad(self, dz, out):
        out[...] = ref.bias_grad(dz)

    def activation_forward(self, x, activation, alpha, out):
        out[...] = ref.activation_forward(x, activation, alpha)

    def activation_backward(self, x, y, dy, activation, alpha, out):
        out[...] = ref.activation_backward(x, y, dy, activation, alpha)

    def loss(self, kind, pred, target, from_logits, grad, param=1.0, weights=None,
             label_smoothing=0.0, ignore_class=None, reduce_sum=False):
        loss_option_kind(kind, label_smoothing, ignore_class, reduce_sum=reduce_sum)
        if kind == "scce":
            value, g = ref.sparse_cce(pred, target, from_logits, weights, label_smoothing,
                                      ignore_class, bool(reduce_sum))
        else:
            value, g = ref.loss(pred, target, kind, from_logits, param, weights, label_smoothing,
                                bool(reduce_sum))
        if grad is not None:
            grad[...] = g
        return float(value)

    def sgd_update(self, w, m, g, lr, momentum, nesterov):
        ref.sgd_update(w, m, g, np.float32(lr), np.float32(momentum), nesterov)

    def adam_update(self, w, m, v, g, lr_t, beta1, beta2, epsilon):
        ref.adam_update(w, m, v, g, np.float32(lr_t), np.float32(beta1), np.float32(beta2),
                        np.float32(epsilon))

    def rmsprop_update(self, w, v, mom, g, lr, rho, momentum, epsilon):
        ref.rmsprop_update(w, v, mom, g, np.float32(lr), np.float32(rho), np.float32(momentum),
                           np.float32(epsilon))

    # ---- convolution, pooling, normalization, dropout ----------------------------
    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        c, zz, yy = ref.conv2d_forward(x, w, b, strides, padding, z.shape[1:3], activation, alpha)
        cols[...] = c
        z[...] = zz
        y[...] = yy

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        work, dw, db, dx):
        dz, gw, gb, gx = ref.conv2d_backward(x, w, z, y, dy, strides, padding, activation, alpha)
        dy[...] = dz
        if dw is not None:
            dw[...] = gw
        if db is not None:
            db[...] = gb
        if dx is not None:
            dx[...] = gx

    # ---- convolution variants (engineer B) ----
    def conv2d_general_forward(self, x, w, b, strides, padding, dilation, groups, activation,
                               alpha, z, y):
        zz, yy = ref.conv2d_general_forward(x, w, b, strides, padding, z.shape[1:3], dilation,
                                            groups, activation, alpha)
        z[...] = zz
        y[...] = yy

    def conv2d_general_work_size(self, x_shape, w_shape, groups):
        return 1

    def conv2d_general_backward(self, x, w, z, y, dy, strides, padding, dilation, groups,
                                activation, alpha, work, dw, db, dx):
        dz, gw, gb, gx = ref.conv2d_general_backward(x, w, z, y, dy, strides, padding, dilation,
                                                     groups, activation, alpha)
        dy[...] = dz
        if dw is not None:
            dw[...] = gw
        if db is not None:
            db[...] = gb
        if dx is not None:
            dx[...] = gx

    def transpose(self, x, perm, y):
        y[...] = ref.transpose(x, perm)
    # ---- end of convolution variants (engineer B) ----

    def maxpool2d_forward(self, x, pool_size, strides, padding, y):
        y[...] = ref.maxpool2d_forward(x, pool_size, strides, padding, y.shape[1:3])

    def maxpool2d_backward(self, x, y, dy, pool_size, strides, padding, dx):
        dx[...] = ref.maxpool2d_backward(x, dy, pool_size, strides, padding)

    def avgpool2d_forward(self, x, pool_size, strides, padding, y):
        y[...] = ref.avgpool2d_forward(x, pool_size, strides, padding, y.shape[1:3])

    def avgpool2d_backward(self, dy, pool_size, strides, padding, dx):
        dx[...] = ref.avgpool2d_backward(dy, dx.shape, pool_size, strides, padding)

    def global_avgpool2d_forward(self, x, y):
        y[...] = ref.global_avgpool2d_forward(x)

    def global_avgpool2d_backward(self, dy, dx):
        dx[...] = ref.global_avgpool2d_backward(dy, dx.shape)

    # ---- engineer D (#16): sequence ops ----
    def global_maxpool_forward(self, x, y):
        y[...] = ref.global_maxpool_forward(x)

    def global_maxpool_backward(self, x, dy, dx):
        dx[...] = ref.global_maxpool_backward(x, dy)

    def masked_mean_forward(self, x, mask, y):
        y[...] = ref.masked_mean_forward(x, mask)

    def masked_mean_backward(self, dy, mask, dx):
        dx[...] = ref.masked_mean_backward(dy, mask)

    def repeat_vector_forward(self, x, y):
        y[...] = ref.repeat_vector_forward(x, y.shape[1])

    def repeat_vector_backward(self, dy, dx):
        dx[...] = ref.repeat_vector_backward(dy)

    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        yy, m, s, new_mean, new_var = ref.batchnorm_forward_train(
            x, gamma, beta, moving_mean, moving_variance, np.float32(momentum), np.float32(epsilon))
        y[...], mean[...], inv_std[...] = yy, m, s
        moving_mean[...], moving_variance[...] = new_mean, new_var

    def batchnorm_forward_infer(self, x, gamma, beta, moving_mean, moving_variance, epsilon, y):
        y[...] = ref.batchnorm_forward_infer(x, gamma, beta, moving_mean, moving_variance,
                                             np.float32(epsilon))

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        gg, gb, gx = ref.batchnorm_backward(x, gamma, mean, inv_std, dy)
        if dgamma is not None:
            dgamma[...] = gg
        if dbeta is not None:
            dbeta[...] = gb
        if dx is not None:
            dx[...] = gx

    def batchnorm_infer_backward(self, x, gamma, moving_mean, moving_variance, epsilon, dy,
                                 dgamma, dbeta, dx):
        gg, gb, gx = ref.batchnorm_infer_backward(x, gamma, moving_mean, moving_variance,
                                                  np.float32(epsilon), dy)
        if dgamma is not None:
            dgamma[...] = gg
        if dbeta is not None:
            dbeta[...] = gb
        if dx is not None:
            dx[...] = gx

    def dropout_forward(self, x, seed, counter, rate, broadcast, mask, y):
        mask[...] = ref.dropout_mask(x.shape, broadcast, seed, counter, rate)
        y[...] = x * mask

    def dropout_backward(self, dy, mask, dx):
        dx[...] = dy * mask

    # ---- Embedding and Masking (engineer G) --------------------------------------------
    def embedding_forward(self, ids, table, y, mask):
        out, m = ref.embedding_forward(ids, table)
        y[...] = out
        if mask is not None:
            mask[...] = m

    def embedding_backward(self, ids, dy, dtable, work):
        n = ids.shape[0]
        seen, grad = ref.embedding_backward(ids, dy, dtable.shape[0])
        dtable[seen] = grad                         # only the rows seen
        rows = ids.astype(np.int64)
        work[:n] = np.sort(rows * n + np.arange(n))     # as the C kernel keeps them

    def embedding_grad_clear(self, dtable, work, n, whole=False):
        if whole:
            dtable[...] = 0.0
        elif n:
            dtable[np.unique(work[:n] // n)] = 0.0

    def embedding_sgd(self, table, dtable, work, n, lr):
        seen = np.unique(work[:n] // n) if n else np.zeros(0, dtype=np.int64)
        ref.embedding_sgd(table, dtable, seen, 0.0 if lr is None else lr, lr is not None)

    def masking_forward(self, x, mask_value, y, mask):
        out, m = ref.masking_forward(x, mask_value)
        y[...] = out
        if mask is not None:
            mask[...] = m

    def masking_backward(self, dy, mask, dx):
        dx[...] = ref.masking_backward(dy, mask)

    # ---- recurrent layers (engineer H) ----------------------------------------------------
    def rnn_forward(self, x, kernel, rkernel, bias, mask, rec_mask, seq, cs, gates, hprev, aux,
                    work, h_last, c_last, *, T, f, u, cell, act, rec_act, go_backwards,
                    time_order, zero_output=False, out=None, in_mask=None, gate_masks=False):
        n = x.shape[0]
        G = ref.RNN_GATES[cell]
        b = None if bias is None else (bias.reshape(2, -1) if cell == 2 else bias.reshape(-1))
        r = ref.rnn_forward(x.reshape(n, T, f), kernel, rkernel, b,
                            None if mask is None else mask.reshape(n, T),
                            _rnn_rec_mask(rec_mask, n, G, u, gate_masks), cell, act, rec_act,
                            go_backwards, time_order,
                            None if in_mask is None else in_mask.reshape(-1)[:n * G * f]
                            .reshape(n, G, f), gate_masks)
        for name, dst in (("seq", seq), ("cs", cs), ("gates", gates), ("hprev", hprev),
                          ("aux", aux), ("h_last", h_last), ("c_last", c_last),
                          ("out", out if zero_output else None)):
            if dst is not None and r[name] is not None:
                dst.reshape(-1)[:r[name].size] = r[name].reshape(-1)

    def rnn_backward(self, x, kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask, dseq,
                     dh_last, dc_last, dgates, dgr, work, dkernel, drkernel, dbias, dx, *, T,
                     f, u, cell, act, rec_act, go_backwards, time_order, zero_output=False,
                     in_mask=None, gate_masks=False):
        n = x.shape[0]
        G = ref.RNN_GATES[cell]

        def seq3(a, width):
            return None if a is None else a.reshape(-1)[:n * T * width].reshape(n, T, width)

        saved = {"seq": seq3(seq, u), "cs": seq3(cs, u), "gates": seq3(gates, G * u),
                 "hprev": seq3(hprev, u), "aux": seq3(aux, u)}
        r = ref.rnn_backward(seq3(dseq, u), None if dh_last is None else dh_last.reshape(n, u),
                             None if dc_last is None else dc_last.reshape(n, u),
                             x.reshape(n, T, f), kernel, rkernel, saved,
                             None if mask is None else mask.reshape(n, T),
                             _rnn_rec_mask(rec_mask, n, G, u, gate_masks), cell, act, rec_act,
                             go_backwards, time_order, zero_output,
                             None if in_mask is None else in_mask.reshape(-1)[:n * G * f]
                             .reshape(n, G, f), gate_masks)
        for name, out in (("dkernel", dkernel), ("drkernel", drkernel), ("dbias", dbias),
                          ("dx", dx)):
            if out is not None:
                out[...] = r[name].reshape(out.shape)

    # ---- geometric image ops ----------------------------------------------------------
    def affine_transform(self, x, params, interpolation, fill_mode, fill_value, y):
        y[...] = ref.affine_transform(x, params, interpolation, fill_mode, fill_value)

    def resize(self, x, window, interpolation, fill_value, y):
        y[...] = ref.resize(x, y.shape[1:3], window, interpolation, fill_value)

    def flip(self, x, params, horizontal, vertical, y):
        y[...] = ref.flip(x, params, horizontal, vertical)

    def crop(self, x, params, top, left, y):
        y[...] = ref.crop(x, y.shape[1:3], top, left, params)

    def image_random(self, kind, seed, counter, h, w, out_hw, ranges, params):
        params[...] = ref.image_random(kind, params.shape[0], h, w, ranges, seed, counter,
                                       out_hw)

    # ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) ----
    def conv2d_transpose_forward(self, x, w, b, strides, padding, activation, alpha, work, z,
                                 y):
        zz, yy = ref.conv2d_transpose_forward(x, w, b, strides, padding, z.shape[1:3],
                                              activation, alpha)
        z[...] = zz
        y[...] = yy

    def conv2d_transpose_backward(self, x, w, z, y, dy, strides, padding, activation, alpha,
                                  work, dw, db, dx):
        dz, gw, gb, gx = ref.conv2d_transpose_backward(x, w, z, y, dy, strides, padding,
                                                       activation, alpha)
        dy[...] = dz
        for out, value in ((dw, gw), (db, gb), (dx, gx)):
            if out is not None:
                out[...] = value

    def upsample2d_backward(self, dy, size, interpolation, dx):
        dx[...] = ref.upsample2d_backward(dy, size, interpolation)

    def pad_crop(self, x, top, left, y):
        y[...] = ref.pad_crop(x, y.shape[1:3], top, left)

    def kernel_dilate(self, src, dilation, inverse, dst):
        dst[...] = ref.kernel_dilate(src, dilation, inverse)

    # ---- pixel preprocessing ------------------------------------------------------
    def channel_affine(self, x, scale, offset, c, inner, y):
        y[...] = ref.channel_affine(x, scale, offset, c, inner)

    def normalize(self, x, mean, variance, c, inner, invert, epsilon, y):
        y[...] = ref.normalize(x, mean, variance, c, inner, invert, epsilon)

    def random_contrast(self, x, seed, counter, lower, upper, vmin, vmax, factors, y):
        yy, ff = ref.random_contrast(x, seed, counter, lower, upper, vmin, vmax)
        factors[...] = ff.reshape(factors.shape)
        y[...] = yy

    def random_contrast_backward(self, x, factors, dy, vmin, vmax, dx):
        dx[...] = ref.random_contrast_backward(x, factors.reshape(-1), dy, vmin, vmax)

    def random_brightness(self, x, seed, counter, lower, upper, vmin, vmax, mask, y):
        yy, mm = ref.random_brightness(x, seed, counter, lower, upper, vmin, vmax)
        if mask is not None:
            mask[...] = mm
        y[...] = yy

    # ---- merges, concatenation, scaling, metrics, optimizer steps -------------------
    def merge_forward(self, kind, xs, y):
        y[...] = ref.merge_forward(kind, xs)

    def merge_backward(self, kind, i, xs, dy, dx):
        dx[...] = ref.merge_backward(kind, i, xs, dy)

    def concat_forward(self, xs, y):
        y[...] = ref.concat(xs)

    def concat_backward(self, dy, widths, dxs):
        for d, p in zip(dxs, ref.concat_backward(dy, widths)):
            if d is not None:
                d[...] = p

    def scale(self, x, alpha, y):
        y[...] = ref.scale(x, alpha)

    # activations (engineer A)
    def relu_forward(self, x, negative_slope, threshold, max_value, y):
        y[...] = ref.relu_forward(x, negative_slope, threshold, max_value)

    def relu_backward(self, x, dy, negative_slope, threshold, max_value, dx):
        dx[...] = ref.relu_backward(x, dy, negative_slope, threshold, max_value)

    def softmax_axis_forward(self, x, outer, length, inner, y, mask=None):
        y[...] = ref.softmax_axis_forward(x, outer, length, inner, mask)

    def softmax_axis_backward(self, y, dy, outer, length, inner, dx):
        dx[...] = ref.softmax_axis_backward(y, dy, outer, length, inner)

    def prelu_forward(self, x, alpha, dims, shared, y):
        y[...] = ref.prelu_forward(x, alpha, dims, shared)

    def prelu_backward(self, x, alpha, dy, dims, shared, dalpha, dx):
        gx, ga = ref.prelu_backward(x, alpha, dy, dims, shared)
        if dalpha is not None:
            dalpha[...] = ga.reshape(dalpha.shape)
        if dx is not None:
            dx[...] = gx

    # regularizers and constraints (engineer F)
    def penalty(self, x, dx, l1, l2, scale=1.0, accumulate=True):
        value, grad = ref.penalty(x, l1, l2, scale)
        if dx is not None:
            if accumulate:
                dx += grad
            else:
                dx[...] = grad
        return value

    def constraint(self, w, outer, red, inner, kind, a=0.0, b=0.0, rate=1.0):
        w[...] = ref.constraint(w, outer, red, inner, kind, a, b, rate).reshape(w.shape)

    def metric_sum(self, kind, pred, target, k=5, threshold=0.5, weights=None, per_weight=1):
        return ref.metric_sum(kind, pred, target, k, threshold, weights, per_weight)

    def metric_confusion(self, pred, target, thresholds, weights=None, per_weight=1):
        return ref.metric_confusion(pred, target, thresholds, weights, per_weight)

    def optimizer_step(self, kind, w, slots, g, step, hyper, segments=None, ema=None):
        ref.optimizer_step(kind, w, slots, g, step, hyper, segments, ema)

    # ---- engineer E: normalization and noise layers (reference.py) ----------------------
    def group_norm_forward(self, x, gamma, beta, s, groups, k, epsilon, rms, mean, inv_std, y):
        yy, m, istd = ref.group_norm_forward(x, gamma, beta, s, groups, k, epsilon, rms)
        y[...], mean[...], inv_std[...] = yy, m.reshape(mean.shape), istd.reshape(inv_std.shape)

    def group_norm_backward(self, x, gamma, mean, inv_std, dy, s, groups, k, rms, dgamma,
                            dbeta, dx):
        gg, gb, gx = ref.group_norm_backward(x, gamma, mean, inv_std, dy, s, groups, k, rms)
        if dgamma is not None:
            dgamma[...] = gg.reshape(dgamma.shape)
        if dbeta is not None:
            dbeta[...] = gb.reshape(dbeta.shape)
        if dx is not None:
            dx[...] = gx

    def unit_norm_forward(self, x, cols, inv_norm, y):
        yy, inv = ref.unit_norm_forward(x, cols)
        y[...], inv_norm[...] = yy, inv.reshape(inv_norm.shape)

    def unit_norm_backward(self, x, inv_norm, dy, cols, dx):
        dx[...] = ref.unit_norm_backward(x, inv_norm, dy, cols)

    def gaussian_noise(self, x, seed, counter, mode, scale, noise, y):
        yy, nz = ref.gaussian_noise(x, seed, counter, mode, scale)
        if noise is not None:
            noise[...] = nz
        y[...] = yy
