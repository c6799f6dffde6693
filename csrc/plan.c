/* plan.c -- pynn_plan_run: a compiled model's plan walked in C, a step or a whole epoch
 * per call.
 *
 * A plan is data (csrc/pynn.h): buffers, and ops that name their operands by buffer
 * index.  Each op is one call of one kernel; this file only finds the operands, checks
 * them and makes the call, in the order the plan lists.  The Python executor walks the
 * same list through the cpu backend, whose methods call the same kernels, so both give
 * bitwise the same numbers.
 *
 * Safety: a plan comes from Python and may be malformed.  run_op() is written once and
 * run in two modes: `dry` checks everything a kernel call will rely on (operand indices,
 * dtypes, ints, element counts for this step's rows) and stops before the call; the real
 * mode repeats the same checks (a few comparisons) and calls the kernel.  Every distinct
 * row count of a call is checked dry before the first step runs, so a malformed plan is
 * refused with PYNN_EINVAL before anything changes, and the checks and the calls can never
 * disagree about a size.
 *
 * No allocation: every array is a plan buffer or the caller's, and the kernels' own
 * scratch is on their stack or in the buffers the plan gives them (the conv workspace).
 * (Exceptions, inherited from the kernels: the GEMM's packing buffer, allocated on first use
 * and kept; batch normalization's per-chunk sums once more than 64 channels meet thousands of
 * rows (over 8192 rows at 128 channels), or any layer of more than 8192 channels; a loss over
 * more than 16384 rows.)
 */
#include <math.h>
#include <string.h>
#include "internal.h"

/* Ops that take a list of inputs (merge, concat) keep its pointers on the stack. */
#define PLAN_MAX_OPERANDS 64
/* An OP_METRIC's thresholds are converted to float on the stack (AUC's num_thresholds). */
#define PLAN_MAX_THRESHOLDS 8192

/* One operand of an op: its buffer's data and element count n(b) in this step. */
typedef struct {
    void *data;         /* NULL: the operand is absent (index -1) */
    int64_t n;
    int32_t dtype;
} operand;

/* What run_op needs to know about the step. */
typedef struct {
    const pynn_plan *plan;
    int64_t rows;       /* the step's rows (times T inside an OP_ROWS_SCOPE) */
    int64_t buf_rows;   /* the step's rows: the batched buffers' element counts */
    int64_t step;       /* iterations + s + 1: Adam's step, dropout's counter */
    double *losses;     /* this step's slots (NULL when dry) */
    double *metrics;
    int dry;
    /* set by OP_OPTIMIZER: it left its PYNN_SEGMENT_SPARSE segments to the
     * OP_EMBEDDING_SGD ops after it (plain SGD this step), at learning rate sparse_lr */
    int sparse_left;
    float sparse_lr;
    /* NULL, or per input: where the ops read its rows this step (plan->input_direct), or
     * NULL where they were copied into its buffer */
    const void *const *direct;
} step_context;

/* Inputs up to this index may be read in place (plan->input_direct); the others are
 * copied (a model with more inputs than this is not one whose latency a copy decides). */
#define PLAN_MAX_DIRECT 8

/* a * b for sizes, -1 for a negative factor or an overflow (so a check against it fails) */
static int64_t mul(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (b != 0 && a > INT64_MAX / b) return -1;
    return a * b;
}

static int64_t mul4(int64_t a, int64_t b, int64_t c, int64_t d) {
    return mul(mul(mul(a, b), c), d);
}

/* element count of buffer b for a step of `rows` rows */
static int64_t buffer_count(const pynn_buffer *b, int64_t rows) {
    return b->row_size > 0 ? rows * b->row_size : b->size;
}

static int resolve(operand *o, const step_context *cx, int64_t index) {
    const pynn_buffer *b;
    if (index == -1) {
        o->data = NULL;
        o->n = 0;
        o->dtype = -1;
        return PYNN_OK;
    }
    PYNN_RETURN_IF(index < 0 || index >= cx->plan->n_bufs, PYNN_EINVAL);
    b = &cx->plan->bufs[index];
    o->data = b->data;
    if (cx->direct != NULL) {              /* an input read where the caller holds it */
        const pynn_plan *p = cx->plan;
        int64_t j;
        for (j = 0; j < p->n_inputs && j < PLAN_MAX_DIRECT; j++)
            if (cx->direct[j] != NULL && b->data == p->bufs[p->input_bufs[j]].data) {
                o->data = (void *)cx->direct[j];   /* read only: input_direct's promise */
                break;
            }
    }
    o->n = buffer_count(b, cx->buf_rows);
    o->dtype = b->dtype;
    return PYNN_OK;
}

/* present and float32 / absent or float32 / float32 holding at least `need` elements */
static int f32(const operand *o) { return o->data != NULL && o->dtype == PYNN_DTYPE_F32; }
static int f32_or_absent(const operand *o) { return o->data == NULL || o->dtype == PYNN_DTYPE_F32; }
static int holds(const operand *o, int64_t need) {
    return o->data == NULL || (need >= 0 && o->n >= need);
}
#define F(o) ((float *)(o)->data)

static int act_ok(int64_t act) { return act >= 0 && act < PYNN_ACT_COUNT; }

/* Image geometry (sizes, windows, strides, padding) below 2^31: the kernels' index
 * arithmetic (i * stride - pad + a, products of two sizes) then stays far from overflow. */
static int small_ints(const int64_t *g, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++)
        if (g[i] > INT32_MAX) return 0;
    return 1;
}

/* Pooling geometry: the ints h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow. */
static int pool_ints_ok(const int64_t *g) {
    return g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && g[3] >= 1 && g[4] >= 1 && g[5] >= 1 &&
           g[6] >= 1 && g[7] >= 0 && g[8] >= 0 && g[9] >= 0 && g[10] >= 0 && small_ints(g, 11);
}

/* The ignore class target t's step check accepts (plan->target_ignore): 1 and *value, or 0. */
static int target_ignores(const pynn_plan *p, int64_t t, int64_t *value) {
    if (p->target_ignore == NULL || p->target_ignore[2 * t] == 0) return 0;
    *value = p->target_ignore[2 * t + 1];
    return 1;
}

/* A labels operand of a loss or metric must be one of the plan's targets, whose labels the
 * step checks before it changes anything, with classes <= cols (so the kernel's own check
 * cannot fail half way through a step).  A target whose check also accepts an ignore class
 * v outside [0, cols) may only be read by an op that ignores v (has_ignore, ignore). */
static int labels_ok(const step_context *cx, int64_t index, int64_t cols, int64_t has_ignore,
                     int64_t ignore) {
    const pynn_plan *p = cx->plan;
    int64_t t, v;
    for (t = 0; t < p->n_targets; t++)
        if (p->target_bufs[t] == index) {
            if (!(p->target_classes[t] > 0 && p->target_classes[t] <= cols)) return 0;
            if (target_ignores(p, t, &v) && (v < 0 || v >= cols))
                return has_ignore != 0 && ignore == v;
            return 1;
        }
    return 0;
}

/* The operand counts each kind takes: bufs, ints, reals (-1: variable, checked below). */
static int counts_ok(const pynn_op *op) {
    static const int32_t counts[PYNN_OP_COUNT][3] = {
        [PYNN_OP_DENSE] = {-1, 3, 1},
        [PYNN_OP_DENSE_BACKWARD] = {8, 3, 1},
        [PYNN_OP_CONV2D] = {6, -1, 1},            /* 13 or 16 ints: checked by run_op */
        [PYNN_OP_CONV2D_BACKWARD] = {10, -1, 1},
        [PYNN_OP_MAXPOOL2D] = {2, 11, 0},
        [PYNN_OP_MAXPOOL2D_BACKWARD] = {4, 11, 0},
        [PYNN_OP_AVGPOOL2D] = {2, 11, 0},
        [PYNN_OP_AVGPOOL2D_BACKWARD] = {2, 11, 0},
        [PYNN_OP_GLOBAL_AVGPOOL2D] = {2, 3, 0},
        [PYNN_OP_GLOBAL_AVGPOOL2D_BACKWARD] = {2, 3, 0},
        [PYNN_OP_BATCHNORM_TRAIN] = {8, 1, 2},
        [PYNN_OP_BATCHNORM_TRAIN_BACKWARD] = {8, 1, 0},
        [PYNN_OP_BATCHNORM_INFER] = {6, 1, 1},
        [PYNN_OP_BATCHNORM_INFER_BACKWARD] = {8, 1, 1},
        [PYNN_OP_DROPOUT] = {3, -1, 1},
        [PYNN_OP_DROPOUT_BACKWARD] = {3, 0, 0},
        [PYNN_OP_ACTIVATION] = {2, 2, 1},
        [PYNN_OP_ACTIVATION_BACKWARD] = {4, 2, 1},
        [PYNN_OP_MERGE] = {-1, 1, 0},
        [PYNN_OP_MERGE_BACKWARD] = {-1, 2, 0},
        [PYNN_OP_CONCAT] = {-1, -1, 0},
        [PYNN_OP_CONCAT_BACKWARD] = {-1, -1, 0},
        [PYNN_OP_SCALE] = {2, 0, 1},
        [PYNN_OP_LOSS] = {4, 7, 3},
        [PYNN_OP_METRIC] = {3, 6, -1},         /* reals: checked by run_op */
        [PYNN_OP_OPTIMIZER] = {-1, -1, -1},  /* checked by run_op */
        [PYNN_OP_RESIZE] = {2, 10, 1},
        [PYNN_OP_AFFINE] = {3, 5, 1},
        [PYNN_OP_IMAGE_RANDOM] = {1, 6, PYNN_RANDOM_REALS},
        [PYNN_OP_FLIP] = {3, 5, 0},
        [PYNN_OP_CROP] = {3, 7, 0},
        [PYNN_OP_CHANNEL_AFFINE] = {4, 2, 0},
        [PYNN_OP_NORMALIZE] = {4, 3, 1},
        [PYNN_OP_RANDOM_CONTRAST] = {3, 4, 4},
        [PYNN_OP_RANDOM_CONTRAST_BACKWARD] = {4, 3, 2},
        [PYNN_OP_RANDOM_BRIGHTNESS] = {3, 1, 4},
        [PYNN_OP_GRAD_HOOK] = {1, 3, 0},
        /* activations (engineer A) */
        [PYNN_OP_RELU] = {2, 0, 3},
        [PYNN_OP_RELU_BACKWARD] = {3, 0, 3},
        [PYNN_OP_SOFTMAX_AXIS] = {-1, 2, 0},     /* 2 bufs, or 3 with a mask */
        [PYNN_OP_SOFTMAX_AXIS_BACKWARD] = {3, 2, 0},
        [PYNN_OP_PRELU] = {3, -1, 0},            /* ints 1 + 2 rank: checked by run_op */
        [PYNN_OP_PRELU_BACKWARD] = {5, -1, 0},
        /* engineer D (#16): sequence ops */
        [PYNN_OP_GLOBAL_MAXPOOL] = {2, 2, 0},
        [PYNN_OP_GLOBAL_MAXPOOL_BACKWARD] = {3, 2, 0},
        [PYNN_OP_MASKED_MEAN] = {3, 2, 0},
        [PYNN_OP_MASKED_MEAN_BACKWARD] = {3, 2, 0},
        [PYNN_OP_REPEAT_VECTOR] = {2, 2, 0},
        [PYNN_OP_REPEAT_VECTOR_BACKWARD] = {2, 2, 0},
        /* regularizers and constraints (engineer F) */
        [PYNN_OP_PENALTY] = {2, 3, 2},
        [PYNN_OP_CONSTRAINT] = {1, 4, 3},
        /* engineer G */
        [PYNN_OP_EMBEDDING] = {4, 2, 0},
        [PYNN_OP_EMBEDDING_BACKWARD] = {4, 2, 0},
        [PYNN_OP_EMBEDDING_GRAD_CLEAR] = {3, 3, 0},
        [PYNN_OP_EMBEDDING_SGD] = {4, 2, 0},
        [PYNN_OP_MASKING] = {3, 1, 1},
        [PYNN_OP_MASKING_BACKWARD] = {3, 1, 0},
        [PYNN_OP_ROWS_SCOPE] = {0, 2, 0},
        /* engineer E: normalization and noise layers */
        [PYNN_OP_GROUP_NORM] = {6, 4, 1},
        [PYNN_OP_GROUP_NORM_BACKWARD] = {8, 4, 0},
        [PYNN_OP_UNIT_NORM] = {3, 1, 0},
        [PYNN_OP_UNIT_NORM_BACKWARD] = {4, 1, 0},
        [PYNN_OP_GAUSSIAN_NOISE] = {3, 2, 1},
        /* transposed convolution, upsampling, padding, cropping (upsampling.c) */
        [PYNN_OP_CONV2D_TRANSPOSE] = {6, 13, 1},
        [PYNN_OP_CONV2D_TRANSPOSE_BACKWARD] = {9, 13, 1},
        [PYNN_OP_UPSAMPLE2D_BACKWARD] = {2, 6, 0},
        [PYNN_OP_PAD_CROP] = {2, 7, 0},
        [PYNN_OP_KERNEL_DILATE] = {2, 6, 0},
        /* convolution variants (engineer B) */
        [PYNN_OP_TRANSPOSE] = {2, -1, 0},         /* checked by run_op */
        /* recurrent layers (engineer H) */
        [PYNN_OP_RNN] = {16, 10, 0},
        [PYNN_OP_RNN_BACKWARD] = {21, 10, 0},
    };
    const int32_t *c;
    if (op->kind < 0 || op->kind >= PYNN_OP_COUNT) return 0;
    if (op->n_bufs < 0 || op->n_ints < 0 || op->n_reals < 0) return 0;
    if ((op->n_bufs > 0 && op->bufs == NULL) || (op->n_ints > 0 && op->ints == NULL) ||
        (op->n_reals > 0 && op->reals == NULL))
        return 0;
    c = counts[op->kind];
    return (c[0] < 0 || op->n_bufs == c[0]) && (c[1] < 0 || op->n_ints == c[1]) &&
           (c[2] < 0 || op->n_reals == c[2]);
}

