/*
 * pynn.h -- the one public header of pynn's C core.
 *
 * Conventions (see DESIGN.md):
 *   - float32, row-major, C-contiguous unless a leading dimension says otherwise;
 *   - arguments: outputs first, then inputs, then sizes (int64_t), then scalars;
 *   - the caller allocates every output; inputs are const;
 *   - every function returns PYNN_OK (0) or a negative PYNN_E* status, and never
 *     prints, exits or aborts;
 *   - determinism: each output element is written by exactly one thread and every
 *     sum runs in an order that does not depend on the thread count, so results are
 *     bitwise identical on 1 or N threads.
 */
#ifndef PYNN_H
#define PYNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */
#define PYNN_OK 0
#define PYNN_EINVAL (-1)  /* a size, pointer or enum argument is invalid     */
#define PYNN_ENOMEM (-2)  /* a workspace could not be allocated              */
#define PYNN_ELABEL (-3)  /* a class label is negative or >= number of classes */
#define PYNN_ENOTSUP (-4) /* the CPU lacks the instructions a kernel needs   */
#define PYNN_ENONFINITE (-5) /* an input holds NaN or infinity (checked only where documented) */

/* ---- activations ------------------------------------------------------- */
#define PYNN_ACT_LINEAR 0
#define PYNN_ACT_RELU 1
#define PYNN_ACT_LEAKY_RELU 2 /* alpha = negative slope (Keras LeakyReLU default 0.2) */
#define PYNN_ACT_SIGMOID 3
#define PYNN_ACT_TANH 4
#define PYNN_ACT_SOFTMAX 5    /* row-wise, max-subtracted */
#define PYNN_ACT_GELU 6       /* exact (erf) form, Keras's default approximate=False */

/* ---- losses (value = mean over the batch of the per-sample loss) --------- */
#define PYNN_LOSS_MSE 0  /* per sample: mean over the last axis of (p - t)^2          */
#define PYNN_LOSS_BCE 1  /* per sample: mean over the last axis of binary CE          */
#define PYNN_LOSS_CCE 2  /* per sample: -sum_j t_j log p_j over the last axis         */

/* ---- GEMM micro-kernels --------------------------------------------------- */
#define PYNN_KERNEL_AUTO 0
#define PYNN_KERNEL_GENERIC 1
#define PYNN_KERNEL_AVX2 2
#define PYNN_KERNEL_AVX512 3

/* ---- runtime ------------------------------------------------------------ */
/* Number of OpenMP threads the kernels use (n >= 1); the default is OpenMP's. */
int pynn_set_num_threads(int n);
int pynn_get_num_threads(void);
/* 1 when the library was built with OpenMP. */
int pynn_has_openmp(void);

/* Choose the GEMM micro-kernel: PYNN_KERNEL_AUTO picks the best the CPU supports.
 * Returns PYNN_ENOTSUP if the CPU (or the build) lacks the kernel asked for. */
int pynn_gemm_select_kernel(int which);
/* The kernel in use: PYNN_KERNEL_GENERIC, _AVX2 or _AVX512. */
int pynn_gemm_kernel(void);
/* 1 if `which` can run on this CPU with this build. */
int pynn_gemm_kernel_supported(int which);

/* ---- GEMM ---------------------------------------------------------------- */
/*
 * C = alpha * op(A) op(B) + beta * C
 *   C is (M x N) with row stride ldc.
 *   op(A) is (M x K): A is stored (M x K) with row stride lda, or, if trans_a,
 *   (K x M) with row stride lda.  Likewise op(B) is (K x N): B is (K x N) or, if
 *   trans_b, (N x K), row stride ldb.
 *   beta == 0 means C is not read (it may hold NaN).  M, N or K may be 0.
 */
int pynn_sgemm(float *C, const float *A, const float *B,
               int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc);

/*
 * C = op(A) op(B) for a product whose output is too small to feed the threads but
 * whose K is long (a convolution's filter gradient: K = the batch's output positions).
 * K is cut into pynn_sgemm_ksplit_chunks(M, N, K) chunks of consecutive p (a function
 * of the shape only), each chunk's product computed by one thread into
 * partials[chunk * M * N ...], then the chunk products are added in chunk order:
 * the result does not depend on the thread count.  partials holds
 * pynn_sgemm_ksplit_chunks(M, N, K) * M * N floats (the caller's workspace: nothing is
 * allocated per call).  Arguments otherwise as pynn_sgemm with alpha 1, beta 0.
 */
