/* test_image.c -- the geometric image kernels (csrc/image.c) under ASan/UBSan: hand
 * values (rotation by a quarter turn is rot90, the fill modes at the border, a 2x2 -> 4x4
 * bilinear resize, flips, crops), random parameters in range, 1 and 2 threads bitwise
 * equal on a larger image, and refusals (PYNN_EINVAL, nothing written).  The kernels'
 * parity with the NumPy reference is tests/test_image_layers.py's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pynn.h"

static int failures = 0;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static void test_rot90(void) {
    enum { N = 5 };
    float x[N * N], y[N * N], params[8];
    const double r[PYNN_RANDOM_REALS] = {0.25, 0.25, 0, 0, 0};
    int i, j, interp, bad = 0;
    for (i = 0; i < N * N; i++) x[i] = (float)i;
    CHECK(pynn_image_random(params, 1, N, N, 0, 0, PYNN_RANDOM_ROTATION, r, 1, 1) == PYNN_OK,
          "rotation params");
    for (interp = 0; interp < 2; interp++) {
        CHECK(pynn_affine_transform(y, x, params, 1, N, N, 1, interp, PYNN_FILL_CONSTANT, -1.0f)
              == PYNN_OK, "affine");
        for (i = 0; i < N; i++)          /* np.rot90: y[i, j] = x[j, N - 1 - i] */
            for (j = 0; j < N; j++)
                bad += fabsf(y[i * N + j] - x[j * N + N - 1 - i]) > 1e-5f;
    }
    CHECK(bad == 0, "rotation by a quarter turn: %d pixels differ from rot90", bad);
}

static void test_fill_modes(void) {
    const float x[4] = {1, 2, 3, 4};
    const float expected[4][4] = {{2, 1, 1, 2}, {3, 4, 1, 2}, {9, 9, 1, 2}, {1, 1, 1, 2}};
    float params[8] = {1, 0, -2, 0, 1, 0, 0, 0}, y[4];
    int mode, j;
    for (mode = 0; mode < 4; mode++) {
        CHECK(pynn_affine_transform(y, x, params, 1, 1, 4, 1, PYNN_INTERP_NEAREST, mode, 9.0f)
              == PYNN_OK, "affine");
        for (j = 0; j < 4; j++)
            CHECK(y[j] == expected[mode][j], "fill mode %d, column %d: %g != %g", mode, j,
                  (double)y[j], (double)expected[mode][j]);
    }
    params[2] = -0.5f;
    CHECK(pynn_affine_transform(y, x, params, 1, 1, 4, 1, PYNN_INTERP_BILINEAR,
                                PYNN_FILL_CONSTANT, 9.0f) == PYNN_OK, "affine");
    CHECK(y[0] == 5.0f && y[1] == 1.5f && y[3] == 3.5f, "bilinear into the fill: %g %g %g",
          (double)y[0], (double)y[1], (double)y[3]);
}

static void test_resize_flip_crop(void) {
    const float x[4] = {1, 2, 3, 4};
    const float line[4] = {0, 0.25f, 0.75f, 1};
    float y[16], img[12], out[12], params[16] = {0};
    int i, j;
    CHECK(pynn_resize(y, x, 1, 2, 2, 1, 4, 4, 0, 0, 2, 2, PYNN_INTERP_BILINEAR, 0.0f) == PYNN_OK,
          "resize");
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            CHECK(fabsf(y[i * 4 + j] - (1 + line[j] + 2 * line[i])) < 1e-6f, "resize (%d, %d)", i, j);
    for (i = 0; i < 12; i++) img[i] = (float)i;            /* 3 x 4 */
    CHECK(pynn_flip(out, img, NULL, 1, 3, 4, 1, 1, 0) == PYNN_OK, "flip");
    CHECK(out[0] == 3 && out[5] == 6 && out[11] == 8, "horizontal flip");
    CHECK(pynn_flip(out, img, NULL, 1, 3, 4, 1, 0, 1) == PYNN_OK, "flip");
    CHECK(out[0] == 8 && out[11] == 3, "vertical flip");
    CHECK(pynn_flip(out, img, params, 1, 3, 4, 1, 1, 1) == PYNN_OK && out[0] == 0 && out[11] == 11,
          "flip with a 0 flag copies");
    params[0] = 1; params[1] = 2;
    CHECK(pynn_crop(out, img, params, 1, 3, 4, 1, 2, 2, 0, 0) == PYNN_OK, "crop");
    CHECK(out[0] == 6 && out[1] == 7 && out[2] == 10 && out[3] == 11, "crop offsets");
    /* refusals, nothing written */
    out[0] = -7;
    params[1] = 3;                                          /* the window leaves the image */
    CHECK(pynn_crop(out, img, params, 1, 3, 4, 1, 2, 2, 0, 0) == PYNN_EINVAL && out[0] == -7,
          "crop outside");
    CHECK(pynn_crop(out, img, NULL, 1, 3, 4, 1, 2, 2, 2, 0) == PYNN_EINVAL, "fixed crop outside");
    CHECK(pynn_flip(img, img, NULL, 1, 3, 4, 1, 1, 0) == PYNN_EINVAL, "flip in place");
    CHECK(pynn_affine_transform(out, img, params, 1, 3, 4, 1, 2, 0, 0.0f) == PYNN_EINVAL,
          "bad interpolation");
    CHECK(pynn_affine_transform(out, img, params, 1, 3, 4, 1, 0, 4, 0.0f) == PYNN_EINVAL,
          "bad fill mode");
    CHECK(pynn_resize(out, img, 1, 3, 4, 1, 2, 2, 0, 0, 0, 4, 0, 0.0f) == PYNN_EINVAL,
          "empty window");
    CHECK(pynn_image_random(params, 1, 3, 4, 4, 4, PYNN_RANDOM_CROP, (const double[5]){0}, 1, 1)
          == PYNN_EINVAL, "crop larger than the image");
    CHECK(pynn_image_random(params, 1, 3, 4, 0, 0, 7, (const double[5]){0}, 1, 1) == PYNN_EINVAL,
          "bad kind");
}

