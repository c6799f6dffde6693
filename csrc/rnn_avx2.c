/* rnn_avx2.c -- the recurrent layers' row work (rnn_kernel.h) compiled with the AVX2 + FMA
 * flags (only this translation unit): rnn.c's table at PYNN_LEVEL_AVX2. */
#include "internal.h"

#ifdef PYNN_HAVE_X86_KERNELS
#define RNN_KERNELS pynn_rnn_avx2
#include "rnn_kernel.h"
#endif