int64_t pynn_sgemm_ksplit_chunks(int64_t M, int64_t N, int64_t K);
int pynn_sgemm_ksplit(float *C, float *partials, const float *A, const float *B,
                      int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      int64_t lda, int64_t ldb, int64_t ldc);

/*
 * Dense forward with the epilogue fused into the GEMM (contiguous operands):
 *   Z = op(A) op(B) + bias           (bias (N,) may be NULL)
 *   Y = act(Z)                       (if Y != NULL; Y may equal Z)
 * act is any PYNN_ACT_*; softmax is applied row-wise once the rows are complete.
 */
int pynn_sgemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                        const float *bias, int trans_a, int trans_b,
                        int64_t M, int64_t N, int64_t K, int act, float act_alpha);

/* ---- bias ---------------------------------------------------------------- */
/* y (rows x cols) += bias (cols,) */
int pynn_bias_add(float *y, const float *bias, int64_t rows, int64_t cols);
/* db (cols,) = column sums of dz (rows x cols) */
int pynn_bias_grad(float *db, const float *dz, int64_t rows, int64_t cols);

/* dz = act'(z) dy and db = column sums of dz, in one pass over the data (the backward
 * of a dense layer's bias + activation epilogue).  dz may equal dy. */
int pynn_activation_backward_bias_grad(float *dz, float *db, const float *z, const float *y,
                                       const float *dy, int64_t rows, int64_t cols, int act,
                                       float alpha);

/* ---- activations ----------------------------------------------------------- */
/* y = act(x), x and y (rows x cols); y may equal x. */
int pynn_activation_forward(float *y, const float *x, int64_t rows, int64_t cols,
                            int act, float alpha);
/* dx = d act(x) / dx applied to dy; x is the pre-activation, y = act(x) its output
 * (each activation reads what it needs; both must be given).  dx may equal dy. */
int pynn_activation_backward(float *dx, const float *x, const float *y, const float *dy,
                             int64_t rows, int64_t cols, int act, float alpha);

/* ---- losses ---------------------------------------------------------------- */
/*
 * loss = mean over rows of the per-sample loss of `pred` (rows x cols) against the
 * targets `target` (rows x cols, float).  grad (rows x cols, may be NULL) is
 * d loss / d pred, already divided by rows (and by cols for MSE and BCE).
 * from_logits: pred holds logits (BCE: sigmoid logits; CCE: softmax logits), the
 * stable fused form is used.  Otherwise pred holds probabilities, which are clipped
 * to [1e-7, 1 - 1e-7] as Keras does (CCE first normalises each row to sum 1).
 */
int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
              int64_t rows, int64_t cols, int kind, int from_logits);
/* Sparse categorical cross-entropy: labels (rows,) int64 in [0, cols). */
int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                    int64_t rows, int64_t cols, int from_logits);

/* ---- optimizers (Keras 3 update rules), elementwise over n parameters ------- */
/* momentum == 0: w -= lr g.  Otherwise m = momentum m - lr g; w += m, or with
 * nesterov w += momentum m - lr g.  m may be NULL when momentum == 0. */
int pynn_sgd_update(float *w, float *m, const float *g, int64_t n,
                    float lr, float momentum, int nesterov);
/* m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2); w -= lr_t m / (sqrt(v) + eps)
 * where lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t) is computed by the caller. */
int pynn_adam_update(float *w, float *m, float *v, const float *g, int64_t n,
                     float lr_t, float beta1, float beta2, float epsilon);
/* v = rho v + (1 - rho) g^2; inc = lr g / sqrt(v + eps);
 * momentum == 0: w -= inc; else mom = momentum mom + inc; w -= mom (mom may be NULL
 * when momentum == 0). */
int pynn_rmsprop_update(float *w, float *v, float *mom, const float *g, int64_t n,
                        float lr, float rho, float momentum, float epsilon);

/* ---- the fused training path of a Dense network (mlp.c) ---------------------
 *
 * A Sequential model of Dense layers trains through one call per step (or per run of
 * steps) with every buffer preallocated.  It calls the same kernels, in the same order,
 * as the per-layer path of pynn/layers, so both give bitwise-identical weights.
 *
 * Parameters live in one flat array, layer by layer: kernel (in x out, row-major),
 * then bias (out) if the layer has one.  Gradients and optimizer state use the same
 * layout.
 */
#define PYNN_MLP_MAX_LAYERS 64
#define PYNN_MLP_MAX_METRICS 8

#define PYNN_LOSS_SPARSE_CCE 3     /* integer labels (only in pynn_mlp_config) */

#define PYNN_OPT_SGD 0
#define PYNN_OPT_ADAM 1
#define PYNN_OPT_RMSPROP 2

