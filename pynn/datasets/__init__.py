"""Data sets: the digits bundled with pynn, and MNIST read from files you provide
(nothing is downloaded)."""
from . import digits, mnist

__all__ = ["digits", "mnist"]
