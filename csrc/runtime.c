/* runtime.c -- the thread count, the one piece of global state besides the CPU-feature
 * dispatch level (dispatch.c), and the names of the ids of pynn.h. */
#include "internal.h"

static int pynn_num_threads = 0; /* 0: not set, use OpenMP's default */

int pynn_set_num_threads(int n) {
    if (n < 1) return PYNN_EINVAL;
    pynn_num_threads = n;
    return PYNN_OK;
}

int pynn_get_num_threads(void) { return pynn_threads(); }

int pynn_threads(void) {
    if (pynn_num_threads > 0) return pynn_num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int pynn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The names of the ids of csrc/pynn.h, one table per kind (pynn_id_name). */
#define PYNN_ID_NAME_(sym, value, name) [value] = name,
static const char *const activation_names[] = {PYNN_ACTIVATION_LIST(PYNN_ID_NAME_)};
static const char *const loss_names[] = {PYNN_LOSS_LIST(PYNN_ID_NAME_)};
static const char *const metric_names[] = {PYNN_METRIC_LIST(PYNN_ID_NAME_)};
static const char *const optimizer_names[] = {PYNN_OPTIMIZER_LIST(PYNN_ID_NAME_)};
static const char *const merge_names[] = {PYNN_MERGE_LIST(PYNN_ID_NAME_)};
static const char *const op_names[] = {PYNN_OP_LIST(PYNN_ID_NAME_)};
static const char *const schedule_names[] = {PYNN_SCHEDULE_LIST(PYNN_ID_NAME_)};
#undef PYNN_ID_NAME_

int pynn_id_count(int table) {
    switch (table) {
    case PYNN_TABLE_ACTIVATION: return PYNN_ACT_COUNT;
    case PYNN_TABLE_LOSS: return PYNN_LOSS_COUNT;
    case PYNN_TABLE_METRIC: return PYNN_METRIC_COUNT;
    case PYNN_TABLE_OPTIMIZER: return PYNN_OPT_COUNT;
    case PYNN_TABLE_MERGE: return PYNN_MERGE_COUNT;
    case PYNN_TABLE_OP: return PYNN_OP_COUNT;
    case PYNN_TABLE_SCHEDULE: return PYNN_SCHEDULE_COUNT;
    default: return -1;
    }
}

const char *pynn_id_name(int table, int id) {
    const char *const *names;
    switch (table) {
    case PYNN_TABLE_ACTIVATION: names = activation_names; break;
    case PYNN_TABLE_LOSS: names = loss_names; break;
    case PYNN_TABLE_METRIC: names = metric_names; break;
    case PYNN_TABLE_OPTIMIZER: names = optimizer_names; break;
    case PYNN_TABLE_MERGE: names = merge_names; break;
    case PYNN_TABLE_OP: names = op_names; break;
    case PYNN_TABLE_SCHEDULE: names = schedule_names; break;
    default: return NULL;
    }
    return id >= 0 && id < pynn_id_count(table) ? names[id] : NULL;
}
