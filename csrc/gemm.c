/* gemm.c -- placeholder, replaced by its implementation. */
#include "internal.h"
int pynn_gemm_select_kernel(int which) { return PYNN_ENOTSUP; }
int pynn_gemm_kernel(void) { return PYNN_ENOTSUP; }
int pynn_gemm_kernel_supported(int which) { return PYNN_ENOTSUP; }
int pynn_sgemm(float *C, const float *A, const float *B,
               int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, float beta, int64_t lda, int64_t ldb, int64_t ldc) { return PYNN_ENOTSUP; }
int pynn_sgemm_bias_act(float *Z, float *Y, const float *A, const float *B,
                        const float *bias, int trans_a, int trans_b,
                        int64_t M, int64_t N, int64_t K, int act, float act_alpha) { return PYNN_ENOTSUP; }
