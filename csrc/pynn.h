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
#define PYNN_EHOOK (-6)   /* a plan's hook (pynn_plan.hook) reported a failure      */
#define PYNN_EINDEX (-7)  /* an index (an Embedding's input id) is not an integer in [0, n) (engineer G) */

/* ---- ids that cross into C: the one source ---------------------------------
 *
 * Every id Python hands to C (activation, loss, metric, optimizer, merge and plan-op
 * kinds) is listed once here, with the name Python knows it by.  The enums are generated
 * from the lists, and pynn._core builds its name -> id tables from pynn_id_name() at
 * import (pynn/ids.py), so no number is written twice.
 */
#define PYNN_ACTIVATION_LIST(X)                                                      \
    X(ACT_LINEAR, 0, "linear")                                                       \
    X(ACT_RELU, 1, "relu")                                                           \
    X(ACT_LEAKY_RELU, 2, "leaky_relu") /* alpha = negative slope (Keras: 0.2) */     \
    X(ACT_SIGMOID, 3, "sigmoid")                                                     \
    X(ACT_TANH, 4, "tanh")                                                           \
    X(ACT_SOFTMAX, 5, "softmax")       /* row-wise, max-subtracted */                \
    X(ACT_GELU, 6, "gelu")             /* exact (erf) form, Keras's default */          \
    /* activations (engineer A): Keras 3's formulas (keras/src/backend/jax/nn.py) */   \
    X(ACT_ELU, 7, "elu")               /* x > 0 ? x : alpha expm1(x); alpha (1.0) */    \
    X(ACT_SELU, 8, "selu")             /* scale elu(x, 1.6732632), scale 1.0507010 */   \
    X(ACT_SOFTPLUS, 9, "softplus")     /* max(x, 0) + log1p(exp(-|x|)) */               \
    X(ACT_SOFTSIGN, 10, "softsign")    /* x / (|x| + 1) */                              \
    X(ACT_SILU, 11, "silu")            /* x sigmoid(x); "swish" is an alias */          \
    X(ACT_HARD_SIGMOID, 12, "hard_sigmoid") /* relu6(x + 3) / 6 */                      \
    X(ACT_HARD_SILU, 13, "hard_silu")  /* x hard_sigmoid(x); "hard_swish" an alias */   \
    X(ACT_RELU6, 14, "relu6")          /* min(max(x, 0), 6) */                          \
    X(ACT_MISH, 15, "mish")            /* x tanh(softplus(x)) */                        \
    X(ACT_EXPONENTIAL, 16, "exponential") /* exp(x) */                                  \
    X(ACT_LOG_SOFTMAX, 17, "log_softmax") /* row-wise: x - max - log sum exp(x - max) */

/* losses: value = mean over the rows of the per-row loss */
#define PYNN_LOSS_LIST(X)                                                            \
    X(LOSS_MSE, 0, "mse")          /* per row: mean over the last axis of (p - t)^2 */ \
    X(LOSS_BCE, 1, "bce")          /* per row: mean over the last axis of binary CE */ \
    X(LOSS_CCE, 2, "cce")          /* per row: -sum_j t_j log p_j */                 \
    X(LOSS_SPARSE_CCE, 3, "scce")  /* CCE against int64 labels */                   \
    X(LOSS_MAE, 4, "mae")          /* mean_j |p - t| */                              \
    X(LOSS_MAPE, 5, "mape")        /* 100 mean_j |(t - p) / max(|t|, 1e-7)| */       \
    X(LOSS_HUBER, 6, "huber")      /* mean_j huber_delta(p - t); param = delta > 0 */ \
    X(LOSS_LOG_COSH, 7, "log_cosh") /* mean_j log cosh(p - t) */                     \
    X(LOSS_KLD, 8, "kld")          /* sum_j t log(t / p), t and p clipped to [1e-7, 1] */ \
    X(LOSS_HINGE, 9, "hinge")      /* mean_j max(1 - t p, 0); {0,1} targets -> {-1,1} */ \
    X(LOSS_SQUARED_HINGE, 10, "squared_hinge") /* mean_j max(1 - t p, 0)^2, likewise */ \
    X(LOSS_CATEGORICAL_HINGE, 11, "categorical_hinge") /* max(max_j (1-t) p - t.p + 1, 0) */ \
    X(LOSS_POISSON, 12, "poisson") /* mean_j p - t log(p + 1e-7) */                  \
    X(LOSS_COSINE_SIMILARITY, 13, "cosine_similarity") /* -(t / |t|).(p / |p|) */

/* metrics: pynn_metric_sum adds up one value per row (the threshold: binary accuracy's and the
 * counts', p_j > threshold is predicted positive) */
#define PYNN_METRIC_LIST(X)                                                          \
    X(METRIC_BINARY_ACCURACY, 0, "binary_accuracy")  /* mean_j [(p_j > thr) == t_j] */ \
    X(METRIC_CATEGORICAL_ACCURACY, 1, "categorical_accuracy") /* argmax p == argmax t */ \
    X(METRIC_SPARSE_CATEGORICAL_ACCURACY, 2, "sparse_categorical_accuracy")          \
    X(METRIC_MAE, 3, "mean_absolute_error")          /* mean_j |t_j - p_j| */         \
    X(METRIC_MSE, 4, "mean_squared_error")           /* mean_j (t_j - p_j)^2 */      \
    /* counts over the row: predicted positive p_j > thr, actual positive t_j != 0 */    \
    X(METRIC_TRUE_POSITIVES, 5, "true_positives")                                      \
    X(METRIC_FALSE_POSITIVES, 6, "false_positives")                                    \
    X(METRIC_TRUE_NEGATIVES, 7, "true_negatives")                                      \
    X(METRIC_FALSE_NEGATIVES, 8, "false_negatives")                                   \
    /* 1 when the true class is among the k largest p_j (ties at the k-th value count) */ \
    X(METRIC_TOP_K_CATEGORICAL_ACCURACY, 9, "top_k_categorical_accuracy")               \
    X(METRIC_SPARSE_TOP_K_CATEGORICAL_ACCURACY, 10, "sparse_top_k_categorical_accuracy") \
    X(METRIC_ACCURACY, 11, "accuracy")               /* mean_j [p_j == t_j] (Keras's Accuracy) */ \
    X(METRIC_ROWS, 12, "count")                      /* 1: weighted, the sum of the weights */ \
    /* tp, fp, tn, fn at n thresholds (pynn_metric_confusion): an OP_METRIC of width 4 n */ \
    X(METRIC_CONFUSION, 13, "confusion")

#define PYNN_OPTIMIZER_LIST(X)                                                       \
    X(OPT_SGD, 0, "sgd")                                                             \
    X(OPT_ADAM, 1, "adam")                                                           \
    X(OPT_RMSPROP, 2, "rmsprop")                                                     \
    X(OPT_ADAGRAD, 3, "adagrad")                                                     \
    X(OPT_ADADELTA, 4, "adadelta")                                                   \
    X(OPT_ADAMAX, 5, "adamax")                                                       \
    X(OPT_NADAM, 6, "nadam")                                                         \
    X(OPT_LION, 7, "lion")

/* learning-rate schedules (Keras 3's keras.optimizers.schedules), pynn_schedule_lr */
#define PYNN_SCHEDULE_LIST(X)                                                        \
    X(SCHEDULE_NONE, 0, "none")                /* the learning rate is hyper's */    \
    X(SCHEDULE_EXPONENTIAL_DECAY, 1, "ExponentialDecay")                             \
    X(SCHEDULE_PIECEWISE_CONSTANT_DECAY, 2, "PiecewiseConstantDecay")                \
    X(SCHEDULE_POLYNOMIAL_DECAY, 3, "PolynomialDecay")                               \
    X(SCHEDULE_INVERSE_TIME_DECAY, 4, "InverseTimeDecay")                            \
    X(SCHEDULE_COSINE_DECAY, 5, "CosineDecay")                                       \
    X(SCHEDULE_COSINE_DECAY_RESTARTS, 6, "CosineDecayRestarts")

/* elementwise merges of k inputs of one shape (pynn_merge_forward / _backward) */
#define PYNN_MERGE_LIST(X)                                                           \
    X(MERGE_ADD, 0, "add")                                                           \
    X(MERGE_SUBTRACT, 1, "subtract")   /* exactly 2 inputs: x0 - x1 */               \
    X(MERGE_MULTIPLY, 2, "multiply")                                                 \
    X(MERGE_AVERAGE, 3, "average")                                                   \
    X(MERGE_MAXIMUM, 4, "maximum")                                                   \
    X(MERGE_MINIMUM, 5, "minimum")

/* the ops of a plan (pynn_plan_run; their operands are described with it, below) */
#define PYNN_OP_LIST(X)                                                              \
    X(OP_DENSE, 0, "dense")                                                          \
    X(OP_DENSE_BACKWARD, 1, "dense_backward")                                        \
    X(OP_CONV2D, 2, "conv2d")                                                        \
    X(OP_CONV2D_BACKWARD, 3, "conv2d_backward")                                      \
    X(OP_MAXPOOL2D, 4, "maxpool2d")                                                  \
    X(OP_MAXPOOL2D_BACKWARD, 5, "maxpool2d_backward")                                \
    X(OP_AVGPOOL2D, 6, "avgpool2d")                                                  \
    X(OP_AVGPOOL2D_BACKWARD, 7, "avgpool2d_backward")                                \
    X(OP_GLOBAL_AVGPOOL2D, 8, "global_avgpool2d")                                    \
    X(OP_GLOBAL_AVGPOOL2D_BACKWARD, 9, "global_avgpool2d_backward")                  \
    X(OP_BATCHNORM_TRAIN, 10, "batchnorm_train")                                     \
    X(OP_BATCHNORM_TRAIN_BACKWARD, 11, "batchnorm_train_backward")                   \
    X(OP_BATCHNORM_INFER, 12, "batchnorm_infer")                                     \
    X(OP_BATCHNORM_INFER_BACKWARD, 13, "batchnorm_infer_backward")                   \
    X(OP_DROPOUT, 14, "dropout")                                                     \
    X(OP_DROPOUT_BACKWARD, 15, "dropout_backward")                                   \
    X(OP_ACTIVATION, 16, "activation")                                               \
    X(OP_ACTIVATION_BACKWARD, 17, "activation_backward")                             \
    X(OP_MERGE, 18, "merge")                                                         \
    X(OP_MERGE_BACKWARD, 19, "merge_backward")                                       \
    X(OP_CONCAT, 20, "concat")                                                       \
    X(OP_CONCAT_BACKWARD, 21, "concat_backward")                                     \
    X(OP_SCALE, 22, "scale")                                                         \
    X(OP_LOSS, 23, "loss")                                                           \
    X(OP_METRIC, 24, "metric")                                                       \
    X(OP_OPTIMIZER, 25, "optimizer")                                                 \
    /* the geometric image ops (image.c; ids 26..31) */                              \
    X(OP_RESIZE, 26, "resize")                                                       \
    X(OP_AFFINE, 27, "affine")                                                       \
    X(OP_IMAGE_RANDOM, 28, "image_random")                                           \
    X(OP_FLIP, 29, "flip")                                                           \
    X(OP_CROP, 30, "crop")                                                           \
    X(OP_CHANNEL_AFFINE, 32, "channel_affine")                                       \
    X(OP_NORMALIZE, 33, "normalize")                                                 \
    X(OP_RANDOM_CONTRAST, 34, "random_contrast")                                     \
    X(OP_RANDOM_CONTRAST_BACKWARD, 35, "random_contrast_backward")                   \
    X(OP_RANDOM_BRIGHTNESS, 36, "random_brightness")                                 \
    /* engineer D (#16): 1-D sequence ops (seq1d.c; ids 70..79) */                  \
    X(OP_GLOBAL_MAXPOOL, 70, "global_maxpool")                                      \
    X(OP_GLOBAL_MAXPOOL_BACKWARD, 71, "global_maxpool_backward")                    \
    X(OP_MASKED_MEAN, 72, "masked_mean")                                            \
    X(OP_MASKED_MEAN_BACKWARD, 73, "masked_mean_backward")                          \
    X(OP_REPEAT_VECTOR, 74, "repeat_vector")                                        \
    X(OP_REPEAT_VECTOR_BACKWARD, 75, "repeat_vector_backward")                      \
    /* engineer E: normalization and noise layers (norm.c; ids 80..89) */            \
    X(OP_GROUP_NORM, 80, "group_norm")                                               \
    X(OP_GROUP_NORM_BACKWARD, 81, "group_norm_backward")                             \
    X(OP_UNIT_NORM, 82, "unit_norm")                                                 \
    X(OP_UNIT_NORM_BACKWARD, 83, "unit_norm_backward")                               \
    X(OP_GAUSSIAN_NOISE, 84, "gaussian_noise")                                       \
    /* transposed convolution, upsampling, padding, cropping (upsampling.c; 60..69) */ \
    X(OP_CONV2D_TRANSPOSE, 60, "conv2d_transpose")                                   \
    X(OP_CONV2D_TRANSPOSE_BACKWARD, 61, "conv2d_transpose_backward")                 \
    X(OP_UPSAMPLE2D_BACKWARD, 62, "upsample2d_backward")                             \
    X(OP_PAD_CROP, 63, "pad_crop")                                                   \
    X(OP_KERNEL_DILATE, 64, "kernel_dilate")                                         \
    /* distributed training (pynn/distributed): the gradient hand-over (id 40) */    \
    X(OP_GRAD_HOOK, 40, "grad_hook")                                                 \
    /* activations (engineer A): ReLU's clip/threshold, softmax on any axis, PReLU */   \
    X(OP_RELU, 41, "relu")                                                           \
    X(OP_RELU_BACKWARD, 42, "relu_backward")                                         \
    X(OP_SOFTMAX_AXIS, 43, "softmax_axis")                                           \
    X(OP_SOFTMAX_AXIS_BACKWARD, 44, "softmax_axis_backward")                         \
    X(OP_PRELU, 45, "prelu")                                                         \
    X(OP_PRELU_BACKWARD, 46, "prelu_backward")                                       \
    /* regularizers and constraints (engineer F; regularizers.c; ids 90..99) */      \
    X(OP_PENALTY, 90, "penalty")                                                     \
    X(OP_CONSTRAINT, 91, "constraint")                                               \
    /* Embedding, Masking, TimeDistributed (engineer G; ids 100..109) */              \
    X(OP_EMBEDDING, 100, "embedding")                                                \
    X(OP_EMBEDDING_BACKWARD, 101, "embedding_backward")                              \
    X(OP_EMBEDDING_GRAD_CLEAR, 102, "embedding_grad_clear")                          \
    X(OP_EMBEDDING_SGD, 106, "embedding_sgd")                                        \
    X(OP_MASKING, 103, "masking")                                                    \
    X(OP_MASKING_BACKWARD, 104, "masking_backward")                                  \
    X(OP_ROWS_SCOPE, 105, "rows_scope")                                              \
    /* convolution variants (engineer B; ids 50..59) */                              \
    X(OP_TRANSPOSE, 50, "transpose")                                                 \
    /* recurrent layers (rnn.c; engineer H, ids 110..129) */                         \
    X(OP_RNN, 110, "rnn")                                                            \
    X(OP_RNN_BACKWARD, 111, "rnn_backward")

