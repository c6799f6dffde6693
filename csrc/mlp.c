/* mlp.c -- the fused training path of a network of Dense layers.
 *
 * One call trains on a run of batches: gather the batch's rows, forward through every
 * layer, loss and gradient, backward, optimizer update, next batch.  No Python between
 * the steps and no allocation: every buffer lives in the caller's workspace.
 *
 * It is the per-layer path of pynn/layers/core.py (Dense.forward / Dense.backward),
 * pynn/models.py (_train_step) and pynn/optimizers.py with the Python taken out: the
 * same kernels are called in the same order on the same values, so the two paths give
 * bitwise-identical weights (tests/test_fused_training.py checks it).
 *
 * Workspace layout for batches of B rows (floats), in order:
 *   xb      B x sizes[0]             the batch's input rows, gathered
 *   tb      B x sizes[L]             the batch's targets (not for sparse labels)
 *   z[l]    B x sizes[l+1]           pre-activations of layer l
 *   y[l]    B x sizes[l+1]           activations of layer l (absent: y[l] = z[l] when linear)
 *   grad    B x sizes[L]             d loss / d output
 *   probs   B x sizes[L]             predictions for the metrics
 *   dx[2]   B x max hidden width     gradients flowing down, ping-pong
 */
#include <math.h>
#include <string.h>
#include "internal.h"

typedef struct {
    float *xb, *tb, *grad, *probs, *dx[2];
    float *z[PYNN_MLP_MAX_LAYERS], *y[PYNN_MLP_MAX_LAYERS];
    int64_t size;                     /* floats used */
} mlp_workspace;

static int config_ok(const pynn_mlp_config *cfg) {
    int64_t l;
    if (cfg == NULL || cfg->n_layers < 1 || cfg->n_layers > PYNN_MLP_MAX_LAYERS) return 0;
    for (l = 0; l <= cfg->n_layers; l++)
        if (cfg->sizes[l] < 1) return 0;
    for (l = 0; l < cfg->n_layers; l++)
        if (cfg->acts[l] < PYNN_ACT_LINEAR || cfg->acts[l] > PYNN_ACT_GELU) return 0;
    if (cfg->loss < PYNN_LOSS_MSE || cfg->loss > PYNN_LOSS_SPARSE_CCE) return 0;
    if (cfg->predict_act < PYNN_ACT_LINEAR || cfg->predict_act > PYNN_ACT_GELU) return 0;
    if (cfg->n_metrics < 0 || cfg->n_metrics > PYNN_MLP_MAX_METRICS) return 0;
    for (l = 0; l < cfg->n_metrics; l++)
        if (cfg->metrics[l] < PYNN_METRIC_BINARY_ACCURACY || cfg->metrics[l] > PYNN_METRIC_MAE) return 0;
    if (cfg->optimizer < PYNN_OPT_SGD || cfg->optimizer > PYNN_OPT_RMSPROP) return 0;
    return 1;
}

/* 1 when every value is finite: x * 0 is 0 for finite x and NaN otherwise, so one
 * sum (which vectorises) answers for the whole span. */
static int all_finite(const float *x, int64_t n) {
    float acc = 0.0f;
    int64_t i;
    for (i = 0; i < n; i++) acc += x[i] * 0.0f;
    return acc == 0.0f;
}

int64_t pynn_mlp_num_params(const pynn_mlp_config *cfg) {
    int64_t l, n = 0;
    if (!config_ok(cfg)) return PYNN_EINVAL;
    for (l = 0; l < cfg->n_layers; l++)
        n += cfg->sizes[l] * cfg->sizes[l + 1] + (cfg->use_bias[l] ? cfg->sizes[l + 1] : 0);
    return n;
}