#define EXPECT(cond) PYNN_RETURN_IF(!(cond), PYNN_EINVAL)

/* ---- convolution variants (engineer B) ---- */
/* OP_CONV2D / OP_CONV2D_BACKWARD with dilation (g[13], g[14]) or groups (g[15]) */
static int run_conv_general(const step_context *cx, const pynn_op *op, const operand *o) {
    const int64_t *g = op->ints;
    const int64_t rows = cx->rows;
    const int64_t h = g[0], w = g[1], c = g[2], kh = g[3], kw = g[4], f = g[11];
    const int64_t oh = g[9], ow = g[10], dh = g[13], dw = g[14], groups = g[15];
    int64_t x_n, out_n, kf;
    EXPECT(h >= 0 && w >= 0 && c >= 1 && kh >= 1 && kw >= 1 && g[5] >= 1 && g[6] >= 1 &&
           g[7] >= 0 && g[8] >= 0 && oh >= 0 && ow >= 0 && f >= 1 && act_ok(g[12]) &&
           dh >= 1 && dw >= 1 && groups >= 1 && small_ints(g, 12) && small_ints(g + 13, 3));
    EXPECT(c % groups == 0 && f % groups == 0);
    x_n = mul4(rows, h, w, c);
    out_n = mul4(rows, oh, ow, f);
    kf = mul(mul(kh, kw), mul(c / groups, f));
    EXPECT(x_n >= 0 && out_n >= 0 && kf >= 0);
    if (op->kind == PYNN_OP_CONV2D) {   /* bufs x, w, b, cols, z, y */
        const operand *x = &o[0], *wg = &o[1], *b = &o[2], *z = &o[4], *y = &o[5];
        EXPECT(f32(x) && f32(wg) && f32_or_absent(b) && f32(z) && f32(y));
        EXPECT(holds(x, x_n) && holds(wg, kf) && holds(b, f) && holds(z, out_n) &&
               holds(y, out_n));
        if (cx->dry) return PYNN_OK;
        return pynn_conv2d_general_forward(F(z), F(y), F(x), F(wg), F(b), rows, h, w, c, kh, kw,
                                           g[5], g[6], g[7], g[8], oh, ow, f, dh, dw, groups,
                                           (int)g[12], (float)op->reals[0]);
    } else {   /* bufs x, w, z, y, dy, cols, work, dw, db, dx */
        const operand *x = &o[0], *wg = &o[1], *z = &o[2], *y = &o[3], *dy = &o[4];
        const operand *work = &o[6], *dwt = &o[7], *db = &o[8], *dx = &o[9];
        const int64_t need = pynn_conv2d_general_work(rows, c, kh, kw, f, groups);
        EXPECT(f32(x) && f32(wg) && f32(z) && f32(y) && f32(dy) && f32(work));
        EXPECT(f32_or_absent(dwt) && f32_or_absent(db) && f32_or_absent(dx));
        EXPECT(need >= 1 && holds(work, need));
        EXPECT(holds(x, x_n) && holds(wg, kf) && holds(z, out_n) && holds(y, out_n) &&
               holds(dy, out_n) && holds(dwt, kf) && holds(db, f) && holds(dx, x_n));
        if (cx->dry) return PYNN_OK;
        return pynn_conv2d_general_backward(F(dwt), F(db), F(dx), F(dy), F(work), work->n, F(x),
                                            F(wg), F(z), F(y), rows, h, w, c, kh, kw, g[5], g[6],
                                            g[7], g[8], oh, ow, f, dh, dw, groups, (int)g[12],
                                            (float)op->reals[0]);
    }
}

/* OP_TRANSPOSE: bufs x, y; ints ndim, dims[ndim], perm[ndim] */
static int run_transpose(const step_context *cx, const pynn_op *op, const operand *o) {
    const int64_t *g = op->ints;
    int64_t ndim, k, size = 1, seen = 0;
    EXPECT(op->n_ints >= 1);
    ndim = g[0];
    EXPECT(ndim >= 1 && ndim <= PYNN_TRANSPOSE_MAX_DIMS && op->n_ints == 1 + 2 * ndim);
    EXPECT(small_ints(g + 1, 2 * ndim));
    for (k = 0; k < ndim; k++) {
        const int64_t p = g[1 + ndim + k];
        EXPECT(g[1 + k] >= 1 && p >= 0 && p < ndim && !(seen & ((int64_t)1 << p)));
        seen |= (int64_t)1 << p;
        size = mul(size, g[1 + k]);
    }
    EXPECT(size >= 1 && f32(&o[0]) && f32(&o[1]));
    EXPECT(holds(&o[0], mul(cx->rows, size)) && holds(&o[1], mul(cx->rows, size)));
    EXPECT(o[0].data != o[1].data);
    if (cx->dry) return PYNN_OK;
    return pynn_transpose(F(&o[1]), F(&o[0]), cx->rows, ndim, g + 1, g + 1 + ndim);
}
/* ---- end of convolution variants (engineer B) ---- */