#define PYNN_ID_ENUM_(sym, value, name) PYNN_##sym = value,
#define PYNN_ID_COUNT_(sym, value, name) +1
enum { PYNN_ACTIVATION_LIST(PYNN_ID_ENUM_) PYNN_ACT_COUNT = 0 PYNN_ACTIVATION_LIST(PYNN_ID_COUNT_) };
enum { PYNN_LOSS_LIST(PYNN_ID_ENUM_) PYNN_LOSS_COUNT = 0 PYNN_LOSS_LIST(PYNN_ID_COUNT_) };
enum { PYNN_METRIC_LIST(PYNN_ID_ENUM_) PYNN_METRIC_COUNT = 0 PYNN_METRIC_LIST(PYNN_ID_COUNT_) };
enum { PYNN_OPTIMIZER_LIST(PYNN_ID_ENUM_) PYNN_OPT_COUNT = 0 PYNN_OPTIMIZER_LIST(PYNN_ID_COUNT_) };
enum { PYNN_SCHEDULE_LIST(PYNN_ID_ENUM_) PYNN_SCHEDULE_COUNT = 0 PYNN_SCHEDULE_LIST(PYNN_ID_COUNT_) };
enum { PYNN_MERGE_LIST(PYNN_ID_ENUM_) PYNN_MERGE_COUNT = 0 PYNN_MERGE_LIST(PYNN_ID_COUNT_) };
/* The op ids may leave gaps (ids reserved for ops another branch adds): PYNN_OP_COUNT is
 * one past the largest id, found as the size of a union of char[id + 1] arrays, and an id
 * in a gap has no name (pynn_id_name: NULL) and is refused by pynn_plan_run. */
#define PYNN_ID_SPAN_(sym, value, name) char sym[(value) + 1];
enum { PYNN_OP_LIST(PYNN_ID_ENUM_) PYNN_OP_DUMMY_ = 0 };
union pynn_op_span_ { PYNN_OP_LIST(PYNN_ID_SPAN_) };
#define PYNN_OP_COUNT ((int)sizeof(union pynn_op_span_))

/* tables for pynn_id_name / pynn_id_count */
#define PYNN_TABLE_ACTIVATION 0
#define PYNN_TABLE_LOSS 1
#define PYNN_TABLE_METRIC 2
#define PYNN_TABLE_OPTIMIZER 3
#define PYNN_TABLE_MERGE 4
#define PYNN_TABLE_OP 5
#define PYNN_TABLE_SCHEDULE 6
/* The name of id `id` in table PYNN_TABLE_* ("relu", "adam", ...), NULL for no such id;
 * the ids of a table lie in 0 .. pynn_id_count(table) - 1 (-1 for no such table); the op
 * table may leave gaps (ids without a name). */
const char *pynn_id_name(int table, int id);
int pynn_id_count(int table);

/* ---- runtime ------------------------------------------------------------ */
/* Number of OpenMP threads the kernels use (n >= 1); the default is OpenMP's. */
int pynn_set_num_threads(int n);
int pynn_get_num_threads(void);
/* 1 when the library was built with OpenMP. */
int pynn_has_openmp(void);

/* ---- CPU-feature dispatch (dispatch.c) ----------------------------------------
 *
 * The kernels with instruction-set-specific code (the GEMM's micro-kernels, expf over a
 * span, the softmax cross-entropy's gradient, the direct convolution) all run at one
 * level: the best this CPU and build support, detected once, unless a level is forced
 * (tests and benchmarks).  Each level includes the ones below it.  Only the GEMM's
 * numbers depend on the level (its kernels use different K blocks, and the SIMD ones
 * fused multiply-adds); every other kernel gives bitwise the same results at every level.
 */
#define PYNN_LEVEL_AUTO 0     /* pynn_select_level: back to the detected level */
#define PYNN_LEVEL_GENERIC 1  /* portable C, whatever the target */
#define PYNN_LEVEL_AVX2 2     /* x86-64 with AVX2 and FMA */
#define PYNN_LEVEL_AVX512 3   /* x86-64 with AVX-512 F, VL, DQ and BW (and AVX2, FMA) */
/* The best level of this CPU and build (PYNN_LEVEL_GENERIC on other targets). */
int pynn_cpu_level(void);
/* 1 if `level` can run here (PYNN_LEVEL_AUTO always can), else 0. */
int pynn_level_supported(int level);
/* Run every kernel at `level` from now on; PYNN_LEVEL_AUTO: at pynn_cpu_level().
 * PYNN_EINVAL for no such level, PYNN_ENOTSUP for one this CPU or build lacks.  Not to
 * be called while kernels run on other threads (each kernel reads the level once). */
int pynn_select_level(int level);
/* The level in use: PYNN_LEVEL_GENERIC, _AVX2 or _AVX512. */
int pynn_level(void);

/* The GEMM's names for the levels (pynn._core's KERNEL_*), from when only the GEMM
 * dispatched: selecting a GEMM kernel selects that level for every kernel. */
#define PYNN_KERNEL_AUTO PYNN_LEVEL_AUTO
#define PYNN_KERNEL_GENERIC PYNN_LEVEL_GENERIC
#define PYNN_KERNEL_AVX2 PYNN_LEVEL_AVX2
#define PYNN_KERNEL_AVX512 PYNN_LEVEL_AVX512
int pynn_gemm_select_kernel(int which);     /* pynn_select_level */
int pynn_gemm_kernel(void);                 /* pynn_level */
int pynn_gemm_kernel_supported(int which);  /* pynn_level_supported */

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
 * of the shape only: 1, 2, 4 or 8, each at least max(256, M N / 128) long), each chunk's
 * product computed by one thread into
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

/* A Dense layer's weights W (K x N, row-major) kept packed between calls while they do not
 * change (an inference plan packs them when they have), in a buffer of
 * pynn_dense_panels_floats(K, N) floats: buf[0] is 1.0 while the panels hold W's current
 * values (pynn_dense_pack_panels sets it; whoever changes W sets it to 0.0), then, from the
 * first 64-byte boundary after it, column panels of PYNN_DENSE_PANEL_COLS: panel q at
 * + q * PYNN_DENSE_PANEL_COLS * K, its row p at + p * PYNN_DENSE_PANEL_COLS, the last
 * panel's missing columns zero.  pynn_dense_panels(buf): the panels, or NULL while stale.
 * A product of a few rows (M <= 16) streams B as rows a whole row of W apart; from the
 * panels it streams contiguous lines (784x512 and 512x256 at batch 16: 72 -> ~50 us).
 * pynn_sgemm_bias_act_panels is pynn_sgemm_bias_act(Z, Y, A, W, bias, 0, 0, ...), bitwise,
 * reading the panels (wp, or NULL: none) where it reads B on the few-rows path. */
#define PYNN_DENSE_PANEL_COLS 64
int64_t pynn_dense_panels_floats(int64_t K, int64_t N);
int pynn_dense_pack_panels(float *buf, const float *w, int64_t K, int64_t N);
const float *pynn_dense_panels(const float *buf);
int pynn_sgemm_bias_act_panels(float *Z, float *Y, const float *A, const float *W,
                               const float *wp, const float *bias, int64_t M, int64_t N,
                               int64_t K, int act, float act_alpha);

/* ---- bias ---------------------------------------------------------------- */
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

/* ---- activation layers (engineer A: csrc/act_layers.c) ------------------------------ */
/* Keras's ReLU(max_value, negative_slope, threshold) over n floats (y may be x):
 *   y = clip(x [x > threshold], 0, max_value) - negative_slope max(threshold - x, 0)
 * max_value +inf for none; negative_slope >= 0, max_value >= 0.  Its backward (dx may
 * be dy): dx = dy ([x > threshold] [0 < x < max_value] + negative_slope [x < threshold]). */
int pynn_relu_forward(float *y, const float *x, int64_t n, float negative_slope,
                      float threshold, float max_value);
int pynn_relu_backward(float *dx, const float *x, const float *dy, int64_t n,
                       float negative_slope, float threshold, float max_value);
/* Softmax over the middle axis of x (outer, len, inner): y may be x.  Per (o, i): max,
 * expf(x - max), a float sum in index order, e / s (the row softmax's formula).  Its
 * backward from y: dx = y (dy - sum_j dy_j y_j), the dot in double; dx may be dy. */
int pynn_softmax_axis_forward(float *y, const float *x, int64_t outer, int64_t len,
                              int64_t inner);
int pynn_softmax_axis_backward(float *dx, const float *y, const float *dy, int64_t outer,
                               int64_t len, int64_t inner);
/* Keras's Softmax with a mask (Keras's `mask` call argument): mask (NULL: none) holds as
 * many floats as x; where mask <= 0.5, x counts as -1e9 and y is 0 (Keras's where(mask, ..)).
 * The backward above serves it unchanged (y is 0 where masked, so is dx). */
int pynn_softmax_axis_masked_forward(float *y, const float *x, const float *mask,
                                     int64_t outer, int64_t len, int64_t inner);
/* PReLU: x (rows, per) with per = prod(dims[0 .. rank)); alpha has dims with the shared
 * axes (shared[k] != 0) set to 1.  y = x > 0 ? x : alpha[a(p)] x (y may be x).  Backward:
 * dx = dy (x > 0 ? 1 : alpha) (dx may be dy; NULL for none) and dalpha[a] (NULL for none) = the sum over
 * rows and shared positions of dy x [x <= 0], in a fixed order (one thread per
 * alpha element, rows outer, positions in index order, a double accumulator). */
