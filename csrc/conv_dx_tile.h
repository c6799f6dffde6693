/* conv_dx_tile.h -- one tile kernel of the input gradient (contract: conv_dx_internal.h),
 * CONV_DX_MR rows x CONV_DX_NV vectors, in the primitives of conv_dx_kernel.h, which
 * includes this file once per shape (no include guard on purpose).
 *
 * The dz rows are not packed: every tap, each row's F floats are read where they lie in
 * dz (the row of an absent term reads zeros) and broadcast straight from there, the
 * kernel's rows streamed from the packed panel: one rank-1 update of the MR x NR
 * accumulators per f, as the GEMM's micro-kernel does from its packed A.  A tap that no
 * row of the tile has is skipped: its terms would all be exact zeros, and an accumulator
 * that starts at +0 is never -0, so adding them changes no bit. */
#define NR_ (CONV_DX_LANES * CONV_DX_NV)

static void CONV_DX_TILE_NAME(CONV_DX_MR, CONV_DX_NV)(const conv_dx_rows *rows,
                                                    const conv_dx_phase *ph, const float *bp,
                                                    int64_t n) {
    conv_dx_vec acc[CONV_DX_MR][CONV_DX_NV];
    const float *restrict dz = ph->dz;
    const int64_t m = rows->m, oh = ph->oh, ow = ph->ow, f = ph->f;
    int64_t u, v, p;
    int i, k;
#pragma GCC unroll 16
    for (i = 0; i < CONV_DX_MR; i++)          /* M: rows of the tile */
#pragma GCC unroll 4
        for (k = 0; k < CONV_DX_NV; k++)      /* N: vectors of a row */
            acc[i][k] = DX_ZERO();

    for (u = 0; u < ph->tu; u++)              /* taps: kernel rows of the phase */
        for (v = 0; v < ph->tv; v++) {        /* taps: kernel columns of the phase */
            const float *restrict b = bp + (u * ph->tv + v) * f * NR_;
            const int64_t shift = (u * ow + v) * f;
            const float *a[CONV_DX_MR];
            int any = 0;
#pragma GCC unroll 16
            for (i = 0; i < CONV_DX_MR; i++) {     /* M: where each row's dz lies */
                /* rows past m have i0 = -1: never a tap */
                const int ok = ((uint64_t)(rows->i0[i] - u) < (uint64_t)oh) &
                               ((uint64_t)(rows->j0[i] - v) < (uint64_t)ow);
                a[i] = ok ? dz + (rows->off[i] - shift) : ph->zeros;
                any |= ok;
            }
            if (!any) continue;
            for (p = 0; p < f; p++) {         /* K: the filters, in order */
                conv_dx_vec bv[CONV_DX_NV];
#pragma GCC unroll 4
                for (k = 0; k < CONV_DX_NV; k++)
                    bv[k] = DX_LOAD(b + p * NR_ + k * CONV_DX_LANES);
#pragma GCC unroll 16
                for (i = 0; i < CONV_DX_MR; i++) { /* M: one broadcast per row */
                    const conv_dx_vec av = DX_SET1(a[i][p]);
#pragma GCC unroll 4
                    for (k = 0; k < CONV_DX_NV; k++)
                        acc[i][k] = DX_FMA(av, bv[k], acc[i][k]);
                }
            }
        }

    if (n == NR_) {
#pragma GCC unroll 16
        for (i = 0; i < CONV_DX_MR; i++) {    /* M: rows of dx stored */
            if (i >= m) break;
#pragma GCC unroll 4
            for (k = 0; k < CONV_DX_NV; k++)
                DX_STOREU(rows->c[i] + k * CONV_DX_LANES, acc[i][k]);
        }
    } else {
        /* the last panel: only n channels of a row exist */
        float row[NR_] __attribute__((aligned(64)));
#pragma GCC unroll 16
        for (i = 0; i < CONV_DX_MR; i++) {
            if (i >= m) break;
#pragma GCC unroll 4
            for (k = 0; k < CONV_DX_NV; k++)
                DX_STOREU(row + k * CONV_DX_LANES, acc[i][k]);
            memcpy(rows->c[i], row, (size_t)n * sizeof(float));
        }
    }
}

#undef NR_
#undef CONV_DX_MR
#undef CONV_DX_NV
