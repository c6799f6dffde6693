"""Randomness and small helpers.

Every random number pynn draws (weight initialisation, shuffling, dropout) comes from
one generator, so `set_random_seed(seed)` makes a whole run repeatable.
"""
import numpy as np

from .arrays import check_fits, numeric_array

_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seed pynn's generator (like `keras.utils.set_random_seed`)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"set_random_seed: expected a non-negative integer seed, received {seed!r}")
    _rng = np.random.default_rng(int(seed))


def rng():
    """The generator every pynn component draws from."""
    return _rng


def to_categorical(y, num_classes=None):
    """One-hot encode integer labels, as `keras.utils.to_categorical`."""
    y = numeric_array(y, "to_categorical: y")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(y) & np.equal(np.mod(y, 1), 0)
        if not whole.all():
            raise ValueError("to_categorical: expected integer class labels, "
                             f"received values of dtype {y.dtype} that are not whole numbers")
    if y.size and float(y.max()) >= 2.0 ** 63:
        raise ValueError(f"to_categorical: expected labels below 2**63, received {y.max()}")
    y = y.astype(np.int64).reshape(-1)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: expected labels >= 0, received {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
                num_classes < 0:
            raise ValueError("to_categorical: expected num_classes to be a non-negative "
                             f"integer or None, received num_classes={num_classes!r:.80}")
        if y.size and y.max() >= num_classes:
            raise ValueError(f"to_categorical: label {y.max()} is not below "
                             f"num_classes={num_classes}")
    check_fits(4 * y.size * int(num_classes), "to_categorical",
               f"a one-hot array of {y.size} labels x {num_classes} classes")
    out = np.zeros((y.size, num_classes), dtype=np.float32)
    out[np.arange(y.size), y] = 1.0
    return out


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Keras's `keras.utils.pad_sequences`: a list of sequences (of ids, or of equal-shaped
    steps) as one array (num_samples, maxlen, ...); shorter ones padded with `value` and
    longer ones cut, each at the start ("pre", Keras's default) or the end ("post").
    maxlen None: the longest sequence's length."""
    where = "pad_sequences"
    if not hasattr(sequences, "__len__") or isinstance(sequences, (str, bytes)):
        raise ValueError(f"{where}: expected sequences as a list of sequences, received "
                         f"{type(sequences).__name__}")
    for arg, given in (("padding", padding), ("truncating", truncating)):
        if given not in ("pre", "post"):
            raise ValueError(f"{where}: expected {arg} 'pre' or 'post', received {arg}={given!r}")
    if maxlen is not None and (isinstance(maxlen, bool) or
                               not isinstance(maxlen, (int, np.integer)) or maxlen < 0):
        raise ValueError(f"{where}: expected maxlen a non-negative integer or None, received "
                         f"maxlen={maxlen!r:.80}")
    lengths, sample_shape = [], None
    for i, seq in enumerate(sequences):
        try:
            lengths.append(len(seq))
        except TypeError:
            raise ValueError(f"{where}: expected sequence {i} to be a sequence, received "
                             f"{type(seq).__name__}") from None
        if sample_shape is None and len(seq):
            sample_shape = np.asarray(seq).shape[1:]
    sample_shape = sample_shape or ()
    if isinstance(value, str) and dtype is not object:
        raise ValueError(f"{where}: a string value={value!r:.40} needs dtype=object, received "
                         f"dtype={dtype!r}")
    maxlen = (max(lengths) if lengths else 0) if maxlen is None else int(maxlen)
    check_fits(8 * len(lengths) * maxlen * int(np.prod(sample_shape, dtype=np.int64)), where,
               f"{len(lengths)} sequences of length {maxlen}")
    out = np.full((len(lengths), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for i, seq in enumerate(sequences):
        if not len(seq) or not maxlen:
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ValueError(f"{where}: sequence {i} has steps of shape {kept.shape[1:]}, the "
                             f"first non-empty sequence's are {tuple(sample_shape)}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def plot_history(history, path, title=None, layers=False):
    """A PNG of the loss and metrics per epoch of `history` (what fit returns) at `path`;
    returns the path.  Needs matplotlib: pip install "pynn[plot]".  See pynn/plotting.py."""
    from .plotting import plot_history as plot
    return plot(history, path, title=title, layers=layers)


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, rankdir="TB", expand_nested=False, dpi=96,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """A PNG of the model's graph of layers (Keras's `keras.utils.plot_model`, drawn with
    matplotlib: pip install "pynn[plot]").  See pynn/plotting.py."""
    from .plotting import plot_model as plot
    return plot(model, to_file, show_shapes=show_shapes, show_dtype=show_dtype,
                show_layer_names=show_layer_names, rankdir=rankdir, expand_nested=expand_nested,
                dpi=dpi, show_layer_activations=show_layer_activations,
                show_trainable=show_trainable)


# Keras's keras.utils names for datasets and images (defined in pynn/data)
from .data import (PyDataset, Sequence, array_to_img, image_dataset_from_directory,  # noqa: E402
                   img_to_array, load_img, save_img)