int pynn_prelu_forward(float *y, const float *x, const float *alpha, int64_t rows,
                       int64_t rank, const int64_t *dims, const int64_t *shared);
int pynn_prelu_backward(float *dx, float *dalpha, const float *x, const float *alpha,
                        const float *dy, int64_t rows, int64_t rank, const int64_t *dims,
                        const int64_t *shared);

/* ---- losses ---------------------------------------------------------------- */
/*
 * loss = sum_i w_i l_i / rows (Keras 3's reduction "sum_over_batch_size": divided by the
 * rows, not by the sum of the weights), l_i the per-sample loss of row i of `pred`
 * (rows x cols) against the targets `target` (rows x cols, float), w_i its weight (1
 * without weights).  grad (rows x cols, may be NULL) is d loss / d pred, already divided
 * by rows (and by cols for MSE and BCE) and row i scaled by w_i.
 * from_logits: pred holds logits (BCE: sigmoid logits; CCE: softmax logits), the
 * stable fused form is used.  Otherwise pred holds probabilities, which are clipped
 * to [1e-7, 1 - 1e-7] as Keras does (CCE first normalises each row to sum 1).
 * The other kinds (MAE ... cosine similarity, Keras 3's definitions listed with
 * PYNN_LOSS_LIST) have no logits form and ignore from_logits.  Hinge and squared
 * hinge map targets t to 2t - 1 when every target of the call is 0 or 1 (Keras's
 * check is over the whole batch).  Cosine similarity normalises each row as
 * x / sqrt(max(sum x^2, 1e-14)).  Where a loss is not differentiable (|p - t| = 0 for
 * MAE/MAPE, a hinge at 0, a tie in categorical hinge's max) the gradient takes the
 * value of one side: sign(0) = 0, max(m, 0) passes no gradient at m = 0, the first
 * maximum wins.
 *
 * Options (opt NULL = the defaults: param 1, no smoothing, no ignore class, no weights;
 * a call without weights, smoothing or ignore class gives bitwise the results of opt NULL):
 *   param            Huber's delta (finite and > 0, else PYNN_EINVAL); ignored by the others.
 *   label_smoothing  in [0, 1] (else PYNN_EINVAL); non-zero only for BCE and CCE (sparse CCE
 *                    included; PYNN_EINVAL for the other kinds).  Keras's: BCE reads
 *                    t (1 - ls) + ls / 2, CCE t (1 - ls) + ls / cols.
 *   has_ignore, ignore_class   pynn_sparse_cce only (PYNN_EINVAL in pynn_loss): rows whose
 *                    label equals ignore_class (which may lie outside [0, cols), e.g. -1)
 *                    count for nothing: zero gradient, and the mean is over the other rows
 *                    (Keras 3's mask: weight 0, the others total / valid).  Every row ignored:
 *                    loss 0 and a zero gradient.
 *   weights, per_weight   NULL, or row i counts with weights[i / per_weight] (per_weight >= 1,
 *                    the positions per sample of a per-position output); every weight read
 *                    (ceil(rows / per_weight) of them) finite and >= 0, else PYNN_EINVAL.
 *   reduce_sum       0 or 1 (else PYNN_EINVAL).  1: Keras 3's reduction "sum", loss =
 *                    sum_i w_i l_i and its gradient, nothing divided by the rows (ignored
 *                    rows add nothing and nothing is rescaled: every row ignored gives 0).
 *                    0: "sum_over_batch_size", the sum divided by the rows (not ignored).
 * Every argument is checked before anything is written.  The fused blocked CCE paths serve
 * the calls without options; the others use the per-row functions (same chunked,
 * thread-count-independent sum).
 */
typedef struct pynn_loss_options {
    float param;            /* Huber's delta (finite, > 0); ignored by the other kinds */
    float label_smoothing;  /* BCE and CCE (incl. CCE against labels): in [0, 1]; 0 = none */
    int has_ignore;         /* sparse CCE: rows whose label == ignore_class count for nothing */
    int64_t ignore_class;
    const float *weights;   /* NULL, or per-row weights: row i counts with weights[i / per_weight] (>= 0, finite) */
    int64_t per_weight;     /* >= 1 */
    int reduce_sum;         /* 0: Keras's "sum_over_batch_size" (the mean); 1: "sum" */
} pynn_loss_options;

int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
              int64_t rows, int64_t cols, int kind, int from_logits,
              const pynn_loss_options *opt);  /* opt NULL = defaults */
/* Sparse categorical cross-entropy: labels (rows,) int64 in [0, cols) (or the ignore
 * class), else PYNN_ELABEL. */
int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                    int64_t rows, int64_t cols, int from_logits, const pynn_loss_options *opt);

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
/* The other rules are reached through pynn_optimizer_step (below). */

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

/* Winograd's F(2x2, 3x3) (conv_winograd.c): 1 for the layers whose forward it computes
 * (a fixed rule on the shape: 3 x 3, stride 1, c and f from 8 up to 256 and 512, outputs
 * of at least 4 x 4, at least 128 tiles of 2 x 2 outputs in the batch of n, act
 * elementwise).  The input gradient of a convolution of c channels and f filters takes it
 * where a forward of f channels and c filters over dz would with both at least 16
 * (pad_top and pad_left <= 2, the padding of that forward being 2 - pad). */
int pynn_conv2d_winograd_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                   int64_t c, int64_t f, int64_t oh, int64_t ow, int act);
/* 1 where pynn_conv2d_backward's filter gradient takes F(3x3, 2x2): the layers above with
 * c and f at least 16 and c f <= 4096 (its sums per chunk of tiles, 16 c f floats, stay in
 * L2). */
int pynn_conv2d_winograd_filter_supported(int64_t n, int64_t kh, int64_t kw, int64_t sh,
                                          int64_t sw, int64_t c, int64_t f, int64_t oh,
                                          int64_t ow, int act);

/* Input gradient of a convolution (conv_dx.c), straight into dx without cols:
 *   dx (n, h, w, c) = the adjoint of the convolution with wgt (kh, kw, c, f), applied to
 *   dz (n, oh, ow, f): dx(img, r, q, ch) = sum of dz(img, i, j, e) wgt(a, b, ch, e) over
 *   r = i sh - pad_top + a, q = j sw - pad_left + b.
 * work holds work_size >= pynn_conv2d_input_grad_work(kh, kw, c, f) floats (the kernel
 * packed for the call; a caller's reused buffer: nothing is allocated). */
int64_t pynn_conv2d_input_grad_work(int64_t kh, int64_t kw, int64_t c, int64_t f);
int pynn_conv2d_input_grad(float *dx, const float *dz, const float *wgt, float *work,
                           int64_t work_size, int64_t n, int64_t h, int64_t w, int64_t c,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                           int64_t pad_left, int64_t oh, int64_t ow, int64_t f);

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

/* ---- engineer D (#16): sequence ops (seq1d.c) ------------------------------------------
 * Global max pooling: y (n, c) = max of x (n, s, c) over its s >= 1 steps (a NaN wins);
 * the backward puts dy (n, c) at the first maximum of each (sample, channel), 0 elsewhere. */
int pynn_global_maxpool_forward(float *y, const float *x, int64_t n, int64_t s, int64_t c);
int pynn_global_maxpool_backward(float *dx, const float *x, const float *dy, int64_t n, int64_t s,
                                 int64_t c);
/* The masked mean over steps (GlobalAveragePooling1D with a mask of 1.0 / 0.0 per step):
 * y (n, c) = sum_t mask[n, t] x[n, t, c] / sum_t mask[n, t], summed in step order;
 * dx (n, s, c) = mask[n, t] dy[n, c] / sum_t mask[n, t]. */
int pynn_masked_mean_forward(float *y, const float *x, const float *mask, int64_t n, int64_t s,
                             int64_t c);
int pynn_masked_mean_backward(float *dx, const float *dy, const float *mask, int64_t n, int64_t s,
                              int64_t c);
/* RepeatVector: y (n, times, f) holds times copies of x (n, f); dx (n, f) = the sum of
 * dy (n, times, f) over t = 0, 1, ... in order. */
int pynn_repeat_vector_forward(float *y, const float *x, int64_t n, int64_t times, int64_t f);
int pynn_repeat_vector_backward(float *dx, const float *dy, int64_t n, int64_t times, int64_t f);

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
 * dx, dgamma, dbeta and gamma may be NULL; dx may be dy. */
int pynn_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                            const float *gamma, const float *mean, const float *inv_std,
                            const float *dy, int64_t rows, int64_t cols);
/* A ReLU that follows the layer, folded in (a plan runs a BatchNormalization and the
 * Activation("relu") written over its output this way: one pass over the rows fewer).
 * forward_train_act: y = relu(pynn_batchnorm_forward_train's y) for act PYNN_ACT_RELU
 * (PYNN_ACT_LINEAR: the plain layer; other activations PYNN_EINVAL).
 * backward_act: pynn_batchnorm_backward with dy replaced by the ReLU's backward,
 * relu_y > 0 ? dy : 0 (relu_y: the ReLU's output; NULL for none); dx may be dy.
 * Both give bitwise the numbers of the layer and the activation's kernels one after the
 * other. */
int pynn_batchnorm_forward_train_act(float *y, float *mean, float *inv_std, float *moving_mean,
                                     float *moving_variance, const float *x, const float *gamma,
                                     const float *beta, int64_t rows, int64_t cols,
                                     float momentum, float epsilon, int act);
int pynn_batchnorm_backward_act(float *dx, float *dgamma, float *dbeta, const float *x,
                                const float *gamma, const float *mean, const float *inv_std,
                                const float *dy, const float *relu_y, int64_t rows,
                                int64_t cols);

/* y = x * mask elementwise over n values (dropout forward and backward); y may be x. */
int pynn_multiply(float *y, const float *x, const float *mask, int64_t n);

/* ---- layer-level kernels ----------------------------------------------------
 *
 * One C function per op of a plan (below).  The cpu backend's methods call these same
 * functions through pynn._core, so a step run op by op from Python and a step run by
 * pynn_plan_run compute bitwise the same numbers.
 */

/* Dense backward, the adjoint of pynn_sgemm_bias_act(z, y, x, w, b, 0, 0, m, out, in,
 * act, alpha): dy (m x out) is overwritten with dz = act'(z) dy; db (out) = column sums
 * of dz; dw (in x out) = x^T dz; dx (m x in) = dz w^T.  dw, db and dx may each be NULL
 * (a frozen layer computes no dw/db; a first layer no dx); z and y as the forward left
 * them (y may be z). */
int pynn_dense_backward(float *dw, float *db, float *dx, float *dy, const float *x,
                        const float *w, const float *z, const float *y, int64_t m, int64_t in,
                        int64_t out, int act, float alpha);

/* Convolution with bias and activation, NHWC, Keras kernel layout (kh, kw, c, f):
 *   z (n, oh, ow, f) = conv(x, wgt) + bias (bias may be NULL); y = act(z), y may be z.
 * cols (n*oh*ow x kh*kw*c) is not read or written (the backward's scratch): the function
 * takes the direct kernel when pynn_conv2d_direct_supported says so, else Winograd's
 * F(2x2, 3x3) when pynn_conv2d_winograd_supported says so, else the implicit GEMM (the
 * windows read from x, no im2col) with bias and activation in its epilogue. */
int pynn_conv2d_forward(float *z, float *y, float *cols, const float *x, const float *wgt,
                        const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                        int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                        float alpha);
/* Floats of `work` pynn_conv2d_backward needs for these shapes (>= 1). */
int64_t pynn_conv2d_backward_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                  int64_t kw, int64_t sh, int64_t sw, int64_t oh, int64_t ow,
                                  int64_t f);
/* Backward of pynn_conv2d_forward with the same operands; cols is not used (no path
 * materialises im2col any more; it may be NULL); dy (n, oh, ow, f) is overwritten with dz.  Out: dw (kh, kw, c, f),
 * db (f,), dx (n, h, w, c); each may be NULL.  work holds work_size >=
 * pynn_conv2d_backward_work(...) floats: nothing is allocated per call. */
int pynn_conv2d_backward(float *dw, float *db, float *dx, float *dy, float *cols, float *work,
                         int64_t work_size, const float *x, const float *wgt, const float *z,
                         const float *y, int64_t n, int64_t h, int64_t w, int64_t c,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                         int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                         float alpha);