/* Checks one op for this step and, unless cx->dry, runs it. */
static int run_op(step_context *cx, const pynn_op *op) {   /* writes cx->sparse_* only */
    operand o[PLAN_MAX_OPERANDS + 2];
    const int64_t *g = op->ints;
    const int64_t rows = cx->rows;
    int64_t i;
    int status;
    EXPECT(counts_ok(op) && op->n_bufs <= PLAN_MAX_OPERANDS + 2);
    for (i = 0; i < op->n_bufs; i++) {
        status = resolve(&o[i], cx, op->bufs[i]);
        if (status != PYNN_OK) return status;
    }

    switch (op->kind) {
    case PYNN_OP_DENSE: {   /* bufs x, w, b, z, y[, wp]; ints in, out, act; reals alpha */
        const operand *x = &o[0], *w = &o[1], *b = &o[2], *z = &o[3], *y = &o[4];
        const operand *wp = &o[5];     /* read only when the op has it */
        const int64_t in = g[0], out = g[1];
        int64_t m;
        EXPECT(op->n_bufs == 5 || op->n_bufs == 6);
        EXPECT(in >= 1 && out >= 1 && act_ok(g[2]));
        EXPECT(f32(x) && f32(w) && f32_or_absent(b) && f32(z) && f32(y));
        EXPECT(op->n_bufs == 5 || (f32(wp) && holds(wp, pynn_dense_panels_floats(in, out))));
        EXPECT(x->n % in == 0);
        m = x->n / in;
        EXPECT(holds(w, mul(in, out)) && holds(b, out) && holds(z, mul(m, out)) &&
               holds(y, mul(m, out)));
        if (cx->dry) return PYNN_OK;
        return pynn_sgemm_bias_act_panels(F(z), F(y), F(x), F(w),
                                          op->n_bufs == 6 ? pynn_dense_panels(F(wp)) : NULL,
                                          F(b), m, out, in, (int)g[2], (float)op->reals[0]);
    }
    case PYNN_OP_DENSE_BACKWARD: {   /* bufs x, w, z, y, dy, dw, db, dx; ints in, out, act */
        const operand *x = &o[0], *w = &o[1], *z = &o[2], *y = &o[3], *dy = &o[4];
        const operand *dw = &o[5], *db = &o[6], *dx = &o[7];
        const int64_t in = g[0], out = g[1];
        int64_t m;
        EXPECT(in >= 1 && out >= 1 && act_ok(g[2]));
        EXPECT(f32(x) && f32(w) && f32(z) && f32(y) && f32(dy));
        EXPECT(f32_or_absent(dw) && f32_or_absent(db) && f32_or_absent(dx));
        EXPECT(dy->n % out == 0);
        m = dy->n / out;
        EXPECT(holds(x, mul(m, in)) && holds(w, mul(in, out)) && holds(z, mul(m, out)) &&
               holds(y, mul(m, out)) && holds(dw, mul(in, out)) && holds(db, out) &&
               holds(dx, mul(m, in)));
        if (cx->dry) return PYNN_OK;
        return pynn_dense_backward(F(dw), F(db), F(dx), F(dy), F(x), F(w), F(z), F(y), m, in,
                                   out, (int)g[2], (float)op->reals[0]);
    }
    case PYNN_OP_CONV2D:
    case PYNN_OP_CONV2D_BACKWARD: {
        /* ints h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow, f, act; the step's rows
         * are the images */
        const int64_t h = g[0], w = g[1], c = g[2], kh = g[3], kw = g[4], f = g[11];
        const int64_t oh = g[9], ow = g[10];
        const int64_t x_n = mul4(rows, h, w, c), out_n = mul4(rows, oh, ow, f);
        const int64_t k = mul(mul(kh, kw), c), kf = mul(k, f), cols_n = mul4(rows, oh, ow, k);
        EXPECT(op->n_ints == 13 || op->n_ints == 16);
        /* convolution variants (engineer B): dilation or groups other than 1 */
        if (op->n_ints == 16 && (g[13] != 1 || g[14] != 1 || g[15] != 1))
            return run_conv_general(cx, op, o);
        EXPECT(h >= 0 && w >= 0 && c >= 0 && kh >= 1 && kw >= 1 && g[5] >= 1 && g[6] >= 1 &&
               g[7] >= 0 && g[8] >= 0 && oh >= 0 && ow >= 0 && f >= 0 && act_ok(g[12]) &&
               small_ints(g, 12));
        EXPECT(x_n >= 0 && out_n >= 0 && k >= 0 && kf >= 0 && cols_n >= 0);
        if (op->kind == PYNN_OP_CONV2D) {   /* bufs x, w, b, cols, z, y */
            const operand *x = &o[0], *wg = &o[1], *b = &o[2], *cols = &o[3], *z = &o[4];
            const operand *y = &o[5];
            EXPECT(f32(x) && f32(wg) && f32_or_absent(b) && f32(cols) && f32(z) && f32(y));
            EXPECT(holds(x, x_n) && holds(wg, kf) && holds(b, f) && holds(cols, cols_n) &&
                   holds(z, out_n) && holds(y, out_n));
            if (cx->dry) return PYNN_OK;
            return pynn_conv2d_forward(F(z), F(y), F(cols), F(x), F(wg), F(b), rows, h, w, c, kh,
                                       kw, g[5], g[6], g[7], g[8], oh, ow, f, (int)g[12],
                                       (float)op->reals[0]);
        } else {   /* bufs x, w, z, y, dy, cols, work, dw, db, dx */
            const operand *x = &o[0], *wg = &o[1], *z = &o[2], *y = &o[3], *dy = &o[4];
            const operand *cols = &o[5], *work = &o[6], *dw = &o[7], *db = &o[8], *dx = &o[9];
            const int64_t need = pynn_conv2d_backward_work(rows, h, w, c, kh, kw, g[5], g[6], oh,
                                                           ow, f);
            EXPECT(f32(x) && f32(wg) && f32(z) && f32(y) && f32(dy) && f32(cols) && f32(work));
            EXPECT(f32_or_absent(dw) && f32_or_absent(db) && f32_or_absent(dx));
            EXPECT(need >= 1 && holds(work, need));
            EXPECT(holds(x, x_n) && holds(wg, kf) && holds(z, out_n) && holds(y, out_n) &&
                   holds(dy, out_n) && holds(cols, cols_n) && holds(dw, kf) && holds(db, f) &&
                   holds(dx, x_n));
            if (cx->dry) return PYNN_OK;
            return pynn_conv2d_backward(F(dw), F(db), F(dx), F(dy), F(cols), F(work), work->n,
                                        F(x), F(wg), F(z), F(y), rows, h, w, c, kh, kw, g[5],
                                        g[6], g[7], g[8], oh, ow, f, (int)g[12],
                                        (float)op->reals[0]);
        }
    }
    /* ---- transposed convolution, upsampling, padding, cropping (upsampling.c) ---- */
    case PYNN_OP_CONV2D_TRANSPOSE:
    case PYNN_OP_CONV2D_TRANSPOSE_BACKWARD: {
        /* ints h, w, c (the input), kh, kw, sh, sw, pad_top, pad_left, oh, ow, f (the
         * output), act; the step's rows are the images */
        const int64_t h = g[0], w = g[1], c = g[2], kh = g[3], kw = g[4], f = g[11];
        const int64_t oh = g[9], ow = g[10];
        const int64_t x_n = mul4(rows, h, w, c), out_n = mul4(rows, oh, ow, f);
        const int64_t kf = mul(mul(kh, kw), mul(c, f));
        int64_t need;
        EXPECT(h >= 0 && w >= 0 && c >= 0 && kh >= 1 && kw >= 1 && g[5] >= 1 && g[6] >= 1 &&
               g[7] >= 0 && g[8] >= 0 && oh >= 0 && ow >= 0 && f >= 0 && act_ok(g[12]) &&
               small_ints(g, 12));
        EXPECT(x_n >= 0 && out_n >= 0 && kf >= 0);
        need = pynn_conv2d_transpose_work(rows, h, w, c, kh, kw, oh, ow, f);
        if (op->kind == PYNN_OP_CONV2D_TRANSPOSE) {   /* bufs x, w, b, work, z, y */
            const operand *x = &o[0], *wg = &o[1], *b = &o[2], *work = &o[3], *z = &o[4];
            const operand *y = &o[5];
            EXPECT(f32(x) && f32(wg) && f32_or_absent(b) && f32(work) && f32(z) && f32(y));
            EXPECT(need >= 1 && holds(work, need));
            EXPECT(holds(x, x_n) && holds(wg, kf) && holds(b, f) && holds(z, out_n) &&
                   holds(y, out_n));
            if (cx->dry) return PYNN_OK;
            return pynn_conv2d_transpose_forward(F(z), F(y), F(work), work->n, F(x), F(wg), F(b),
                                                 rows, h, w, c, kh, kw, g[5], g[6], g[7], g[8],
                                                 oh, ow, f, (int)g[12], (float)op->reals[0]);
        } else {   /* bufs x, w, z, y, dy, work, dw, db, dx */
            const operand *x = &o[0], *wg = &o[1], *z = &o[2], *y = &o[3], *dy = &o[4];
            const operand *work = &o[5], *dw = &o[6], *db = &o[7], *dx = &o[8];
            EXPECT(f32(x) && f32(wg) && f32(z) && f32(y) && f32(dy) && f32(work));
            EXPECT(f32_or_absent(dw) && f32_or_absent(db) && f32_or_absent(dx));
            EXPECT(need >= 1 && holds(work, need));
            EXPECT(holds(x, x_n) && holds(wg, kf) && holds(z, out_n) && holds(y, out_n) &&
                   holds(dy, out_n) && holds(dw, kf) && holds(db, f) && holds(dx, x_n));
            if (cx->dry) return PYNN_OK;
            return pynn_conv2d_transpose_backward(F(dw), F(db), F(dx), F(dy), F(work), work->n,
                                                  F(x), F(wg), F(z), F(y), rows, h, w, c, kh,
                                                  kw, g[5], g[6], g[7], g[8], oh, ow, f,
                                                  (int)g[12], (float)op->reals[0]);
        }
    }
    case PYNN_OP_UPSAMPLE2D_BACKWARD: {   /* bufs dy, dx; ints h, w, c, fh, fw, interp */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]);
        const int64_t y_n = mul4(rows, mul(g[0], g[3]), mul(g[1], g[4]), g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && g[3] >= 1 && g[4] >= 1 &&
               (g[5] == PYNN_INTERP_NEAREST || g[5] == PYNN_INTERP_BILINEAR) &&
               small_ints(g, 5) && x_n >= 0 && y_n >= 0);
        EXPECT(f32(&o[0]) && f32(&o[1]) && holds(&o[0], y_n) && holds(&o[1], x_n));
        if (cx->dry) return PYNN_OK;
        return pynn_upsample2d_backward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3], g[4],
                                        (int)g[5]);
    }
    case PYNN_OP_PAD_CROP: {   /* bufs x, y; ints h, w, c, oh, ow, top, left */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]), y_n = mul4(rows, g[3], g[4], g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && g[3] >= 0 && g[4] >= 0 &&
               small_ints(g, 5) && g[5] <= INT32_MAX && g[5] >= -(int64_t)INT32_MAX &&
               g[6] <= INT32_MAX && g[6] >= -(int64_t)INT32_MAX && x_n >= 0 && y_n >= 0);
        EXPECT(f32(&o[0]) && f32(&o[1]) && holds(&o[0], x_n) && holds(&o[1], y_n));
        if (cx->dry) return PYNN_OK;
        return pynn_pad_crop(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3], g[4], g[5],
                             g[6]);
    }
    case PYNN_OP_KERNEL_DILATE: {   /* bufs src, dst; ints kh, kw, cols, dh, dw, inverse */
        const int64_t eh = mul(g[0] - 1, g[3]) + 1, ew = mul(g[1] - 1, g[4]) + 1;
        const int64_t small = mul(mul(g[0], g[1]), g[2]), wide = mul(mul(eh, ew), g[2]);
        EXPECT(g[0] >= 1 && g[1] >= 1 && g[2] >= 0 && g[3] >= 1 && g[4] >= 1 &&
               (g[5] == 0 || g[5] == 1) && small_ints(g, 5) && eh >= 1 && ew >= 1 &&
               small >= 0 && wide >= 0);
        EXPECT(f32(&o[0]) && f32(&o[1]) && holds(&o[0], g[5] ? wide : small) &&
               holds(&o[1], g[5] ? small : wide));
        if (cx->dry) return PYNN_OK;
        return pynn_kernel_dilate(F(&o[1]), F(&o[0]), g[0], g[1], g[2], g[3], g[4], (int)g[5]);
    }
    case PYNN_OP_TRANSPOSE:   /* convolution variants (engineer B) */
        return run_transpose(cx, op, o);
    case PYNN_OP_MAXPOOL2D:
    case PYNN_OP_MAXPOOL2D_BACKWARD:
    case PYNN_OP_AVGPOOL2D:
    case PYNN_OP_AVGPOOL2D_BACKWARD: {
        /* ints h, w, c, ph, pw, sh, sw, pad_top, pad_left, oh, ow; the step's rows are the
         * images */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]), y_n = mul4(rows, g[9], g[10], g[2]);
        EXPECT(pool_ints_ok(g) && x_n >= 0 && y_n >= 0);
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]));
        switch (op->kind) {
        case PYNN_OP_MAXPOOL2D:   /* bufs x, y */
            EXPECT(holds(&o[0], x_n) && holds(&o[1], y_n));
            if (cx->dry) return PYNN_OK;
            return pynn_maxpool2d_forward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3], g[4],
                                          g[5], g[6], g[7], g[8], g[9], g[10]);
        case PYNN_OP_MAXPOOL2D_BACKWARD:   /* bufs x, y, dy, dx */
            EXPECT(holds(&o[0], x_n) && holds(&o[1], y_n) && holds(&o[2], y_n) &&
                   holds(&o[3], x_n));
            if (cx->dry) return PYNN_OK;
            return pynn_maxpool2d_backward(F(&o[3]), F(&o[0]), F(&o[1]), F(&o[2]), rows, g[0],
                                           g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9],
                                           g[10]);
        case PYNN_OP_AVGPOOL2D:   /* bufs x, y */
            EXPECT(holds(&o[0], x_n) && holds(&o[1], y_n));
            if (cx->dry) return PYNN_OK;
            return pynn_avgpool2d_forward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3], g[4],
                                          g[5], g[6], g[7], g[8], g[9], g[10]);
        default:   /* OP_AVGPOOL2D_BACKWARD: bufs dy, dx */
            EXPECT(holds(&o[0], y_n) && holds(&o[1], x_n));
            if (cx->dry) return PYNN_OK;
            return pynn_avgpool2d_backward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3],
                                           g[4], g[5], g[6], g[7], g[8], g[9], g[10]);
        }
    }
    case PYNN_OP_GLOBAL_AVGPOOL2D:
    case PYNN_OP_GLOBAL_AVGPOOL2D_BACKWARD: {   /* bufs x, y / dy, dx; ints h, w, c */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]), y_n = mul(rows, g[2]);
        EXPECT(g[0] >= 1 && g[1] >= 1 && g[2] >= 0 && small_ints(g, 3) && x_n >= 0 && y_n >= 0);
        EXPECT(f32(&o[0]) && f32(&o[1]));
        if (op->kind == PYNN_OP_GLOBAL_AVGPOOL2D) {
            EXPECT(holds(&o[0], x_n) && holds(&o[1], y_n));
            if (cx->dry) return PYNN_OK;
            return pynn_global_avgpool2d_forward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2]);
        }
        EXPECT(holds(&o[0], y_n) && holds(&o[1], x_n));
        if (cx->dry) return PYNN_OK;
        return pynn_global_avgpool2d_backward(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2]);
    }
    /* engineer D (#16): sequence ops; ints s, c (steps, channels) or times, f; the step's
     * rows are the samples */
    case PYNN_OP_GLOBAL_MAXPOOL:
    case PYNN_OP_GLOBAL_MAXPOOL_BACKWARD:
    case PYNN_OP_MASKED_MEAN:
    case PYNN_OP_MASKED_MEAN_BACKWARD:
    case PYNN_OP_REPEAT_VECTOR:
    case PYNN_OP_REPEAT_VECTOR_BACKWARD: {
        const int64_t s = g[0], c = g[1];
        const int64_t big = mul(mul(rows, s), c), small = mul(rows, c), m_n = mul(rows, s);
        EXPECT(s >= 1 && c >= 0 && small_ints(g, 2) && big >= 0 && small >= 0 && m_n >= 0);
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]));
        switch (op->kind) {
        case PYNN_OP_GLOBAL_MAXPOOL:   /* bufs x (rows, s, c), y (rows, c) */
            EXPECT(holds(&o[0], big) && holds(&o[1], small));
            if (cx->dry) return PYNN_OK;
            return pynn_global_maxpool_forward(F(&o[1]), F(&o[0]), rows, s, c);
        case PYNN_OP_GLOBAL_MAXPOOL_BACKWARD:   /* bufs x, dy, dx */
            EXPECT(holds(&o[0], big) && holds(&o[1], small) && holds(&o[2], big));
            if (cx->dry) return PYNN_OK;
            return pynn_global_maxpool_backward(F(&o[2]), F(&o[0]), F(&o[1]), rows, s, c);
        case PYNN_OP_MASKED_MEAN:   /* bufs x (rows, s, c), mask (rows, s), y (rows, c) */
            EXPECT(holds(&o[0], big) && holds(&o[1], m_n) && holds(&o[2], small));
            if (cx->dry) return PYNN_OK;
            return pynn_masked_mean_forward(F(&o[2]), F(&o[0]), F(&o[1]), rows, s, c);
        case PYNN_OP_MASKED_MEAN_BACKWARD:   /* bufs dy (rows, c), mask, dx (rows, s, c) */
            EXPECT(holds(&o[0], small) && holds(&o[1], m_n) && holds(&o[2], big));
            if (cx->dry) return PYNN_OK;
            return pynn_masked_mean_backward(F(&o[2]), F(&o[0]), F(&o[1]), rows, s, c);
        case PYNN_OP_REPEAT_VECTOR:   /* bufs x (rows, f), y (rows, times, f) */
            EXPECT(holds(&o[0], small) && holds(&o[1], big));
            if (cx->dry) return PYNN_OK;
            return pynn_repeat_vector_forward(F(&o[1]), F(&o[0]), rows, s, c);
        default:   /* OP_REPEAT_VECTOR_BACKWARD: bufs dy (rows, times, f), dx (rows, f) */
            EXPECT(holds(&o[0], big) && holds(&o[1], small));
            if (cx->dry) return PYNN_OK;
            return pynn_repeat_vector_backward(F(&o[1]), F(&o[0]), rows, s, c);
        }
    }
    case PYNN_OP_BATCHNORM_TRAIN: {
        /* bufs x, gamma, beta, moving_mean, moving_variance, mean, inv_std, y; ints c;
         * reals momentum, epsilon */
        const operand *x = &o[0], *gamma = &o[1], *beta = &o[2], *mm = &o[3], *mv = &o[4];
        const operand *mean = &o[5], *inv_std = &o[6], *y = &o[7];
        const int64_t c = g[0];
        int64_t r;
        EXPECT(c >= 1 && f32(x) && f32_or_absent(gamma) && f32_or_absent(beta) && f32(mm) &&
               f32(mv) && f32(mean) && f32(inv_std) && f32(y));
        EXPECT(x->n % c == 0 && x->n >= c);
        r = x->n / c;
        EXPECT(holds(gamma, c) && holds(beta, c) && holds(mm, c) && holds(mv, c) &&
               holds(mean, c) && holds(inv_std, c) && holds(y, x->n));
        if (cx->dry) return PYNN_OK;
        return pynn_batchnorm_forward_train(F(y), F(mean), F(inv_std), F(mm), F(mv), F(x),
                                            F(gamma), F(beta), r, c, (float)op->reals[0],
                                            (float)op->reals[1]);
    }
    case PYNN_OP_BATCHNORM_TRAIN_BACKWARD: {
        /* bufs x, gamma, mean, inv_std, dy, dgamma, dbeta, dx; ints c */
        const operand *x = &o[0], *gamma = &o[1], *mean = &o[2], *inv_std = &o[3], *dy = &o[4];
        const operand *dgamma = &o[5], *dbeta = &o[6], *dx = &o[7];
        const int64_t c = g[0];
        int64_t r;
        EXPECT(c >= 1 && f32(x) && f32_or_absent(gamma) && f32(mean) && f32(inv_std) &&
               f32(dy) && f32_or_absent(dgamma) && f32_or_absent(dbeta) && f32_or_absent(dx));
        EXPECT(x->n % c == 0 && x->n >= c);
        r = x->n / c;
        EXPECT(holds(gamma, c) && holds(mean, c) && holds(inv_std, c) && holds(dy, x->n) &&
               holds(dgamma, c) && holds(dbeta, c) && holds(dx, x->n));
        if (cx->dry) return PYNN_OK;
        return pynn_batchnorm_backward(F(dx), F(dgamma), F(dbeta), F(x), F(gamma), F(mean),
                                       F(inv_std), F(dy), r, c);
    }
    case PYNN_OP_BATCHNORM_INFER: {
        /* bufs x, gamma, beta, moving_mean, moving_variance, y; ints c; reals epsilon */
        const operand *x = &o[0], *gamma = &o[1], *beta = &o[2], *mm = &o[3], *mv = &o[4];
        const operand *y = &o[5];
        const int64_t c = g[0];
        EXPECT(c >= 1 && f32(x) && f32_or_absent(gamma) && f32_or_absent(beta) && f32(mm) &&
               f32(mv) && f32(y));
        EXPECT(x->n % c == 0);
        EXPECT(holds(gamma, c) && holds(beta, c) && holds(mm, c) && holds(mv, c) &&
               holds(y, x->n));
        if (cx->dry) return PYNN_OK;
        return pynn_batchnorm_forward_infer(F(y), F(x), F(gamma), F(beta), F(mm), F(mv),
                                            x->n / c, c, (float)op->reals[0]);
    }
    case PYNN_OP_BATCHNORM_INFER_BACKWARD: {
        /* bufs x, gamma, moving_mean, moving_variance, dy, dgamma, dbeta, dx; ints c;
         * reals epsilon */
        const operand *x = &o[0], *gamma = &o[1], *mm = &o[2], *mv = &o[3], *dy = &o[4];
        const operand *dgamma = &o[5], *dbeta = &o[6], *dx = &o[7];
        const int64_t c = g[0];
        EXPECT(c >= 1 && f32(x) && f32_or_absent(gamma) && f32(mm) && f32(mv) && f32(dy) &&
               f32_or_absent(dgamma) && f32_or_absent(dbeta) && f32_or_absent(dx));
        EXPECT(x->n % c == 0);
        EXPECT(holds(gamma, c) && holds(mm, c) && holds(mv, c) && holds(dy, x->n) &&
               holds(dgamma, c) && holds(dbeta, c) && holds(dx, x->n));
        if (cx->dry) return PYNN_OK;
        return pynn_batchnorm_infer_backward(F(dx), F(dgamma), F(dbeta), F(x), F(gamma), F(mm),
                                             F(mv), F(dy), x->n / c, c, (float)op->reals[0]);
    }
    case PYNN_OP_DROPOUT: {
        /* bufs x, mask, y; ints seed, ndim, dims[ndim], broadcast[ndim + 1]; reals rate */
        const operand *x = &o[0], *mask = &o[1], *y = &o[2];
        const int64_t ndim = op->n_ints >= 2 ? g[1] : -1;
        int64_t per_row = 1;
        EXPECT(ndim >= 0 && ndim <= op->n_ints && op->n_ints == 2 + 2 * ndim + 1);
        for (i = 0; i < ndim; i++) {
            per_row = mul(per_row, g[2 + i]);
            EXPECT(per_row >= 0);
        }
        EXPECT(f32(x) && f32(mask) && f32(y) && per_row >= 1 && x->n % per_row == 0);
        EXPECT(holds(mask, x->n) && holds(y, x->n));
        EXPECT(op->reals[0] >= 0.0 && op->reals[0] < 1.0);
        if (cx->dry) return PYNN_OK;
        return pynn_dropout_forward(F(y), F(mask), F(x), x->n / per_row, g + 2, g + 2 + ndim,
                                    ndim, (uint64_t)g[0], (uint64_t)cx->step, op->reals[0]);
    }
    case PYNN_OP_DROPOUT_BACKWARD: {   /* bufs dy, mask, dx */
        EXPECT(f32(&o[0]) && f32(&o[1]) && f32(&o[2]));
        EXPECT(holds(&o[1], o[0].n) && holds(&o[2], o[0].n));
        if (cx->dry) return PYNN_OK;
        return pynn_multiply(F(&o[2]), F(&o[0]), F(&o[1]), o[0].n);
    }
    case PYNN_OP_ACTIVATION:
    case PYNN_OP_ACTIVATION_BACKWARD: {   /* bufs x, y (, dy, dx); ints cols, act */
        const int64_t cols = g[0];
        EXPECT(cols >= 1 && act_ok(g[1]));
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]));
        if (op->kind == PYNN_OP_ACTIVATION) {
            EXPECT(o[0].n % cols == 0 && holds(&o[1], o[0].n));
            if (cx->dry) return PYNN_OK;
            return pynn_activation_forward(F(&o[1]), F(&o[0]), o[0].n / cols, cols, (int)g[1],
                                           (float)op->reals[0]);
        }
        EXPECT(o[2].n % cols == 0 && holds(&o[0], o[2].n) && holds(&o[1], o[2].n) &&
               holds(&o[3], o[2].n));
        if (cx->dry) return PYNN_OK;
        return pynn_activation_backward(F(&o[3]), F(&o[0]), F(&o[1]), F(&o[2]), o[2].n / cols,
                                        cols, (int)g[1], (float)op->reals[0]);
    }
    case PYNN_OP_MERGE:
    case PYNN_OP_MERGE_BACKWARD: {
        /* merge: bufs y, x0 .. x(k-1); ints kind.  backward: bufs dx, dy, x0 ..; ints kind, i */
        const int64_t first_x = op->kind == PYNN_OP_MERGE ? 1 : 2;
        const int64_t k = op->n_bufs - first_x;
        const float *xs[PLAN_MAX_OPERANDS];
        int64_t n;
        EXPECT(k >= 1 && k <= PLAN_MAX_OPERANDS && g[0] >= 0 && g[0] < PYNN_MERGE_COUNT);
        n = o[first_x - 1].n;    /* y's count, dy's for the backward */
        EXPECT(g[0] != PYNN_MERGE_SUBTRACT || k == 2);
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]) && holds(&o[i], n));
        for (i = 0; i < k; i++) xs[i] = F(&o[first_x + i]);
        if (op->kind == PYNN_OP_MERGE) {
            if (cx->dry) return PYNN_OK;
            return pynn_merge_forward(F(&o[0]), xs, k, n, (int)g[0]);
        }
        EXPECT(g[1] >= 0 && g[1] < k);
        if (cx->dry) return PYNN_OK;
        return pynn_merge_backward(F(&o[0]), F(&o[1]), xs, k, n, (int)g[0], g[1]);
    }
    case PYNN_OP_CONCAT:
    case PYNN_OP_CONCAT_BACKWARD: {
        /* bufs y (dy), x0 .. x(k-1) (dx0 ..); ints widths[k]; outer = n(y) / sum */
        const int64_t k = op->n_bufs - 1;
        const float *xs[PLAN_MAX_OPERANDS];
        float *dxs[PLAN_MAX_OPERANDS];
        int64_t total = 0, outer;
        EXPECT(k >= 1 && k <= PLAN_MAX_OPERANDS && op->n_ints == k);
        for (i = 0; i < k; i++) {
            EXPECT(g[i] >= 0 && g[i] <= INT64_MAX - total);
            total += g[i];
        }
        EXPECT(total >= 1 && f32(&o[0]) && o[0].n % total == 0);
        outer = o[0].n / total;
        for (i = 0; i < k; i++) {
            const operand *x = &o[1 + i];
            EXPECT(op->kind == PYNN_OP_CONCAT ? f32(x) : f32_or_absent(x));
            EXPECT(holds(x, mul(outer, g[i])));
            xs[i] = F(x);
            dxs[i] = F(x);
        }
        if (cx->dry) return PYNN_OK;
        if (op->kind == PYNN_OP_CONCAT) return pynn_concat(F(&o[0]), xs, g, k, outer);
        return pynn_concat_backward(dxs, F(&o[0]), g, k, outer);
    }
    case PYNN_OP_SCALE: {   /* bufs y, x; reals alpha */
        EXPECT(f32(&o[0]) && f32(&o[1]) && holds(&o[0], o[1].n));
        if (cx->dry) return PYNN_OK;
        return pynn_scale(F(&o[0]), F(&o[1]), o[1].n, (float)op->reals[0]);
    }
    case PYNN_OP_CHANNEL_AFFINE:
    case PYNN_OP_NORMALIZE: {
        /* bufs x, scale / mean (may be absent), offset / variance, y; ints c, inner[, invert];
         * reals epsilon.  The affine's offset and the normalization's mean may be absent. */
        const int affine = op->kind == PYNN_OP_CHANNEL_AFFINE;
        const operand *x = &o[0], *a = &o[1], *b = &o[2], *y = &o[3];
        const int64_t c = g[0], inner = g[1], ci = mul(g[0], g[1]);
        EXPECT(c >= 1 && inner >= 1 && ci >= 1 && f32(x) && f32(y) && x->n % ci == 0);
        EXPECT(affine ? (f32(a) && f32_or_absent(b)) : (f32_or_absent(a) && f32(b)));
        EXPECT(holds(a, c) && holds(b, c) && holds(y, x->n));
        if (!affine) EXPECT((g[2] == 0 || g[2] == 1) && op->reals[0] == op->reals[0]);
        if (cx->dry) return PYNN_OK;
        if (affine) return pynn_channel_affine(F(y), F(x), F(a), F(b), x->n / ci, c, inner);
        return pynn_normalize(F(y), F(x), F(a), F(b), x->n / ci, c, inner, (int)g[2],
                              (float)op->reals[0]);
    }
    case PYNN_OP_RANDOM_CONTRAST:
    case PYNN_OP_RANDOM_CONTRAST_BACKWARD: {
        /* forward: bufs x, factors, y; ints seed, h, w, c; reals lower, upper, vmin, vmax.
         * backward: bufs x, factors, dy, dx; ints h, w, c; reals vmin, vmax */
        const int fwd = op->kind == PYNN_OP_RANDOM_CONTRAST;
        const int64_t *geo = fwd ? g + 1 : g;
        const double *lim = fwd ? op->reals + 2 : op->reals;
        const int64_t hw = mul(geo[0], geo[1]), n_x = mul(mul(rows, hw), geo[2]);
        EXPECT(geo[0] >= 1 && geo[1] >= 1 && geo[2] >= 1 && hw >= 1 && n_x >= 1);
        EXPECT(lim[0] <= lim[1]);   /* NaN fails too */
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]) && holds(&o[i], i == 1 ? rows : n_x));
        if (fwd) {
            EXPECT(isfinite((float)(1.0 - op->reals[0])) && isfinite((float)(1.0 + op->reals[1])));
            if (cx->dry) return PYNN_OK;
            return pynn_random_contrast(F(&o[2]), F(&o[1]), F(&o[0]), rows, hw, geo[2],
                                        (uint64_t)g[0], (uint64_t)cx->step, op->reals[0],
                                        op->reals[1], (float)lim[0], (float)lim[1]);
        }
        if (cx->dry) return PYNN_OK;
        return pynn_random_contrast_backward(F(&o[3]), F(&o[0]), F(&o[1]), F(&o[2]), rows, hw,
                                             geo[2], (float)lim[0], (float)lim[1]);
    }
    case PYNN_OP_RANDOM_BRIGHTNESS: {
        /* bufs x, mask (may be absent), y; ints seed; reals lower, upper, vmin, vmax */
        const operand *x = &o[0], *mask = &o[1], *y = &o[2];
        const double *r = op->reals;
        EXPECT(f32(x) && f32_or_absent(mask) && f32(y) && x->n % rows == 0);
        EXPECT(holds(mask, x->n) && holds(y, x->n));
        EXPECT(r[0] <= r[1] && isfinite((float)r[0]) && isfinite((float)r[1]) && r[2] <= r[3] &&
               isfinite((float)r[3] - (float)r[2]));
        if (cx->dry) return PYNN_OK;
        return pynn_random_brightness(F(y), F(mask), F(x), rows, x->n / rows, (uint64_t)g[0],
                                      (uint64_t)cx->step, r[0], r[1], (float)r[2], (float)r[3]);
    }
    /* ---- engineer E: normalization and noise layers ---- */
    case PYNN_OP_GROUP_NORM:
    case PYNN_OP_GROUP_NORM_BACKWARD: {
        /* forward: bufs x, gamma, beta, mean, inv_std, y; backward: bufs x, gamma, mean,
         * inv_std, dy, dgamma, dbeta, dx; ints s, groups, k, rms; reals epsilon */
        const int fwd = op->kind == PYNN_OP_GROUP_NORM;
        const int64_t s = g[0], groups = g[1], k = g[2], c = mul(groups, k);
        const int64_t per = mul(s, c);
        int64_t n, stats;
        EXPECT(s >= 1 && groups >= 1 && k >= 1 && c >= 1 && per >= 1 && (g[3] == 0 || g[3] == 1));
        EXPECT(f32(&o[0]) && o[0].n % per == 0);
        n = o[0].n / per;
        stats = mul(n, groups);
        EXPECT(stats >= 0);
        if (fwd) {
            const operand *x = &o[0], *gm = &o[1], *bt = &o[2], *mean = &o[3], *istd = &o[4];
            const operand *y = &o[5];
            EXPECT(f32_or_absent(gm) && f32_or_absent(bt) && f32(mean) && f32(istd) && f32(y));
            EXPECT(holds(gm, c) && holds(bt, c) && holds(mean, stats) && holds(istd, stats) &&
                   holds(y, x->n) && op->reals[0] >= 0.0);
            if (cx->dry) return PYNN_OK;
            return pynn_group_norm_forward(F(y), F(mean), F(istd), F(x), F(gm), F(bt), n, s,
                                           groups, k, (float)op->reals[0], (int)g[3]);
        } else {
            const operand *x = &o[0], *gm = &o[1], *mean = &o[2], *istd = &o[3], *dy = &o[4];
            const operand *dg = &o[5], *db = &o[6], *dx = &o[7];
            EXPECT(f32_or_absent(gm) && f32(mean) && f32(istd) && f32(dy) && f32_or_absent(dg) &&
                   f32_or_absent(db) && f32_or_absent(dx));
            EXPECT(holds(gm, c) && holds(mean, stats) && holds(istd, stats) && holds(dy, x->n) &&
                   holds(dg, c) && holds(db, c) && holds(dx, x->n));
            if (cx->dry) return PYNN_OK;
            return pynn_group_norm_backward(F(dx), F(dg), F(db), F(x), F(gm), F(mean), F(istd),
                                            F(dy), n, s, groups, k, (int)g[3]);
        }
    }
    case PYNN_OP_UNIT_NORM:
    case PYNN_OP_UNIT_NORM_BACKWARD: {
        /* forward: bufs x, inv_norm, y; backward: bufs x, inv_norm, dy, dx; ints cols */
        const int64_t cols = g[0];
        int64_t r;
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]));
        EXPECT(cols >= 1 && o[0].n % cols == 0);
        r = o[0].n / cols;
        for (i = 2; i < op->n_bufs; i++) EXPECT(holds(&o[i], o[0].n));
        EXPECT(holds(&o[1], r));
        if (cx->dry) return PYNN_OK;
        if (op->kind == PYNN_OP_UNIT_NORM)
            return pynn_unit_norm_forward(F(&o[2]), F(&o[1]), F(&o[0]), r, cols);
        return pynn_unit_norm_backward(F(&o[3]), F(&o[0]), F(&o[1]), F(&o[2]), r, cols);
    }
    case PYNN_OP_GAUSSIAN_NOISE: {   /* bufs x, noise (may be absent), y; ints seed, mode */
        const operand *x = &o[0], *noise = &o[1], *y = &o[2];
        EXPECT(f32(x) && f32_or_absent(noise) && f32(y) && (g[1] == 0 || g[1] == 1));
        EXPECT(holds(noise, x->n) && holds(y, x->n));
        EXPECT(op->reals[0] >= 0.0 && isfinite(op->reals[0]));
        if (cx->dry) return PYNN_OK;
        return pynn_gaussian_noise(F(y), F(noise), F(x), x->n, (uint64_t)g[0],
                                   (uint64_t)cx->step, (int)g[1], op->reals[0]);
    }
    case PYNN_OP_LOSS: {
        /* bufs pred, target, grad, weights; ints kind, from_logits, cols, index, has_ignore,
         * ignore_class, reduce_sum; reals weight (the loss's share of the total; the plan
         * scales the gradient with an OP_SCALE), param, label_smoothing */
        const operand *pred = &o[0], *target = &o[1], *grad = &o[2], *weights = &o[3];
        const int64_t kind = g[0], cols = g[2], index = g[3], has_ignore = g[4];
        const int64_t reduce_sum = g[6];
        const int labels = target->dtype == PYNN_DTYPE_I64;
        const float param = (float)op->reals[1], smoothing = (float)op->reals[2];
        pynn_loss_options opt;
        double value = 0.0;
        int64_t r;
        EXPECT(cols >= 1 && index >= 0 && index < cx->plan->n_losses);
        EXPECT(f32(pred) && f32_or_absent(grad) && f32_or_absent(weights) &&
               target->data != NULL);
        EXPECT(pred->n % cols == 0 && pred->n >= cols);
        r = pred->n / cols;
        EXPECT(holds(grad, pred->n));
        /* per-sample weights: one per step row, each for r / rows rows of pred */
        EXPECT(weights->data == NULL || (r % rows == 0 && holds(weights, rows)));
        EXPECT(has_ignore == 0 || has_ignore == 1);
        EXPECT(reduce_sum == 0 || reduce_sum == 1);
        if (labels)
            EXPECT(kind == PYNN_LOSS_SPARSE_CCE &&
                   labels_ok(cx, op->bufs[1], cols, has_ignore, g[5]) && holds(target, r));
        else
            EXPECT(kind >= 0 && kind < PYNN_LOSS_COUNT && kind != PYNN_LOSS_SPARSE_CCE &&
                   target->dtype == PYNN_DTYPE_F32 && holds(target, pred->n) && !has_ignore);
        EXPECT(kind != PYNN_LOSS_HUBER || (param > 0.0f && isfinite(param)));
        EXPECT(smoothing >= 0.0f && smoothing <= 1.0f &&
               (smoothing == 0.0f || kind == PYNN_LOSS_BCE || kind == PYNN_LOSS_CCE ||
                kind == PYNN_LOSS_SPARSE_CCE));
        if (cx->dry) return PYNN_OK;
        opt.param = param;
        opt.label_smoothing = smoothing;
        opt.has_ignore = (int)has_ignore;
        opt.ignore_class = g[5];
        opt.weights = F(weights);
        opt.per_weight = weights->data != NULL ? r / rows : 1;
        opt.reduce_sum = (int)reduce_sum;
        status = labels ? pynn_sparse_cce(F(grad), &value, F(pred), (const int64_t *)target->data,
                                          r, cols, g[1] != 0, &opt)
                        : pynn_loss(F(grad), &value, F(pred), F(target), r, cols, (int)kind,
                                    g[1] != 0, &opt);
        if (status != PYNN_OK) return status;
        cx->losses[index] = value;
        return PYNN_OK;
    }
    case PYNN_OP_METRIC: {   /* bufs pred, target, weights; ints kind, cols, index, k, width,
                                per_weight; reals threshold, or the thresholds (confusion) */
        const operand *pred = &o[0], *target = &o[1], *weights = &o[2];
        const int64_t kind = g[0], cols = g[1], index = g[2], width = g[4], per_weight = g[5];
        const int labels = target->dtype == PYNN_DTYPE_I64;
        const int confusion = kind == PYNN_METRIC_CONFUSION;
        double sum = 0.0;
        int64_t r, j;
        EXPECT(kind >= 0 && kind < PYNN_METRIC_COUNT && cols >= 1 && g[3] >= 1 &&
               per_weight >= 1 && op->n_reals >= 1);
        EXPECT(confusion ? (width == 4 * (int64_t)op->n_reals &&
                            op->n_reals <= PLAN_MAX_THRESHOLDS)
                         : (width == 1 && op->n_reals == 1));
        EXPECT(index >= 0 && index <= cx->plan->n_metrics - width);
        for (j = 0; j < op->n_reals; j++) EXPECT(op->reals[j] == op->reals[j]);   /* not NaN */
        EXPECT(f32(pred) && target->data != NULL && pred->n % cols == 0);
        r = pred->n / cols;
        if (labels)
            EXPECT(labels_ok(cx, op->bufs[1], cols, 0, 0) && holds(target, r));
        else
            EXPECT(target->dtype == PYNN_DTYPE_F32 && holds(target, pred->n));
        EXPECT(f32_or_absent(weights) && holds(weights, r / per_weight + (r % per_weight != 0)));
        if (cx->dry) return PYNN_OK;
        if (confusion) {
            float thresholds[PLAN_MAX_THRESHOLDS];
            for (j = 0; j < op->n_reals; j++) thresholds[j] = (float)op->reals[j];
            return pynn_metric_confusion(cx->metrics + index, F(pred), labels ? NULL : F(target),
                                         labels ? (const int64_t *)target->data : NULL, r, cols,
                                         thresholds, op->n_reals, F(weights), per_weight);
        }
        status = pynn_metric_sum(&sum, F(pred), labels ? NULL : F(target),
                                 labels ? (const int64_t *)target->data : NULL, r, cols,
                                 (int)kind, g[3], (float)op->reals[0], F(weights), per_weight);
        if (status != PYNN_OK) return status;
        cx->metrics[index] = sum;
        return PYNN_OK;
    }
    case PYNN_OP_OPTIMIZER: {   /* bufs params, grads, slots[PYNN_OPT_SLOTS][, ema];
                                   ints kind[, n_segments, segments]; reals hyper[, schedule
                                   block[, options]] */
        const operand *w = &o[0], *grads = &o[1];
        const operand *ema = op->n_bufs == 3 + PYNN_OPT_SLOTS ? &o[2 + PYNN_OPT_SLOTS] : NULL;
        const double *hyper = op->reals;
        const double *options = op->n_reals == PYNN_OPT_REALS_OPTIONS
                                    ? op->reals + PYNN_OPT_REALS : NULL;
        const int64_t n_segments = op->n_ints > 1 ? g[1] : 0;
        int64_t kind;
        float *slots[PYNN_OPT_SLOTS];
        double scheduled[PYNN_HYPER_COUNT];
        double schedule = PYNN_SCHEDULE_NONE;
        int need, j;
        EXPECT(op->n_bufs == 2 + PYNN_OPT_SLOTS || op->n_bufs == 3 + PYNN_OPT_SLOTS);
        EXPECT(op->n_ints >= 1 && (op->n_ints == 1 ||
               (n_segments >= 0 && n_segments <= (INT32_MAX - 2) / 3 &&
                op->n_ints == 2 + 3 * n_segments)));
        kind = g[0];
        EXPECT(op->n_reals == PYNN_HYPER_COUNT || op->n_reals == PYNN_OPT_REALS ||
               op->n_reals == PYNN_OPT_REALS_OPTIONS);
        if (op->n_reals >= PYNN_OPT_REALS) schedule = op->reals[PYNN_HYPER_COUNT];
        EXPECT(schedule >= 0 && schedule < PYNN_SCHEDULE_COUNT && schedule == (int)schedule);
        if (schedule == PYNN_SCHEDULE_PIECEWISE_CONSTANT_DECAY) {   /* its boundary count */
            const double nb = op->reals[PYNN_HYPER_COUNT + 1];
            EXPECT(nb >= 0 && nb <= PYNN_SCHEDULE_MAX_BOUNDARIES && nb == (int)nb);
        }
        EXPECT(kind >= 0 && kind < PYNN_OPT_COUNT && f32(w) && f32(grads) && holds(grads, w->n));
        /* the segments tile the weights, the options are in range */
        EXPECT(pynn_optimizer_options_check(w->n, op->n_ints > 1 ? g + 2 : NULL, n_segments,
                                            options) == PYNN_OK);
        need = pynn_optimizer_slots((int)kind, hyper);   /* the slots the rule reads */
        for (j = 0; j < PYNN_OPT_SLOTS; j++) {
            const operand *s = &o[2 + j];
            EXPECT(f32_or_absent(s) && holds(s, w->n) && (!(need & (1 << j)) || s->data != NULL));
            slots[j] = F(s);
        }
        EXPECT(ema == NULL || (f32_or_absent(ema) && holds(ema, w->n)));
        if (cx->dry) return PYNN_OK;
        if (schedule != PYNN_SCHEDULE_NONE) {   /* this step's learning rate */
            for (j = 0; j < PYNN_HYPER_COUNT; j++) scheduled[j] = hyper[j];
            scheduled[PYNN_HYPER_LEARNING_RATE] =
                pynn_schedule_lr((int)schedule, op->reals + PYNN_HYPER_COUNT + 1, cx->step - 1);
            hyper = scheduled;
        }
        /* the learning rate the rule uses (pynn_optimizer_step's), for OP_EMBEDDING_SGD */
        cx->sparse_left = pynn_optimizer_sparse_ok((int)kind, hyper, options, ema != NULL &&
                                                   ema->data != NULL);
        cx->sparse_lr = (float)hyper[PYNN_HYPER_LEARNING_RATE];
        return pynn_optimizer_apply(F(w), slots, ema != NULL ? F(ema) : NULL, F(grads), w->n,
                                    op->n_ints > 1 ? g + 2 : NULL, n_segments, (int)kind,
                                    cx->step, hyper, options);
    }
    case PYNN_OP_RESIZE: {   /* bufs x, y; ints h, w, c, oh, ow, top, left, wh, ww, interp */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]), y_n = mul4(rows, g[3], g[4], g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && g[3] >= 0 && g[4] >= 0 && g[7] >= 1 &&
               g[8] >= 1 && g[5] >= -(int64_t)INT32_MAX && g[6] >= -(int64_t)INT32_MAX &&
               small_ints(g, 9) && (g[9] == PYNN_INTERP_BILINEAR || g[9] == PYNN_INTERP_NEAREST));
        EXPECT(x_n >= 0 && y_n >= 0 && f32(&o[0]) && f32(&o[1]));
        EXPECT(holds(&o[0], x_n) && holds(&o[1], y_n) && o[0].data != o[1].data);
        if (cx->dry) return PYNN_OK;
        return pynn_resize(F(&o[1]), F(&o[0]), rows, g[0], g[1], g[2], g[3], g[4], g[5], g[6],
                           g[7], g[8], (int)g[9], (float)op->reals[0]);
    }
    case PYNN_OP_AFFINE: {   /* bufs x, params, y; ints h, w, c, interpolation, fill_mode */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && small_ints(g, 3) &&
               (g[3] == PYNN_INTERP_BILINEAR || g[3] == PYNN_INTERP_NEAREST) &&
               g[4] >= PYNN_FILL_REFLECT && g[4] <= PYNN_FILL_NEAREST && x_n >= 0);
        EXPECT(f32(&o[0]) && f32(&o[1]) && f32(&o[2]));
        EXPECT(holds(&o[0], x_n) && holds(&o[1], mul(rows, PYNN_IMAGE_PARAMS)) &&
               holds(&o[2], x_n) && o[0].data != o[2].data);
        if (cx->dry) return PYNN_OK;
        return pynn_affine_transform(F(&o[2]), F(&o[0]), F(&o[1]), rows, g[0], g[1], g[2],
                                     (int)g[3], (int)g[4], (float)op->reals[0]);
    }
    case PYNN_OP_IMAGE_RANDOM: {   /* bufs params; ints kind, seed, h, w, oh, ow; reals r */
        EXPECT(g[0] >= 0 && g[0] < PYNN_RANDOM_KINDS && g[2] >= 0 && g[3] >= 0 &&
               small_ints(g + 2, 4));
        EXPECT(g[0] != PYNN_RANDOM_CROP || (g[4] >= 0 && g[5] >= 0 && g[4] <= g[2] &&
                                            g[5] <= g[3]));
        EXPECT(f32(&o[0]) && holds(&o[0], mul(rows, PYNN_IMAGE_PARAMS)));
        if (cx->dry) return PYNN_OK;
        return pynn_image_random(F(&o[0]), rows, g[2], g[3], g[4], g[5], (int)g[0], op->reals,
                                 (uint64_t)g[1], (uint64_t)cx->step);
    }
    case PYNN_OP_FLIP: {   /* bufs x, params, y; ints h, w, c, horizontal, vertical */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && small_ints(g, 3) && x_n >= 0);
        EXPECT(f32(&o[0]) && f32_or_absent(&o[1]) && f32(&o[2]));
        EXPECT(holds(&o[0], x_n) && holds(&o[1], mul(rows, PYNN_IMAGE_PARAMS)) &&
               holds(&o[2], x_n) && o[0].data != o[2].data);
        if (cx->dry) return PYNN_OK;
        return pynn_flip(F(&o[2]), F(&o[0]), F(&o[1]), rows, g[0], g[1], g[2], g[3] != 0,
                         g[4] != 0);
    }
    case PYNN_OP_CROP: {   /* bufs x, params, y; ints h, w, c, oh, ow, top, left */
        const int64_t x_n = mul4(rows, g[0], g[1], g[2]), y_n = mul4(rows, g[3], g[4], g[2]);
        EXPECT(g[0] >= 0 && g[1] >= 0 && g[2] >= 0 && g[3] >= 0 && g[4] >= 0 && g[3] <= g[0] &&
               g[4] <= g[1] && small_ints(g, 7) && x_n >= 0 && y_n >= 0);
        EXPECT(f32(&o[0]) && f32_or_absent(&o[1]) && f32(&o[2]));
        EXPECT(o[1].data != NULL || (g[5] >= 0 && g[6] >= 0 && g[5] <= g[0] - g[3] &&
                                     g[6] <= g[1] - g[4]));
        EXPECT(holds(&o[0], x_n) && holds(&o[1], mul(rows, PYNN_IMAGE_PARAMS)) &&
               holds(&o[2], y_n) && o[0].data != o[2].data);
        if (cx->dry) return PYNN_OK;
        return pynn_crop(F(&o[2]), F(&o[0]), F(&o[1]), rows, g[0], g[1], g[2], g[3], g[4], g[5],
                         g[6]);
    }
    /* recurrent layers (engineer H): the step's rows are the sequences */
    case PYNN_OP_RNN:
    case PYNN_OP_RNN_BACKWARD: {   /* ints T, f, u, cell, act, rec_act, go_backwards, time_order,
                                    * zero_output, gate_masks */
        const int64_t T = g[0], f = g[1], u = g[2];
        const int64_t G = (g[3] >= 0 && g[3] <= 2) ? pynn_rnn_gates((int)g[3]) : 0;
        const int64_t tu = mul(mul(rows, T), u), tg = mul(tu, G), nu = mul(rows, u);
        const int64_t nbias = g[3] == PYNN_RNN_GRU ? 2 * G * u : G * u;
        EXPECT(T >= 1 && f >= 1 && u >= 1 && G > 0 && T <= INT32_MAX && f <= INT32_MAX &&
               u <= INT32_MAX && act_ok(g[4]) && act_ok(g[5]) &&
               pynn_rnn_act_supported((int)g[4]) && pynn_rnn_act_supported((int)g[5]) &&
               (g[6] == 0 || g[6] == 1) && (g[7] == 0 || g[7] == 1) &&
               (g[8] == 0 || g[8] == 1) && (g[9] == 0 || g[9] == 1));
        EXPECT(tg >= 0 && mul(G, u) <= INT32_MAX);
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32_or_absent(&o[i]));
        if (op->kind == PYNN_OP_RNN) {
            const operand *x = &o[0], *k = &o[1], *rk = &o[2], *b = &o[3], *m = &o[4];
            const operand *rm = &o[5], *seq = &o[6], *cs = &o[7], *gates = &o[8];
            const operand *hp = &o[9], *aux = &o[10], *work = &o[11], *hl = &o[12], *cl = &o[13];
            const operand *out = &o[14], *im = &o[15];
            /* the dropout masks: (rows, u) shared, or (rows, G, u) and (rows, G, f) per gate */
            const int64_t rm_n = g[9] ? mul(nu, G) : nu, im_n = mul(mul(rows, G), f);
            EXPECT(f32(x) && f32(k) && f32(rk) && f32(seq) && f32(gates) && f32(hp) && f32(work));
            EXPECT(g[3] != PYNN_RNN_LSTM || (f32(cs) && f32(aux)));
            EXPECT(g[3] != PYNN_RNN_GRU || f32(aux));
            EXPECT(holds(x, mul(mul(rows, T), f)) && holds(k, mul(f, G * u)) &&
                   holds(rk, mul(u, G * u)) && holds(b, nbias) && holds(m, mul(rows, T)) &&
                   holds(rm, rm_n) && holds(seq, tu) && holds(cs, tu) && holds(gates, tg) &&
                   holds(hp, tu) && holds(aux, tu) && holds(work, mul(rows, G * u)) &&
                   holds(hl, nu) && holds(cl, nu) && holds(out, tu) && holds(im, im_n));
            EXPECT(g[8] == 0 || f32(out));
            EXPECT(g[9] == 1 || F(im) == NULL);
            if (cx->dry) return PYNN_OK;
            return pynn_rnn_forward(F(seq), F(cs), F(gates), F(hp), F(aux), F(work), F(hl),
                                    F(cl), F(x), F(k), F(rk), F(b), F(m), F(rm), F(im), rows, T,
                                    f, u, (int)g[3], (int)g[4], (int)g[5], (int)g[6],
                                    (int)g[7], (int)g[9], g[8] ? F(out) : NULL);
        } else {
            const operand *x = &o[0], *k = &o[1], *rk = &o[2], *seq = &o[3], *cs = &o[4];
            const operand *gates = &o[5], *hp = &o[6], *aux = &o[7], *m = &o[8], *rm = &o[9];
            const operand *dseq = &o[10], *dhl = &o[11], *dcl = &o[12], *dg = &o[13];
            const operand *dgr = &o[14], *work = &o[15], *dk = &o[16], *drk = &o[17];
            const operand *db = &o[18], *dx = &o[19], *im = &o[20];
            const int64_t rm_n = g[9] ? mul(nu, G) : nu, im_n = mul(mul(rows, G), f);
            EXPECT(f32(x) && f32(k) && f32(rk) && f32(seq) && f32(gates) && f32(hp) &&
                   f32(dg) && f32(work));
            EXPECT(g[3] != PYNN_RNN_LSTM || (f32(cs) && f32(aux)));
            EXPECT(g[3] != PYNN_RNN_GRU || (f32(aux) && f32(dgr)));
            EXPECT(holds(x, mul(mul(rows, T), f)) && holds(k, mul(f, G * u)) &&
                   holds(rk, mul(u, G * u)) && holds(seq, tu) && holds(cs, tu) &&
                   holds(gates, tg) && holds(hp, tu) && holds(aux, tu) &&
                   holds(m, mul(rows, T)) && holds(rm, rm_n) && holds(dseq, tu) &&
                   holds(dhl, nu) && holds(dcl, nu) && holds(dg, tg) && holds(dgr, tg) &&
                   holds(work, pynn_rnn_backward_work(rows, u)) && holds(dk, mul(f, G * u)) &&
                   holds(drk, mul(u, G * u)) && holds(db, nbias) &&
                   holds(dx, mul(mul(rows, T), f)) && holds(im, im_n));
            EXPECT(g[9] == 1 || F(im) == NULL);
            if (cx->dry) return PYNN_OK;
            return pynn_rnn_backward(F(dk), F(drk), F(db), F(dx), F(dg), F(dgr), F(work),
                                     F(dseq), F(dhl), F(dcl), F(x), F(k), F(rk), F(seq), F(cs),
                                     F(gates), F(hp), F(aux), F(m), F(rm), F(im), rows, T, f,
                                     u, (int)g[3], (int)g[4], (int)g[5], (int)g[6], (int)g[7],
                                     (int)g[9], (int)g[8]);
        }
    }
    case PYNN_OP_GRAD_HOOK: {   /* bufs grads; ints phase, offset, count */
        EXPECT(f32(&o[0]) && (g[0] == 0 || g[0] == 1) && g[1] >= 0 && g[2] >= 0 &&
               g[1] <= o[0].n && g[2] <= o[0].n - g[1]);
        if (cx->dry || cx->plan->hook == NULL) return PYNN_OK;
        return cx->plan->hook(cx->plan->hook_ctx, g[0], g[1], g[2], rows, cx->step) == 0
                   ? PYNN_OK : PYNN_EHOOK;
    }
    /* activations (engineer A) */
    case PYNN_OP_RELU:
    case PYNN_OP_RELU_BACKWARD: {   /* bufs x, y / x, dy, dx; reals slope, threshold, max */
        const float slope = (float)op->reals[0], thr = (float)op->reals[1];
        const float mx = (float)op->reals[2];
        const int64_t n = o[0].n;
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]) && holds(&o[i], n));
        EXPECT(slope >= 0.0f && isfinite(slope) && isfinite(thr) && mx >= 0.0f);
        if (cx->dry) return PYNN_OK;
        if (op->kind == PYNN_OP_RELU)
            return pynn_relu_forward(F(&o[1]), F(&o[0]), n, slope, thr, mx);
        return pynn_relu_backward(F(&o[2]), F(&o[0]), F(&o[1]), n, slope, thr, mx);
    }
    case PYNN_OP_SOFTMAX_AXIS:
    case PYNN_OP_SOFTMAX_AXIS_BACKWARD: {   /* bufs x, y / y, dy, dx; ints len, inner */
        const int64_t li = mul(g[0], g[1]), n = o[0].n;
        EXPECT(g[0] >= 1 && g[1] >= 1 && li >= 1 && n % li == 0);
        EXPECT(op->kind != PYNN_OP_SOFTMAX_AXIS || op->n_bufs == 2 || op->n_bufs == 3);
        for (i = 0; i < op->n_bufs; i++) EXPECT(f32(&o[i]) && holds(&o[i], n));
        if (cx->dry) return PYNN_OK;
        if (op->kind == PYNN_OP_SOFTMAX_AXIS)
            return pynn_softmax_axis_masked_forward(F(&o[1]), F(&o[0]),
                                                    op->n_bufs == 3 ? F(&o[2]) : NULL,
                                                    n / li, g[0], g[1]);
        return pynn_softmax_axis_backward(F(&o[2]), F(&o[0]), F(&o[1]), n / li, g[0], g[1]);
    }
    case PYNN_OP_PRELU:
    case PYNN_OP_PRELU_BACKWARD: {
        /* bufs x, alpha, y / x, alpha, dy, dalpha, dx (dx may be absent);
         * ints rank, dims[rank], shared[rank] */
        const int64_t rank = op->n_ints >= 1 ? g[0] : -1;
        int64_t per = 1, na = 1, rows;
        EXPECT(rank >= 1 && rank <= 16 && op->n_ints == 1 + 2 * rank);
        for (i = 0; i < rank; i++) {
            EXPECT(g[1 + i] >= 1 && (g[1 + rank + i] == 0 || g[1 + rank + i] == 1));
            per = mul(per, g[1 + i]);
            if (!g[1 + rank + i]) na = mul(na, g[1 + i]);
        }
        EXPECT(per >= 1 && na >= 1 && f32(&o[0]) && o[0].n % per == 0);
        rows = o[0].n / per;
        EXPECT(f32(&o[1]) && o[1].n == na);
        if (op->kind == PYNN_OP_PRELU) {
            EXPECT(f32(&o[2]) && holds(&o[2], o[0].n));
            if (cx->dry) return PYNN_OK;
            return pynn_prelu_forward(F(&o[2]), F(&o[0]), F(&o[1]), rows, rank, g + 1,
                                      g + 1 + rank);
        }
        EXPECT(f32(&o[2]) && holds(&o[2], o[0].n) && f32_or_absent(&o[3]) &&
               (o[3].data == NULL || o[3].n == na) &&
               f32_or_absent(&o[4]) && holds(&o[4], o[0].n));
        if (cx->dry) return PYNN_OK;
        return pynn_prelu_backward(F(&o[4]), F(&o[3]), F(&o[0]), F(&o[1]), F(&o[2]), rows,
                                   rank, g + 1, g + 1 + rank);
    }
    /* ---- regularizers and constraints (engineer F) ---- */
    case PYNN_OP_PENALTY: {
        /* bufs x, dx (may be absent); ints slot (a loss slot the value is added to, or -1),
         * accumulate (dx += the gradient, else dx =), per_row (value and gradient divided by
         * the step's rows: an activity penalty); reals l1, l2 */
        const operand *x = &o[0], *dx = &o[1];
        double value = 0.0;
        EXPECT(f32(x) && f32_or_absent(dx) && holds(dx, x->n));
        EXPECT(g[0] >= -1 && g[0] < cx->plan->n_losses && (g[1] == 0 || g[1] == 1) &&
               (g[2] == 0 || g[2] == 1));
        EXPECT(op->reals[0] >= 0.0 && op->reals[1] >= 0.0 && isfinite(op->reals[0]) &&
               isfinite(op->reals[1]));
        if (cx->dry) return PYNN_OK;
        status = pynn_penalty(&value, F(dx), F(x), x->n, op->reals[0], op->reals[1],
                              g[2] ? 1.0 / (double)rows : 1.0, (int)g[1]);
        if (status != PYNN_OK) return status;
        if (g[0] >= 0 && cx->losses != NULL) cx->losses[g[0]] += value;
        return PYNN_OK;
    }
    case PYNN_OP_CONSTRAINT: {   /* bufs w; ints kind, outer, red, inner; reals a, b, rate */
        const operand *w = &o[0];
        EXPECT(f32(w) && g[0] >= 0 && g[0] < PYNN_CONSTRAINT_KINDS && g[1] >= 0 && g[2] >= 0 &&
               g[3] >= 0 && holds(w, mul(mul(g[1], g[2]), g[3])));
        EXPECT(op->reals[0] == op->reals[0] && op->reals[1] == op->reals[1] &&
               op->reals[2] == op->reals[2]);
        if (cx->dry) return PYNN_OK;
        return pynn_constraint(F(w), g[1], g[2], g[3], (int)g[0], op->reals[0], op->reals[1],
                               op->reals[2]);
    }
    /* ---- Embedding and Masking (engineer G) ---- */
    case PYNN_OP_EMBEDDING: {   /* bufs ids, table, y, mask; ints V, D */
        const operand *ids = &o[0], *table = &o[1], *y = &o[2], *mask = &o[3];
        const int64_t V = g[0], D = g[1];
        EXPECT(V >= 1 && D >= 1 && f32(ids) && f32(table) && f32(y) && f32_or_absent(mask));
        EXPECT(holds(table, mul(V, D)) && holds(y, mul(ids->n, D)) && holds(mask, ids->n));
        if (cx->dry) return PYNN_OK;
        return pynn_embedding_forward(F(y), F(mask), F(ids), F(table), ids->n, V, D);
    }
    case PYNN_OP_EMBEDDING_BACKWARD:     /* bufs ids, dy, dtable, work; ints V, D */
    case PYNN_OP_EMBEDDING_GRAD_CLEAR: { /* bufs dtable, work, ids; ints V, D, whole */
        const int bwd = op->kind == PYNN_OP_EMBEDDING_BACKWARD;
        const operand *ids = bwd ? &o[0] : &o[2], *dtable = bwd ? &o[2] : &o[0];
        const operand *work = bwd ? &o[3] : &o[1];
        const int64_t V = g[0], D = g[1], n = ids->n;
        EXPECT(V >= 1 && D >= 1 && f32(ids) && f32(dtable) && work->data != NULL &&
               work->dtype == PYNN_DTYPE_I64 && holds(dtable, mul(V, D)) &&
               holds(work, mul(2, n)) && (n == 0 || V <= INT64_MAX / n));
        if (bwd) EXPECT(f32(&o[1]) && holds(&o[1], mul(n, D)));
        if (!bwd) EXPECT(g[2] == 0 || g[2] == 1);
        if (cx->dry) return PYNN_OK;
        if (bwd)
            return pynn_embedding_backward(F(dtable), (int64_t *)work->data, F(ids), F(&o[1]), n,
                                           V, D);
        return pynn_embedding_grad_clear(F(dtable), g[2] ? NULL : (const int64_t *)work->data,
                                         n, V, D);
    }
    case PYNN_OP_EMBEDDING_SGD: {   /* bufs table, dtable, work, ids; ints V, D */
        const operand *table = &o[0], *dtable = &o[1], *work = &o[2], *ids = &o[3];
        const int64_t V = g[0], D = g[1], n = ids->n;
        EXPECT(V >= 1 && D >= 1 && f32(ids) && f32(table) && f32(dtable) &&
               work->data != NULL && work->dtype == PYNN_DTYPE_I64 &&
               holds(table, mul(V, D)) && holds(dtable, mul(V, D)) && holds(work, mul(2, n)) &&
               (n == 0 || V <= INT64_MAX / n));
        if (cx->dry) return PYNN_OK;
        return pynn_embedding_sgd(F(table), F(dtable), (const int64_t *)work->data, n, V, D,
                                  cx->sparse_lr, cx->sparse_left);
    }
    case PYNN_OP_MASKING:            /* bufs x, y, mask; ints D; reals mask_value */
    case PYNN_OP_MASKING_BACKWARD: { /* bufs dy, mask, dx; ints D */
        const int64_t D = g[0];
        const operand *x = &o[0];
        EXPECT(D >= 1 && f32(x) && x->n % D == 0);
        if (op->kind == PYNN_OP_MASKING) {
            EXPECT(f32(&o[1]) && f32_or_absent(&o[2]) && holds(&o[1], x->n) &&
                   holds(&o[2], x->n / D));
            if (cx->dry) return PYNN_OK;
            return pynn_masking_forward(F(&o[1]), F(&o[2]), F(x), x->n / D, D,
                                        (float)op->reals[0]);
        }
        EXPECT(f32(&o[1]) && f32(&o[2]) && holds(&o[1], x->n / D) && holds(&o[2], x->n));
        if (cx->dry) return PYNN_OK;
        return pynn_masking_backward(F(&o[2]), F(x), F(&o[1]), x->n / D, D);
    }
    default:   /* OP_ROWS_SCOPE is run by run_ops, never here */
        return PYNN_EINVAL;
    }
}

