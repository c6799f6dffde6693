/* test_metrics.c -- pynn_metric_sum's sample weights and thresholds, and
 * pynn_metric_confusion, against plain C references written here: weighted sums added in
 * row order, confusion counts at thresholds on both sides of the values (more than one
 * block of thresholds), labels as one-hot rows, per_weight rows per weight; refusals
 * (negative, NaN or infinite weights, a NaN threshold, no thresholds, per_weight 0) leave
 * the outputs unwritten; the same bytes on 1 and 2 threads. */
#include "ctest.h"

enum { ROWS = 37, COLS = 3, PER = 2, NW = (ROWS + PER - 1) / PER, NT = 131 };

/* the reference confusion counts: row by row, threshold by threshold */
static void confusion_ref(double *c, const float *p, const float *t, const int64_t *lab,
                          int64_t rows, int64_t cols, const float *thr, int64_t n,
                          const float *w, int64_t per) {
    int64_t r, j, i;
    memset(c, 0, (size_t)(4 * n) * sizeof(double));
    for (r = 0; r < rows; r++) {
        const double wr = w ? (double)w[r / per] : 1.0;
        for (i = 0; i < n; i++) {
            int64_t tp = 0, fp = 0, tn = 0, fn = 0;
            for (j = 0; j < cols; j++) {
                const int pos = p[r * cols + j] > thr[i];
                const int act = t ? t[r * cols + j] != 0.0f : lab[r] == j;
                tp += pos && act; fp += pos && !act; tn += !pos && !act; fn += !pos && act;
            }
            c[i] += wr * (double)tp; c[n + i] += wr * (double)fp;
            c[2 * n + i] += wr * (double)tn; c[3 * n + i] += wr * (double)fn;
        }
    }
}