#define PYNN_METRIC_BINARY_ACCURACY 0
#define PYNN_METRIC_CATEGORICAL_ACCURACY 1
#define PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY 2
#define PYNN_METRIC_MAE 3

typedef struct pynn_mlp_config {
    int64_t n_layers;
    int64_t sizes[PYNN_MLP_MAX_LAYERS + 1];  /* widths: the input, then each layer's units */
    int32_t acts[PYNN_MLP_MAX_LAYERS];       /* activation each layer applies in training */
    float alphas[PYNN_MLP_MAX_LAYERS];       /* leaky_relu slopes */
    int32_t use_bias[PYNN_MLP_MAX_LAYERS];
    int32_t loss;                            /* PYNN_LOSS_MSE/BCE/CCE or PYNN_LOSS_SPARSE_CCE */
    int32_t from_logits;                     /* the last layer's output is logits */
    int32_t predict_act;                     /* turns that output into predictions for the metrics */
    int32_t n_metrics;
    int32_t metrics[PYNN_MLP_MAX_METRICS];   /* PYNN_METRIC_* */
    int32_t check_inputs;                    /* refuse non-finite inputs/targets (PYNN_ENONFINITE) */
    int32_t optimizer;                       /* PYNN_OPT_* */
    int32_t nesterov;
    float lr, momentum, beta1, beta2, rho, epsilon;
    /* Adam's bias-corrected step size is computed in double from these, exactly as
     * pynn.backend.reference.adam_lr_t does, then rounded to float. */
    double lr_d, beta1_d, beta2_d;
} pynn_mlp_config;

/* Number of parameters, and floats of workspace a batch of `batch` rows needs
 * (negative PYNN_E* status for an invalid configuration). */
int64_t pynn_mlp_num_params(const pynn_mlp_config *cfg);
int64_t pynn_mlp_workspace_size(const pynn_mlp_config *cfg, int64_t batch);

/*
 * Trains on the rows `order[first_row : first_row + n_steps * batch]` of (x, targets),
 * clipped to n_order, in consecutive batches of `batch` rows (the last may be
 * smaller): for each batch a forward pass, the loss and its gradient, a backward pass
 * and one optimizer update.  order may be NULL for rows in their stored order.
 *   params, grads, slot1, slot2 (n_params each; slots as the optimizer needs them,
 *     else may be NULL): updated in place;
 *   step_losses (n_steps): each batch's mean loss (before its update);
 *   step_metrics (n_steps x n_metrics): each batch's SUM over samples of each metric;
 *   workspace (pynn_mlp_workspace_size(cfg, batch) floats), labels_ws (batch int64);
 *   x (n_rows x sizes[0]); targets (n_rows x sizes[n_layers]) float, or labels (n_rows)
 *     int64 for PYNN_LOSS_SPARSE_CCE (the other pointer may be NULL);
 *   iterations: updates done before this call (Adam's step count).
 * Returns PYNN_ELABEL for a label outside [0, classes), or with cfg->check_inputs
 * PYNN_ENONFINITE for a NaN or infinity in a batch's inputs or targets, found before
 * that batch changes anything (the batches before it are applied); PYNN_EINVAL for bad
 * sizes or configuration.
 */
int pynn_mlp_train(float *params, float *grads, float *slot1, float *slot2,
                   double *step_losses, double *step_metrics, float *workspace,
                   int64_t *labels_ws,
                   const float *x, const float *targets, const int64_t *labels,
                   const int64_t *order, int64_t n_rows, int64_t n_order, int64_t first_row,
                   int64_t batch, int64_t n_steps, int64_t iterations,
                   const pynn_mlp_config *cfg);

/* ---- convolution, pooling, normalization (conv.c, pool.c, batchnorm.c) ------
 *
 * Images are NHWC: x is (n, h, w, c), row-major.  Window geometry: output (img, i, j)
 * covers input rows i*sh - pad_top + a for a in [0, kh) and columns j*sw - pad_left + b
 * for b in [0, kw); positions outside the input are padding.  The output size (oh, ow)
 * is the caller's (Keras: "valid" pads nothing, "same" pads total
 * max((ceil(in/s) - 1) s + k - in, 0), pad_top = total / 2).  Every output array is
 * overwritten, never accumulated into.
 */
/* cols (n*oh*ow x kh*kw*c): row (img, i, j) holds the window of output (img, i, j) in
 * (a, b, channel) row-major order, zeros for padding.  Then a convolution with a Keras
 * kernel (kh, kw, c, f) is cols @ kernel.reshape(kh*kw*c, f). */
