# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""pynn._core: the thin Cython layer between pynn's Python code and its C kernels.

Layers, top to bottom:
  * pynn/backend/cpu.py converts user arrays (float32, C-contiguous) and allocates outputs;
  * this module checks dtypes, shapes and contiguity (typed memoryviews refuse the wrong
    dtype or layout), releases the GIL and calls one C function from csrc/pynn.h;
  * the C function returns a status code that `_check` turns into a Python exception.
Nothing here computes: every number comes from csrc/.

Arguments are marked # OUT / # IN as in csrc/pynn.h: outputs first, then inputs.
"""

from libc.stdint cimport int32_t, int64_t, uint64_t
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.exc cimport PyErr_CheckSignals
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT

cdef extern from "pynn.h" nogil:
    int PYNN_OK, PYNN_EINVAL, PYNN_ENOMEM, PYNN_ELABEL, PYNN_ENOTSUP, PYNN_ENONFINITE, PYNN_EHOOK
    int PYNN_ACT_LINEAR, PYNN_ACT_RELU, PYNN_ACT_LEAKY_RELU, PYNN_ACT_SIGMOID
    int PYNN_ACT_TANH, PYNN_ACT_SOFTMAX, PYNN_ACT_GELU
    int PYNN_ACT_COUNT   # activations (engineer A): the ids run 0 .. PYNN_ACT_COUNT - 1
    int PYNN_LOSS_MSE, PYNN_LOSS_BCE, PYNN_LOSS_CCE
    int PYNN_KERNEL_AUTO, PYNN_KERNEL_GENERIC, PYNN_KERNEL_AVX2, PYNN_KERNEL_AVX512

    int PYNN_TABLE_ACTIVATION, PYNN_TABLE_LOSS, PYNN_TABLE_METRIC, PYNN_TABLE_OPTIMIZER
    int PYNN_TABLE_MERGE, PYNN_TABLE_OP, PYNN_TABLE_SCHEDULE
    const char *pynn_id_name(int table, int id)
    int pynn_id_count(int table)

    int pynn_set_num_threads(int n)
    int pynn_get_num_threads()
    int pynn_has_openmp()
    int pynn_gemm_select_kernel(int which)
    int pynn_gemm_kernel()
    int pynn_gemm_kernel_supported(int which)

    int pynn_sgemm(float *C, const float *A, const float *B,
                   int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc)
    int64_t pynn_sgemm_ksplit_chunks(int64_t M, int64_t N, int64_t K)
    int pynn_sgemm_ksplit(float *C, float *partials, const float *A, const float *B,
                          int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                          int64_t lda, int64_t ldb, int64_t ldc)
    int pynn_sgemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                            const float *bias, int trans_a, int trans_b,
                            int64_t M, int64_t N, int64_t K, int act, float act_alpha)
    int64_t pynn_dense_panels_floats(int64_t K, int64_t N)
    int pynn_dense_pack_panels(float *buf, const float *w, int64_t K, int64_t N)

    int pynn_bias_grad(float *db, const float *dz, int64_t rows, int64_t cols)
    int pynn_activation_backward_bias_grad(float *dz, float *db, const float *z, const float *y,
                                           const float *dy, int64_t rows, int64_t cols, int act,
                                           float alpha)
    int pynn_activation_forward(float *y, const float *x, int64_t rows, int64_t cols,
                                int act, float alpha)
    int pynn_activation_backward(float *dx, const float *x, const float *y, const float *dy,
                                 int64_t rows, int64_t cols, int act, float alpha)
    ctypedef struct pynn_loss_options:
        float param
        float label_smoothing
        int has_ignore
        int64_t ignore_class
        const float *weights
        int64_t per_weight
        int reduce_sum
    int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
                  int64_t rows, int64_t cols, int kind, int from_logits,
                  const pynn_loss_options *opt)
    int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                        int64_t rows, int64_t cols, int from_logits, const pynn_loss_options *opt)
    int pynn_sgd_update(float *w, float *m, const float *g, int64_t n,
                        float lr, float momentum, int nesterov)
    int pynn_adam_update(float *w, float *m, float *v, const float *g, int64_t n,
                         float lr_t, float beta1, float beta2, float epsilon)
    int pynn_rmsprop_update(float *w, float *v, float *mom, const float *g, int64_t n,
                            float lr, float rho, float momentum, float epsilon)

    int pynn_im2col(float *cols, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                    int64_t pad_left, int64_t oh, int64_t ow)
    int pynn_col2im(float *dx, const float *cols, int64_t n, int64_t h, int64_t w, int64_t c,
                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                    int64_t pad_left, int64_t oh, int64_t ow)
    int pynn_conv2d_direct_supported(int64_t kh, int64_t kw, int64_t c, int64_t f, int act)
    int pynn_conv2d_winograd_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                       int64_t sw, int64_t c, int64_t f, int64_t oh, int64_t ow,
                                       int act)
    int pynn_conv2d_winograd_filter_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                              int64_t sw, int64_t c, int64_t f, int64_t oh,
                                              int64_t ow, int act)
    int pynn_conv2d_direct_forward(float *z, float *y, const float *x, const float *wgt,
                                   const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                   int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                                   float alpha)
    int pynn_conv2d_direct_backward_filter(float *dw, float *db, float *dz, const float *x,
                                           const float *z, const float *y, const float *dy,
                                           int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                           int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                           int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                                           int act, float alpha, float *work, int64_t work_size)
    int64_t pynn_conv2d_direct_filter_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                           int64_t kw, int64_t sh, int64_t sw, int64_t oh,
                                           int64_t ow, int64_t f)
    int pynn_maxpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w,
                               int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                               int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow)
    int pynn_maxpool2d_backward(float *dx, const float *x, const float *y, const float *dy, int64_t n,
                                int64_t h, int64_t w, int64_t c, int64_t ph, int64_t pw,
                                int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                                int64_t oh, int64_t ow)
    int pynn_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w,
                               int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                               int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow)
    int pynn_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                                int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                                int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow)
    int pynn_global_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h,
                                      int64_t w, int64_t c)
    int pynn_global_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h,
                                       int64_t w, int64_t c)
    int pynn_batchnorm_forward_train(float *y, float *mean, float *inv_std, float *moving_mean,
                                     float *moving_variance, const float *x, const float *gamma,
                                     const float *beta, int64_t rows, int64_t cols,
                                     float momentum, float epsilon)
    int pynn_batchnorm_forward_infer(float *y, const float *x, const float *gamma,
                                     const float *beta, const float *moving_mean,
                                     const float *moving_variance, int64_t rows, int64_t cols,
                                     float epsilon)
    int pynn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                                const float *gamma, const float *mean, const float *inv_std,
                                const float *dy, int64_t rows, int64_t cols)
    int pynn_multiply(float *y, const float *x, const float *mask, int64_t n)

    # layer-level kernels (csrc/layers.c, batchnorm.c, dropout.c, merge.c, metrics.c)
    int pynn_dense_backward(float *dw, float *db, float *dx, float *dy, const float *x,
                            const float *w, const float *z, const float *y, int64_t m,
                            int64_t n_in, int64_t n_out, int act, float alpha)
    int pynn_conv2d_forward(float *z, float *y, float *cols, const float *x, const float *wgt,
                            const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                            int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                            int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                            float alpha)
    int64_t pynn_conv2d_backward_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                      int64_t kw, int64_t sh, int64_t sw, int64_t oh,
                                      int64_t ow, int64_t f)
    int pynn_conv2d_backward(float *dw, float *db, float *dx, float *dy, float *cols,
                             float *work, int64_t work_size, const float *x, const float *wgt,
                             const float *z, const float *y, int64_t n, int64_t h, int64_t w,
                             int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                             int64_t f, int act, float alpha)
    int pynn_batchnorm_infer_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                                      const float *gamma, const float *moving_mean,
                                      const float *moving_variance, const float *dy,
                                      int64_t rows, int64_t cols, float epsilon)
    int pynn_dropout_forward(float *y, float *mask, const float *x, int64_t rows,
                             const int64_t *dims, const int64_t *broadcast, int64_t ndim,
                             uint64_t seed, uint64_t counter, double rate)
    int pynn_channel_affine(float *y, const float *x, const float *scale, const float *offset,
                            int64_t outer, int64_t c, int64_t inner)
    int pynn_normalize(float *y, const float *x, const float *mean, const float *variance,
                       int64_t outer, int64_t c, int64_t inner, int invert, float epsilon)
    int pynn_random_contrast(float *y, float *factors, const float *x, int64_t n, int64_t hw,
                             int64_t c, uint64_t seed, uint64_t counter, double lower,
                             double upper, float vmin, float vmax)
    int pynn_random_contrast_backward(float *dx, const float *x, const float *factors,
                                      const float *dy, int64_t n, int64_t hw, int64_t c,
                                      float vmin, float vmax)
    int pynn_random_brightness(float *y, float *mask, const float *x, int64_t n,
                               int64_t per_image, uint64_t seed, uint64_t counter, double lower,
                               double upper, float vmin, float vmax)
    int pynn_merge_forward(float *y, const float *const *xs, int64_t k, int64_t n, int kind)
    int pynn_merge_backward(float *dx, const float *dy, const float *const *xs, int64_t k,
                            int64_t n, int kind, int64_t i)
    int pynn_concat(float *y, const float *const *xs, const int64_t *widths, int64_t k,
                    int64_t outer)
    int pynn_concat_backward(float *const *dxs, const float *dy, const int64_t *widths,
                             int64_t k, int64_t outer)
    int pynn_scale(float *y, const float *x, int64_t n, float alpha)
    int pynn_metric_sum(double *sum, const float *pred, const float *target,
                        const int64_t *labels, int64_t rows, int64_t cols, int metric,
                        int64_t k, float threshold, const float *weights, int64_t per_weight)
    int pynn_metric_confusion(double *counts, const float *pred, const float *target,
                              const int64_t *labels, int64_t rows, int64_t cols,
                              const float *thresholds, int64_t n_thresholds,
                              const float *weights, int64_t per_weight)
    int PYNN_HYPER_LEARNING_RATE, PYNN_HYPER_MOMENTUM, PYNN_HYPER_NESTEROV, PYNN_HYPER_BETA_1
    int PYNN_HYPER_BETA_2, PYNN_HYPER_RHO, PYNN_HYPER_EPSILON, PYNN_HYPER_WEIGHT_DECAY
    int PYNN_HYPER_AMSGRAD, PYNN_HYPER_COUNT, PYNN_OPT_SLOTS
    int pynn_optimizer_slots(int kind, const double *hyper)
    int pynn_optimizer_step(float *w, float *const *slots, const float *g, int64_t n,
                            int kind, int64_t step, const double *hyper)
    void pynn_nadam_factors(double *out, double beta_1, double beta_2, int64_t step)
    int PYNN_SCHEDULE_MAX_BOUNDARIES, PYNN_SCHEDULE_PARAMS, PYNN_OPT_REALS
    double pynn_schedule_lr(int kind, const double *params, int64_t iteration)
    int PYNN_OPT_REALS_OPTIONS, PYNN_OPTION_COUNT, PYNN_OPTION_CLIPNORM, PYNN_OPTION_CLIPVALUE
    int PYNN_OPTION_GLOBAL_CLIPNORM, PYNN_OPTION_EMA_MOMENTUM
    int PYNN_OPTION_EMA_OVERWRITE_FREQUENCY, PYNN_SEGMENT_DECAY, PYNN_NORM_CHUNK
    int pynn_optimizer_options_check(int64_t n, const int64_t *segments, int64_t n_segments,
                                     const double *options)
    int pynn_segment_sumsq(double *sums, const float *g, int64_t n, const int64_t *segments,
                           int64_t n_segments)
    int pynn_optimizer_apply(float *w, float *const *slots, float *ema, float *g, int64_t n,
                             const int64_t *segments, int64_t n_segments, int kind,
                             int64_t step, const double *hyper, const double *options)

    # geometric image ops (csrc/image.c)
    int PYNN_IMAGE_PARAMS, PYNN_INTERP_BILINEAR, PYNN_INTERP_NEAREST
    int PYNN_FILL_REFLECT, PYNN_FILL_WRAP, PYNN_FILL_CONSTANT, PYNN_FILL_NEAREST
    int PYNN_RANDOM_ROTATION, PYNN_RANDOM_ZOOM, PYNN_RANDOM_TRANSLATION, PYNN_RANDOM_FLIP
    int PYNN_RANDOM_CROP, PYNN_RANDOM_REALS
    int pynn_affine_transform(float *y, const float *x, const float *params, int64_t n,
                              int64_t h, int64_t w, int64_t c, int interpolation,
                              int fill_mode, float fill_value)
    int pynn_resize(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                    int64_t oh, int64_t ow, int64_t top, int64_t left, int64_t wh, int64_t ww,
                    int interpolation, float fill_value)
    int pynn_flip(float *y, const float *x, const float *params, int64_t n, int64_t h,
                  int64_t w, int64_t c, int horizontal, int vertical)
    int pynn_crop(float *y, const float *x, const float *params, int64_t n, int64_t h,
                  int64_t w, int64_t c, int64_t oh, int64_t ow, int64_t top, int64_t left)
    int pynn_image_random(float *params, int64_t n, int64_t h, int64_t w, int64_t oh,
                          int64_t ow, int kind, const double *r, uint64_t seed,
                          uint64_t counter)

    # plans (csrc/plan.c)
    int PYNN_DTYPE_F32, PYNN_DTYPE_I64
    ctypedef struct pynn_buffer:
        void *data
        int64_t row_size
        int64_t size
        int32_t dtype
    ctypedef struct pynn_op:
        int32_t kind
        int32_t n_bufs, n_ints, n_reals
        const int64_t *bufs
        const int64_t *ints
        const double *reals
    ctypedef struct pynn_plan:
        const pynn_op *ops
        int64_t n_ops
        const pynn_buffer *bufs
        int64_t n_bufs
        int64_t capacity
        int64_t n_inputs
        const int64_t *input_bufs
        int64_t n_targets
        const int64_t *target_bufs
        const int64_t *target_classes
        int64_t n_outputs
        const int64_t *output_bufs
        int64_t n_losses, n_metrics
        int64_t n_checked
        const int64_t *checked_rows
        const int64_t *target_ignore
        int (*hook)(void *ctx, int64_t phase, int64_t offset, int64_t count, int64_t rows,
                    int64_t step) noexcept nogil
        void *hook_ctx
        const int64_t *input_direct
    ctypedef struct pynn_plan_feed:
        const void *const *inputs
        const void *const *targets
        void *const *outputs
        int64_t n_rows
        const int64_t *order
        int64_t n_order
        const int *stop
        int64_t *steps_done
    int pynn_plan_check(const pynn_plan *plan, int64_t rows)
    int pynn_plan_run(const pynn_plan *plan, const pynn_plan_feed *feed, int64_t first_row,
                      int64_t batch, int64_t n_steps, int64_t iterations, int check_inputs,
                      double *step_losses, double *step_metrics, int64_t *step_rows)


# The GEMM micro-kernel ids (the activation, loss, metric, optimizer and op ids are in
# ID_TABLES below, read from csrc/pynn.h's lists; pynn/ids.py names them for Python).
KERNEL_AUTO = PYNN_KERNEL_AUTO
KERNEL_GENERIC = PYNN_KERNEL_GENERIC
KERNEL_AVX2 = PYNN_KERNEL_AVX2
KERNEL_AVX512 = PYNN_KERNEL_AVX512
KERNEL_NAMES = {PYNN_KERNEL_GENERIC: "generic", PYNN_KERNEL_AVX2: "avx2",
                PYNN_KERNEL_AVX512: "avx512"}


def _id_table(int table):
    """{name: id} for one of csrc/pynn.h's id lists (the one source of those numbers)."""
    cdef int i
    cdef const char *name
    found = {}
    for i in range(pynn_id_count(table)):
        name = pynn_id_name(table, i)
        if name != NULL:                 # the op table may leave gaps (reserved ids)
            found[name.decode("ascii")] = i
    return found


