/* rnn_generic.c -- the recurrent layers' row work (rnn_kernel.h) built for the baseline
 * target (SSE2 on x86-64): rnn.c's table at PYNN_LEVEL_GENERIC. */
#include "internal.h"
#define RNN_KERNELS pynn_rnn_generic
#include "rnn_kernel.h"
