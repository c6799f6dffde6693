"""Layers with Keras's names, signatures and weight layouts."""
from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, LeakyReLU
from .activations import ELU, PReLU, ReLU, Softmax   # activations (engineer A)
from .image_preprocessing import (CenterCrop, RandomCrop, RandomFlip, RandomRotation,
                                  RandomTranslation, RandomZoom, Resizing)
from .input_layer import Input, InputLayer
from .merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, maximum, minimum, multiply, subtract)
from .node import KerasTensor
from .normalization import BatchNormalization
# engineer E: normalization and noise layers
from .norm_noise import (GaussianDropout, GaussianNoise, GroupNormalization, LayerNormalization,
                         SpatialDropout2D, UnitNormalization)
from .preprocessing import Normalization, RandomBrightness, RandomContrast, Rescaling
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .regularization import Dropout
from .reshaping import Flatten, Reshape
# engineer D (#16): 1-D convolution and pooling, global max pooling, RepeatVector
from .sequence import (AveragePooling1D, Conv1D, GlobalAveragePooling1D, GlobalMaxPooling1D,
                       GlobalMaxPooling2D, MaxPooling1D, RepeatVector)
from .activity_regularization import ActivityRegularization  # engineer F
from .embedding import Embedding, Masking, TimeDistributed   # engineer G
# transposed convolution, upsampling, padding, cropping (issue 16, part C)
from .upsampling import Conv2DTranspose, Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding2D
# convolution variants (engineer B)
from .conv_variants import DepthwiseConv2D, Permute, SeparableConv2D
from .rnn import GRU, LSTM, Bidirectional, SimpleRNN  # recurrent layers (engineer H)

__all__ = ["Layer", "Input", "InputLayer", "Dense", "Activation", "LeakyReLU", "ReLU", "Softmax", "Conv2D",
           "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape",
           "Dropout", "BatchNormalization", "Rescaling", "Normalization",
           "RandomContrast", "RandomBrightness", "Add", "Subtract", "Multiply", "Average", "Maximum",
           "Minimum", "Concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "concatenate", "Resizing", "CenterCrop", "RandomCrop", "RandomFlip",
           "RandomRotation", "RandomZoom", "RandomTranslation",
           "ELU", "PReLU"]   # activations (engineer A)
__all__ += ["Conv1D", "MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D",   # engineer D
            "GlobalMaxPooling2D", "GlobalAveragePooling1D", "RepeatVector"]
__all__ += ["ActivityRegularization"]  # engineer F
__all__ += ["Embedding", "Masking", "TimeDistributed"]   # engineer G
# engineer E: normalization and noise layers
__all__ += ["LayerNormalization", "GroupNormalization", "UnitNormalization", "SpatialDropout2D",
            "GaussianNoise", "GaussianDropout"]
# transposed convolution, upsampling, padding, cropping (issue 16, part C)
__all__ += ["Conv2DTranspose", "UpSampling2D", "UpSampling1D", "ZeroPadding2D", "Cropping2D"]
__all__ += ["DepthwiseConv2D", "SeparableConv2D", "Permute"]   # engineer B
__all__ += ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]   # recurrent layers (engineer H)