static void test_threads_and_ranges(void) {
    enum { B = 6, H = 61, W = 67, C = 3 };
    const double zoom[5] = {-0.5, 0.5, -0.3, 0.2, 1}, none[5] = {0};
    float *x = malloc(sizeof(float) * B * H * W * C), *y1 = malloc(sizeof(float) * B * H * W * C);
    float *y2 = malloc(sizeof(float) * B * H * W * C), params[B * 8], crops[400 * 8];
    int64_t i;
    int seen[3] = {0};
    for (i = 0; i < B * H * W * C; i++) x[i] = (float)((i * 7919) % 1000) / 100.0f;
    pynn_image_random(params, B, H, W, 0, 0, PYNN_RANDOM_ZOOM, zoom, 5, 3);
    for (i = 0; i < B; i++)
        CHECK(params[i * 8] >= 0.7f && params[i * 8] <= 1.2f && params[i * 8 + 4] >= 0.5f &&
              params[i * 8 + 4] <= 1.5f, "zoom out of range");
    pynn_set_num_threads(1);
    pynn_affine_transform(y1, x, params, B, H, W, C, PYNN_INTERP_BILINEAR, PYNN_FILL_REFLECT, 0);
    pynn_set_num_threads(2);
    pynn_affine_transform(y2, x, params, B, H, W, C, PYNN_INTERP_BILINEAR, PYNN_FILL_REFLECT, 0);
    CHECK(memcmp(y1, y2, sizeof(float) * B * H * W * C) == 0, "affine: 1 and 2 threads differ");
    pynn_set_num_threads(1);
    pynn_resize(y1, x, B, H, W, C, 40, 90, -3, 2, 70, 60, PYNN_INTERP_BILINEAR, 1.0f);
    pynn_set_num_threads(2);
    pynn_resize(y2, x, B, H, W, C, 40, 90, -3, 2, 70, 60, PYNN_INTERP_BILINEAR, 1.0f);
    CHECK(memcmp(y1, y2, sizeof(float) * B * 40 * 90 * C) == 0, "resize: 1 and 2 threads differ");
    pynn_image_random(crops, 400, 5, 5, 3, 3, PYNN_RANDOM_CROP, none, 8, 1);
    for (i = 0; i < 400; i++) {
        CHECK(crops[i * 8] >= 0 && crops[i * 8] <= 2 && crops[i * 8 + 1] >= 0 &&
              crops[i * 8 + 1] <= 2, "crop offset out of range");
        if (crops[i * 8] >= 0 && crops[i * 8] <= 2) seen[(int)crops[i * 8]] = 1;
    }
    CHECK(seen[0] && seen[1] && seen[2], "crop offsets do not cover [0, 2]");
    free(x); free(y1); free(y2);
}

int main(void) {
    test_rot90();
    test_fill_modes();
    test_resize_flip_crop();
    test_threads_and_ranges();
    if (failures) printf("%d failure(s)\n", failures);
    else printf("test_image: ok\n");
    return failures != 0;
}
