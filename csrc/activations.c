/* activations.c -- placeholder, replaced by its implementation. */
#include "internal.h"
int pynn_activation_forward(float *y, const float *x, int64_t rows, int64_t cols,
                            int act, float alpha) { return PYNN_ENOTSUP; }
int pynn_activation_backward(float *dx, const float *x, const float *y, const float *dy,
                             int64_t rows, int64_t cols, int act, float alpha) { return PYNN_ENOTSUP; }
