"""Checks of the values that configure pynn objects: the constructor arguments of layers,
initializers, losses and optimizers, which are also what a model file's config holds.

One check per kind of value, shared by every class, so a wrong value is refused with the
same message whether it comes from user code or from a file (pynn.saving wraps it into a
ModelFileError naming the file).  Each returns the value normalised (a Python bool, int or
float) or raises ValueError in Keras's words: where, which argument, what was expected,
what was received.  Bools are bools (not strings or numbers), ints are ints (not floats or
bools), sizes are at most MAX_SIZE, and real numbers finite and within what float32, the
type pynn computes in, can hold.
"""
import math
import numbers

import numpy as np

MAX_SIZE = 2**31 - 1            # units, filters, window sizes, shape entries, values per sample
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_SEED = 2**64 - 1
MAX_RANK = 64                   # axis arguments lie in [-MAX_RANK, MAX_RANK] (NumPy's limit)


def shown(value, width=80):
    """repr(value), shortened: a hostile config may hold a megabyte-long string."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def invalid(where, arg, expected, value):
    """The ValueError for argument `arg` of `where` holding `value` instead of `expected`."""
    return ValueError(f"{where}: received an invalid value for `{arg}`, expected {expected}. "
                      f"Received: {arg}={shown(value)}")


def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_bool(value, arg, where):
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(where, arg, "a boolean (True or False)", value)
    return bool(value)


def check_int(value, arg, where, low=1, high=MAX_SIZE):
    """An int in [low, high] (a bool or a float is refused, even 3.0)."""
    if not is_int(value) or not low <= value <= high:
        if low == 1:
            expected = f"a positive integer (at most {high})"
        elif low == 0:
            expected = f"a non-negative integer (at most {high})"
        else:
            expected = f"an integer in [{low}, {high}]"
        raise invalid(where, arg, expected, value)
    return int(value)


def check_optional_int(value, arg, where, low=1, high=MAX_SIZE):
    return None if value is None else check_int(value, arg, where, low, high)


def check_seed(value, arg, where):
    """None or a non-negative integer below 2**64."""
    return check_optional_int(value, arg, where, 0, MAX_SEED)


def check_number(value, arg, where, low=-FLOAT32_MAX, high=FLOAT32_MAX, low_open=False,
                 high_open=False):
    """A finite real number in the interval from low to high (open ends where asked), as
    a float; never beyond float32's range."""
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        try:
            number = float(value)
        except OverflowError:          # an int too big for a float
            number = None
    if number is None or not math.isfinite(number) or abs(number) > FLOAT32_MAX or \
            not (number > low if low_open else number >= low) or \
            not (number < high if high_open else number <= high):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise invalid(where, arg, f"a finite number in {bounds}", value)
    return number


def check_choice(value, arg, where, choices):
    """One of the strings `choices` (compared in lower case), as that choice."""
    key = value.lower() if isinstance(value, str) else None
    if key not in choices:
        raise invalid(where, arg, f"one of {', '.join(repr(c) for c in choices)}", value)
    return key


def check_name(value, arg, where):
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise invalid(where, arg, "a non-empty string", value)
    return value


def resolve_named(identifier, base, by_name, kind, qualname, where):
    """What Keras's get() of losses and optimizers resolves: an instance of `base` as it
    is, a subclass of it instantiated, or a name in `by_name` (lower case keys; matched
    case-insensitively) instantiated.  kind: "a loss", "an optimizer"; qualname: the base's
    public name ("pynn.losses.Loss"), both for the messages.  An unknown name is a
    ValueError, anything else a TypeError."""
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, base):
        return identifier()
    if isinstance(identifier, str):
        cls = by_name.get(identifier.lower())
        if cls is None:
            raise ValueError(f"{where}: unknown {kind.split(' ', 1)[1]} {identifier!r}; expected "
                             f"one of {', '.join(sorted(by_name))} or a {qualname} instance")
        return cls()
    raise TypeError(f"{where}: expected {kind} name or {qualname} instance, received "
                    f"{type(identifier).__name__} {identifier!r}")
