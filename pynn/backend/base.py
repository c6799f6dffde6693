"""The backend interface: every number a model computes goes through these methods.

Layers and models call only these; they never touch NumPy math or C directly, and they
never ask where an array lives.  A backend array is whatever the backend keeps (a NumPy
array for `numpy` and `cpu`, a device array for `cuda`); it crosses to the host only
through `to_host`.

Conventions: float32, row-major, C-contiguous; outputs are allocated by the caller
(`empty`/`zeros`) and passed in, so a training step reuses its buffers.  Activation names
come from `pynn.activations`; loss kinds are pynn.ids.LOSSES ("mse", "bce", "cce", "scce" (integer labels), "mae",
"huber", ...).
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
        """Backward of dense_forward.  dy is overwritten with dz; dw (a frozen layer), db
        and dx (a first layer) may each be None."""
        raise NotImplementedError

    def loss(self, kind, pred, target, from_logits, grad, param=1.0, weights=None,
             label_smoothing=0.0, ignore_class=None, reduce_sum=False):
        """The loss as a Python float, Keras 3's "sum_over_batch_size": sum_i w_i l_i / rows
        (the batch mean without weights), or with reduce_sum Keras 3's "sum": sum_i w_i l_i;
        grad (may be None) = d loss / d pred, row i scaled by w_i.  pred (rows, cols);
        target (rows, cols), or int64 labels (rows,) for "scce".
          param            Huber's delta (> 0), ignored by the other kinds
          weights          None, or a float32 backend array of k finite weights >= 0, k
                           dividing rows: row i weighs weights[i // per_weight], per_weight =
                           rows // k (k = the samples of a per-position output)
          label_smoothing  in [0, 1]; "bce" (t (1 - ls) + ls / 2), "cce" and "scce"
                           (t (1 - ls) + ls / cols); non-zero for another kind: ValueError
          ignore_class     None or an int, "scce" only: rows of that label (which may lie
                           outside [0, cols)) count for nothing and the mean is over the
                           others (Keras 3's mask); every row ignored: 0 and a zero gradient
          reduce_sum       a bool: True divides nothing by the rows (value and gradient);
                           rows ignored add nothing and nothing is rescaled
        csrc/pynn.h (pynn_loss_options) is the specification."""
        raise NotImplementedError

    # ---- convolution and pooling (images are NHWC) --------------------------------
    # Geometry shared by conv2d_* and *pool2d_*: `strides` = (sh, sw) and `padding` =
    # (pad_top, pad_left), non-negative ints.  Output element (n, i, j, .) sees the window
    # of input rows i*sh - pad_top + a (a in [0, KH)) and columns j*sw - pad_left + b
    # (b in [0, KW)); positions outside the input are padding.  The output height and
    # width are read from the output array's shape (the bottom/right padding is whatever
    # makes them fit), so Keras's "valid" is padding (0, 0) and its "same" is
    # (total_h // 2, total_w // 2) with total = max((out - 1) * stride + k - in, 0).
    # Every output array is overwritten entirely (never accumulated into).

    def conv2d_forward(self, x, w, b, strides, padding, activation, alpha, cols, z, y):
        """2-D convolution (cross-correlation, as Keras) with bias and activation.
          x    (N, H, W, C)         input
          w    (KH, KW, C, F)       kernel, Keras's layout
          b    (F,) or None         bias
          cols (N*OH*OW, KH*KW*C)   workspace, float32.  The backend may store anything in
                                    it; conv2d_backward receives the same array untouched
                                    since this call and may rely on what was stored
                                    (the cpu and numpy backends store im2col(x): row
                                    (n, i, j) holds the window of output (n, i, j) in
                                    (a, b, c) row-major order, zeros for padding, so that
                                    z = cols @ w.reshape(KH*KW*C, F) + b).
          z    (N, OH, OW, F)       out: the pre-activation x * w + b
          y    (N, OH, OW, F)       out: activation(z); y may be z.  softmax acts over F.
        alpha is leaky_relu's negative slope."""
        raise NotImplementedError

    # ---- convolution variants (engineer B) ----
    # Dilated and grouped convolution: w (KH, KW, C / groups, F), `dilation` = (dh, dw);
    # output (n, i, j, o) sums the taps at input row i*sh - pt + a*dh, column j*sw - pl + b*dw
    # and channels of o's group (o // (F / groups)).  DepthwiseConv2D is groups = C.
    def conv2d_general_forward(self, x, w, b, strides, padding, dilation, groups, activation,
                               alpha, z, y):
        """z = conv(x, w) + b (b may be None), y = activation(z) (y may be z)."""
        raise NotImplementedError

    def conv2d_general_work_size(self, x_shape, w_shape, groups):
        """Floats of `work` conv2d_general_backward needs for batches of up to x_shape[0]."""
        raise NotImplementedError

    def conv2d_general_backward(self, x, w, z, y, dy, strides, padding, dilation, groups,
                                activation, alpha, work, dw, db, dx):
        """Backward of conv2d_general_forward: dy overwritten with dz; dw, db, dx (each may
        be None) written."""
        raise NotImplementedError

    def transpose(self, x, perm, y):
        """y = x (rows, ...) with its non-batch axes permuted by perm (a permutation of
        range(x.ndim - 1)); y is a different array."""
        raise NotImplementedError
    # ---- end of convolution variants (engineer B) ----

    def conv2d_backward_work_size(self, x_shape, w_shape, strides, out_hw):
        """Floats of the `work` array conv2d_backward needs for these shapes (>= 1); the
        plan allocates it once."""
        return 1

    def conv2d_backward(self, x, w, z, y, dy, strides, padding, activation, alpha, cols,
                        work, dw, db, dx):
        """Backward of conv2d_forward, with the same x, w, z, y, strides, padding,
        activation, alpha and cols (cols as the forward left it; clobbered here).
          work                1-D float32 workspace of conv2d_backward_work_size floats
          dy (N, OH, OW, F)   d loss / d y; overwritten with dz = d loss / d z
          dw (KH, KW, C, F) or None   out: d loss / d w (None: a frozen layer)
          db (F,) or None     out: d loss / d b (column sums of dz over N, OH, OW)
          dx (N, H, W, C) or None   out: d loss / d x (zero where no window reaches)."""
        raise NotImplementedError

    def maxpool2d_forward(self, x, pool_size, strides, padding, y):
        """y[n, i, j, c] = max over the window (pool_size = (PH, PW)) of x[n, ., ., c];
        padding never wins (it acts as -inf).  x (N, H, W, C), y (N, OH, OW, C).  A window
        with no input element in it gives 0 (Keras's padding never makes one)."""
        raise NotImplementedError

    def maxpool2d_backward(self, x, y, dy, pool_size, strides, padding, dx):
        """dx (N, H, W, C), overwritten: each dy[n, i, j, c] is routed to the input element
        of its window that holds the maximum, the first in row-major window order on ties
        (the argmax is recomputed from x; y = maxpool2d_forward(x)).  Where windows overlap
        an input element receives the sum of what is routed to it; elsewhere 0."""
        raise NotImplementedError

    def avgpool2d_forward(self, x, pool_size, strides, padding, y):
        """y[n, i, j, c] = mean of x[n, ., ., c] over the input elements inside the window
        (padding is not counted, as Keras/TF's "same"); x (N, H, W, C), y (N, OH, OW, C);
        0 for a window with no input element."""
        raise NotImplementedError

    def avgpool2d_backward(self, dy, pool_size, strides, padding, dx):
        """dx (N, H, W, C), overwritten: each input element gets the sum over the windows
        containing it of dy / (that window's count of input elements)."""
        raise NotImplementedError

    def global_avgpool2d_forward(self, x, y):
        """y (N, C) = mean of x (N, H, W, C) over H and W."""
        raise NotImplementedError

    def global_avgpool2d_backward(self, dy, dx):
        """dx (N, H, W, C), overwritten, = dy (N, C) / (H * W) at every position."""
        raise NotImplementedError

    # ---- engineer D (#16): sequence ops; x is (N, S, C): S steps (or H*W positions) ----
    def global_maxpool_forward(self, x, y):
        """y (N, C) = max of x (N, S, C) over its S steps (a NaN wins)."""
        raise NotImplementedError

    def global_maxpool_backward(self, x, dy, dx):
        """dx (N, S, C), overwritten: dy (N, C) at the first maximum of each (sample,
        channel) of x, 0 elsewhere."""
        raise NotImplementedError

    def masked_mean_forward(self, x, mask, y):
        """y (N, C) = sum_t mask[n, t] x[n, t, c] / sum_t mask[n, t]; mask (N, S) of 1.0 / 0.0."""
        raise NotImplementedError

    def masked_mean_backward(self, dy, mask, dx):
        """dx (N, S, C), overwritten, = mask[n, t] dy[n, c] / sum_t mask[n, t]."""
        raise NotImplementedError

    def repeat_vector_forward(self, x, y):
        """y (N, times, F) = copies of x (N, F)."""
        raise NotImplementedError

    def repeat_vector_backward(self, dy, dx):
        """dx (N, F), overwritten, = sum of dy (N, times, F) over its copies, in order."""
        raise NotImplementedError

    # ---- batch normalization (over the rows of a (rows, C) array) -------------------
    # The layer reshapes its input (N, ..., C) to (rows, C) with rows = N * ...; every
    # per-channel array below is (C,).  gamma or beta may be None (scale=False or
    # center=False: gamma acts as 1, beta as 0), and then so are dgamma or dbeta.

    def batchnorm_forward_train(self, x, gamma, beta, moving_mean, moving_variance,
                                momentum, epsilon, mean, inv_std, y):
        """Training-mode batch normalization, Keras 3's rules:
          mean    out: batch mean over the rows
          inv_std out: 1 / sqrt(var + epsilon), var the biased batch variance
                       (the mean of (x - mean)^2 over the rows)
          y       out (rows, C): (x - mean) * inv_std * gamma + beta
          moving_mean, moving_variance (in place):
                  moving = moving * momentum + batch_stat * (1 - momentum)
                  with batch_stat = mean, resp. the biased var.
        mean and inv_std are what batchnorm_backward needs."""
        raise NotImplementedError

    def batchnorm_forward_infer(self, x, gamma, beta, moving_mean, moving_variance,
                                epsilon, y):
        """y (rows, C) = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta;
        nothing else changes."""
        raise NotImplementedError

    def batchnorm_backward(self, x, gamma, mean, inv_std, dy, dgamma, dbeta, dx):
        """Backward of batchnorm_forward_train through the batch statistics, with its x,
        gamma and the mean and inv_std it computed; xhat = (x - mean) * inv_std:
          dbeta  out: column sums of dy
          dgamma out: column sums of dy * xhat
          dx     out (rows, C), may be None:
                 gamma * inv_std * (dy - mean_rows(dy) - xhat * mean_rows(dy * xhat))."""
        raise NotImplementedError

    def batchnorm_infer_backward(self, x, gamma, moving_mean, moving_variance, epsilon, dy,
                                 dgamma, dbeta, dx):
        """Backward of batchnorm_forward_infer (the statistics are constants);
        xhat = (x - moving_mean) / sqrt(moving_variance + epsilon):
          dbeta  out: column sums of dy;  dgamma out: column sums of dy * xhat
          dx     out: dy * gamma / sqrt(moving_variance + epsilon).
        Each output may be None."""
        raise NotImplementedError

    # ---- dropout -------------------------------------------------------------------
    def dropout_forward(self, x, seed, counter, rate, broadcast, mask, y):
        """Inverted dropout with the counter-based uniforms of csrc/pynn.h: mask (x's
        shape) = 0 where the element's uniform u(seed, counter) is below rate, else
        1 / (1 - rate); y = x * mask.  broadcast: one bool per axis of x (batch first),
        true where the noise shape is 1 (the mask repeats along that axis)."""
        raise NotImplementedError

    def dropout_backward(self, dy, mask, dx):
        """dx = dy * mask; dx may be dy."""
        raise NotImplementedError

    # ---- Embedding and Masking (engineer G) ------------------------------------------
    def embedding_forward(self, ids, table, y, mask):
        """y (n, D) = table[ids] for ids (n,) float32 integers in [0, V), table (V, D);
        mask (n,) or None: ids != 0 as 1/0.  An id out of range raises ValueError (the cpu
        backend's KernelInputError) before anything is written."""
        raise NotImplementedError

    def embedding_backward(self, ids, dy, dtable, work):
        """The table's gradient, written only in the rows of the ids seen: dtable[r] = sum
        of dy[i] over ids[i] == r in position order.  work (2 n,) int64 keeps what
        embedding_grad_clear needs."""
        raise NotImplementedError

    def embedding_grad_clear(self, dtable, work, n, whole=False):
        """Zero the rows of dtable that embedding_backward wrote for n ids; whole: every
        row (distributed training sums other ranks' rows in)."""
        raise NotImplementedError

    def embedding_sgd(self, table, dtable, work, n, lr):
        """After the optimizer, in place of embedding_grad_clear for a table whose segment
        it skipped (plain SGD, csrc/pynn.h's PYNN_SEGMENT_SPARSE): lr not None, the rows of
        the n ids embedding_backward saw get table[r] -= lr dtable[r] (the dense rule's
        bits); then those gradient rows are zeroed (pynn_embedding_sgd).  lr None: the
        optimizer updated the table densely this step, only the clear."""
        raise NotImplementedError

    def masking_forward(self, x, mask_value, y, mask):
        """x (rows, D): mask[r] = any(x[r] != mask_value), y = x * mask[r]; mask may be None."""
        raise NotImplementedError

    def masking_backward(self, dy, mask, dx):
        """dx = dy * mask[r] row by row; dx may be dy."""
        raise NotImplementedError

    # ---- recurrent layers (engineer H; csrc/pynn.h's pynn_rnn_forward / _backward) --------
    def rnn_forward(self, x, kernel, rkernel, bias, mask, rec_mask, seq, cs, gates, hprev, aux,
                    work, h_last, c_last, *, T, f, u, cell, act, rec_act, go_backwards,
                    time_order, zero_output=False, out=None, in_mask=None, gate_masks=False):
        """A recurrent layer's forward over x (n, T, f) (cell 0 SimpleRNN, 1 LSTM, 2 GRU):
        writes seq, cs (LSTM), gates, hprev, aux (GRU; LSTM: act(c)), h_last and c_last (may
        be None), and with zero_output `out` (seq with 0 at masked steps); work is (n, G u)
        scratch.  gate_masks: a dropout mask per gate, rec_mask (n, G, u) and in_mask
        (n, G, f) (Keras 3's LSTM/GRU with recurrent_dropout).  Layouts and semantics as
        pynn_rnn_forward."""
        raise NotImplementedError

    def rnn_backward(self, x, kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask, dseq,
                     dh_last, dc_last, dgates, dgr, work, dkernel, drkernel, dbias, dx, *, T,
                     f, u, cell, act, rec_act, go_backwards, time_order, zero_output=False,
                     in_mask=None, gate_masks=False):
        """Backpropagation through time of rnn_forward: writes dkernel, drkernel, dbias, dx
        (each may be None) from the gradients of seq, h_last and c_last (each may be None);
        dgates, dgr (GRU) and work are scratch; masks as rnn_forward's."""
        raise NotImplementedError

    # ---- geometric image ops (Keras 3's image preprocessing layers) ------------------
    def affine_transform(self, x, params, interpolation, fill_mode, fill_value, y):
        """y (N, H, W, C) = the images x resampled through each image's inverse transform,
        params (N, 8) (keras.ops.image.affine_transform; "bilinear" / "nearest", fill
        "reflect" / "wrap" / "constant" / "nearest")."""
        raise NotImplementedError

    def resize(self, x, window, interpolation, fill_value, y):
        """y (N, OH, OW, C) = the window (top, left, height, width) of each image of x
        resized (half-pixel centres, no antialiasing); outside the image: fill_value."""
        raise NotImplementedError

    def flip(self, x, params, horizontal, vertical, y):
        """y = x flipped where params[b, 0] != 0 (params None: every image)."""
        raise NotImplementedError

    def crop(self, x, params, top, left, y):
        """y (N, OH, OW, C) = the windows of x at (top, left), or at params[b, :2]."""
        raise NotImplementedError

    def image_random(self, kind, seed, counter, h, w, out_hw, ranges, params):
        """params (N, 8) = the per-image parameters of a random augmentation ("rotation",
        "zoom", "translation", "flip", "crop") drawn from (seed, counter)."""

    # ---- transposed convolution, upsampling, padding, cropping (issue 16, part C) ---------
    # Conv2DTranspose (csrc/pynn.h, "transposed convolution"): x (N, H, W, C), kernel w
    # (KH, KW, F, C) (Keras's layout), output (N, OH, OW, F) read from z's shape; strides
    # and padding (pad_top, pad_left) are those of the convolution whose adjoint it is
    # (over the output, see pynn/layers/upsampling.py).
    def conv2d_transpose_work_size(self, x_shape, w_shape, out_hw):
        """Floats of the `work` array conv2d_transpose_forward/backward need (>= 1)."""
        return 1

    def conv2d_transpose_forward(self, x, w, b, strides, padding, activation, alpha, work, z,
                                 y):
        """z = conv_transpose(x, w) + b, y = activation(z) (y may be z)."""
        raise NotImplementedError

    def conv2d_transpose_backward(self, x, w, z, y, dy, strides, padding, activation, alpha,
                                  work, dw, db, dx):
        """dy overwritten with dz = act'(z) dy; dw (KH, KW, F, C), db (F,), dx (N, H, W, C)
        (each may be None)."""
        raise NotImplementedError

    def upsample2d_backward(self, dy, size, interpolation, dx):
        """dx (N, H, W, C) = the adjoint of resize (whole image, "nearest" or "bilinear")
        to (H*size[0], W*size[1]) applied to dy."""
        raise NotImplementedError

    def pad_crop(self, x, top, left, y):
        """y[:, i, j] = x[:, i - top, j - left] where that lies in x, else 0."""
        raise NotImplementedError

    def kernel_dilate(self, src, dilation, inverse, dst):
        """A kernel (KH, KW, A, B) with dilation - 1 zeros between its taps, dst ((KH-1)dh+1,
        (KW-1)dw+1, A, B); inverse: the taps of the dilated src gathered back into dst."""
        raise NotImplementedError

    # ---- pixel preprocessing (Rescaling, Normalization, RandomContrast, RandomBrightness)
    # csrc/pynn.h ("pixel preprocessing") and reference.py define each; y may be x.
    def channel_affine(self, x, scale, offset, c, inner, y):
        """y = x * scale[k] + offset[k] (x viewed as (outer, c, inner); offset None: 0)."""
        raise NotImplementedError

    def normalize(self, x, mean, variance, c, inner, invert, epsilon, y):
        """Keras's Normalization, d = max(sqrt(variance), epsilon): y = (x - mean) / d, or
        mean + x * d with invert; mean None acts as 0 (the backward)."""
        raise NotImplementedError

    def random_contrast(self, x, seed, counter, lower, upper, vmin, vmax, factors, y):
        """Keras 3's RandomContrast in training on images x (N, H, W, C); factors (N,) out."""
        raise NotImplementedError

    def random_contrast_backward(self, x, factors, dy, vmin, vmax, dx):
        raise NotImplementedError

    def random_brightness(self, x, seed, counter, lower, upper, vmin, vmax, mask, y):
        """Keras 3's RandomBrightness in training; mask (or None) = 1 where not clipped."""
        raise NotImplementedError

    # ---- merges, concatenation, scaling (the merge layers; summing gradients) ------
    def merge_forward(self, kind, xs, y):
        """y = the merge of the same-shaped arrays xs ("add", "subtract", "multiply",
        "average", "maximum", "minimum"), folded left to right; y may be xs[0], or xs[1]
        when there are two."""
        raise NotImplementedError

    def merge_backward(self, kind, i, xs, dy, dx):
        """dx = d merge(xs) / d xs[i] applied to dy (maximum/minimum: dy where xs[i] is the
        first input holding the extreme value, else 0); dx may be dy."""
        raise NotImplementedError

    def concat_forward(self, xs, y):
        """y (outer, sum of widths) = the 2-D arrays xs[i] (outer, width_i) side by side."""
        raise NotImplementedError

    def concat_backward(self, dy, widths, dxs):
        """dxs[i] (outer, widths[i]) = the columns of dy that came from xs[i]; entries of
        dxs may be None (not wanted)."""
        raise NotImplementedError

    def scale(self, x, alpha, y):
        """y = alpha * x; y may be x."""
        raise NotImplementedError

    # activations (engineer A): Keras's ReLU layer, softmax over any axis, PReLU
    def relu_forward(self, x, negative_slope, threshold, max_value, y):
        """y = clip(x [x > threshold], 0, max_value) - negative_slope max(threshold - x, 0)
        (Keras's ReLU layer; max_value inf for none); y may be x."""
        raise NotImplementedError

    def relu_backward(self, x, dy, negative_slope, threshold, max_value, dx):
        """dx = relu'(x) dy for relu_forward; dx may be dy."""
        raise NotImplementedError

    def softmax_axis_forward(self, x, outer, length, inner, y, mask=None):
        """y = softmax of x viewed as (outer, length, inner) over the middle axis; mask
        (None, or x's size): where <= 0.5, x counts as -1e9 and y is 0 (Keras's mask)."""
        raise NotImplementedError

    def softmax_axis_backward(self, y, dy, outer, length, inner, dx):
        """dx = y (dy - sum over the middle axis of dy y); dx may be dy."""
        raise NotImplementedError

    def prelu_forward(self, x, alpha, dims, shared, y):
        """y = x > 0 ? x : alpha x; x flat (rows * prod(dims)), alpha flat, of dims with the
        shared axes (shared[k] true) set to 1, broadcast."""
        raise NotImplementedError

    def prelu_backward(self, x, alpha, dy, dims, shared, dalpha, dx):
        """dalpha (None: not wanted) = the sum over rows and shared axes of dy x [x < 0], in a
        fixed order; dx
        (None: not wanted; may be dy) = dy (x > 0 ? 1 : alpha)."""
        raise NotImplementedError

    # ---- regularizers and constraints (engineer F) ----------------------------------
    def penalty(self, x, dx, l1, l2, scale=1.0, accumulate=True):
        """The L1/L2 penalty scale * (l1 sum|x| + l2 sum x^2) of x (any shape), a Python
        float summed in a fixed order (csrc/pynn.h pynn_penalty); when dx (x's shape) is
        given, the gradient scale * (l1 sign(x) + 2 l2 x) is added into it (accumulate) or
        written to it."""
        raise NotImplementedError

    def constraint(self, w, outer, red, inner, kind, a=0.0, b=0.0, rate=1.0):
        """Keras 3's weight constraint `kind` ("max_norm", "min_max_norm", "non_neg",
        "unit_norm") in place on w viewed as (outer, red, inner), the norms over `red`:
        a = max_value (max_norm) or min_value (min_max_norm), b = max_value (min_max_norm),
        rate (min_max_norm); epsilon 1e-7 (pynn_constraint)."""
        raise NotImplementedError

    # ---- metrics ---------------------------------------------------------------------
    def metric_sum(self, kind, pred, target, k=5, threshold=0.5, weights=None, per_weight=1):
        """The sum over the rows of pred (rows, cols) of metric `kind`'s per-row value
        (pynn.ids.METRICS) against target: float32 rows, or int64 labels (rows,).  A
        Python float.  k: the top-k accuracies' k; threshold: binary accuracy's and the
        confusion counts' (pred > threshold is predicted positive); weights: None, or
        float32 (ceil(rows / per_weight),) >= 0, row i counting weights[i // per_weight]
        times (pynn_metric_sum)."""
        raise NotImplementedError

    def metric_confusion(self, pred, target, thresholds, weights=None, per_weight=1):
        """The confusion counts of every entry of pred at each of the float32 `thresholds`
        (n,), a float64 host array (4, n): true positives, false positives, true negatives,
        false negatives, each entry counting its row's weight (pynn_metric_confusion)."""
        raise NotImplementedError

    # ---- optimizers (in place; Keras 3 rules, see csrc/pynn.h) ----------------------
    def optimizer_step(self, kind, w, slots, g, step, hyper, segments=None, ema=None):
        """One update of the flat parameter array w from its gradient g (a name in
        pynn.ids.OPTIMIZERS); slots the optimizer's state arrays, None where the rule reads
        none (pynn_optimizer_step's order; fewer than pynn._core.OPT_SLOTS may be given),
        step >= 1 the update being made, hyper a dict of the settings named in
        pynn.ids.HYPER and, optionally, of the options named in pynn.ids.OPTIONS (gradient
        clipping, EMA; 0 when left out).  As Keras 3's base optimizer (pynn_optimizer_apply):
        g is clipped in place, weight decay applies to the segments ((offset, size, flags)
        triples tiling w; None: one covering w) whose flag is set, then the rule, then the
        EMA array `ema` (None: none) is updated."""
        raise NotImplementedError

    # ---- engineer E: normalization and noise layers (csrc/norm.c) -----------------------
    def group_norm_forward(self, x, gamma, beta, s, groups, k, epsilon, rms, mean, inv_std, y):
        """Group / layer normalization of x viewed as (n, s, groups * k) (Keras 3's
        GroupNormalization; LayerNormalization: s = groups = 1): mean, inv_std (n * groups)
        and y out; gamma, beta (groups * k) may be None; rms: LayerNormalization's
        rms_scaling (pynn_group_norm_forward)."""
        raise NotImplementedError

    def group_norm_backward(self, x, gamma, mean, inv_std, dy, s, groups, k, rms, dgamma,
                            dbeta, dx):
        """Its backward (pynn_group_norm_backward); each output may be None; dx may be dy."""
        raise NotImplementedError

    def unit_norm_forward(self, x, cols, inv_norm, y):
        """y = x / sqrt(max(sum x^2, 1e-24)) per row of cols; inv_norm (rows) out."""
        raise NotImplementedError

    def unit_norm_backward(self, x, inv_norm, dy, cols, dx):
        """The backward of unit_norm_forward; dx may be dy."""
        raise NotImplementedError

    def gaussian_noise(self, x, seed, counter, mode, scale, noise, y):
        """Box-Muller normals z of (seed, counter): mode 0 y = x + scale z, mode 1
        y = x (1 + scale z); noise (x's shape, or None) receives scale z / 1 + scale z."""
        raise NotImplementedError

    def __repr__(self):
        return f"<pynn backend {self.name!r}>"


# Host arrays the kernels write start on a cache line: NumPy's allocator aligns to 16 bytes
# only, and a 64-byte vector store that straddles two lines costs two (the 784-512-256-10
# MLP's three products at batch 16, on AVX-512: ~48 us with the outputs on a line, ~52
# without).
HOST_ALIGN = 64


def aligned_zeros(shape, dtype=np.float32, align=HOST_ALIGN):
    """np.zeros(shape, dtype) whose data starts on an `align`-byte boundary (a view into a
    slightly larger array, which it keeps alive)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


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
        return aligned_zeros(shape, dtype)

    def copy_from_host(self, dst, src):
        np.copyto(dst, src, casting="same_kind")


def loss_option_kind(kind, label_smoothing, ignore_class, where="loss", reduce_sum=False):
    """The checks every backend's loss makes of the options it does not hand to a kernel
    that checks them: ignore_class only for "scce", an int; reduce_sum a bool."""
    if not isinstance(reduce_sum, (bool, np.bool_)):
        raise TypeError(f"{where}: expected reduce_sum to be a bool, received "
                        f"{reduce_sum!r}")
    if ignore_class is not None:
        if kind != "scce":
            raise ValueError(f"{where}: ignore_class applies to 'scce', received kind={kind!r}")
        if isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer)):
            raise TypeError(f"{where}: expected ignore_class None or an int, received "
                            f"{ignore_class!r}")