/* ---- convolution variants (engineer B: conv_variants.c) ----------------------------
 * Dilated and grouped convolution, NHWC, kernel (kh, kw, c / groups, f) (Keras's layout):
 * output (img, i, j, o), o in group g = o / (f / groups), sums the taps (a, b) at input
 * row i*sh - pad_top + a*dh, column j*sw - pad_left + b*dw, channels g*(c/groups) ...
 * A depthwise convolution (kernel (kh, kw, c, dm)) is groups = c, f = c*dm.  A plain,
 * straightforward path (the fast pynn_conv2d_* keep dilation 1, groups 1); z, y, bias and
 * act as pynn_conv2d_forward. */
int pynn_conv2d_general_forward(float *z, float *y, const float *x, const float *wgt,
                                const float *bias, int64_t n, int64_t h, int64_t w, int64_t c,
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int64_t dh,
                                int64_t dw, int64_t groups, int act, float alpha);
/* Floats of `work` pynn_conv2d_general_backward needs for batches of up to n images (-1 for
 * invalid shapes). */
int64_t pynn_conv2d_general_work(int64_t n, int64_t c, int64_t kh, int64_t kw, int64_t f,
                                 int64_t groups);
/* Backward of pynn_conv2d_general_forward: dy is overwritten with dz; dwgt, db, dx may each
 * be NULL; work (work_size floats) is needed when dwgt or db is given. */
int pynn_conv2d_general_backward(float *dwgt, float *db, float *dx, float *dy, float *work,
                                 int64_t work_size, const float *x, const float *wgt,
                                 const float *z, const float *y, int64_t n, int64_t h, int64_t w,
                                 int64_t c, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                 int64_t pad_top, int64_t pad_left, int64_t oh, int64_t ow,
                                 int64_t f, int64_t dh, int64_t dw, int64_t groups, int act,
                                 float alpha);
/* y (rows, dims[perm[0]], ..., dims[perm[ndim-1]]) = x (rows, dims[0], ..., dims[ndim-1])
 * with its non-batch axes permuted (perm a permutation of 0 .. ndim-1); y must not be x. */
#define PYNN_TRANSPOSE_MAX_DIMS 8
int pynn_transpose(float *y, const float *x, int64_t rows, int64_t ndim, const int64_t *dims,
                   const int64_t *perm);
/* ---- end of convolution variants (engineer B) ---- */

/* Backward of pynn_batchnorm_forward_infer (a frozen layer, or one called with
 * training=False, inside a network that trains): with inv_std = 1 / sqrt(moving_variance
 * + epsilon) and xhat = (x - moving_mean) * inv_std,
 *   dbeta = column sums of dy; dgamma = column sums of dy * xhat; dx = dy * gamma * inv_std
 * (gamma NULL acts as 1).  dx, dgamma and dbeta may each be NULL. */
int pynn_batchnorm_infer_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                                  const float *gamma, const float *moving_mean,
                                  const float *moving_variance, const float *dy, int64_t rows,
                                  int64_t cols, float epsilon);

/* ---- normalization and noise layers (norm.c; engineer E) ------------------------------
 *
 * Group normalization of x viewed as (n, s, groups * k), Keras 3's GroupNormalization
 * (and LayerNormalization: groups 1, s 1, k the normalized size).  Per (b, g), over its
 * m = s * k values (summed in double, in a fixed order of eight lanes, by one thread):
 *   mean = sum(x) / m;  var = sum((x - mean)^2) / m;  inv_std = 1 / sqrt(var + epsilon);
 *   rms 0: inv = inv_std * gamma[ch];  y = x * inv + (beta[ch] - mean * inv)   (Keras 3)
 *   rms 1: y = x * inv_std * gamma[ch] (+ beta[ch] when given)   (LayerNormalization's
 *          rms_scaling: no centring, and Keras gives it no beta)
 * mean and inv_std (n * groups, float32) are kept for the backward; gamma and beta
 * (groups * k, per channel ch = g * k + j) may be NULL (1 and 0). */
int pynn_group_norm_forward(float *y, float *mean, float *inv_std, const float *x,
                            const float *gamma, const float *beta, int64_t n, int64_t s,
                            int64_t groups, int64_t k, float epsilon, int rms);
/* Its backward; with gd = dy * gamma and xhat = (x - mean) * inv_std (rms: x * inv_std):
 *   dbeta = column sums of dy, dgamma = column sums of dy * xhat (over the n * s rows,
 *   each column in row order);
 *   rms 0: dx = inv_std (gd - sum(gd) / m - xhat sum(gd xhat) / m)
 *   rms 1: dx = gd inv_std - inv_std^3 (x - mean) sum(gd x) / m   (sums per (b, g)).
 * dx, dgamma and dbeta may each be NULL; dx may be dy. */
int pynn_group_norm_backward(float *dx, float *dgamma, float *dbeta, const float *x,
                             const float *gamma, const float *mean, const float *inv_std,
                             const float *dy, int64_t n, int64_t s, int64_t groups, int64_t k,
                             int rms);
/* Unit normalization of the rows of x (rows x cols), Keras 3's UnitNormalization:
 *   y = x / sqrt(max(sum x^2, 1e-24))   (keras.ops.normalize, epsilon 1e-12 on the norm);
 * inv_norm (rows) = that inverse, negated where the clamp applied (for the backward). */
int pynn_unit_norm_forward(float *y, float *inv_norm, const float *x, int64_t rows,
                           int64_t cols);
/* dx = inv dy - inv^3 x (dy . x) with inv = |inv_norm| (the second term 0 where clamped);
 * dx may be dy. */
int pynn_unit_norm_backward(float *dx, const float *x, const float *inv_norm, const float *dy,
                            int64_t rows, int64_t cols);
/* Gaussian noise from the counter-based uniforms ("randomness", below): element e draws
 * u1 = u_{2e}, u2 = u_{2e+1} and z = sqrt(-2 log(1 - u1)) cos(2 pi u2) (Box-Muller, in
 * double).  mode 0 (GaussianNoise): noise = (float)(scale z), y = x + noise;
 * mode 1 (GaussianDropout): noise = (float)(1 + scale z), y = x * noise.
 * noise may be NULL; y may be x; scale >= 0 and finite. */
int pynn_gaussian_noise(float *y, float *noise, const float *x, int64_t n, uint64_t seed,
                        uint64_t counter, int mode, double scale);

/* ---- transposed convolution, upsampling, padding, cropping (upsampling.c) ----------
 *
 * Conv2DTranspose: x (n, h, w, c) -> z, y (n, oh, ow, f), kernel wgt (kh, kw, f, c)
 * (Keras's layout), bias (f,) or NULL.  It is the adjoint of the convolution C of
 * pynn.h's window geometry whose input is (n, oh, ow, f), whose output is (n, h, w, c) and
 * whose kernel is wgt read as (kh, kw, C's channels f, C's filters c):
 *   z(img, r, q, e) = bias(e) + sum of x(img, i, j, ch) wgt(a, b, e, ch) over
 *   r = i sh - pad_top + a, q = j sw - pad_left + b;   y = act(z) (y may be z).
 * Any (pad_top, pad_left, oh, ow) is accepted: output positions no window reaches get the
 * bias alone (Keras's output_padding).  Backward: dy is overwritten with dz = act'(z) dy;
 * db (f,) its column sums, dx = C(dz), dw (kh, kw, f, c); each may be NULL.  work holds
 * work_size >= pynn_conv2d_transpose_work(...) floats, for both directions. */
int64_t pynn_conv2d_transpose_work(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                   int64_t kw, int64_t oh, int64_t ow, int64_t f);
int pynn_conv2d_transpose_forward(float *z, float *y, float *work, int64_t work_size,
                                  const float *x, const float *wgt, const float *bias,
                                  int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh,
                                  int64_t kw, int64_t sh, int64_t sw, int64_t pad_top,
                                  int64_t pad_left, int64_t oh, int64_t ow, int64_t f, int act,
                                  float alpha);
int pynn_conv2d_transpose_backward(float *dw, float *db, float *dx, float *dy, float *work,
                                   int64_t work_size, const float *x, const float *wgt,
                                   const float *z, const float *y, int64_t n, int64_t h,
                                   int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t pad_top, int64_t pad_left, int64_t oh,
                                   int64_t ow, int64_t f, int act, float alpha);
/* The backward of an upsampling by integer factors (fh, fw) of x (n, h, w, c) to
 * (n, h fh, w fw, c) by pynn_resize over the whole image (interp PYNN_INTERP_NEAREST:
 * output (i, j) = input (i / fh, j / fw); BILINEAR: half-pixel centres, clamped):
 * dx (n, h, w, c) = the adjoint applied to dy (n, h fh, w fw, c), each input pixel summing
 * its readers in a fixed order (output rows, then columns). */
int pynn_upsample2d_backward(float *dx, const float *dy, int64_t n, int64_t h, int64_t w,
                             int64_t c, int64_t fh, int64_t fw, int interp);
/* The window copy of ZeroPadding2D and Cropping2D: y (n, oh, ow, c)(i, j) = x (n, h, w, c)
 * (i - top, j - left) where that lies in x, else 0.  top / left > 0 pad, < 0 crop; the
 * backward of one window copy is the copy with the sizes swapped and -top, -left. */
int pynn_pad_crop(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                  int64_t oh, int64_t ow, int64_t top, int64_t left);
/* A dilated kernel: inverse 0: dst ((kh - 1) dh + 1, (kw - 1) dw + 1, cols) = zeros but
 * dst[a dh, b dw] = src (kh, kw, cols)[a, b] (Conv2DTranspose's dilation_rate, run as the
 * transposed convolution with that kernel); inverse 1: dst (kh, kw, cols)[a, b] =
 * src[a dh, b dw] (its gradient gathered back). */
int pynn_kernel_dilate(float *dst, const float *src, int64_t kh, int64_t kw, int64_t cols,
                       int64_t dh, int64_t dw, int inverse);

/* ---- recurrent layers (rnn.c): SimpleRNN, LSTM, GRU ------------------------------
 *
 * cell PYNN_RNN_SIMPLE (G = 1 gate block), PYNN_RNN_LSTM (G = 4: i, f, c, o, Keras's order)
 * or PYNN_RNN_GRU (G = 3: z, r, h, Keras's reset_after=True form).  act and rec_act: linear,
 * relu, sigmoid or tanh (pynn_rnn_act_supported).  Sizes: n rows, T >= 1 steps, f input
 * features, u units.  Weights in Keras's layouts: kernel (f, G u), rkernel (u, G u), bias
 * (G u) or, for the GRU, (2, G u) (input bias, recurrent bias); bias may be NULL.
 * Layouts: x (n, T, f); gates (n, T, G u), hprev and aux (n, T, u) are indexed by time t;
 * seq and cs (n, T, u) by output position: the step s, or the time t when time_order (step
 * s reads time t = go_backwards ? T - 1 - s : s).  mask (n, T) (time-indexed; 0.0 = a masked
 * step, which keeps the previous state and outputs it; NULL: none), rec_mask (n, u)
 * (recurrent dropout's per-sequence mask, applied to the state each step reads; NULL: none).
 * gate_masks (Keras 3's LSTM and GRU with recurrent_dropout, its "implementation 1"): each
 * gate g has its own dropout masks, rec_mask (n, G, u) and in_mask (n, G, f) (each may be
 * NULL): gate g's recurrent product reads h * rec_mask[:, g] and its input projection
 * x * in_mask[:, g] (the same masks every step), and hprev holds h unmasked.  Without
 * gate_masks in_mask must be NULL (the input dropout is then applied to x beforehand).
 *
 * Forward.  Out: seq (the hidden states), cs (LSTM: the cell states; else unused), gates
 * (the activated gates), hprev (the state each step read, rec_mask applied but with
 * gate_masks), aux (GRU: the
 * recurrent projection of the candidate, bias included; LSTM: act(c), which the backward
 * reads; SimpleRNN: unused), h_last, c_last (n, u), out (n, T, u) (Keras's
 * zero_output_for_mask: seq with 0 at the masked steps; NULL: not written)
 * (the final states; may be NULL).  rec: (n, G u) scratch.
 */