/* Lays the workspace out (base may be NULL to only measure it). */
static void layout(mlp_workspace *ws, float *base, const pynn_mlp_config *cfg, int64_t batch) {
    const int64_t L = cfg->n_layers, out = cfg->sizes[L];
    int64_t l, at = 0, widest = 1;
#define TAKE(n) (base ? base + (at += (n)) - (n) : (at += (n), (float *)NULL))
    ws->xb = TAKE(batch * cfg->sizes[0]);
    ws->tb = cfg->loss == PYNN_LOSS_SPARSE_CCE ? NULL : TAKE(batch * out);
    for (l = 0; l < L; l++) {
        ws->z[l] = TAKE(batch * cfg->sizes[l + 1]);
        ws->y[l] = cfg->acts[l] == PYNN_ACT_LINEAR ? ws->z[l] : TAKE(batch * cfg->sizes[l + 1]);
    }
    ws->grad = TAKE(batch * out);
    ws->probs = cfg->predict_act == PYNN_ACT_LINEAR ? ws->y[L - 1] : TAKE(batch * out);
    for (l = 1; l < L; l++) widest = cfg->sizes[l] > widest ? cfg->sizes[l] : widest;
    ws->dx[0] = TAKE(batch * widest);
    ws->dx[1] = TAKE(batch * widest);
#undef TAKE
    ws->size = at;
}

int64_t pynn_mlp_workspace_size(const pynn_mlp_config *cfg, int64_t batch) {
    mlp_workspace ws;
    if (!config_ok(cfg) || batch < 1) return PYNN_EINVAL;
    layout(&ws, NULL, cfg, batch);
    return ws.size;
}

/* Sum over the batch's rows of one metric's per-sample value (pynn/metrics.py). */
static double metric_sum(int metric, const float *pred, const float *t, const int64_t *labels,
                         int64_t rows, int64_t cols) {
    double sum = 0.0;
    int64_t r, j;
    /* rows, in order */
    for (r = 0; r < rows; r++) {
        const float *p = pred + r * cols;
        const float *tr = t != NULL ? t + r * cols : NULL;
        int64_t arg_p = 0, arg_t = 0;
        float hits = 0.0f, abs_err = 0.0f;
        switch (metric) {
        case PYNN_METRIC_BINARY_ACCURACY:
            for (j = 0; j < cols; j++) hits += (float)((p[j] > 0.5f ? 1.0f : 0.0f) == tr[j]);
            sum += (double)(hits / (float)cols);
            break;
        case PYNN_METRIC_CATEGORICAL_ACCURACY:
        case PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY:
            for (j = 1; j < cols; j++) arg_p = p[j] > p[arg_p] ? j : arg_p;
            if (metric == PYNN_METRIC_SPARSE_CATEGORICAL_ACCURACY) {
                arg_t = labels[r];
            } else {
                for (j = 1; j < cols; j++) arg_t = tr[j] > tr[arg_t] ? j : arg_t;
            }
            sum += arg_p == arg_t ? 1.0 : 0.0;
            break;
        default: /* PYNN_METRIC_MAE; sparse labels count as one-hot targets */
            for (j = 0; j < cols; j++) {
                float target = tr != NULL ? tr[j] : (labels[r] == j ? 1.0f : 0.0f);
                abs_err += fabsf(target - p[j]);
            }
            sum += (double)(abs_err / (float)cols);
            break;
        }
    }
    return sum;
}

/* The optimizer's update of every parameter (pynn/optimizers.py, one call over the
 * flat arrays as Optimizer.apply makes it). */
static int optimizer_update(float *params, float *grads, float *slot1, float *slot2,
                            int64_t n, int64_t step, const pynn_mlp_config *cfg) {
    switch (cfg->optimizer) {
    case PYNN_OPT_SGD:
        return pynn_sgd_update(params, cfg->momentum != 0.0f ? slot1 : NULL, grads, n, cfg->lr,
                               cfg->momentum, cfg->nesterov);
    case PYNN_OPT_ADAM: {
        /* pynn.backend.reference.adam_lr_t, term for term */
        double lr_t = cfg->lr_d * sqrt(1.0 - pow(cfg->beta2_d, (double)step)) /
                      (1.0 - pow(cfg->beta1_d, (double)step));
        return pynn_adam_update(params, slot1, slot2, grads, n, (float)lr_t, cfg->beta1,
                                cfg->beta2, cfg->epsilon);
    }
    default:
        return pynn_rmsprop_update(params, slot1, cfg->momentum != 0.0f ? slot2 : NULL, grads, n,
                                   cfg->lr, cfg->rho, cfg->momentum, cfg->epsilon);
    }
}

