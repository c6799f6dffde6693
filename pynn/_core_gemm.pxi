# GEMM wrappers (placeholder)
