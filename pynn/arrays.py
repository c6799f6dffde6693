"""User arrays in: what every public entry point accepts as numbers, and the bound on what
user-sized allocations may take (check_fits)."""
import functools
import os

import numpy as np


def numeric_array(value, where):
    """`value` as a NumPy array of real numbers (bool, int, uint or float), else TypeError.
    A masked array is refused: its mask would be dropped silently (NaN or junk under the mask
    would reach the kernels, as Keras lets it), so the caller decides with `.filled()`."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{where}: expected a plain array, received a NumPy masked array; pynn "
                        "does not apply masks, so the values under the mask would be used as they "
                        "are: call .filled(value) to choose what stands in for them (or pass "
                        ".data to use them deliberately)")
    if isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "numpy") and hasattr(value, "path"):     # a pynn.Variable
        arr = value.numpy()
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{where}: expected a numeric array, received {type(value).__name__} "
                            f"that NumPy cannot convert ({exc})") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        if kind == "c":
            raise TypeError(f"{where}: expected real numbers, received complex dtype {arr.dtype}")
        raise TypeError(f"{where}: expected a numeric array, received dtype {arr.dtype}")
    return arr


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _first(bad):
    """The index of the first True in `bad` (a tuple) and its text: "3" for a vector,
    "(3, 2)" beyond."""
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    return index, str(index[0]) if len(index) == 1 else str(index)


def finite_float32(arr, where, what):
    """`arr` (a numeric_array result) as a C-contiguous float32 array, or a ValueError naming
    `what` and the index of the first offending value: NaN and infinities, and finite values
    of a wider type (float64, longdouble) that overflow to +-inf in float32 (|x| > 3.4e38)."""
    if arr.dtype != np.float32 or not arr.flags.c_contiguous:
        check_fits(arr.size * 4, where, f"{what} as float32 (shape {arr.shape})")
    if arr.dtype.kind != "f":
        # ints are finite in float32; reshape: ascontiguousarray makes a 0-d array 1-d
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(arr.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32).reshape(arr.shape)
    ok = np.isfinite(out)
    if ok.all():
        return out
    index, at = _first(~ok)
    value = arr[index]
    if np.isfinite(value):
        raise ValueError(f"{where}: {what} holds values beyond the float32 range (|x| > "
                         f"{_FLOAT32_MAX:.4g}, which become infinite in float32), first at index "
                         f"{at}: {float(value)!r}; expected finite float32 numbers")
    raise ValueError(f"{where}: {what} contains NaN or infinite values, first at index {at}: "
                     f"{float(value)!r}; expected finite numbers")


@functools.lru_cache(maxsize=None)
def memory_bytes():
    """The memory this process can have at most: the machine's physical memory, or the
    cgroup (container) limit when lower; None where neither can be read.  Read once."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    limits = [n for n in limits if n > 0]
    return min(limits) if limits else None


def check_fits(nbytes, where, what):
    """Refuse (ValueError naming `what`) an allocation of `nbytes` that cannot fit in this
    machine's memory, before anything is allocated."""
    limit = memory_bytes()
    if limit is not None and nbytes > limit:
        raise ValueError(f"{where}: {what} needs {_size_text(nbytes)}, more than this machine's "
                         f"memory ({_size_text(limit)})")


def _size_text(nbytes):
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"
