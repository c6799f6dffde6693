/* rnn_avx512.c -- the recurrent layers' row work (rnn_kernel.h) compiled with the AVX-512
 * flags (only this translation unit): rnn.c's table at PYNN_LEVEL_AVX512. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define RNN_KERNELS pynn_rnn_avx512
#include "rnn_kernel.h"
#endif
