/* conv_dx_flane.h -- one "filter lanes" tile kernel of the input gradient, for layers with
 * a few channels (a first layer's RGB or grey input), where the channel panels of
 * conv_dx_tile.h would be mostly empty lanes.  CONV_DX_FC channels (the whole of C) x
 * CONV_DX_FP rows, the filters in the lanes of a logical 16-float vector; conv_dx_kernel.h
 * includes this file once per FC (no include guard on purpose).
 *
 * Each dx element is a dot product over the phase's taps and the filters: lane l
 * accumulates the terms of the filters f with f mod 16 = l, taps in row-major order and f
 * increasing within a lane (one fused multiply-add per term, a multiply and an add in the
 * portable kernel); then the 16 lanes are added in a fixed tree (dx16_sum).  The logical
 * vector is 16 lanes at every level (two registers at AVX2), so AVX2 and AVX-512 agree
 * bitwise here too.  (Two or three vectors of filters per step, each its own
 * accumulator, left fewer rows per tile and ran slower.)  The packed kernel: per tap, FC
 * rows of fpad = F rounded up to 16 floats (zeros past F).  Absent terms read the zero
 * row, as in conv_dx_tile.h. */
#define FP_ CONV_DX_FP
#define FC_ CONV_DX_FC

static void CONV_DX_FLANE_NAME(CONV_DX_FC)(const conv_dx_rows *rows,
                                                     const conv_dx_phase *ph, const float *bp,
                                                     int64_t n) {
    dx16 acc[FP_][FC_];
    const float *restrict dz = ph->dz;
    const int64_t oh = ph->oh, ow = ph->ow, f = ph->f, fpad = (f + 15) / 16 * 16;
    const int64_t full = f / 16 * 16;    /* floats in whole vectors */
    int64_t u, v, f0;
    int i, c;
#pragma GCC unroll 8
    for (i = 0; i < FP_; i++)
#pragma GCC unroll 4
        for (c = 0; c < FC_; c++) acc[i][c] = dx16_zero();

    for (u = 0; u < ph->tu; u++)              /* taps: kernel rows of the phase */
        for (v = 0; v < ph->tv; v++) {        /* taps: kernel columns of the phase */
            const float *restrict wt = bp + (u * ph->tv + v) * FC_ * fpad;
            const int64_t shift = (u * ow + v) * f;
            const float *a[FP_];
            int any = 0;
#pragma GCC unroll 8
            for (i = 0; i < FP_; i++) {       /* M: where each row's dz lies */
                const int ok = ((uint64_t)(rows->i0[i] - u) < (uint64_t)oh) &
                               ((uint64_t)(rows->j0[i] - v) < (uint64_t)ow);
                a[i] = ok ? dz + (rows->off[i] - shift) : ph->zeros;
                any |= ok;
            }
            if (!any) continue;
            for (f0 = 0; f0 < fpad; f0 += 16) {   /* K: 16 filters at a time */
                dx16 wv[FC_];
#pragma GCC unroll 4
                for (c = 0; c < FC_; c++) wv[c] = dx16_load(wt + c * fpad + f0);
                if (f0 < full) {
#pragma GCC unroll 8
                    for (i = 0; i < FP_; i++) {
                        const dx16 d = dx16_load(a[i] + f0);
#pragma GCC unroll 4
                        for (c = 0; c < FC_; c++) acc[i][c] = dx16_fma(d, wv[c], acc[i][c]);
                    }
                } else {                      /* the last vector ends inside F */
#pragma GCC unroll 8
                    for (i = 0; i < FP_; i++) {
                        const dx16 d = dx16_load_part(a[i] + f0, f - f0);
#pragma GCC unroll 4
                        for (c = 0; c < FC_; c++) acc[i][c] = dx16_fma(d, wv[c], acc[i][c]);
                    }
                }
            }
        }

#pragma GCC unroll 8
    for (i = 0; i < FP_; i++) {               /* M: rows of dx stored */
        if (i >= rows->m) break;
#pragma GCC unroll 4
        for (c = 0; c < FC_; c++) rows->c[i][c] = dx16_sum(acc[i][c]);
    }
    (void)n;
}

#undef FP_
#undef FC_
#undef CONV_DX_FP
#undef CONV_DX_FC
