"""Real Keras code with SeparableConv2D, run with `import pynn as keras` and only the data
loading changed."""
import numpy as np

import pynn as keras
from pynn import layers


def test_deep_learning_with_python_mini_xception():
    """The "mini Xception" convnet of François Chollet's Deep Learning with Python (2nd
    edition, chapter 9, "Putting it together: A mini Xception-like model"): depthwise-
    separable convolutions with residual connections and batch normalization, after a data
    augmentation stage.  The images are smaller random arrays instead of the cats-vs-dogs
    download (input 180x180 -> 48x48); every line of the model and compile code is the
    book's."""
    keras.utils.set_random_seed(0)
    data_augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.1),
            layers.RandomZoom(0.2),
        ]
    )

    inputs = keras.Input(shape=(48, 48, 3))
    x = data_augmentation(inputs)

    x = layers.Rescaling(1./255)(x)
    x = layers.Conv2D(filters=32, kernel_size=5, use_bias=False)(x)

    for size in [32, 64, 128, 256, 512]:
        residual = x

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same", use_bias=False)(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        residual = layers.Conv2D(
            size, 1, strides=2, padding="same", use_bias=False)(residual)
        x = layers.add([x, residual])

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)

    model.compile(loss="binary_crossentropy",
                  optimizer="rmsprop",
                  metrics=["accuracy"])

    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("SeparableConv2D") == 10 and kinds.count("Add") == 5
    # parameters: the stem, then per block two separable convolutions (depthwise 3x3 + pointwise,
    # no bias), two batch normalizations and the 1x1 residual projection; the classifier
    expected, c = 5 * 5 * 3 * 32, 32
    for size in [32, 64, 128, 256, 512]:
        expected += 4 * c + 9 * c + c * size + 4 * size + 9 * size + size * size + c * size
        c = size
    expected += 512 + 1
    assert model.count_params() == expected
    rng = np.random.default_rng(0)
    x_train = rng.uniform(0, 255, size=(12, 48, 48, 3)).astype(np.float32)
    y_train = (x_train[:, :24].mean(axis=(1, 2, 3)) > x_train[:, 24:].mean(axis=(1, 2, 3)))
    history = model.fit(x_train, y_train.astype(np.float32), epochs=2, batch_size=4,
                        validation_data=(x_train[:4], y_train[:4].astype(np.float32)),
                        verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x_train[:3], verbose=0).shape == (3, 1)