#define PYNN_RNN_SIMPLE 0
#define PYNN_RNN_LSTM 1
#define PYNN_RNN_GRU 2
int64_t pynn_rnn_gates(int cell);               /* G, or 0 for no such cell */
int pynn_rnn_act_supported(int act);
int pynn_rnn_forward(float *seq, float *cs, float *gates, float *hprev, float *aux, float *rec,
                     float *h_last, float *c_last, const float *x, const float *kernel,
                     const float *rkernel, const float *bias, const float *mask,
                     const float *rec_mask, const float *in_mask, int64_t n, int64_t T,
                     int64_t f, int64_t u, int cell, int act, int rec_act, int go_backwards,
                     int time_order, int gate_masks, float *out);
/* Floats of `work` pynn_rnn_backward needs (3 n u is enough; this is n * 4u). */
int64_t pynn_rnn_backward_work(int64_t n, int64_t u);
/* Backpropagation through time of pynn_rnn_forward (same operands as it left them).
 * In: dseq (the gradient of seq, or NULL), dh_last, dc_last (of the final states, or NULL).
 * Out: dkernel, drkernel, dbias, dx (each may be NULL); dgates (n, T, G u) the gate
 * gradients against the inputs, dgr (GRU: (n, T, G u) against the recurrent projection;
 * unused by the others, may be NULL); work holds pynn_rnn_backward_work(n, u) floats.
 * zero_output: dseq is the gradient of the forward's `out` (nothing passes at masked steps). */
int pynn_rnn_backward(float *dkernel, float *drkernel, float *dbias, float *dx, float *dgates,
                      float *dgr, float *work, const float *dseq, const float *dh_last,
                      const float *dc_last, const float *x, const float *kernel,
                      const float *rkernel, const float *seq, const float *cs,
                      const float *gates, const float *hprev, const float *aux,
                      const float *mask, const float *rec_mask, const float *in_mask,
                      int64_t n, int64_t T, int64_t f, int64_t u, int cell, int act,
                      int rec_act, int go_backwards, int time_order, int gate_masks,
                      int zero_output);

/* ---- randomness: counter-based, the same numbers in every backend ------------
 *
 * mix64(z) is splitmix64's finaliser:  z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
 * z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^ z >> 31 (all mod 2^64), and G is
 * 0x9E3779B97F4A7C15.  For a (seed, counter) pair, key = mix64(seed + G * (counter + 1)),
 * and element e (from 0) draws u_e = (mix64(key + G * (e + 1)) >> 40) * 2^-24, a
 * uniform float32 in [0, 1) with 24 random bits.  No state: any element can be drawn
 * by any thread, so the draws do not depend on the thread count or the backend.
 */

/* Inverted dropout: mask = u >= (float)rate ? scale : 0 with scale = (float)(1 / (1 - rate)),
 * y = x * mask.  x, y and mask are (rows, dims[0], ..., dims[ndim-1]); y may be x.
 * broadcast[0 .. ndim] (the batch axis first) says which axes the noise shape
 * collapses (Keras's noise_shape: an axis of 1): element (i0, i1, ...) draws u at the
 * row-major index of (i0 or 0, i1 or 0, ...) in the noise shape, so the mask is the same
 * along broadcast axes.  0 <= rate < 1. */
int pynn_dropout_forward(float *y, float *mask, const float *x, int64_t rows,
                         const int64_t *dims, const int64_t *broadcast, int64_t ndim,
                         uint64_t seed, uint64_t counter, double rate);

/* ---- geometric image ops (image.c): Keras 3's image preprocessing layers --------
 *
 * Images are NHWC float32, x (n, h, w, c) and y (n, oh, ow, c); y never aliases x.  Each
 * output element is written by one thread and depends on nothing but its inputs, so the
 * results do not depend on the thread count.  Per-image parameters come in `params`,
 * n rows of PYNN_IMAGE_PARAMS floats (pynn_image_random draws them).
 *
 * Sampling (pynn_affine_transform) follows keras.ops.image.affine_transform as Keras 3's
 * numpy and JAX backends compute it: output pixel (row i, column j) of image b reads the
 * input at column xs = (a0 j + a1 i + a2) / k, row ys = (b0 j + b1 i + b2) / k, with
 * k = c0 j + c1 i + 1 and params row b = (a0, a1, a2, b0, b1, b2, c0, c1) (in double).
 * The image is extended beyond its edge index by index, by fill mode:
 *   REFLECT   d c b a | a b c d | d c b a   (half-sample symmetric; Keras's "reflect")
 *   WRAP      a b c d | a b c d | a b c d
 *   CONSTANT  k k k k | a b c d | k k k k   (k = fill_value)
 *   NEAREST   a a a a | a b c d | d d d d
 * then interpolated: BILINEAR between the four indices around (ys, xs), NEAREST at
 * (floor(ys + 0.5), floor(xs + 0.5)).  (A coordinate more than 4 image sizes outside the
 * image, which no layer's transform reaches, is clamped there first; NaN reads as far
 * outside.) */
#define PYNN_IMAGE_PARAMS 8
#define PYNN_INTERP_BILINEAR 0
#define PYNN_INTERP_NEAREST 1
#define PYNN_FILL_REFLECT 0
#define PYNN_FILL_WRAP 1
#define PYNN_FILL_CONSTANT 2
#define PYNN_FILL_NEAREST 3
int pynn_affine_transform(float *y, const float *x, const float *params, int64_t n, int64_t h,
                          int64_t w, int64_t c, int interpolation, int fill_mode,
                          float fill_value);
/* Resize (Keras 3 / TF resize, half-pixel centres, no antialiasing: Resizing's default)
 * of the window rows [top, top + wh) x columns [left, left + ww) of each image to
 * (oh, ow); window positions outside the image read fill_value (pad_to_aspect_ratio).
 * BILINEAR: s = (i + 0.5) wh / oh - 0.5 clamped to [0, wh - 1], interpolated between
 * floor(s) and floor(s) + 1 (clamped); NEAREST: floor((i + 0.5) wh / oh) (clamped).
 * wh, ww >= 1; a window of the output's size is an exact copy. */
int pynn_resize(float *y, const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                int64_t oh, int64_t ow, int64_t top, int64_t left, int64_t wh, int64_t ww,
                int interpolation, float fill_value);
/* Flip: image b is flipped left-right (horizontal) and/or top-bottom (vertical) when
 * params is NULL or params[b * PYNN_IMAGE_PARAMS] != 0, else copied. */
int pynn_flip(float *y, const float *x, const float *params, int64_t n, int64_t h, int64_t w,
              int64_t c, int horizontal, int vertical);
/* Crop: y[b] = x[b, top : top + oh, left : left + ow], (top, left) the ints given, or, when
 * params is not NULL, image b's (params[b P], params[b P + 1]) (P = PYNN_IMAGE_PARAMS),
 * each an integer with the window inside the image (else PYNN_EINVAL, before anything is
 * written). */
int pynn_crop(float *y, const float *x, const float *params, int64_t n, int64_t h, int64_t w,
              int64_t c, int64_t oh, int64_t ow, int64_t top, int64_t left);
/* The random per-image parameters of the augmentation layers, drawn from (seed, counter)
 * with the counter-based generator (above): image b's j-th uniform is element
 * b * PYNN_IMAGE_PARAMS + j, so the draws depend on nothing but (seed, counter, b).  In
 * double, stored as float, unused entries 0.  kind and its reals r[PYNN_RANDOM_REALS]:
 *   ROTATION     r0, r1 the factor's bounds (fractions of a turn); angle (degrees)
 *                = 360 r0 + u0 (360 r1 - 360 r0); params Keras's rotation matrix about
 *                ((w - 1) / 2, (h - 1) / 2): a0 = cos, a1 = -sin, b0 = sin, b1 = cos,
 *                a2 = cx - cx a0 - cy a1, b2 = cy - cx b0 - cy b1
 *   ZOOM         r0, r1 height bounds, r2, r3 width bounds, r4 != 0: width drawn (else
 *                the height's zoom); zh = 1 + r0 + u0 (r1 - r0), zw = 1 + r2 + u1 (r3 - r2);
 *                params (zw, 0, (w - 1) / 2 (1 - zw), 0, zh, (h - 1) / 2 (1 - zh), 0, 0)
 *   TRANSLATION  r0, r1 height bounds, r2, r3 width bounds (fractions of the size);
 *                th = (r0 + u0 (r1 - r0)) h, tw = (r2 + u1 (r3 - r2)) w;
 *                params (1, 0, -tw, 0, 1, -th, 0, 0)
 *   FLIP         params[0] = u0 <= 0.5 (1 or 0)
 *   CROP         params[0] = floor(u0 (h - oh + 1)), params[1] = floor(u1 (w - ow + 1))
 *                (clamped to h - oh, w - ow; oh <= h and ow <= w)
 * The rows written are n. */
#define PYNN_RANDOM_ROTATION 0
#define PYNN_RANDOM_ZOOM 1
#define PYNN_RANDOM_TRANSLATION 2
#define PYNN_RANDOM_FLIP 3
#define PYNN_RANDOM_CROP 4
#define PYNN_RANDOM_KINDS 5
#define PYNN_RANDOM_REALS 5
int pynn_image_random(float *params, int64_t n, int64_t h, int64_t w, int64_t oh, int64_t ow,
                      int kind, const double *r, uint64_t seed, uint64_t counter);

/* ---- pixel preprocessing (pixel.c: Rescaling, Normalization, RandomContrast,
 * RandomBrightness) ---------------------------------------------------------------------
 *
 * x and y are (outer, c, inner) or images (n, hw, c) (NHWC with hw = h * w); y may be x.
 * The random kernels draw one uniform u per image, u = u_img of (seed, counter) (the
 * counter-based generator above; img the image's index in the call), so a call draws the
 * same numbers whatever the thread count, and so do the reference and CUDA twins. */
/* y[o, k, i] = x[o, k, i] * scale[k] + offset[k] (offset NULL: 0, which is also the
 * backward: dx = dy * scale). */
int pynn_channel_affine(float *y, const float *x, const float *scale, const float *offset,
                        int64_t outer, int64_t c, int64_t inner);
/* Keras 3's Normalization with d[k] = max(sqrtf(variance[k]), epsilon):
 * y = (x - mean[k]) / d[k], or with invert y = mean[k] + x * d[k].  mean NULL acts as 0,
 * which is the backward (dx = dy / d, resp. dy * d).  invert is 0 or 1. */
int pynn_normalize(float *y, const float *x, const float *mean, const float *variance,
                   int64_t outer, int64_t c, int64_t inner, int invert, float epsilon);
/* Keras 3's RandomContrast in training: per image f = lo + u (hi - lo), lo = (float)(1 -
 * lower), hi = (float)(1 + upper) (both finite), written to factors[img]; per
 * channel m = (float)(the image's mean over its hw positions, summed in double);
 * y = clip((x - m) f + m, vmin, vmax). */
int pynn_random_contrast(float *y, float *factors, const float *x, int64_t n, int64_t hw,
                         int64_t c, uint64_t seed, uint64_t counter, double lower, double upper,
                         float vmin, float vmax);
/* Its backward, from the forward's x and factors: with v the unclipped value and
 * g = dy where vmin <= v <= vmax (else 0), dx = f g + (1 - f) / hw * (the channel's sum of
 * g over the image, in double).  dx may be dy. */
int pynn_random_contrast_backward(float *dx, const float *x, const float *factors,
                                  const float *dy, int64_t n, int64_t hw, int64_t c,
                                  float vmin, float vmax);
/* Keras 3's RandomBrightness in training: per image delta = ((float)lower + u ((float)upper -
 * (float)lower)) * (vmax - vmin) (lower <= upper, finite), v = x + delta,
 * y = clip(v, vmin, vmax); mask (NULL: not written) = 1 where vmin <= v <= vmax, else 0
 * (the backward is dx = dy * mask, pynn_multiply). */
int pynn_random_brightness(float *y, float *mask, const float *x, int64_t n, int64_t per_image,
                           uint64_t seed, uint64_t counter, double lower, double upper,
                           float vmin, float vmax);

/* ---- merges, concatenation, scaling ------------------------------------------ */
/* y = the merge (PYNN_MERGE_*) of k >= 1 arrays xs[0..k-1] of n floats each, folded
 * left to right in input order: add x0 + x1 + ..., subtract x0 - x1 (k == 2),
 * multiply x0 * x1 * ..., average (x0 + x1 + ...) / k, maximum / minimum.  y may be
 * xs[0], or xs[1] when k == 2 (the plan sums gradients in place over a term). */