ID_TABLES = {"activation": _id_table(PYNN_TABLE_ACTIVATION), "loss": _id_table(PYNN_TABLE_LOSS),
             "metric": _id_table(PYNN_TABLE_METRIC), "optimizer": _id_table(PYNN_TABLE_OPTIMIZER),
             "merge": _id_table(PYNN_TABLE_MERGE), "op": _id_table(PYNN_TABLE_OP),
             "schedule": _id_table(PYNN_TABLE_SCHEDULE)}


class KernelInputError(ValueError):
    """A kernel refused its data (a label out of range, a NaN or infinity) before it
    changed anything; callers that skipped their own checks run them to say where."""


cdef int _check(int status, str where) except -1:
    """Turn a C status code into a Python exception naming the kernel."""
    if status == PYNN_OK:
        return 0
    if status == PYNN_EINVAL:
        raise ValueError(f"{where}: invalid argument (size, pointer or option) rejected by the C kernel")
    if status == PYNN_ENOMEM:
        raise MemoryError(f"{where}: could not allocate the kernel's workspace")
    if status == PYNN_ELABEL:
        raise KernelInputError(f"{where}: a class label is negative or not below the number of classes")
    if status == PYNN_ENONFINITE:
        raise KernelInputError(f"{where}: the data holds NaN or infinite values")
    if status == -7:            # PYNN_EINDEX (engineer G, _core_embedding.pxi)
        raise KernelInputError(f"{where}: an Embedding input id is not an integer in "
                               "[0, input_dim)")
    if status == PYNN_ENOTSUP:
        raise RuntimeError(f"{where}: this CPU or build does not support the requested kernel")
    raise RuntimeError(f"{where}: C kernel failed with status {status}")


