"""Compile every kernel of pynn.backend.cuda to PTX for sm_90, without a GPU.

The simulator runs the kernels as Python, so it never types them as a GPU build does
(uint64 arithmetic, the types of branches, closures over device functions).  Numba's
compile_ptx needs no driver, only NVVM (pip install nvidia-cuda-nvcc-cu12
nvidia-cuda-nvrtc-cu12), so this checks the real GPU path on any machine that has it.
Run as a script (tests/test_kernels.py does, in a subprocess: the simulator must be off);
exit status 77 when NVVM cannot be found.
"""
import os
import sys

os.environ.pop("NUMBA_ENABLE_CUDASIM", None)

from numba import boolean, cuda, float32, float64, int64, uint64     # noqa: E402

from pynn.backend.cuda import (convolution, elementwise, gemm, losses, merge,  # noqa: E402
                               metrics, normalization, optimizers, pooling, random, reduction)

F1, F2, F4 = float32[::1], float32[:, ::1], float32[:, :, :, ::1]
D1, I1 = float64[::1], int64[::1]
I, F, B = int64, float32, boolean
GEOMETRY = (I,) * 12        # total, h, w, c, kh, kw, sh, sw, pad_top, pad_left, oh, ow

KERNELS = {
    "activation_forward": (elementwise._activation_forward_kernel, (F2, F2, I, I, I, F)),
    "activation_backward": (elementwise._activation_backward_kernel, (F2, F2, F2, F2, I, I, I, F)),
    "softmax_rows": (elementwise._softmax_rows_kernel, (F2, F2, I, I)),
    "softmax_backward_rows": (elementwise._softmax_backward_rows_kernel, (F2, F2, F2, I, I)),
    "backward_bias_grad": (elementwise._backward_bias_grad_kernel,
                           (F2, F1, F2, F2, F2, I, I, I, F, B, B)),
    "fill": (elementwise._fill_kernel, (F1, I, F)),
    "multiply": (elementwise._multiply_kernel, (F1, F1, F1, I)),
    "scale": (elementwise._scale_kernel, (F1, F1, I, F)),
    "loss_rows": (losses._loss_kernel, (D1, F2, F2, F2, I1, I, I, I, B, B, B)),
    "metric_rows": (metrics._metric_rows, (D1, F2, F2, I1, F1, I, I, I, I, F, I, B, B)),
    "metric_confusion": (metrics._confusion_kernel,
                         (float64[:, ::1], F2, F2, I1, F1, F1, I, I, I, I, B, B)),
    "sum_in_order": (reduction._sum_in_order_kernel, (D1, D1, I)),
    "sgd": (optimizers._sgd_kernel, (F1, F1, F1, I, F, F, B, B)),
    "adam": (optimizers._adam_kernel, (F1, F1, F1, F1, I, F, F, F, F)),
    "rmsprop": (optimizers._rmsprop_kernel, (F1, F1, F1, F1, I, F, F, F, F, B, F)),
    "weight_decay": (optimizers._weight_decay_kernel, (F1, I, F, F)),
    "adam_amsgrad": (optimizers._adam_amsgrad_kernel, (F1, F1, F1, F1, F1, I, F, F, F, F)),
    "adagrad": (optimizers._adagrad_kernel, (F1, F1, F1, I, F, F)),
    "adadelta": (optimizers._adadelta_kernel, (F1, F1, F1, F1, I, F, F, F, F)),
    "adamax": (optimizers._adamax_kernel, (F1, F1, F1, F1, I, F, F, F, F, F)),
    "nadam": (optimizers._nadam_kernel, (F1, F1, F1, F1, I, F, F, F, F, F, F, F)),
    "lion": (optimizers._lion_kernel, (F1, F1, F1, I, F, F, F, F, F)),
    "im2col": (convolution._im2col_kernel, (F2, F4) + GEOMETRY),
    "col2im": (convolution._col2im_kernel, (F4, F2) + GEOMETRY),
    "maxpool_forward": (pooling._maxpool_forward_kernel, (F4, F4) + GEOMETRY),
    "maxpool_backward": (pooling._maxpool_backward_kernel, (F4, F4, F4) + GEOMETRY),
    "avgpool_forward": (pooling._avgpool_forward_kernel, (F4, F4) + GEOMETRY),
    "avgpool_backward": (pooling._avgpool_backward_kernel, (F4, F4) + GEOMETRY),
    "global_avgpool_forward": (pooling._global_avgpool_forward_kernel, (F2, F4, I, I, I, I, F)),
    "global_avgpool_backward": (pooling._global_avgpool_backward_kernel, (F4, F2, I, I, I, I, F)),
    "bn_partials": (normalization._bn_partials_kernel, (F2, F2, F2, F2, F1, F1, I, I, I)),
    "bn_mean": (normalization._bn_mean_kernel, (F1, F2, I, I, F)),
    "bn_variance": (normalization._bn_variance_kernel, (F1, F1, F1, F1, F2, I, I, F, F, F, F)),
    "bn_gradient_sums": (normalization._bn_gradient_sums_kernel, (F1, F1, F2, F2, I, I)),
    "bn_normalize": (normalization._bn_normalize_kernel,
                     (F2, F2, F1, F1, F1, F1, I, I, B, F, B, B)),
    "bn_backward_dx": (normalization._bn_backward_dx_kernel,
                       (F2, F2, F2, F1, F1, F1, F1, F1, I, I, F, B)),
    "bn_inv_std": (normalization._bn_inv_std_kernel, (F1, F1, I, F)),
    "bn_infer_backward_dx": (normalization._bn_infer_backward_dx_kernel,
                             (F2, F2, F1, F1, I, I, B)),
    "merge_pair": (merge._merge_pair_kernel, (F1, F1, F1, I, I, F, B)),
    "route_extreme": (merge._route_extreme_kernel, (F1, F1, F1, F1, I, B, B)),
    "copy_columns": (merge._copy_columns_kernel, (F2, F2, I, I, I, I)),
    "uniform": (random._uniform_kernel, (F1, I, uint64)),
    "dropout": (random._dropout_kernel, (F1, F1, F1, I, I1, I1, I, uint64, F, F)),
}
GEMM_SIGNATURE = (F2, F2, F2, F2, F1, I, I, I, B, I, F, B)
# every tile without transposes, every transpose on the smallest tile
for cfg, trans in [(c, (False, False)) for c in gemm.GEMM_CONFIGS] + \
        [(gemm.GEMM_TINY, t) for t in ((True, False), (False, True), (True, True))]:
    KERNELS[f"sgemm_{cfg.name}_{'nt'[trans[0]]}{'nt'[trans[1]]}"] = (gemm.gemm_kernel(cfg, *trans),
                                                                     GEMM_SIGNATURE)


def main():
    failed = []
    for name, (kernel, signature) in KERNELS.items():
        try:
            cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if "nvvm" in text.lower() or "nvrtc" in text.lower() or "libNVVM" in text:
                print(f"NVVM not found: {text.splitlines()[0]}")
                return 77
            failed.append(name)
            print(f"FAILED {name}: {text}")
    print(f"{len(KERNELS) - len(failed)} of {len(KERNELS)} kernels compiled to PTX for sm_90")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
