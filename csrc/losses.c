/* losses.c -- placeholder, replaced by its implementation. */
#include "internal.h"
int pynn_loss(float *grad, double *loss, const float *pred, const float *target,
              int64_t rows, int64_t cols, int kind, int from_logits) { return PYNN_ENOTSUP; }
int pynn_sparse_cce(float *grad, double *loss, const float *pred, const int64_t *labels,
                    int64_t rows, int64_t cols, int from_logits) { return PYNN_ENOTSUP; }