int pynn_merge_forward(float *y, const float *const *xs, int64_t k, int64_t n, int kind);
/* y = relu(x0 + x1) over n floats (an Add and the Activation("relu") written over its
 * output, folded by a plan): bitwise pynn_merge_forward then pynn_activation_forward;
 * y may be x0 or x1. */
int pynn_merge_add_relu(float *y, const float *x0, const float *x1, int64_t n);
/* dx = d merge / d xs[i] applied to dy (n floats): add dy; subtract dy (i = 0) or -dy
 * (i = 1); multiply dy * the product of the other inputs, folded in input order;
 * average dy / k; maximum / minimum dy where xs[i] is the first input (lowest index)
 * holding the maximum / minimum, else 0.  dx may be dy. */
int pynn_merge_backward(float *dx, const float *dy, const float *const *xs, int64_t k,
                        int64_t n, int kind, int64_t i);
/* Concatenation along the last axis of 2-D views: y (outer x sum of widths) gets xs[i]
 * (outer x widths[i]) in its columns, in input order; and the backward, the split of
 * dy into dxs[i] (each may be NULL: not wanted). */
int pynn_concat(float *y, const float *const *xs, const int64_t *widths, int64_t k,
                int64_t outer);
int pynn_concat_backward(float *const *dxs, const float *dy, const int64_t *widths, int64_t k,
                         int64_t outer);
/* y = alpha * x over n floats; y may be x. */
int pynn_scale(float *y, const float *x, int64_t n, float alpha);

/* ---- regularizers and constraints (regularizers.c; engineer F) ---------------- */
/* The L1/L2 penalty of x (n floats) and its gradient:
 *   *value = scale * (l1 * sum |x| + l2 * sum x^2), summed in double in fixed chunks of x
 *            combined in order (the same bits on any thread count);
 *   dx (may be NULL) = scale * (l1 * sign(x) + 2 * l2 * x), added into dx when
 *            `accumulate`, else written.  sign(0) is 0.
 * l1, l2 >= 0 and finite; scale finite. */
int pynn_penalty(double *value, float *dx, const float *x, int64_t n, double l1, double l2,
                 double scale, int accumulate);
/* Keras 3's weight constraints, in place on w viewed as (outer, red, inner): the norms are
 * taken over the `red` axis of each (outer, inner) column, n = sqrt(sum w^2) (float32, as
 * Keras's ops), eps = 1e-7 (Keras's backend.epsilon()):
 *   PYNN_CONSTRAINT_MAX_NORM      w * (clip(n, 0, a) / (eps + n))
 *   PYNN_CONSTRAINT_MIN_MAX_NORM  w * ((rate * clip(n, a, b) + (1 - rate) * n) / (eps + n))
 *   PYNN_CONSTRAINT_NON_NEG       max(w, 0)
 *   PYNN_CONSTRAINT_UNIT_NORM     w / (eps + n) */
#define PYNN_CONSTRAINT_MAX_NORM 0
#define PYNN_CONSTRAINT_MIN_MAX_NORM 1
#define PYNN_CONSTRAINT_NON_NEG 2
#define PYNN_CONSTRAINT_UNIT_NORM 3
#define PYNN_CONSTRAINT_KINDS 4
int pynn_constraint(float *w, int64_t outer, int64_t red, int64_t inner, int kind, double a,
                    double b, double rate);

/* ---- metrics ------------------------------------------------------------------ */
/* sum (double) over the rows of pred (rows x cols) of the per-row value of metric
 * PYNN_METRIC_* against target (rows x cols float) or, when target is NULL, labels
 * (rows int64; a label row counts as its one-hot row for the non-sparse metrics).
 * Rows are added in order, so the result does not depend on the thread count.  k: the top-k
 * accuracies' k (>= 1; the other metrics ignore it).  threshold (not NaN): binary accuracy's
 * and the confusion counts' (p_j > threshold is predicted positive; the others ignore it).
 * weights: NULL (every row weighs 1) or ceil(rows / per_weight) weights, row i counting
 * weights[i / per_weight] times (per_weight >= 1: the rows of one sample, the positions of
 * an image output); each weight finite and >= 0, else PYNN_EINVAL before anything is
 * written.  METRIC_ROWS's value is 1, so weighted it sums the rows' weights (the
 * denominator of Keras's weighted mean).  METRIC_CONFUSION is not a per-row metric
 * (PYNN_EINVAL): see pynn_metric_confusion. */
int pynn_metric_sum(double *sum, const float *pred, const float *target,
                    const int64_t *labels, int64_t rows, int64_t cols, int metric, int64_t k,
                    float threshold, const float *weights, int64_t per_weight);
/* The confusion counts of every entry of pred (rows x cols) at n_thresholds >= 1 thresholds
 * (Keras's update_confusion_matrix_variables, not multi-label: predicted positive p > thr,
 * actually positive t != 0; labels as in pynn_metric_sum): counts[0 .. n) true positives,
 * [n .. 2n) false positives, [2n .. 3n) true negatives, [3n .. 4n) false negatives, each
 * entry counting its row's weight (weights, per_weight as pynn_metric_sum's).  Per row and
 * threshold the entries are counted as an integer, then weight * count is added in row
 * order (double), so the sums repeat bitwise.  Thresholds must not be NaN. */
int pynn_metric_confusion(double *counts, const float *pred, const float *target,
                          const int64_t *labels, int64_t rows, int64_t cols,
                          const float *thresholds, int64_t n_thresholds,
                          const float *weights, int64_t per_weight);

/* ---- one optimizer step over a flat parameter array ------------------------------ */
/* hyper[PYNN_HYPER_*]: the optimizer's settings as doubles.  step >= 1 is the update
 * being made.  Scalars that depend on the step are computed in double and rounded to
 * float (Adam's lr_t = lr sqrt(1 - beta_2^step) / (1 - beta_1^step), ...); the rest of
 * each rule is float32, elementwise, in the order of Keras 3's ops (optimizers.c).
 *
 * weight_decay != 0 (any kind; AdamW is Adam with it): first w -= w * weight_decay * lr,
 * Keras 3's decoupled decay (base_optimizer._apply_weight_decay), then the rule.
 *
 * slots[PYNN_OPT_SLOTS]: the optimizer's state, arrays of n floats; a slot the rule
 * does not read may be NULL (pynn_optimizer_slots says which it reads; slots itself may
 * be NULL when it reads none):
 *   SGD       0 momentum (read when momentum != 0)
 *   Adam      0 m, 1 v, 2 v_hat (read when amsgrad != 0)
 *   RMSprop   0 velocity, 1 momentum (read when momentum != 0)
 *   Adagrad   0 accumulator (starts at initial_accumulator_value, set by the caller)
 *   Adadelta  0 accumulated_grad, 1 accumulated_delta_var
 *   Adamax    0 m, 1 u (the infinity norm)
 *   Nadam     0 m, 1 v.  Keras's scalar state u_product = prod_{s<=step} u_s,
 *             u_s = beta_1 (1 - 0.5 * 0.96^s), is a function of the step: it is
 *             recomputed from it (pynn_nadam_factors), so a change of beta_1 between steps
 *             acts as if it had always held
 *   Lion      0 m */
#define PYNN_HYPER_LEARNING_RATE 0
#define PYNN_HYPER_MOMENTUM 1
#define PYNN_HYPER_NESTEROV 2
#define PYNN_HYPER_BETA_1 3
#define PYNN_HYPER_BETA_2 4
#define PYNN_HYPER_RHO 5
#define PYNN_HYPER_EPSILON 6
#define PYNN_HYPER_WEIGHT_DECAY 7
#define PYNN_HYPER_AMSGRAD 8
#define PYNN_HYPER_COUNT 9
#define PYNN_OPT_SLOTS 3
/* Bit i set: rule `kind` with these settings reads slots[i].  0 for an unknown kind or
 * hyper == NULL. */
int pynn_optimizer_slots(int kind, const double *hyper);
int pynn_optimizer_step(float *w, float *const *slots, const float *g, int64_t n,
                        int kind, int64_t step, const double *hyper);
/* Nadam's step scalars for step >= 1, in double: out[0] = u_{t+1} / (1 - u_product_{t+1}),
 * out[1] = (1 - u_t) / (1 - u_product_t), out[2] = 1 - beta_2^t.  u_product_t is
 * beta_1^t prod_{s <= min(t, 1000)} (1 - 0.5 d_s), d_s = 0.96 d_{s-1}, d_0 = 1 (past
 * s = 1000 a factor is 1 in double). */
void pynn_nadam_factors(double out[3], double beta_1, double beta_2, int64_t step);

/* ---- learning-rate schedules ------------------------------------------------------ */
/* The learning rate of schedule `kind` (PYNN_SCHEDULE_*) at `iteration` >= 0, the
 * optimizer's step count before the update (Keras 3 evaluates a schedule at
 * optimizer.iterations: the update of step t uses iteration t - 1), in double, by Keras
 * 3's formulas (keras/src/optimizers/schedules/learning_rate_schedule.py).  params
 * (PYNN_SCHEDULE_PARAMS doubles; the caller checked them, pynn.optimizers.schedules):
 *   ExponentialDecay        lr0, decay_steps, decay_rate, staircase
 *   PiecewiseConstantDecay  n <= PYNN_SCHEDULE_MAX_BOUNDARIES, boundaries[n], values[n + 1]
 *   PolynomialDecay         lr0, decay_steps, end_learning_rate, power, cycle
 *   InverseTimeDecay        lr0, decay_steps, decay_rate, staircase
 *   CosineDecay             lr0, decay_steps, alpha, has_warmup, warmup_target, warmup_steps
 *   CosineDecayRestarts     lr0, first_decay_steps, t_mul, m_mul, alpha
 * NaN for an unknown kind (or SCHEDULE_NONE), params NULL, iteration < 0 or a
 * PiecewiseConstantDecay count outside [0, PYNN_SCHEDULE_MAX_BOUNDARIES]. */
#define PYNN_SCHEDULE_MAX_BOUNDARIES 16
#define PYNN_SCHEDULE_PARAMS (1 + 2 * PYNN_SCHEDULE_MAX_BOUNDARIES + 1)
double pynn_schedule_lr(int kind, const double *params, int64_t iteration);
/* The reals of an OP_OPTIMIZER: hyper[PYNN_HYPER_COUNT], optionally followed by a schedule
 * block: kind (PYNN_SCHEDULE_*, as a double), params[PYNN_SCHEDULE_PARAMS], optionally
 * followed by the options block options[PYNN_OPTION_COUNT] (below). */
#define PYNN_OPT_REALS (PYNN_HYPER_COUNT + 1 + PYNN_SCHEDULE_PARAMS)
#define PYNN_OPT_REALS_OPTIONS (PYNN_OPT_REALS + PYNN_OPTION_COUNT)

/* ---- the settings common to Keras 3's optimizers (base_optimizer.py) ---------------
 * options[PYNN_OPTION_*], doubles:
 *   CLIPNORM         > 0: each variable's gradient g_v = g_v c / max(||g_v||, c)
 *                    (Keras's _clip_by_norm, float32 after the norm); 0: off
 *   CLIPVALUE        > 0: g = clip(g, -c, c) elementwise; 0: off
 *   GLOBAL_CLIPNORM  > 0: every gradient g *= c min(1 / N, 1 / c) + (N - N), N the norm
 *                    of all gradients together (Keras's clip_by_global_norm); 0: off
 *   EMA_MOMENTUM     in [0, 1]: with an EMA array, after the update
 *                    ema = m ema + (1 - m) w, m = 0 at step 1 and ema_momentum after
 *                    (Keras's _update_model_variables_moving_average)
 *   EMA_OVERWRITE_FREQUENCY  an integer >= 0: with an EMA array and f > 0, w = ema after
 *                    the EMA update of every step divisible by f
 * At most one clip is non-zero; all are finite and >= 0 (else PYNN_EINVAL).
 *
 * Segments: the variables of the flat array, as n_segments triples (offset, size, flags)
 * that tile [0, n) in order (offset_0 = 0, offset_{i+1} = offset_i + size_i, the last
 * ending at n).  flags: bit 0 (PYNN_SEGMENT_DECAY) set when weight decay applies to the
 * variable (Keras's exclude_from_weight_decay clears it); bit 1 (PYNN_SEGMENT_SPARSE) set
 * on an Embedding table whose rows seen an OP_EMBEDDING_SGD updates after the optimizer:
 * when pynn_optimizer_sparse_ok holds for the step, the rule skips the segment (not even
 * its gradient is read); otherwise the flag is ignored (the dense update); no other bit.  n_segments == 0:
 * one variable covering the array, decay applied.
 *
 * Norms are sums of squares in double: each segment cut into chunks of PYNN_NORM_CHUNK
 * elements, each summed in order by one thread, the chunk sums added in chunk order, the
 * global sum the segment sums added in segment order: the result never depends on the
 * thread count. */
