/* dispatch.c -- the one CPU-feature dispatch of pynn's kernels.
 *
 * A kernel family with code for wider instruction sets (the GEMM's micro-kernels, expf
 * over a span, the softmax cross-entropy's gradient, the direct convolution) keeps that
 * code in translation units of its own, named <family>_<isa>.c and compiled with that
 * instruction set's -m flags (CMakeLists.txt: PYNN_AVX2_SOURCES, PYNN_AVX512_SOURCES);
 * everything else is built for the baseline target, never -march=native.  Nothing
 * reaches that code except through a switch on pynn_level(), so it runs only on CPUs
 * that have the instructions:
 *
 *   switch (pynn_level()) {                  // once per kernel call
 *   case PYNN_LEVEL_AVX512: ...the family's _avx512 function or table
 *   case PYNN_LEVEL_AVX2:   ...its _avx2 one
 *   default:                ...the portable C
 *   }
 *
 * with the x86 cases under #ifdef PYNN_HAVE_X86_KERNELS, which CMake defines only where
 * it compiles the x86 units (x86 targets, GCC or Clang): elsewhere only the portable
 * code exists and the level is always PYNN_LEVEL_GENERIC.
 *
 * The level is detected once (pynn_cpu_level) and can be forced for every family at
 * once (pynn_select_level), which is how tests run each level on one machine.  This is
 * the only global state besides the thread count (runtime.c), and neither holds results.
 */
#include "internal.h"

/* Racing first calls both detect and store the same value, so relaxed atomics suffice:
 * no other data is published through these ints. */
#define LOAD_LEVEL(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_LEVEL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static int detected_level = PYNN_LEVEL_AUTO; /* AUTO: not detected yet */
static int forced_level = PYNN_LEVEL_AUTO;   /* AUTO: use the detected level */

#ifdef PYNN_HAVE_X86_KERNELS
/* The AVX-512 units are compiled with -mavx512f/vl/dq/bw and -mavx2 -mfma: all must be
 * present (libgcc's checks include the OS saving the ymm / zmm state). */
static int detect_level(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return PYNN_LEVEL_GENERIC;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        return PYNN_LEVEL_AVX512;
    return PYNN_LEVEL_AVX2;
}
#else
static int detect_level(void) { return PYNN_LEVEL_GENERIC; }
#endif

int pynn_cpu_level(void) {
    int level = LOAD_LEVEL(&detected_level);
    if (level == PYNN_LEVEL_AUTO) {
        level = detect_level();
        STORE_LEVEL(&detected_level, level);
    }
    return level;
}

/* The levels are nested (each needs everything the one below it does), so a level
 * runs here exactly when it is at most the detected one. */
int pynn_level_supported(int level) {
    return level == PYNN_LEVEL_AUTO ||
           (level >= PYNN_LEVEL_GENERIC && level <= pynn_cpu_level());
}

int pynn_select_level(int level) {
    if (level < PYNN_LEVEL_AUTO || level > PYNN_LEVEL_AVX512) return PYNN_EINVAL;
    if (!pynn_level_supported(level)) return PYNN_ENOTSUP;
    STORE_LEVEL(&forced_level, level);
    return PYNN_OK;
}

int pynn_level(void) {
    const int level = LOAD_LEVEL(&forced_level);
    return level != PYNN_LEVEL_AUTO ? level : pynn_cpu_level();
}