/* ---- two ops as one: a ReLU folded into the layer before it ----------------------
 * A plan writes Activation("relu") over the output of a BatchNormalization or an Add
 * (plan.py's _relu_over_input_calls), and in the backward the ReLU's derivative over its
 * gradient just before the BatchNormalization's backward reads it.  Run one after the
 * other, each op reads and writes the whole 65536 x 32 array of a ResNet-style block (8
 * MB); folded, the ReLU is applied as the layer's kernel stores its output, or as its
 * backward loads the gradient.  The kernels compute the same expressions, so the buffers
 * end bitwise as they would op by op (the condition on each pair below), and whether a
 * pair is folded never shows.  *fused = 1 when op and next ran (both checked already:
 * pynn_plan_check), else 0 and nothing ran. */
static int same_data(const operand *a, const operand *b) {
    return a->data != NULL && a->data == b->data && a->n == b->n;
}

static int run_fused(step_context *cx, const pynn_op *op, const pynn_op *next, int *fused) {
    operand o[8], q[8];
    int64_t i;
    int status;
    *fused = 0;
    if (next->kind != PYNN_OP_ACTIVATION && op->kind != PYNN_OP_ACTIVATION_BACKWARD)
        return PYNN_OK;
    if (op->n_bufs > 8 || next->n_bufs > 8) return PYNN_OK;
    for (i = 0; i < op->n_bufs; i++)
        if ((status = resolve(&o[i], cx, op->bufs[i])) != PYNN_OK) return status;
    for (i = 0; i < next->n_bufs; i++)
        if ((status = resolve(&q[i], cx, next->bufs[i])) != PYNN_OK) return status;
    if (op->kind == PYNN_OP_BATCHNORM_TRAIN && next->kind == PYNN_OP_ACTIVATION &&
        next->ints[1] == PYNN_ACT_RELU) {
        /* bufs x, gamma, beta, mm, mv, mean, inv_std, y; then relu(y) over y */
        const int64_t c = op->ints[0];
        if (!same_data(&q[0], &o[7]) || !same_data(&q[1], &o[7]) || o[0].n != o[7].n)
            return PYNN_OK;
        *fused = 1;
        return pynn_batchnorm_forward_train_act(F(&o[7]), F(&o[5]), F(&o[6]), F(&o[3]),
                                                F(&o[4]), F(&o[0]), F(&o[1]), F(&o[2]),
                                                o[0].n / c, c, (float)op->reals[0],
                                                (float)op->reals[1], PYNN_ACT_RELU);
    }
    if (op->kind == PYNN_OP_MERGE && op->n_bufs == 3 && op->ints[0] == PYNN_MERGE_ADD &&
        next->kind == PYNN_OP_ACTIVATION && next->ints[1] == PYNN_ACT_RELU) {
        /* bufs y, x0, x1; then relu(y) over y */
        if (!same_data(&q[0], &o[0]) || !same_data(&q[1], &o[0]) || o[1].n != o[0].n ||
            o[2].n != o[0].n)
            return PYNN_OK;
        *fused = 1;
        return pynn_merge_add_relu(F(&o[0]), F(&o[1]), F(&o[2]), o[0].n);
    }
    if (op->kind == PYNN_OP_ACTIVATION_BACKWARD && op->ints[1] == PYNN_ACT_RELU &&
        next->kind == PYNN_OP_BATCHNORM_TRAIN_BACKWARD) {
        /* relu: bufs x, y, dy (A), dx (B); batchnorm: bufs x, gamma, mean, inv_std, dy, dgamma,
         * dbeta, dx (C).  Folded when the batchnorm reads B and writes C = B: op by op B
         * ends as C either way, A keeps what it held (or is B), and the ReLU's mask x > 0
         * is read from x (not written here) */
        const int64_t c = next->ints[0];
        if (!same_data(&q[4], &o[3]) || !same_data(&q[7], &o[3]) || o[2].n != o[3].n ||
            q[0].n != o[3].n || o[0].n != o[3].n || o[0].data == o[3].data)
            return PYNN_OK;
        *fused = 1;
        return pynn_batchnorm_backward_act(F(&q[7]), F(&q[5]), F(&q[6]), F(&q[0]), F(&q[1]),
                                           F(&q[2]), F(&q[3]), F(&o[2]), F(&o[0]), q[0].n / c,
                                           c);
    }
    return PYNN_OK;
}