#define PYNN_OPTION_CLIPNORM 0
#define PYNN_OPTION_CLIPVALUE 1
#define PYNN_OPTION_GLOBAL_CLIPNORM 2
#define PYNN_OPTION_EMA_MOMENTUM 3
#define PYNN_OPTION_EMA_OVERWRITE_FREQUENCY 4
#define PYNN_OPTION_COUNT 5
#define PYNN_SEGMENT_DECAY 1
#define PYNN_SEGMENT_SPARSE 2
#define PYNN_NORM_CHUNK 4096
/* PYNN_OK when segments/options are as described above for an array of n floats (options
 * may be NULL: all 0), else PYNN_EINVAL: what pynn_optimizer_apply and the plan's dry
 * check run before anything changes.  (Without an EMA array the EMA options are read by
 * nothing.) */
int pynn_optimizer_options_check(int64_t n, const int64_t *segments, int64_t n_segments,
                                 const double *options);
/* 1 when a step with these settings is plain SGD, w -= lr g and nothing else: kind SGD,
 * (float) momentum 0, (float) weight decay 0, no clip option, no EMA array (has_ema 0);
 * rows whose gradient is zero then do not change, so a PYNN_SEGMENT_SPARSE segment may be
 * left to pynn_embedding_sgd (Keras's TF backend applies an IndexedSlices gradient
 * sparsely for plain SGD only).  hyper: PYNN_HYPER_COUNT doubles; options may be NULL. */
int pynn_optimizer_sparse_ok(int kind, const double *hyper, const double *options, int has_ema);
/* sums[i] = the sum of squares of segment i of g, in double (the order above). */
int pynn_segment_sumsq(double *sums, const float *g, int64_t n, const int64_t *segments,
                       int64_t n_segments);
/* The clip options[CLIPNORM .. GLOBAL_CLIPNORM] applied to g in place. */
int pynn_clip_gradients(float *g, int64_t n, const int64_t *segments, int64_t n_segments,
                        const double *options);
/* The EMA update of the options above, then the overwrite (step >= 1). */
int pynn_ema_update(float *ema, float *w, int64_t n, int64_t step, const double *options);
/* One step as Keras 3's base optimizer makes it: the gradient clipped (in place), weight
 * decay on the segments whose flag says so, the rule (pynn_optimizer_step), then the EMA
 * (ema may be NULL: none).  Everything is checked before anything changes. */
int pynn_optimizer_apply(float *w, float *const *slots, float *ema, float *g, int64_t n,
                         const int64_t *segments, int64_t n_segments, int kind, int64_t step,
                         const double *hyper, const double *options);

/* ---- plans: a training step (or an inference pass) as a list of ops ------------
 *
 * pynn/models/plan.py compiles a model into a plan: buffers and a flat list of ops in
 * topological order (forward ops, losses, metrics, backward ops, the optimizer).  The
 * Python executor walks the list through a backend's methods; pynn_plan_run walks the
 * same list in C, for one step or a whole epoch per call.
 *
 * A buffer is either batched, `rows x row_size` elements for a step of `rows` rows
 * (its data holds `capacity` rows: the plan's largest batch), or fixed, `size`
 * elements (weights, their gradients and optimizer slots, statistics, workspaces).
 * dtype is PYNN_DTYPE_F32 or PYNN_DTYPE_I64 (labels).  Buffers may share memory (a
 * Reshape's output is its input).  Below, n(b) is the element count of buffer b in this
 * step, and an operand given as -1 is absent.
 *
 * Each op: kind (PYNN_OP_*), bufs[n_bufs] buffer indices, ints[n_ints], reals[n_reals].
 *   OP_DENSE           bufs x, w, b, z, y[, wp]  ints in, out, act     reals alpha
 *                      pynn_sgemm_bias_act with m = n(x) / in rows; wp: w's panels
 *                      (pynn_dense_pack_panels; read while current, an inference plan's
 *                      owner marking them stale when w changes)
 *   OP_DENSE_BACKWARD  bufs x, w, z, y, dy, dw, db, dx   ints in, out, act   reals alpha
 *   OP_CONV2D          bufs x, w, b, cols, z, y
 *                      ints h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f, act
 *                      reals alpha; the images are the step's rows
 *   OP_CONV2D_BACKWARD bufs x, w, z, y, dy, cols, work, dw, db, dx; ints, reals as OP_CONV2D
 *                      (engineer B) the ints may go on with dh, dw, groups (16 ints; 13:
 *                      1, 1, 1); other than 1, 1, 1 the op runs pynn_conv2d_general_* with
 *                      the kernel (kh, kw, c / groups, f), cols unused, and work holding
 *                      pynn_conv2d_general_work(capacity, ...) floats
 *   OP_TRANSPOSE       bufs x, y   ints ndim, dims[ndim], perm[ndim]   (engineer B)
 *                      pynn_transpose of n(x) / prod(dims) rows
 *   OP_MAXPOOL2D       bufs x, y    ints h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow
 *   OP_MAXPOOL2D_BACKWARD  bufs x, y, dy, dx;  ints as OP_MAXPOOL2D
 *   OP_AVGPOOL2D       bufs x, y;   ints as OP_MAXPOOL2D
 *   OP_AVGPOOL2D_BACKWARD  bufs dy, dx;  ints as OP_MAXPOOL2D
 *   OP_GLOBAL_AVGPOOL2D    bufs x, y;  ints h, w, c
 *   OP_GLOBAL_AVGPOOL2D_BACKWARD  bufs dy, dx;  ints h, w, c
 *   OP_BATCHNORM_TRAIN bufs x, gamma, beta, moving_mean, moving_variance, mean, inv_std, y
 *                      ints c   reals momentum, epsilon   (n(x) / c rows)
 *   OP_BATCHNORM_TRAIN_BACKWARD  bufs x, gamma, mean, inv_std, dy, dgamma, dbeta, dx; ints c
 *   OP_BATCHNORM_INFER bufs x, gamma, beta, moving_mean, moving_variance, y
 *                      ints c   reals epsilon
 *   OP_BATCHNORM_INFER_BACKWARD  bufs x, gamma, moving_mean, moving_variance, dy, dgamma,
 *                      dbeta, dx;  ints c;  reals epsilon
 *   OP_DROPOUT         bufs x, mask, y   ints seed, ndim, dims[ndim], broadcast[ndim + 1]
 *                      reals rate;  the counter is the step number (below)
 *   OP_DROPOUT_BACKWARD  bufs dy, mask, dx   (pynn_multiply)
 *   (engineer G)
 *   OP_EMBEDDING         bufs ids, table, y, mask (-1: none); ints V, D; n = n(ids)
 *   OP_EMBEDDING_BACKWARD bufs ids, dy, dtable, work (int64, 2 n); ints V, D
 *   OP_EMBEDDING_GRAD_CLEAR bufs dtable, work, ids; ints V, D, whole (after the
 *                        optimizer: the rows the backward wrote back to zero; whole: every
 *                        row, where distributed training summed other ranks' rows in)
 *   OP_EMBEDDING_SGD     bufs table, dtable, work, ids; ints V, D (after the optimizer,
 *                        in place of OP_EMBEDDING_GRAD_CLEAR where the table's optimizer
 *                        segment is PYNN_SEGMENT_SPARSE): when this step's OP_OPTIMIZER
 *                        skipped the sparse segments (pynn_optimizer_sparse_ok), the rows
 *                        seen get w -= lr g with the learning rate that op used
 *                        (its schedule's included); then the rows seen are zeroed
 *                        (pynn_embedding_sgd)
 *   OP_MASKING           bufs x, y, mask (-1: none); ints D; reals mask_value
 *   OP_MASKING_BACKWARD  bufs dy, mask, dx; ints D
 *   OP_ROWS_SCOPE        no bufs; ints T, count: the next `count` ops run with the
 *                        step's rows times T (TimeDistributed: an inner layer on N*T
 *                        rows); buffer sizes still count the step's rows
 *   OP_ACTIVATION      bufs x, y      ints cols, act   reals alpha   (n(x) / cols rows)
 *   OP_ACTIVATION_BACKWARD  bufs x, y, dy, dx;  ints cols, act;  reals alpha
 *   OP_RELU            bufs x, y      reals negative_slope, threshold, max_value (inf: none)
 *   OP_RELU_BACKWARD   bufs x, dy, dx reals as OP_RELU
 *   OP_SOFTMAX_AXIS    bufs x, y[, mask]  ints len, inner   (outer = n(x) / (len inner));
 *                      mask: as many floats as x (pynn_softmax_axis_masked_forward)
 *   OP_SOFTMAX_AXIS_BACKWARD  bufs y, dy, dx   ints len, inner
 *   OP_PRELU           bufs x, alpha, y              ints rank, dims[rank], shared[rank]
 *   OP_PRELU_BACKWARD  bufs x, alpha, dy, dalpha, dx ints as OP_PRELU (dalpha, dx may be absent)
 *   OP_MERGE           bufs y, x0 .. x(k-1)          ints kind
 *   OP_MERGE_BACKWARD  bufs dx, dy, x0 .. x(k-1)     ints kind, i
 *   OP_CONCAT          bufs y, x0 .. x(k-1)          ints widths[k]  (outer = n(y) / sum)
 *   OP_CONCAT_BACKWARD bufs dy, dx0 .. dx(k-1)       ints widths[k]
 *   OP_SCALE           bufs y, x                     reals alpha
 *   OP_CHANNEL_AFFINE  bufs x, scale, offset, y   ints c, inner   (outer = n(x) / (c inner))
 *                      pynn_channel_affine; offset absent: the backward (x = dy, y = dx)
 *   OP_NORMALIZE       bufs x, mean, variance, y   ints c, inner, invert   reals epsilon
 *                      pynn_normalize; mean absent: the backward (x = dy, y = dx)
 *   OP_RANDOM_CONTRAST bufs x, factors, y   ints seed, h, w, c   reals lower, upper, vmin,
 *                      vmax; factors (batched, 1 per image); the step's rows are the images
 *                      and the counter is the step number
 *   OP_RANDOM_CONTRAST_BACKWARD  bufs x, factors, dy, dx   ints h, w, c   reals vmin, vmax
 *   OP_RANDOM_BRIGHTNESS  bufs x, mask, y   ints seed   reals lower, upper, vmin, vmax;
 *                      the step's rows are the images, mask may be absent; the backward
 *                      is OP_DROPOUT_BACKWARD with this mask
 *   OP_GROUP_NORM      bufs x, gamma, beta, mean, inv_std, y   ints s, groups, k, rms
 *                      reals epsilon   (pynn_group_norm_forward; n = n(x) / (s groups k);
 *                      mean and inv_std hold n * groups)   [engineer E]
 *   OP_GROUP_NORM_BACKWARD  bufs x, gamma, mean, inv_std, dy, dgamma, dbeta, dx;
 *                      ints as OP_GROUP_NORM
 *   OP_UNIT_NORM       bufs x, inv_norm, y   ints cols   (rows n(x) / cols)
 *   OP_UNIT_NORM_BACKWARD  bufs x, inv_norm, dy, dx   ints cols
 *   OP_GAUSSIAN_NOISE  bufs x, noise, y   ints seed, mode   reals scale; the counter is the
 *                      step number; the backward is nothing (mode 0) or
 *                      OP_DROPOUT_BACKWARD with the noise (mode 1)
 *   OP_LOSS            bufs pred, target, grad, weights
 *                      ints kind, from_logits, cols, index, has_ignore, ignore_class,
 *                      reduce_sum (0 or 1)
 *                      reals weight, param, label_smoothing (pynn_loss_options'): the loss
 *                      (of r = n(pred) / cols rows; without the loss weight; reduce_sum 1:
 *                      Keras's "sum", not divided by the rows) goes to the step's
 *                      losses[index]; a target of dtype I64 holds labels; the weight
 *                      is the loss's share of the total (the plan scales the gradient by it
 *                      with an OP_SCALE).  weights: absent (-1), or F32 per-sample weights
 *                      holding >= rows elements (the step's rows), each row of pred
 *                      counting with weights[i / per_weight], per_weight = r / rows (r a
 *                      multiple of rows).  has_ignore: labels only; a label equal to
 *                      ignore_class is accepted by the step's label check only when the
 *                      target lists it (target_ignore), and an op reading those labels
 *                      must ignore it unless it lies in [0, cols)
 *   OP_METRIC          bufs pred, target, weights   ints kind, cols, index, k, width,
 *                      per_weight   reals threshold (width 1), or the thresholds (kind
 *                      METRIC_CONFUSION: width = 4 x their count): the sum (or the 4 x n
 *                      confusion counts) goes to the step's metrics[index .. index + width);
 *                      rows n(pred) / cols; weights absent, or float32 holding
 *                      ceil(rows / per_weight) per-row weights (the sample weights)
 *   OP_RESIZE          bufs x, y   ints h, w, c, oh, ow, top, left, wh, ww, interpolation
 *                      reals fill_value   (pynn_resize; the images are the step's rows)
 *   OP_AFFINE          bufs x, params, y   ints h, w, c, interpolation, fill_mode
 *                      reals fill_value   (pynn_affine_transform; params batched, rows of
 *                      PYNN_IMAGE_PARAMS)
 *   OP_IMAGE_RANDOM    bufs params   ints kind, seed, h, w, oh, ow   reals r[PYNN_RANDOM_REALS]
 *                      (pynn_image_random; the counter is the step number, as dropout's)
 *   OP_FLIP            bufs x, params, y   ints h, w, c, horizontal, vertical   (params
 *                      -1: every image flipped)
 *   OP_CROP            bufs x, params, y   ints h, w, c, oh, ow, top, left   (params -1:
 *                      the fixed offsets top, left)
 *   (transposed convolution, upsampling, padding, cropping; upsampling.c, issue 16 part C)
 *   OP_CONV2D_TRANSPOSE  bufs x, w, b, work, z, y   ints h, w, c (input), kh, kw, sh, sw,
 *                      pad_top, pad_left, oh, ow, f (output), act   reals alpha
 *                      (pynn_conv2d_transpose_forward; b may be -1; work fixed, holding
 *                      pynn_conv2d_transpose_work(rows, ...) floats; y may be z)
 *   OP_CONV2D_TRANSPOSE_BACKWARD  bufs x, w, z, y, dy, work, dw, db, dx   the same ints and
 *                      reals (pynn_conv2d_transpose_backward; dw, db, dx may be -1)
 *   OP_UPSAMPLE2D_BACKWARD  bufs dy, dx   ints h, w, c, fh, fw, interpolation
 *                      (pynn_upsample2d_backward; the forward is an OP_RESIZE of the whole
 *                      image)
 *   OP_PAD_CROP        bufs x, y   ints h, w, c, oh, ow, top, left   (pynn_pad_crop; top,
 *                      left may be negative: a crop)
 *   OP_KERNEL_DILATE   bufs src, dst   ints kh, kw, cols, dh, dw, inverse
 *                      (pynn_kernel_dilate; fixed buffers)
 *   OP_GRAD_HOOK       bufs grads (the flat gradients)   ints phase, offset, count
 *                      phase 0: grads[offset .. offset + count) are final for this step (a
 *                      bucket, handed over to be reduced across processes while the backward
 *                      goes on); phase 1: wait until every bucket handed over this step is
 *                      reduced and written back (placed before OP_OPTIMIZER).  Calls
 *                      plan->hook(plan->hook_ctx, phase, offset, count, rows, step); a plan
 *                      without a hook (NULL) runs it as nothing.  A non-zero return ends the
 *                      run with PYNN_EHOOK (the steps before it stay applied).
 *   OP_RNN             bufs x, kernel, rkernel, bias, mask, rec_mask, seq, cs, gates, hprev,
 *                      aux, work, h_last, c_last, out, in_mask   ints T, f, u, cell, act,
 *                      rec_act, go_backwards, time_order, zero_output, gate_masks
 *                      (pynn_rnn_forward; work: the step's rec; out written when zero_output)
 *   OP_RNN_BACKWARD    bufs x, kernel, rkernel, seq, cs, gates, hprev, aux, mask, rec_mask,
 *                      dseq, dh_last, dc_last, dgates, dgr, work, dkernel, drkernel, dbias,
 *                      dx, in_mask;  ints as OP_RNN   (pynn_rnn_backward)
 *   OP_OPTIMIZER       bufs params, grads, slot0 .. slot(PYNN_OPT_SLOTS - 1)[, ema]
 *                      ints kind[, n_segments, (offset, size, flags) x n_segments]
 *                      reals hyper[PYNN_HYPER_COUNT], PYNN_OPT_REALS (hyper, then a
 *                      schedule block: kind, params; a kind other than SCHEDULE_NONE makes
 *                      each step's learning rate pynn_schedule_lr(kind, params, step - 1))
 *                      or PYNN_OPT_REALS_OPTIONS (then options[PYNN_OPTION_COUNT]);
 *                      pynn_optimizer_apply (a slot the rule does not read,
 *                      pynn_optimizer_slots, may be absent; ema absent or -1: no EMA; the
 *                      gradients are clipped in place)
 */
