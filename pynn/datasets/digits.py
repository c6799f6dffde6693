"""The handwritten digits bundled with pynn (the main job's data set).

1,797 images of 8x8 pixels with intensities 0..16, ten classes: the UCI ML "Optical
Recognition of Handwritten Digits" test set (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0),
as scikit-learn ships it.  Stored in the package (digits.npz, no pickle) with a fixed
split: 1,437 training and 360 test images, drawn once with a seeded permutation.
"""
import os

import numpy as np

_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")


def load_data():
    """((x_train, y_train), (x_test, y_test)) shaped like keras.datasets.mnist.load_data():
    uint8 images (n, 8, 8) with values 0..16 and uint8 labels 0..9."""
    with np.load(_PATH, allow_pickle=False) as data:
        return ((data["x_train"].copy(), data["y_train"].copy()),
                (data["x_test"].copy(), data["y_test"].copy()))