/* Runs (or, dry, checks) every op of the plan for a step of cx->buf_rows rows.  An
 * OP_ROWS_SCOPE (T, count) runs the next `count` ops with rows * T rows (engineer G,
 * TimeDistributed); scopes do not nest. */
static int run_ops(step_context *cx) {
    const pynn_plan *plan = cx->plan;
    int64_t i, scope_end = -1;
    int status;
    cx->rows = cx->buf_rows;
    for (i = 0; i < plan->n_ops; i++) {
        const pynn_op *op = &plan->ops[i];
        if (i == scope_end) {
            cx->rows = cx->buf_rows;
            scope_end = -1;
        }
        if (op->kind == PYNN_OP_ROWS_SCOPE) {
            EXPECT(counts_ok(op) && scope_end == -1 && op->ints[0] >= 1 && op->ints[1] >= 0 &&
                   op->ints[1] < plan->n_ops - i);
            cx->rows = mul(cx->buf_rows, op->ints[0]);
            EXPECT(cx->rows >= 0);
            scope_end = i + 1 + op->ints[1];
            continue;
        }
        if (!cx->dry && i + 1 < plan->n_ops && (scope_end == -1 || i + 1 < scope_end)) {
            int fused;
            status = run_fused(cx, op, &plan->ops[i + 1], &fused);
            if (status != PYNN_OK) return status;
            if (fused) {
                i++;                      /* next ran with op */
                continue;
            }
        }
        status = run_op(cx, op);
        if (status != PYNN_OK) return status;
    }
    cx->rows = cx->buf_rows;
    return PYNN_OK;
}

