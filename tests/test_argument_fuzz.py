"""A seeded fuzz of the public API's arguments: fit / evaluate / predict / train_on_batch /
test_on_batch / predict_on_batch / compile / set_weights, layer constructors, the data
loaders and to_categorical called with random bad values (one or two arguments replaced at
a time, the others good).  Every call must either succeed or raise ValueError / TypeError
(no MemoryError, OverflowError, IndexError, ... and no hang), and a refused call must
leave the model as it was: its weights, its optimizer's step count and state, and what
compile configured.

The pools draw epochs / initial_epoch only from small values: a huge epoch count is a
legal request for a long run (as in Keras), not a bad argument.
"""
import contextlib
import random
import signal

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.datasets import mnist

SEED = 20240611
CALLS = 1000
SECONDS_PER_CALL = 10


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds, what):
    """Fail a call that runs past `seconds` (where SIGALRM exists) instead of hanging."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"{what} ran for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def generic_values():
    """Values that are wrong for most arguments (a few are right for some)."""
    return [None, True, False, 0, -1, 1, 3, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64 + 1, 10 ** 12,
            -2 ** 63, np.int64(-5), np.uint64(2 ** 64 - 1), 1.5, -0.0, float("nan"),
            float("inf"), -float("inf"), 1e300, np.float32(0.1), complex(1, 2), "", "x", "adam",
            "auto", "relu", b"bytes", [], [1], [[1, 2]], (1, 2), (0, 0), (30000, 30000),
            (2 ** 40, 2 ** 40), (-1, 5), {}, {"a": 1}, object(), len, slice(3),
            np.array([]), np.array([1, 2]), np.array(["a", "b"]), np.zeros((2, 2, 2)),
            np.array([np.nan]), np.ma.masked_array([1.0, np.nan], [0, 1])]


def data_values(x, y):
    """Wrong data shaped after the good x (12, 4) float32 and y (12,) labels 0..2."""
    big = x.astype(np.float64)
    big[5, 1] = -1e39
    nan_x = x.copy()
    nan_x[2, 3] = np.nan
    return [x[:0], x[:, :3], x.T, x[:5], x[None], x.astype(np.complex64), big, nan_x,
            np.ma.masked_array(nan_x, np.isnan(nan_x)), x.astype(object), x.tolist()[:3],
            x.astype(str), {"wrong": x}, [x, x], np.where(y == 0, 3, y), y.astype(np.float64) + 0.5,
            np.where(y == 0, 1e300, y.astype(np.float64)), np.ma.masked_array(y, y == 1),
            np.broadcast_to(x[:1], (12, 4)), np.asfortranarray(x.astype(np.float64)),
            y.astype(np.uint64) + np.uint64(2 ** 63), y[:, None, None], np.full(12, np.inf)]


def model_and_data():
    pynn.utils.set_random_seed(3)
    model = pynn.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu", name="h"),
                             layers.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    model.fit(x, y, epochs=1, verbose=0)          # optimizer state exists
    return model, x, y


def snapshot(model):
    opt = model.optimizer
    state = opt.state_arrays() if opt.built else {}
    return ([w.copy() for w in model.get_weights()], opt, opt.iterations,
            {k: np.array(v, copy=True) for k, v in state.items()}, model.loss)


def assert_unchanged(model, snap, what):
    weights, opt, iterations, state, loss = snap
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b, err_msg=what)
    assert model.optimizer is opt and model.loss == loss, what
    assert opt.iterations == iterations, what
    now = opt.state_arrays() if opt.built else {}
    for k, v in state.items():
        np.testing.assert_array_equal(now[k], v, err_msg=what)


def model_calls(x, y):
    """(method, good keyword arguments, the names that may be replaced)."""
    return [
        ("fit", dict(x=x, y=y, batch_size=4, epochs=1, verbose=0),
         ["x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split",
          "validation_data", "shuffle", "class_weight", "sample_weight", "initial_epoch",
          "steps_per_epoch", "validation_batch_size", "validation_freq"]),
        ("evaluate", dict(x=x, y=y, batch_size=4, verbose=0),
         ["x", "y", "batch_size", "verbose", "sample_weight", "steps", "callbacks",
          "return_dict"]),
        ("predict", dict(x=x, batch_size=4, verbose=0),
         ["x", "batch_size", "verbose", "steps", "callbacks"]),
        ("train_on_batch", dict(x=x, y=y), ["x", "y", "sample_weight", "class_weight",
                                            "return_dict"]),
        ("test_on_batch", dict(x=x, y=y), ["x", "y", "sample_weight", "return_dict"]),
        ("predict_on_batch", dict(x=x), ["x"]),
        ("compile", dict(optimizer="adam", loss="sparse_categorical_crossentropy"),
         ["optimizer", "loss", "metrics", "loss_weights", "backend", "weighted_metrics"]),
        ("set_weights", {}, ["weights", "one weight"]),
    ]


LAYERS = [
    (layers.Dense, dict(units=3), ["units", "activation", "use_bias", "kernel_initializer",
                                   "bias_initializer", "name", "dtype", "trainable"]),
    (layers.Conv2D, dict(filters=2, kernel_size=3), ["filters", "kernel_size", "strides",
                                                     "padding", "activation", "dilation_rate"]),
    (layers.MaxPooling2D, {}, ["pool_size", "strides", "padding"]),
    (layers.AveragePooling2D, {}, ["pool_size", "strides", "padding"]),
    (layers.Dropout, dict(rate=0.5), ["rate", "seed", "noise_shape"]),
    (layers.BatchNormalization, {}, ["axis", "momentum", "epsilon", "center", "scale"]),
    (layers.Reshape, dict(target_shape=(2, 2)), ["target_shape"]),
    (layers.Input, dict(shape=(4,)), ["shape", "batch_size", "dtype", "name"]),
    (layers.Activation, dict(activation="relu"), ["activation"]),
    (layers.ReLU, {}, ["max_value", "negative_slope", "threshold"]),
    (layers.LeakyReLU, {}, ["negative_slope"]),
    (layers.Softmax, {}, ["axis"]),
    (layers.Concatenate, {}, ["axis"]),
    (layers.Flatten, {}, ["data_format"]),
    (layers.GlobalAveragePooling2D, {}, ["keepdims", "data_format"]),
]


def image_tree(root):
    """root/a/0.png, root/b/1.png: two small images, or None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    for i, name in enumerate("ab"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.full((6, 5, 3), 60 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_random_bad_arguments_raise_only_value_or_type_errors(tmp_path):
    rnd = random.Random(SEED)
    model, x, y = model_and_data()
    images = image_tree(tmp_path / "images")
    seen = {"refused": 0, "accepted": 0}
    escaped = []

    def run(label, call, check_model=True):
        snap = snapshot(model) if check_model else None
        try:
            with deadline(SECONDS_PER_CALL, label):
                call()
        except (ValueError, TypeError):
            seen["refused"] += 1
            if check_model:
                assert_unchanged(model, snap, label)
            return False
        except Hang as exc:
            escaped.append(f"{label}: hang ({exc})")
        except Exception as exc:  # noqa: BLE001  (what the test is looking for)
            escaped.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            seen["accepted"] += 1
        return True

    for i in range(CALLS):
        kind = rnd.random()
        if kind < 0.65:
            name, good, names = rnd.choice(model_calls(x, y))
            kwargs = dict(good)
            for key in rnd.sample(names, min(len(names), rnd.choice([1, 1, 2]))):
                pool = generic_values()
                if key in ("x", "y", "weights", "one weight", "validation_data"):
                    pool += data_values(x, y)
                if key in ("epochs", "initial_epoch"):
                    pool = [v for v in pool if not (isinstance(v, (int, np.integer))
                                                    and not isinstance(v, bool) and v > 3)]
                kwargs[key] = rnd.choice(pool)
            label = f"#{i} {name}({', '.join(f'{k}={v!r:.40}' for k, v in kwargs.items())})"
            if name == "set_weights":
                weights = model.get_weights()
                if "one weight" in kwargs:
                    weights[rnd.randrange(len(weights))] = kwargs["one weight"]
                else:
                    weights = kwargs["weights"]
                changed = run(label, lambda: model.set_weights(weights))
            else:
                changed = run(label, lambda: getattr(model, name)(**kwargs))
            if changed and name == "compile":     # a compile that took: back to the model's own
                model, x, y = model_and_data()
        elif kind < 0.85:
            cls, good, names = rnd.choice(LAYERS)
            kwargs = dict(good)
            kwargs[rnd.choice(names)] = rnd.choice(generic_values())
            run(f"#{i} {cls.__name__}({kwargs!r:.120})", lambda: cls(**kwargs), False)
        elif kind < 0.92:
            value = rnd.choice(generic_values() + [str(tmp_path / "nowhere"), str(tmp_path)])
            run(f"#{i} mnist.load_data({value!r:.60})", lambda: mnist.load_data(value), False)
        elif kind < 0.97 and images is not None:
            key = rnd.choice(["image_size", "color_mode", "validation_split", "subset", "seed",
                              "shuffle", "class_names", "directory"])
            kwargs = {"directory": images, "image_size": (4, 4),
                      key: rnd.choice(generic_values())}
            run(f"#{i} image_dataset_from_directory({kwargs!r:.120})",
                lambda: pynn.data.image_dataset_from_directory(**kwargs), False)
        else:
            labels = rnd.choice(generic_values() + data_values(x, y))
            classes = rnd.choice(generic_values() + [None])
            run(f"#{i} to_categorical({labels!r:.40}, {classes!r:.40})",
                lambda: pynn.utils.to_categorical(labels, classes), False)
    assert not escaped, "\n".join(escaped)
    # the pools must exercise both outcomes, or the test checks nothing
    assert seen["refused"] > CALLS // 2 and seen["accepted"] > 10, seen
