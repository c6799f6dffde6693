/* exp_span_internal.h -- the constants of glibc's expf that exp_span_avx2.c and
 * exp_span_avx512.c reproduce (the algorithm: exp_span.c).  Not installed. */
#ifndef PYNN_EXP_SPAN_INTERNAL_H
#define PYNN_EXP_SPAN_INTERNAL_H

#include <stdint.h>

/* 2^(i/32) for i = 0 .. 31, as double bits, minus i << 47 (glibc's __exp2f_data.tab):
 * adding ki << 47 to the bits of tab[ki % 32] scales it by 2^(ki / 32) */
extern const uint64_t pynn_exp2f_tab[32];

#define EXPF_INVLN2N 0x1.71547652b82fep+5      /* 32 / ln 2 */
#define EXPF_SHIFT 0x1.8p+52
#define EXPF_C0 0x1.c6af84b912394p-20           /* poly_scaled: C / 32^3, / 32^2, / 32 */
#define EXPF_C1 0x1.ebfce50fac4f3p-13
#define EXPF_C2 0x1.62e42ff0c52d6p-6
#define EXPF_OFLOW 0x1.62e42ep6f                /* above: +inf */
#define EXPF_UFLOW (-0x1.9fe368p6f)             /* below: 0 */
#define EXPF_MAY_UFLOW (-0x1.9d1d9ep6f)         /* below (down to EXPF_UFLOW): 0x1p-149 */

#endif /* PYNN_EXP_SPAN_INTERNAL_H */