/* The plan's own description: buffers, and the input/target/output lists. */
static int plan_ok(const pynn_plan *p) {
    int64_t b, j;
    if (p == NULL || p->n_ops < 0 || p->n_bufs < 0 || p->capacity < 1) return 0;
    if (p->n_checked < 0 || (p->checked_rows == NULL && p->n_checked > 0)) return 0;
    if ((p->ops == NULL && p->n_ops > 0) || (p->bufs == NULL && p->n_bufs > 0)) return 0;
    if (p->n_inputs < 0 || p->n_targets < 0 || p->n_outputs < 0 || p->n_losses < 0 ||
        p->n_metrics < 0)
        return 0;
    if ((p->input_bufs == NULL && p->n_inputs > 0) ||
        ((p->target_bufs == NULL || p->target_classes == NULL) && p->n_targets > 0) ||
        (p->output_bufs == NULL && p->n_outputs > 0))
        return 0;
    for (b = 0; b < p->n_bufs; b++) {
        const pynn_buffer *buf = &p->bufs[b];
        if (buf->data == NULL || buf->row_size < 0 || buf->size < 0) return 0;
        if (buf->dtype != PYNN_DTYPE_F32 && buf->dtype != PYNN_DTYPE_I64) return 0;
        /* a batched buffer holds capacity rows (written so that it cannot overflow) */
        if (buf->row_size > 0 && buf->size / p->capacity < buf->row_size) return 0;
    }
    for (j = 0; j < p->n_inputs + p->n_targets + p->n_outputs; j++) {
        const int64_t b2 = j < p->n_inputs ? p->input_bufs[j]
                           : j < p->n_inputs + p->n_targets ? p->target_bufs[j - p->n_inputs]
                           : p->output_bufs[j - p->n_inputs - p->n_targets];
        if (b2 < 0 || b2 >= p->n_bufs || p->bufs[b2].row_size < 1) return 0;
    }
    for (j = 0; j < p->n_targets; j++) {
        const pynn_buffer *t = &p->bufs[p->target_bufs[j]];
        if (p->target_classes[j] < 0) return 0;
        if (p->target_ignore != NULL &&
            (p->target_ignore[2 * j] < 0 || p->target_ignore[2 * j] > 1 ||
             (p->target_ignore[2 * j] == 1 && p->target_classes[j] == 0)))
            return 0;
        if (p->target_classes[j] > 0 ? t->dtype != PYNN_DTYPE_I64 || t->row_size != 1
                                      : t->dtype != PYNN_DTYPE_F32)
            return 0;
    }
    return 1;
}