/* One training step on the batch already gathered into ws (rows x ...). */
static int train_batch(float *params, float *grads, float *slot1, float *slot2, int64_t n_params,
                       double *loss, double *metrics, const mlp_workspace *ws,
                       const int64_t *labels, int64_t rows, int64_t step,
                       const pynn_mlp_config *cfg) {
    const int64_t L = cfg->n_layers, out = cfg->sizes[L];
    const float *w[PYNN_MLP_MAX_LAYERS], *b[PYNN_MLP_MAX_LAYERS];
    float *dw[PYNN_MLP_MAX_LAYERS], *db[PYNN_MLP_MAX_LAYERS];
    const float *a;
    float *dy;
    int64_t l, at = 0, m;
    int status;

    /* layers: where each one's kernel and bias (and their gradients) sit in the flat arrays */
    for (l = 0; l < L; l++) {
        w[l] = params + at;
        dw[l] = grads + at;
        at += cfg->sizes[l] * cfg->sizes[l + 1];
        b[l] = cfg->use_bias[l] ? params + at : NULL;
        db[l] = cfg->use_bias[l] ? grads + at : NULL;
        at += cfg->use_bias[l] ? cfg->sizes[l + 1] : 0;
    }

    /* forward, layer by layer: z = a W + b, y = act(z) (Dense.forward) */
    a = ws->xb;
    for (l = 0; l < L; l++) {
        status = pynn_sgemm_bias_act(ws->z[l], ws->y[l], a, w[l], b[l], 0, 0, rows,
                                     cfg->sizes[l + 1], cfg->sizes[l], cfg->acts[l], cfg->alphas[l]);
        if (status != PYNN_OK) return status;
        a = ws->y[l];
    }

    /* the loss and its gradient (Sequential._loss_and_outputs) */
    if (cfg->loss == PYNN_LOSS_SPARSE_CCE)
        status = pynn_sparse_cce(ws->grad, loss, a, labels, rows, out, cfg->from_logits);
    else
        status = pynn_loss(ws->grad, loss, a, ws->tb, rows, out, cfg->loss, cfg->from_logits);
    if (status != PYNN_OK) return status;
    if (cfg->n_metrics > 0) {
        if (cfg->predict_act != PYNN_ACT_LINEAR) {
            status = pynn_activation_forward(ws->probs, a, rows, out, cfg->predict_act, 0.0f);
            if (status != PYNN_OK) return status;
        }
        for (m = 0; m < cfg->n_metrics; m++)
            metrics[m] = metric_sum(cfg->metrics[m], cfg->predict_act != PYNN_ACT_LINEAR ? ws->probs : a,
                                    ws->tb, labels, rows, out);
    }

    /* backward, last layer first (Dense.backward -> CpuBackend.dense_backward) */
    dy = ws->grad;
    for (l = L - 1; l >= 0; l--) {
        const float *x = l > 0 ? ws->y[l - 1] : ws->xb;
        const int64_t n_in = cfg->sizes[l], n_out = cfg->sizes[l + 1];
        float *dx = l > 0 ? ws->dx[l % 2] : NULL;
        if (db[l] != NULL)
            status = pynn_activation_backward_bias_grad(dy, db[l], ws->z[l], ws->y[l], dy, rows, n_out,
                                                        cfg->acts[l], cfg->alphas[l]);
        else
            status = pynn_activation_backward(dy, ws->z[l], ws->y[l], dy, rows, n_out, cfg->acts[l],
                                              cfg->alphas[l]);
        if (status != PYNN_OK) return status;
        /* dW = x^T dz */
        status = pynn_sgemm(dw[l], x, dy, 1, 0, n_in, n_out, rows, 1.0f, 0.0f, n_in, n_out, n_out);
        if (status != PYNN_OK) return status;
        if (dx != NULL) {
            /* dx = dz W^T */
            status = pynn_sgemm(dx, dy, w[l], 0, 1, rows, n_in, n_out, 1.0f, 0.0f, n_out, n_out, n_in);
            if (status != PYNN_OK) return status;
            dy = dx;
        }
    }
    return optimizer_update(params, grads, slot1, slot2, n_params, step, cfg);
}

