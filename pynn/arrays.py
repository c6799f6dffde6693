"""User arrays in: what every public entry point accepts as numbers."""
import numpy as np


def numeric_array(value, where):
    """`value` as a NumPy array of real numbers (bool, int, uint or float), else TypeError."""
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
