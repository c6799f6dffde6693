"""Layers with Keras's names, signatures and weight layouts."""
from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, LeakyReLU, ReLU, Softmax
from .image_preprocessing import (CenterCrop, RandomCrop, RandomFlip, RandomRotation,
                                  RandomTranslation, RandomZoom, Resizing)
from .input_layer import Input, InputLayer
from .merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, maximum, minimum, multiply, subtract)
from .node import KerasTensor
from .normalization import BatchNormalization
from .preprocessing import Normalization, RandomBrightness, RandomContrast, Rescaling
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .regularization import Dropout
from .reshaping import Flatten, Reshape
from .rnn import GRU, LSTM, Bidirectional, SimpleRNN  # recurrent layers (engineer H)

__all__ = ["Layer", "Input", "InputLayer", "Dense", "Activation", "LeakyReLU", "ReLU", "Softmax", "Conv2D",
           "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape",
           "Dropout", "BatchNormalization", "Rescaling", "Normalization",
           "RandomContrast", "RandomBrightness", "Add", "Subtract", "Multiply", "Average", "Maximum",
           "Minimum", "Concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "concatenate", "Resizing", "CenterCrop", "RandomCrop", "RandomFlip",
           "RandomRotation", "RandomZoom", "RandomTranslation",
           # recurrent layers (engineer H)
           "SimpleRNN", "LSTM", "GRU", "Bidirectional"]
