/* optimizers.c -- placeholder, replaced by its implementation. */
#include "internal.h"
int pynn_sgd_update(float *w, float *m, const float *g, int64_t n,
                    float lr, float momentum, int nesterov) { return PYNN_ENOTSUP; }
int pynn_adam_update(float *w, float *m, float *v, const float *g, int64_t n,
                     float lr_t, float beta1, float beta2, float epsilon) { return PYNN_ENOTSUP; }
int pynn_rmsprop_update(float *w, float *v, float *mom, const float *g, int64_t n,
                        float lr, float rho, float momentum, float epsilon) { return PYNN_ENOTSUP; }
