"""Recurrent text classifiers as keras.io and the TensorFlow tutorials write them, run with
`import pynn as keras` and only the data loading changed (random id sequences of the
guides' vocabulary sizes instead of IMDB downloads, fewer of them):

- "Bidirectional LSTM on IMDB", https://keras.io/examples/nlp/bidirectional_lstm_imdb/
  (Input(shape=(None,), dtype="int32"), Embedding, two Bidirectional LSTMs, pad_sequences);
- "Text classification with an RNN", https://www.tensorflow.org/text/tutorials/text_classification_rnn
  (Embedding(mask_zero=True) into Bidirectional(LSTM(64)); the stacked variant with
  return_sequences and Dropout); the TextVectorization encoder is data loading here: the
  ids it would give are fed directly.

Each checks what Keras guarantees: shapes, parameter counts, log keys, and that training
lowers the loss on a learnable rule."""
import numpy as np
import pytest

import pynn as keras
from pynn import layers


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1)


def imdb_like(n, vocab, rng, maxlen_range=(5, 260)):
    """Reviews as lists of ids; label 1 when the ids < 100 outnumber the ids >= vocab / 2."""
    seqs = [rng.integers(1, vocab, size=rng.integers(*maxlen_range)).tolist() for _ in range(n)]
    for s in seqs[: n // 2]:
        s[: len(s) // 2] = rng.integers(1, 100, size=len(s) // 2).tolist()
    labels = np.array([int(sum(i < 100 for i in s) > sum(i >= vocab // 2 for i in s))
                       for s in seqs])
    return seqs, labels


def test_bidirectional_lstm_imdb_example():
    max_features = 20000  # Only consider the top 20k words
    maxlen = 200  # Only consider the first 200 words of each movie review

    # Input for variable-length sequences of integers
    inputs = keras.Input(shape=(None,), dtype="int32")
    # Embed each integer in a 128-dimensional vector
    x = layers.Embedding(max_features, 128)(inputs)
    # Add 2 bidirectional LSTMs
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    # Add a classifier
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.summary()
    # Embedding 20000*128; each Bidirectional LSTM 2 * 4 * 64 * (in + 64 + 1)
    assert model.count_params() == 20000 * 128 + 2 * 4 * 64 * (128 + 65) + \
        2 * 4 * 64 * (128 + 65) + 129

    rng = np.random.default_rng(0)
    x_train, y_train = imdb_like(96, max_features, rng)
    x_val, y_val = imdb_like(32, max_features, rng)
    # Use pad_sequence to standardize sequence length:
    # this will truncate sequences longer than 200 words and zero-pad sequences shorter than 200 words.
    x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
    x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2,
                        validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.predict(x_val[:5], verbose=0).shape == (5, 1)
    # a free time axis: shorter sequences run too
    assert model.predict(x_val[:3, -17:], verbose=0).shape == (3, 1)


def _rnn_tutorial_data(rng, vocab=1000, n=64, maxlen=40):
    seqs, labels = imdb_like(n, vocab, rng, (3, maxlen))
    return keras.utils.pad_sequences(seqs, maxlen=maxlen, padding="post"), labels


def test_text_classification_rnn_tutorial():
    VOCAB_SIZE = 1000
    model = keras.Sequential([
        keras.Input(shape=(None,), dtype="int64"),     # the encoder's output: ids, 0 = padding
        keras.layers.Embedding(
            input_dim=VOCAB_SIZE,
            output_dim=64,
            # Use masking to handle the variable sequence lengths
            mask_zero=True),
        keras.layers.Bidirectional(keras.layers.LSTM(64)),
        keras.layers.Dense(64, activation='relu'),
        keras.layers.Dense(1)
    ])
    assert [layer.supports_masking for layer in model.layers] == [True, True, True, True]
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adam(1e-4),
                  metrics=['accuracy'])
    rng = np.random.default_rng(2)
    x, y = _rnn_tutorial_data(rng)
    # the padding is masked: a sample predicts the same with and without extra padding
    sample = x[:1, :10].copy()
    sample[0, 7:] = 0
    longer = np.concatenate([sample, np.zeros((1, 13), sample.dtype)], axis=1)
    np.testing.assert_allclose(model.predict(sample, verbose=0),
                               model.predict(longer, verbose=0), rtol=1e-5, atol=1e-6)
    history = model.fit(x, y, epochs=3, batch_size=16, validation_data=(x, y),
                        validation_steps=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    test_loss, test_acc = model.evaluate(x, y, verbose=0)
    assert 0 <= test_acc <= 1

    model = keras.Sequential([
        keras.Input(shape=(None,), dtype="int64"),
        keras.layers.Embedding(VOCAB_SIZE, 64, mask_zero=True),
        keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.LSTM(32)),
        keras.layers.Dense(64, activation='relu'),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(1)
    ])
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.Adam(1e-4),
                  metrics=['accuracy'])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2
    assert model.predict(x[:4], verbose=0).shape == (4, 1)
