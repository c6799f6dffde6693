/* test_dispatch.c -- the CPU-feature dispatch level (csrc/dispatch.c): detection, forcing
 * every supported level, refusing the others, the GEMM's names for the same levels, and
 * the thread count's refusals.  The kernels at each level: the other test_*.c files. */
#include "ctest.h"

int main(void) {
    const int cpu = pynn_cpu_level();
    int level;

    CTEST_CONTEXT("detection");
    CHECK(cpu >= PYNN_LEVEL_GENERIC && cpu <= PYNN_LEVEL_AVX512, "cpu level %d", cpu);
    CHECK(pynn_cpu_level() == cpu, "detection is stable");
    CHECK(pynn_level() == cpu, "the level in use starts at the detected one: %d", pynn_level());
    printf("test_dispatch: this CPU and build run up to %s\n", ctest_level_name(cpu));

    for (level = PYNN_LEVEL_GENERIC; level <= PYNN_LEVEL_AVX512; level++) {
        CTEST_CONTEXT("level %s", ctest_level_name(level));
        if (level <= cpu) {
            CHECK(pynn_level_supported(level) == 1, "supported");
            CHECK(pynn_select_level(level) == PYNN_OK, "select");
            CHECK(pynn_level() == level, "in use after select: %d", pynn_level());
            CHECK(pynn_gemm_kernel() == level, "the GEMM's name for it: %d", pynn_gemm_kernel());
            CHECK(pynn_cpu_level() == cpu, "forcing does not change the detected level");
        } else {
            CHECK(pynn_level_supported(level) == 0, "not supported above the detected level");
            CHECK(pynn_select_level(level) == PYNN_ENOTSUP, "refused with PYNN_ENOTSUP");
            CHECK(pynn_gemm_select_kernel(level) == PYNN_ENOTSUP, "GEMM name refused too");
            CHECK(pynn_level() != level, "a refused level is not in use");
        }
    }

    CTEST_CONTEXT("auto");
    CHECK(pynn_select_level(PYNN_LEVEL_GENERIC) == PYNN_OK, "select generic");
    CHECK(pynn_select_level(PYNN_LEVEL_AUTO) == PYNN_OK, "select auto");
    CHECK(pynn_level() == cpu, "auto goes back to the detected level: %d", pynn_level());
    CHECK(pynn_level_supported(PYNN_LEVEL_AUTO) == 1, "auto is always supported");
    CHECK(pynn_gemm_select_kernel(PYNN_KERNEL_GENERIC) == PYNN_OK &&
          pynn_level() == PYNN_LEVEL_GENERIC,
          "pynn_gemm_select_kernel selects the level for every kernel");
    CHECK(pynn_gemm_select_kernel(PYNN_KERNEL_AUTO) == PYNN_OK && pynn_level() == cpu,
          "GEMM auto");
    CHECK(PYNN_KERNEL_AVX512 == PYNN_LEVEL_AVX512 && PYNN_KERNEL_AUTO == PYNN_LEVEL_AUTO,
          "the GEMM's ids are the levels");

    CTEST_CONTEXT("refusals");
    CHECK(pynn_select_level(-1) == PYNN_EINVAL, "level -1");
    CHECK(pynn_select_level(PYNN_LEVEL_AVX512 + 1) == PYNN_EINVAL, "level past the last");
    CHECK(pynn_level_supported(-1) == 0 && pynn_level_supported(99) == 0, "no such levels");
    CHECK(pynn_gemm_kernel_supported(99) == 0, "no such GEMM kernel");
    CHECK(pynn_level() == cpu, "a refused select changes nothing");
    CHECK(pynn_set_num_threads(0) == PYNN_EINVAL && pynn_set_num_threads(-3) == PYNN_EINVAL,
          "thread counts below 1");
    CHECK(pynn_set_num_threads(2) == PYNN_OK && pynn_get_num_threads() == 2, "2 threads");
    return ctest_finish("test_dispatch");
}