int main(void) {
    float pred[ROWS * COLS], target[ROWS * COLS], w[NW], thr[NT], bad_w[NW];
    int64_t labels[ROWS];
    double c[4 * NT], ref[4 * NT], s, expect;
    int64_t r, j, i;
    int threads;
    ctest_seed(11);
    for (r = 0; r < ROWS * COLS; r++) {
        pred[r] = ctest_rand();
        target[r] = ctest_rand() > 0.6f ? 1.0f : 0.0f;
    }
    pred[4] = 0.5f;                           /* exactly a threshold: not above it */
    for (r = 0; r < ROWS; r++) labels[r] = (int64_t)(ctest_rand() * COLS) % COLS;
    for (r = 0; r < NW; r++) w[r] = r % 5 == 0 ? 0.0f : 0.25f + ctest_rand() * 3.0f;
    for (i = 0; i < NT; i++) thr[i] = -0.1f + 1.2f * (float)i / (NT - 1);
    thr[NT / 2] = 0.5f;

    for (threads = 1; threads <= 2; threads++) {
        pynn_set_num_threads(threads);
        CTEST_CONTEXT("%d thread(s)", threads);
        /* weighted mean squared error: row values in float, weighted, rows in order */
        expect = 0.0;
        for (r = 0; r < ROWS; r++) {
            float acc = 0.0f;
            for (j = 0; j < COLS; j++) {
                const float d = target[r * COLS + j] - pred[r * COLS + j];
                acc += d * d;
            }
            expect += (double)(acc / (float)COLS) * (double)w[r / PER];
        }
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_MSE, 1, 0.5f, w, PER) ==
              PYNN_OK && s == expect, "weighted mse %.17g != %.17g", s, expect);
        /* the count: the sum of the rows' weights */
        expect = 0.0;
        for (r = 0; r < ROWS; r++) expect += (double)w[r / PER];
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_ROWS, 1, 0.5f, w, PER) ==
              PYNN_OK && s == expect, "weighted count %.17g != %.17g", s, expect);
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_ROWS, 1, 0.5f, NULL, 1) ==
              PYNN_OK && s == ROWS, "count %g", s);
        /* binary accuracy and true positives at threshold 0.3 */
        expect = 0.0;
        for (r = 0; r < ROWS; r++) {
            float acc = 0.0f;
            for (j = 0; j < COLS; j++)
                acc += (float)((pred[r * COLS + j] > 0.3f ? 1.0f : 0.0f) == target[r * COLS + j]);
            expect += (double)(acc / (float)COLS);
        }
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_BINARY_ACCURACY, 1, 0.3f,
                              NULL, 1) == PYNN_OK && s == expect, "binary accuracy at 0.3: %g", s);
        confusion_ref(ref, pred, target, NULL, ROWS, COLS, (const float[]){0.3f}, 1, w, PER);
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_TRUE_POSITIVES, 1, 0.3f,
                              w, PER) == PYNN_OK && s == ref[0], "weighted tp at 0.3: %g", s);
        CHECK(pynn_metric_sum(&s, pred, NULL, labels, ROWS, COLS, PYNN_METRIC_FALSE_NEGATIVES, 1, 0.3f,
                              NULL, 1) == PYNN_OK, "fn of labels");
        confusion_ref(ref, pred, NULL, labels, ROWS, COLS, (const float[]){0.3f}, 1, NULL, 1);
        CHECK(s == ref[3], "fn of labels at 0.3: %g != %g", s, ref[3]);
        /* Accuracy: equal entries */
        {
            const float p2[4] = {1.0f, 2.0f, 3.0f, 0.0f}, t2[4] = {1.0f, 2.5f, 3.0f, 0.0f};
            CHECK(pynn_metric_sum(&s, p2, t2, NULL, 2, 2, PYNN_METRIC_ACCURACY, 1, 0.5f, NULL, 1) ==
                  PYNN_OK && s == 1.5, "accuracy %g", s);
        }
        /* the confusion counts, bitwise against the reference */
        CHECK(pynn_metric_confusion(c, pred, target, NULL, ROWS, COLS, thr, NT, w, PER) == PYNN_OK,
              "confusion");
        confusion_ref(ref, pred, target, NULL, ROWS, COLS, thr, NT, w, PER);
        CHECK(memcmp(c, ref, sizeof c) == 0, "weighted confusion counts differ");
        CHECK(pynn_metric_confusion(c, pred, NULL, labels, ROWS, COLS, thr, NT, NULL, 1) == PYNN_OK,
              "confusion of labels");
        confusion_ref(ref, pred, NULL, labels, ROWS, COLS, thr, NT, NULL, 1);
        CHECK(memcmp(c, ref, sizeof c) == 0, "confusion counts of labels differ");
        for (i = 0; i < NT; i++)
            CHECK(c[i] + c[NT + i] + c[2 * NT + i] + c[3 * NT + i] == ROWS * COLS,
                  "threshold %ld: the counts do not add up", (long)i);
        CHECK(c[0] + c[3 * NT] == ROWS && c[NT - 1] == 0.0, "below every value / above every value");
    }

    /* refusals write nothing */
    CTEST_CONTEXT("refusals");
    memcpy(bad_w, w, sizeof w);
    for (i = 0; i < 3; i++) {
        bad_w[NW - 1] = i == 0 ? -1.0f : i == 1 ? NAN : INFINITY;
        s = 42.0;
        CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_MSE, 1, 0.5f, bad_w, PER) ==
              PYNN_EINVAL && s == 42.0, "bad weight %d accepted", (int)i);
        c[0] = 42.0;
        CHECK(pynn_metric_confusion(c, pred, target, NULL, ROWS, COLS, thr, NT, bad_w, PER) ==
              PYNN_EINVAL && c[0] == 42.0, "bad weight %d accepted by confusion", (int)i);
    }
    CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_MSE, 1, NAN, NULL, 1) ==
          PYNN_EINVAL, "a NaN threshold");
    CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_MSE, 1, 0.5f, w, 0) ==
          PYNN_EINVAL, "per_weight 0");
    CHECK(pynn_metric_sum(&s, pred, target, NULL, ROWS, COLS, PYNN_METRIC_CONFUSION, 1, 0.5f, NULL, 1) ==
          PYNN_EINVAL, "confusion through metric_sum");
    CHECK(pynn_metric_confusion(c, pred, target, NULL, ROWS, COLS, thr, 0, NULL, 1) == PYNN_EINVAL,
          "no thresholds");
    CHECK(pynn_metric_confusion(c, pred, target, NULL, ROWS, COLS, (const float[]){NAN}, 1, NULL, 1) ==
          PYNN_EINVAL, "a NaN threshold");
    CHECK(pynn_metric_confusion(c, pred, NULL, (const int64_t[]){0, 3}, 2, COLS, thr, 1, NULL, 1) ==
          PYNN_ELABEL, "label 3 of 3");
    CHECK(pynn_metric_confusion(c, NULL, NULL, NULL, 0, COLS, thr, 2, NULL, 1) == PYNN_OK &&
          c[0] == 0.0 && c[7] == 0.0, "no rows: zeros");
    return ctest_finish("test_metrics");
}
