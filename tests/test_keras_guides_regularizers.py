"""Real Keras code with weight regularization, run with `import pynn as keras` (engineer F).

The code is François Chollet's "Deep Learning with Python" (2nd edition), chapter 5,
listings 5.13 ("Adding L2 weight regularization to the model") and 5.14 ("Different
weight regularizers available in Keras"), from the book's official notebooks:
https://github.com/fchollet/deep-learning-with-python-notebooks/blob/master/chapter05_fundamentals-of-ml.ipynb
copied as written; only the data loading is changed (random multi-hot vectors and labels
of the IMDB shapes, fewer and shorter, instead of keras.datasets.imdb).

(The TensorFlow tutorial "Overfit and underfit",
https://www.tensorflow.org/tutorials/keras/overfit_and_underfit, builds its l2_model the
same way but with activation='elu', an InverseTimeDecay schedule and tensorflow_docs
callbacks, which pynn does not have; so it is not run here.)

Checked: the model trains, its reported loss is the data loss plus exactly sum(model.losses)
(Keras's compute_loss), and each penalty is the regularizer's formula on the weights."""
import numpy as np
import pytest

import pynn as keras
from pynn import layers


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1)


def imdb_like(n=96, dimension=400):
    """The chapter's vectorize_sequences output, of random word indices."""
    rng = np.random.default_rng(0)
    train_data = (rng.random((n, dimension)) < 0.05).astype("float32")
    train_labels = rng.integers(0, 2, n).astype("float32")
    return train_data, train_labels


def bce(p, y):
    p = np.clip(p.astype(np.float64).reshape(-1), 1e-7, 1 - 1e-7)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_listing_5_13_l2_weight_regularization():
    train_data, train_labels = imdb_like()

    # ---- the book's code, as written ----
    from pynn import regularizers   # the book: from tensorflow.keras import regularizers
    model = keras.Sequential([
        layers.Dense(16,
                     kernel_regularizer=regularizers.l2(0.002),
                     activation="relu"),
        layers.Dense(16,
                     kernel_regularizer=regularizers.l2(0.002),
                     activation="relu"),
        layers.Dense(1, activation="sigmoid")
    ])
    model.compile(optimizer="rmsprop",
                  loss="binary_crossentropy",
                  metrics=["accuracy"])
    history_l2_reg = model.fit(
        train_data, train_labels,
        epochs=20, batch_size=512, validation_split=0.4)
    # ---- end of the book's code ----

    assert sorted(history_l2_reg.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history_l2_reg.history["loss"]) == 20
    assert history_l2_reg.history["loss"][-1] < history_l2_reg.history["loss"][0]
    penalties = model.losses
    assert len(penalties) == 2
    for p, dense in zip(penalties, model.layers[:2]):
        np.testing.assert_allclose(p, 0.002 * np.sum(dense.kernel.numpy().astype(np.float64) ** 2),
                                   rtol=1e-5)
    total = model.evaluate(train_data, train_labels, verbose=0, batch_size=512)[0]
    data = bce(model.predict(train_data, verbose=0), train_labels)
    assert total > data
    np.testing.assert_allclose(total - data, float(np.sum(penalties)), rtol=1e-4)


def test_listing_5_14_the_other_regularizers():
    train_data, train_labels = imdb_like()

    # ---- the book's code, as written ----
    from pynn import regularizers   # the book: from tensorflow.keras import regularizers
    regularizers.l1(0.001)
    regularizers.l1_l2(l1=0.001, l2=0.001)
    # ---- end of the book's code ----

    for reg in (regularizers.l1(0.001), regularizers.l1_l2(l1=0.001, l2=0.001)):
        model = keras.Sequential([
            layers.Dense(16, kernel_regularizer=reg, activation="relu"),
            layers.Dense(16, kernel_regularizer=reg, activation="relu"),
            layers.Dense(1, activation="sigmoid")
        ])
        model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(train_data, train_labels, epochs=3, batch_size=512, verbose=0)
        total = model.evaluate(train_data, train_labels, verbose=0, batch_size=512)[0]
        data = bce(model.predict(train_data, verbose=0), train_labels)
        np.testing.assert_allclose(total - data, float(np.sum(model.losses)), rtol=1e-4)
        kernel = model.layers[0].kernel.numpy().astype(np.float64)
        np.testing.assert_allclose(model.losses[0], float(reg(kernel)), rtol=1e-5)