cdef inline void _same_shape(tuple a, tuple b, str what, str where) except *:
    if a != b:
        raise ValueError(f"{where}: expected {what} of shape {b}, received shape {a}")


# ---- runtime -------------------------------------------------------------------

def set_num_threads(int n):
    if n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, received {n}")
    _check(pynn_set_num_threads(n), "set_num_threads")


def get_num_threads():
    return pynn_get_num_threads()


def has_openmp():
    return bool(pynn_has_openmp())


def gemm_select_kernel(int which):
    _check(pynn_gemm_select_kernel(which), "gemm_select_kernel")


def gemm_kernel():
    return pynn_gemm_kernel()


def gemm_kernel_supported(int which):
    return bool(pynn_gemm_kernel_supported(which))


include "_core_gemm.pxi"
include "_core_kernels.pxi"
include "_core_cnn.pxi"
include "_core_image.pxi"
include "_core_pixel.pxi"
include "_core_norm.pxi"   # engineer E: normalization and noise layers
include "_core_interrupt.pxi"
include "_core_plan.pxi"
include "_core_act_layers.pxi"   # activations (engineer A)
include "_core_seq1d.pxi"   # engineer D (#16): sequence ops
include "_core_regularizers.pxi"  # engineer F: regularizers and constraints
include "_core_embedding.pxi"   # engineer G
# transposed convolution, upsampling, padding, cropping (issue 16, part C)
include "_core_upsampling.pxi"
include "_core_conv_variants.pxi"   # engineer B: convolution variants
include "_core_rnn.pxi"  # recurrent layers (engineer H)
