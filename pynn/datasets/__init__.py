"""Data sets bundled with pynn (no download)."""
from . import digits

__all__ = ["digits"]