int pynn_im2col(float *cols, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                int64_t pad_left, int64_t oh, int64_t ow);
/* dx (n, h, w, c) = the adjoint of im2col: every entry of cols added back onto the
 * input position it came from (padding entries dropped). */
int pynn_col2im(float *dx, const float *cols, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                int64_t pad_left, int64_t oh, int64_t ow);

/* Direct convolution (conv_direct.c) for tiny kernels, no cols buffer: used for a layer
 * when pynn_conv2d_direct_supported(kh, kw, c, f, act) is 1 (a fixed rule on the shape:
 * kh*kw*c <= 32, f <= 16, act elementwise).
 * forward: z, y (n, oh, ow, f) = act(conv(x, wgt) + bias), wgt (kh, kw, c, f), bias (f,)
 *   or NULL; y may equal z.
 * backward_filter: dz = act'(z) dy (dz may be dy), dw (kh, kw, c, f) and db (f,) (or
 *   NULL) the kernel and bias gradients; summed in chunks fixed by the shape.  The chunks'
 *   partial sums go to `work` when it holds at least `work_size` >=
 *   pynn_conv2d_direct_filter_work(...) floats (a caller's reused buffer: no allocation
 *   per step); else (work NULL or too small) they are allocated for the call. */
int pynn_conv2d_direct_supported(int64_t kh, int64_t kw, int64_t c, int64_t f, int act);
int pynn_conv2d_direct_forward(float *z, float *y, const float *x, const float *wgt,
                               const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                               int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                               int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                               float alpha);
int pynn_conv2d_direct_backward_filter(float *dw, float *db, float *dz, const float *x,
                                       const float *z, const float *y, const float *dy,
                                       int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                       int64_t pad_left, int64_t oh, int64_t ow, int64_t f,
                                       int act, float alpha, float *work, int64_t work_size);
int64_t pynn_conv2d_direct_filter_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                       int64_t kw, int64_t sh, int64_t sw, int64_t oh, int64_t ow,
                                       int64_t f);

/* y (n, oh, ow, c) = max over each (ph x pw) window; padding acts as -inf; a window
 * without input positions gives 0. */
int pynn_maxpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow);
/* dx (n, h, w, c) = dy (n, oh, ow, c) routed to the first maximum (row-major window
 * order) of each window of x, summed where windows overlap; y (n, oh, ow, c) is the
 * forward's output (the maximum to look for). */
int pynn_maxpool2d_backward(float *dx, const float *x, const float *y, const float *dy,
                            int64_t n, int64_t h, int64_t w, int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow);
/* y = mean over the input positions of each window (padding not counted). */
int pynn_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow);
/* dx = each dy / (its window's count of input positions), summed over the windows. */
int pynn_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                            int64_t c, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                            int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow);
/* y (n, c) = mean of x (n, h, w, c) over h and w; dx = dy / (h w) everywhere. */
int pynn_global_avgpool2d_forward(float *y, const float *x, int64_t n, int64_t h, int64_t w,
                                  int64_t c);
int pynn_global_avgpool2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                                   int64_t c);

/* Batch normalization over the rows of x (rows x cols), per column (Keras 3):
 *   mean = sum(x) / rows; var = sum((x - mean)^2) / rows (biased);
 *   inv_std = 1 / sqrt(var + epsilon); y = (x - mean) * inv_std * gamma + beta;
 *   moving_mean/variance (in/out) = moving * momentum + mean/var * (1 - momentum).
 * gamma or beta may be NULL (scale=False / center=False). */
int pynn_batchnorm_forward_train(float *y, float *mean, float *inv_std, float *moving_mean,
                                 float *moving_variance, const float *x, const float *gamma,
                                 const float *beta, int64_t rows, int64_t cols, float momentum,
                                 float epsilon);
/* y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta */
int pynn_batchnorm_forward_infer(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *moving_mean, const float *moving_variance,
                                 int64_t rows, int64_t cols, float epsilon);
/* Backward through the batch statistics; xhat = (x - mean) * inv_std:
 *   dbeta = column sums of dy; dgamma = column sums of dy * xhat;
 *   dx = gamma * inv_std * (dy - dbeta / rows - xhat * dgamma / rows).
 * dx, dgamma, dbeta and gamma may be NULL. */
int pynn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                            const float *gamma, const float *mean, const float *inv_std,
                            const float *dy, int64_t rows, int64_t cols);

/* y = x * mask elementwise over n values (dropout forward and backward); y may be x. */
int pynn_multiply(float *y, const float *x, const float *mask, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* PYNN_H */
