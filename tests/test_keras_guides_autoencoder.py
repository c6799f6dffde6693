"""Keras's convolutional autoencoders, their model-building and training code copied as
written and run with `import pynn as keras` (issue 16, part C); only the data loading is
changed: small random images in [0, 1] of MNIST's shape instead of mnist.load_data().

  - "Convolutional autoencoder for image denoising", https://keras.io/examples/vision/autoencoder/
    (keras-team/keras-io, examples/vision/autoencoder.py): Conv2D, MaxPooling2D,
    Conv2DTranspose(strides=2), a sigmoid Conv2D, binary_crossentropy, adam.
  - "Building Autoencoders in Keras", https://blog.keras.io/building-autoencoders-in-keras.html,
    the convolutional autoencoder section: Conv2D, MaxPooling2D, UpSampling2D (its
    TensorBoard callback writes to pytest's tmp_path instead of /tmp/autoencoder).
"""
import numpy as np
import pytest

import pynn as keras
from pynn import layers
from pynn.models import Model


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1)
    np.random.seed(1)


def _mnist_like(n):
    """uint8 images (n, 28, 28), as mnist.load_data() returns them (a few: the examples
    train for 50 and 100 epochs)."""
    return np.random.default_rng(n + 7).integers(0, 256, size=(n, 28, 28)).astype(np.uint8)


def test_keras_io_convolutional_denoising_autoencoder():
    # ---- from the example (its display() calls, which only plot, left out) ----
    def preprocess(array):
        """
        Normalizes the supplied array and reshapes it into the appropriate format.
        """

        array = array.astype("float32") / 255.0
        array = np.reshape(array, (len(array), 28, 28, 1))
        return array

    def noise(array):
        """
        Adds random noise to each image in the supplied array.
        """

        noise_factor = 0.4
        noisy_array = array + noise_factor * np.random.normal(
            loc=0.0, scale=1.0, size=array.shape
        )

        return np.clip(noisy_array, 0.0, 1.0)

    # (train_data, _), (test_data, _) = mnist.load_data(): small random images instead
    train_data, test_data = _mnist_like(2), _mnist_like(1)

    # Normalize and reshape the data
    train_data = preprocess(train_data)
    test_data = preprocess(test_data)

    # Create a copy of the data with added noise
    noisy_train_data = noise(train_data)
    noisy_test_data = noise(test_data)

    input = layers.Input(shape=(28, 28, 1))

    # Encoder
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(input)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)

    # Decoder
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)

    # Autoencoder
    autoencoder = Model(input, x)
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    autoencoder.summary()

    history = autoencoder.fit(
        x=train_data,
        y=train_data,
        epochs=50,
        batch_size=128,
        shuffle=True,
        validation_data=(test_data, test_data),
    )

    predictions = autoencoder.predict(test_data)

    denoise = autoencoder.fit(
        x=noisy_train_data,
        y=train_data,
        epochs=100,
        batch_size=128,
        shuffle=True,
        validation_data=(noisy_test_data, test_data),
    )

    predictions_noisy = autoencoder.predict(noisy_test_data)

    # ---- what Keras guarantees ----
    assert autoencoder.output_shape == (None, 28, 28, 1)
    assert [tuple(l.output.shape) for l in autoencoder.layers[-3:]] == \
        [(None, 14, 14, 32), (None, 28, 28, 32), (None, 28, 28, 1)]
    assert autoencoder.count_params() == 28353            # the example's summary
    assert predictions.shape == predictions_noisy.shape == (1, 28, 28, 1)
    assert np.all((predictions >= 0) & (predictions <= 1))
    for h in (history.history, denoise.history):
        assert set(h) == {"loss", "val_loss"}
    assert len(history.history["loss"]) == 50 and len(denoise.history["loss"]) == 100
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert denoise.history["loss"][-1] < denoise.history["loss"][0]


def test_keras_blog_convolutional_autoencoder(tmp_path):
    from pynn.callbacks import TensorBoard

    # ---- from the blog post's "Convolutional autoencoder" section ----
    input_img = keras.Input(shape=(28, 28, 1))

    x = layers.Conv2D(16, (3, 3), activation='relu', padding='same')(input_img)
    x = layers.MaxPooling2D((2, 2), padding='same')(x)
    x = layers.Conv2D(8, (3, 3), activation='relu', padding='same')(x)
    x = layers.MaxPooling2D((2, 2), padding='same')(x)
    x = layers.Conv2D(8, (3, 3), activation='relu', padding='same')(x)
    encoded = layers.MaxPooling2D((2, 2), padding='same')(x)

    # at this point the representation is (4, 4, 8) i.e. 128-dimensional

    x = layers.Conv2D(8, (3, 3), activation='relu', padding='same')(encoded)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Conv2D(8, (3, 3), activation='relu', padding='same')(x)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Conv2D(16, (3, 3), activation='relu')(x)
    x = layers.UpSampling2D((2, 2))(x)
    decoded = layers.Conv2D(1, (3, 3), activation='sigmoid', padding='same')(x)

    autoencoder = keras.Model(input_img, decoded)
    autoencoder.compile(optimizer='adam', loss='binary_crossentropy')

    # (x_train, _), (x_test, _) = mnist.load_data(): small random images instead
    x_train, x_test = _mnist_like(2), _mnist_like(1)

    x_train = x_train.astype('float32') / 255.
    x_test = x_test.astype('float32') / 255.
    x_train = np.reshape(x_train, (len(x_train), 28, 28, 1))
    x_test = np.reshape(x_test, (len(x_test), 28, 28, 1))

    history = autoencoder.fit(x_train, x_train,
                              epochs=50,
                              batch_size=128,
                              shuffle=True,
                              validation_data=(x_test, x_test),
                              callbacks=[TensorBoard(log_dir=str(tmp_path / 'autoencoder'))])

    decoded_imgs = autoencoder.predict(x_test)

    # ---- what Keras guarantees ----
    encoder = keras.Model(input_img, encoded)
    assert encoder.output_shape == (None, 4, 4, 8)
    assert [tuple(l.output.shape) for l in autoencoder.layers if
            type(l).__name__ == "UpSampling2D"] == \
        [(None, 8, 8, 8), (None, 16, 16, 8), (None, 28, 28, 16)]
    assert autoencoder.count_params() == 4385
    assert decoded_imgs.shape == (1, 28, 28, 1)
    assert np.all((decoded_imgs >= 0) & (decoded_imgs <= 1))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert any((tmp_path / "autoencoder").rglob("*"))