static int64_t dtype_bytes(int32_t dtype) { return dtype == PYNN_DTYPE_I64 ? 8 : 4; }

/* rows order[r0 .. r0 + rows) of the data (row size `row_bytes`) into a buffer */
static void gather(char *dst, const char *src, int64_t row_bytes, const int64_t *order,
                   int64_t r0, int64_t rows) {
    int64_t i;
    /* rows of the buffer: each copied by one thread */
    PYNN_PARALLEL_FOR(pynn_threads_for(rows * row_bytes / 4),
        for (i = 0; i < rows; i++) {
            const int64_t s = order != NULL ? order[r0 + i] : r0 + i;
            memcpy(dst + i * row_bytes, src + s * row_bytes, (size_t)row_bytes);
        });
}

/* 1 when every value is finite: x * 0 is 0 for finite x and NaN otherwise, so a sum
 * answers for the whole span.  Sixteen independent sums: one would be a chain of dependent
 * adds the compiler may not reorder (no -ffast-math), about 1.5 cycles a value (6 us for a
 * batch of 16 MNIST rows, a tenth of its predict_on_batch); these vectorise. */
#define FINITE_LANES 16
static int all_finite(const float *x, int64_t n) {
    float acc[FINITE_LANES] = {0.0f};
    int64_t i, j;
    for (i = 0; i + FINITE_LANES <= n; i += FINITE_LANES)   /* whole groups of lanes */
        for (j = 0; j < FINITE_LANES; j++)
            acc[j] += x[i + j] * 0.0f;
    for (; i < n; i++)                                        /* the tail */
        acc[0] += x[i] * 0.0f;
    for (j = 1; j < FINITE_LANES; j++)
        acc[0] += acc[j];
    return acc[0] == 0.0f;
}

