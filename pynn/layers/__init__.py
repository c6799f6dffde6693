"""Layers with Keras's names, signatures and weight layouts."""
from .base import Layer
from .core import Activation, Dense, Input, InputLayer, LeakyReLU

__all__ = ["Layer", "Input", "InputLayer", "Dense", "Activation", "LeakyReLU"]