int pynn_mlp_train(float *params, float *grads, float *slot1, float *slot2,
                   double *step_losses, double *step_metrics, float *workspace,
                   int64_t *labels_ws,
                   const float *x, const float *targets, const int64_t *labels,
                   const int64_t *order, int64_t n_rows, int64_t n_order, int64_t first_row,
                   int64_t batch, int64_t n_steps, int64_t iterations,
                   const pynn_mlp_config *cfg) {
    const int sparse = cfg != NULL && cfg->loss == PYNN_LOSS_SPARSE_CCE;
    const int needs_slot1 = cfg != NULL && (cfg->optimizer != PYNN_OPT_SGD || cfg->momentum != 0.0f);
    const int needs_slot2 = cfg != NULL && (cfg->optimizer == PYNN_OPT_ADAM ||
                                            (cfg->optimizer == PYNN_OPT_RMSPROP && cfg->momentum != 0.0f));
    mlp_workspace ws;
    int64_t s, n_params, in, out;

    PYNN_RETURN_IF(!config_ok(cfg), PYNN_EINVAL);
    PYNN_RETURN_IF(batch < 1 || n_steps < 0 || n_rows < 0 || n_order < 0 || first_row < 0 ||
                   iterations < 0, PYNN_EINVAL);
    PYNN_RETURN_IF(params == NULL || grads == NULL || step_losses == NULL || workspace == NULL ||
                   x == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF((needs_slot1 && slot1 == NULL) || (needs_slot2 && slot2 == NULL), PYNN_EINVAL);
    PYNN_RETURN_IF(sparse ? (labels == NULL || labels_ws == NULL) : targets == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(cfg->n_metrics > 0 && step_metrics == NULL, PYNN_EINVAL);
    PYNN_RETURN_IF(order == NULL && n_order > n_rows, PYNN_EINVAL);
    n_params = pynn_mlp_num_params(cfg);
    in = cfg->sizes[0];
    out = cfg->sizes[cfg->n_layers];
    layout(&ws, workspace, cfg, batch);

    /* steps: consecutive batches of the order */
    for (s = 0; s < n_steps; s++) {
        const int64_t r0 = first_row + s * batch;
        const int64_t r1 = r0 + batch < n_order ? r0 + batch : n_order;
        const int64_t rows = r1 - r0;
        int64_t i;
        int status;
        if (rows <= 0) return PYNN_EINVAL;
        /* rows of the batch: gather them (and check every index and label first) */
        for (i = 0; i < rows; i++) {
            const int64_t src = order != NULL ? order[r0 + i] : r0 + i;
            if (src < 0 || src >= n_rows) return PYNN_EINVAL;
            if (sparse && (labels[src] < 0 || labels[src] >= out)) return PYNN_ELABEL;
        }
        for (i = 0; i < rows; i++) {
            const int64_t src = order != NULL ? order[r0 + i] : r0 + i;
            memcpy(ws.xb + i * in, x + src * in, (size_t)in * sizeof(float));
            if (sparse)
                labels_ws[i] = labels[src];
            else
                memcpy(ws.tb + i * out, targets + src * out, (size_t)out * sizeof(float));
        }
        if (cfg->check_inputs && (!all_finite(ws.xb, rows * in) ||
                                  (!sparse && !all_finite(ws.tb, rows * out))))
            return PYNN_ENONFINITE;
        status = train_batch(params, grads, slot1, slot2, n_params, &step_losses[s],
                             step_metrics != NULL ? step_metrics + s * cfg->n_metrics : NULL, &ws,
                             labels_ws, rows, iterations + s + 1, cfg);
        if (status != PYNN_OK) return status;
    }
    return PYNN_OK;
}