/* Checks every op dry for a step of `rows` rows. */
static int plan_ops_ok(const pynn_plan *plan, int64_t rows) {
    step_context cx;
    memset(&cx, 0, sizeof cx);
    cx.plan = plan;
    cx.rows = rows;
    cx.buf_rows = rows;
    cx.step = 1;
    cx.dry = 1;
    return run_ops(&cx);
}

int pynn_plan_check(const pynn_plan *plan, int64_t rows) {
    PYNN_RETURN_IF(!plan_ok(plan) || rows < 1 || rows > plan->capacity, PYNN_EINVAL);
    return plan_ops_ok(plan, rows);
}

/* 1 when the caller checked the ops for steps of `rows` rows (pynn_plan_check). */
static int rows_checked(const pynn_plan *plan, int64_t rows) {
    int64_t j;
    for (j = 0; j < plan->n_checked; j++)
        if (plan->checked_rows[j] == rows) return 1;
    return 0;
}

int pynn_plan_run(const pynn_plan *plan, const pynn_plan_feed *feed, int64_t first_row,
                  int64_t batch, int64_t n_steps, int64_t iterations, int check_inputs,
                  double *step_losses, double *step_metrics, int64_t *step_rows) {
    int64_t s, j, i, last_rows;
    const void *direct[PLAN_MAX_DIRECT];
    int direct_ok[PLAN_MAX_DIRECT], any_direct = 0;
    int status;

    /* ---- the plan, the feed and the run's arguments, before anything changes ---- */
    PYNN_RETURN_IF(!plan_ok(plan) || feed == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(batch < 1 || batch > plan->capacity || n_steps < 0 || first_row < 0 ||
                   iterations < 0 || iterations > INT64_MAX - n_steps - 1, PYNN_EINVAL);
    PYNN_RETURN_IF(feed->n_rows < 0 || feed->n_order < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(feed->order == NULL && feed->n_order > feed->n_rows, PYNN_EINVAL);
    if (feed->steps_done != NULL) *feed->steps_done = 0;
    if (n_steps == 0) return PYNN_OK;
    /* every step has at least one row */
    PYNN_RETURN_IF(first_row >= feed->n_order ||
                   (feed->n_order - 1 - first_row) / batch < n_steps - 1, PYNN_EINVAL);
    PYNN_RETURN_IF((plan->n_losses > 0 && step_losses == NULL) ||
                   (plan->n_metrics > 0 && step_metrics == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF((plan->n_inputs > 0 && feed->inputs == NULL) ||
                   (plan->n_targets > 0 && feed->targets == NULL) ||
                   (plan->n_outputs > 0 && feed->outputs == NULL), PYNN_EINVAL);
    for (j = 0; j < plan->n_inputs; j++) PYNN_RETURN_IF(feed->inputs[j] == NULL, PYNN_EINVAL);
    for (j = 0; j < plan->n_targets; j++) PYNN_RETURN_IF(feed->targets[j] == NULL, PYNN_EINVAL);
    for (j = 0; j < plan->n_outputs; j++) PYNN_RETURN_IF(feed->outputs[j] == NULL, PYNN_EINVAL);
    {
        /* the rows this call reads: indices in range */
        const int64_t r_end = first_row + n_steps * batch < feed->n_order
                                  ? first_row + n_steps * batch : feed->n_order;
        if (feed->order != NULL)
            for (i = first_row; i < r_end; i++)
                PYNN_RETURN_IF(feed->order[i] < 0 || feed->order[i] >= feed->n_rows, PYNN_EINVAL);
        /* the ops, for a full step and for the last one (the only one that may be shorter) */
        last_rows = r_end - (first_row + (n_steps - 1) * batch);
        status = n_steps > 1 && !rows_checked(plan, batch) ? plan_ops_ok(plan, batch) : PYNN_OK;
        if (status == PYNN_OK && (n_steps == 1 || last_rows != batch) &&
            !rows_checked(plan, last_rows))
            status = plan_ops_ok(plan, last_rows);
        if (status != PYNN_OK) return status;
    }

    /* ---- the inputs the ops read in place: rows in order, allowed by the plan, and not
     * sharing memory with an output (which is copied out of the buffer) ---- */
    for (j = 0; j < PLAN_MAX_DIRECT; j++) {
        direct[j] = NULL;
        direct_ok[j] = 0;
    }
    if (plan->input_direct != NULL && feed->order == NULL)
        for (j = 0; j < plan->n_inputs && j < PLAN_MAX_DIRECT; j++) {
            const void *data = plan->bufs[plan->input_bufs[j]].data;
            int64_t k;
            direct_ok[j] = plan->input_direct[j] != 0;
            for (k = 0; k < plan->n_outputs; k++)
                if (plan->bufs[plan->output_bufs[k]].data == data) direct_ok[j] = 0;
            any_direct |= direct_ok[j];
        }

    /* ---- the steps ---- */
    for (s = 0; s < n_steps; s++) {
        const int64_t r0 = first_row + s * batch;
        const int64_t rows = r0 + batch < feed->n_order ? batch : feed->n_order - r0;
        double *losses = step_losses != NULL ? step_losses + s * plan->n_losses : NULL;
        double *metrics = step_metrics != NULL ? step_metrics + s * plan->n_metrics : NULL;
        step_context cx;

        /* labels first: a step refused here has changed nothing */
        for (j = 0; j < plan->n_targets; j++) {
            const int64_t *labels = (const int64_t *)feed->targets[j];
            const int64_t classes = plan->target_classes[j];
            if (classes == 0) continue;
            int64_t ignore = 0;
            const int has_ignore = target_ignores(plan, j, &ignore);
            for (i = 0; i < rows; i++) {
                const int64_t label = labels[feed->order != NULL ? feed->order[r0 + i] : r0 + i];
                if ((label < 0 || label >= classes) && !(has_ignore && label == ignore))
                    return PYNN_ELABEL;
            }
        }
        /* the step's rows of every input and target into their buffers (or, for an
         * input the ops may read in place, where they lie) */
        for (j = 0; j < plan->n_inputs + plan->n_targets; j++) {
            const int is_input = j < plan->n_inputs;
            const pynn_buffer *b =
                &plan->bufs[is_input ? plan->input_bufs[j] : plan->target_bufs[j - plan->n_inputs]];
            const void *src = is_input ? feed->inputs[j] : feed->targets[j - plan->n_inputs];
            const int64_t row_bytes = b->row_size * dtype_bytes(b->dtype);
            const void *rows_at = b->data;
            if (is_input && direct_ok[j]) {
                rows_at = (const char *)src + r0 * row_bytes;
                direct[j] = rows_at;
            } else {
                gather((char *)b->data, (const char *)src, row_bytes, feed->order, r0, rows);
            }
            if (check_inputs && b->dtype == PYNN_DTYPE_F32 &&
                !all_finite((const float *)rows_at, rows * b->row_size))
                return PYNN_ENONFINITE;
        }

        /* the ops, in order */
        if (losses != NULL) for (j = 0; j < plan->n_losses; j++) losses[j] = 0.0;
        if (metrics != NULL) for (j = 0; j < plan->n_metrics; j++) metrics[j] = 0.0;
        cx.plan = plan;
        cx.rows = rows;
        cx.buf_rows = rows;
        cx.step = iterations + s + 1;
        cx.losses = losses;
        cx.metrics = metrics;
        cx.dry = 0;
        cx.sparse_left = 0;
        cx.sparse_lr = 0.0f;
        cx.direct = any_direct ? direct : NULL;
        status = run_ops(&cx);
        if (status != PYNN_OK) return status;

        /* predictions out, at the step's positions in the order */
        for (j = 0; j < plan->n_outputs; j++) {
            const pynn_buffer *b = &plan->bufs[plan->output_bufs[j]];
            const int64_t row_bytes = b->row_size * dtype_bytes(b->dtype);
            memcpy((char *)feed->outputs[j] + r0 * row_bytes, b->data, (size_t)(rows * row_bytes));
        }
        if (step_rows != NULL) step_rows[s] = rows;
        if (feed->steps_done != NULL) *feed->steps_done = s + 1;
        /* an interrupt (Ctrl-C) ends the run between steps */
        if (feed->stop != NULL && *feed->stop) return PYNN_OK;
    }
    return PYNN_OK;
}