#define PYNN_DTYPE_F32 0
#define PYNN_DTYPE_I64 1

typedef struct pynn_buffer {
    void *data;
    int64_t row_size;    /* elements per batch row; 0 for a fixed buffer */
    int64_t size;        /* elements: fixed buffers, or capacity * row_size */
    int32_t dtype;       /* PYNN_DTYPE_* */
} pynn_buffer;

typedef struct pynn_op {
    int32_t kind;        /* PYNN_OP_* */
    int32_t n_bufs, n_ints, n_reals;
    const int64_t *bufs;
    const int64_t *ints;
    const double *reals;
} pynn_op;

typedef struct pynn_plan {
    const pynn_op *ops;
    int64_t n_ops;
    const pynn_buffer *bufs;
    int64_t n_bufs;
    int64_t capacity;              /* rows every batched buffer holds */
    int64_t n_inputs;              /* model inputs: each step's rows are gathered into */
    const int64_t *input_bufs;     /*   these batched buffers */
    int64_t n_targets;             /* targets (float rows or int64 labels), likewise */
    const int64_t *target_bufs;
    const int64_t *target_classes; /* per target: labels must lie in [0, classes); 0: float */
    int64_t n_outputs;             /* predictions: these batched buffers are copied out */
    const int64_t *output_bufs;
    int64_t n_losses, n_metrics;   /* slots the OP_LOSS / OP_METRIC ops write per step */
    int64_t n_checked;             /* row counts the caller already checked the ops for */
    const int64_t *checked_rows;   /*   with pynn_plan_check (may be NULL when n_checked is 0) */
    /* NULL, or per target (2 n_targets values): has_ignore, ignore_class -- where
     * has_ignore is non-zero the step's label check also accepts ignore_class (a loss's
     * ignore_class, which may lie outside [0, classes)) */
    const int64_t *target_ignore;
    /* OP_GRAD_HOOK's callback and its context (NULL: the hook ops do nothing).  Called on
     * the thread that runs the plan, outside any parallel region; returns 0 to go on. */
    int (*hook)(void *ctx, int64_t phase, int64_t offset, int64_t count, int64_t rows,
                int64_t step);
    void *hook_ctx;
    /* NULL, or per input (n_inputs values): non-zero where the ops only ever read that
     * input's buffer (and the buffers that share its memory) and no output is one of them.
     * A step whose rows lie in order (feed->order NULL) then has the ops read those rows
     * where the caller holds them instead of copying them into the buffer first: a
     * prediction of a few rows skips a copy that both cores' caches would then have to
     * fetch again.  The caller's data is never written. */
    const int64_t *input_direct;
} pynn_plan;

/* The data of a run: n_rows rows per array, rows of the matching buffer's row_size and
 * dtype.  Step s takes the rows order[first_row + s*batch ...] (clipped to n_order;
 * order NULL: the rows in their order).  outputs[j], for a plan with outputs, receives
 * step s's predictions at rows first_row + s*batch ... (n_order rows in all). */
typedef struct pynn_plan_feed {
    const void *const *inputs;
    const void *const *targets;
    void *const *outputs;
    int64_t n_rows;
    const int64_t *order;
    int64_t n_order;
    /* stop: NULL, or a flag (a signal handler's) read after each step: once it is
     * non-zero the run ends there, with the steps done so far applied.  steps_done: NULL,
     * or where the number of steps run is written (n_steps unless stopped). */
    const volatile int *stop;
    int64_t *steps_done;
} pynn_plan_feed;

/* Checks every op of the plan for steps of `rows` rows (operand counts and indices,
 * dtypes, buffer sizes) without running anything: PYNN_OK or PYNN_EINVAL.  A caller that
 * runs one plan many times checks each row count once and lists it in
 * plan->checked_rows; pynn_plan_run then skips those checks (the plan must not change
 * after its rows were checked). */
int pynn_plan_check(const pynn_plan *plan, int64_t rows);

/*
 * Runs n_steps steps of batch rows (batch <= plan->capacity; the last may be shorter):
 * gather each step's inputs and targets, then every op in order.  The step number
 * (Adam's step, dropout's counter) of step s is iterations + s + 1.
 *   step_losses (n_steps x n_losses), step_metrics (n_steps x n_metrics): each step's
 *   loss values (unweighted) and metric sums; step_rows (n_steps): its rows.  Any of them
 *   may be NULL when the plan writes no such value.
 * The ops are checked for the rows of a full step and of the last one before the first
 * step runs, unless plan->checked_rows lists those row counts (pynn_plan_check).
 * Before a step changes anything its labels are checked (PYNN_ELABEL) and, with
 * check_inputs, its inputs and float targets for NaN and infinity (PYNN_ENONFINITE); the
 * steps before it stay applied.  PYNN_EINVAL for a malformed plan or feed.  A run stopped
 * by feed->stop returns PYNN_OK, its step_rows written for the steps it ran.
 */
int pynn_plan_run(const pynn_plan *plan, const pynn_plan_feed *feed, int64_t first_row,
                  int64_t batch, int64_t n_steps, int64_t iterations, int check_inputs,
                  double *step_losses, double *step_metrics, int64_t *step_rows);

/* ---- Embedding and Masking (embedding.c; engineer G) -----------------------------
 *
 * Embedding: ids (n) float32 holding integers in [0, V) (else PYNN_EINDEX, nothing
 * written); table (V, D).  forward: y (n, D) = table[ids]; mask (n, may be NULL) =
 * ids != 0.  backward: the gradient rows of the distinct ids seen, each the sum of its dy
 * rows in position order (thread-count independent); the other rows of dtable are not
 * touched.  work: 2 n int64 (the sorted keys id * n + position, then the group starts);
 * grad_clear zeroes the rows backward wrote, from the same work (work NULL: every row).
 * Masking: x (rows, D); mask[r] = any(x[r, :] != mask_value); y = x * mask[r];
 * backward dx = dy * mask[r].  dx may be dy. */
int pynn_embedding_forward(float *y, float *mask, const float *ids, const float *table,
                           int64_t n, int64_t V, int64_t D);
int pynn_embedding_backward(float *dtable, int64_t *work, const float *ids, const float *dy,
                            int64_t n, int64_t V, int64_t D);
int pynn_embedding_grad_clear(float *dtable, const int64_t *work, int64_t n, int64_t V,
                              int64_t D);
/* The sparse update of plain SGD: for each distinct row r of the n sorted keys in work
 * (pynn_embedding_backward's), when apply is non-zero table[r] -= lr dtable[r] (by
 * pynn_sgd_update, so the bits are the dense update's), then dtable[r] = 0.  Rows not seen
 * are neither read nor written. */
int pynn_embedding_sgd(float *table, float *dtable, const int64_t *work, int64_t n, int64_t V,
                       int64_t D, float lr, int apply);
int pynn_masking_forward(float *y, float *mask, const float *x, int64_t rows, int64_t D,
                         float mask_value);
int pynn_masking_backward(float *dx, const float *dy, const float *mask, int64_t rows,
                          int64_t D);

#ifdef __cplusplus
}
#endif
#endif /* PYNN_H */
