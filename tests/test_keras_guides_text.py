"""Text models as the TensorFlow tutorials and the Keras API docs write them, run with
`import pynn as keras` (and `tf.keras` / `tf.metrics` resolving to pynn's) and only the
data loading changed: small random integer sequences in place of the IMDB downloads and
TextVectorization (engineer G, issue #16).

  - TensorFlow, "Basic text classification" (Embedding, Dropout, GlobalAveragePooling1D,
    Dense): https://www.tensorflow.org/tutorials/keras/text_classification
    (tensorflow/docs, site/en/tutorials/keras/text_classification.ipynb at de53440).  One
    change beside the data: the tutorial's `metrics=tf.metrics.BinaryAccuracy(...)` is put
    in a list, which Keras 3 itself requires ("Expected `metrics` argument to be a list,
    tuple, or dict").  GlobalAveragePooling1D is engineer D's; until it is merged the test
    is skipped on that condition only.
  - TensorFlow, "Word embeddings" (the Embedding layer on its own):
    https://www.tensorflow.org/text/guide/word_embeddings
  - Keras 3's Embedding API example: https://keras.io/api/layers/core_layers/embedding/
  - Keras 3's Masking API example (Masking before an LSTM, engineer H's; skipped on that
    condition only until it is merged): https://keras.io/api/layers/core_layers/masking/
"""
import types

import numpy as np
import pytest

import pynn as keras
from pynn import layers, losses

# `import tensorflow as tf` in the tutorials: the names they use, from pynn
tf = types.SimpleNamespace(keras=keras, metrics=keras.metrics,
                           constant=lambda values: np.asarray(values))


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(3)


def _imdb_like(n, max_features, sequence_length, seed):
    """What vectorize_text gives (int ids padded to sequence_length) and 0/1 labels: a
    batched dataset, as text_dataset_from_directory(...).map(vectorize_text) is."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, max_features + 1, size=(n, sequence_length)).astype(np.int64)
    labels = rng.integers(0, 2, size=(n,)).astype(np.int32)
    return keras.data.Dataset.from_tensor_slices((ids, labels)).batch(32)


@pytest.mark.skipif(not hasattr(keras.layers, "GlobalAveragePooling1D"),
                    reason="GlobalAveragePooling1D (engineer D) is not merged yet")
def test_tensorflow_basic_text_classification():
    max_features = 10000
    sequence_length = 250
    raw = [_imdb_like(n, max_features, sequence_length, s) for n, s in ((96, 0), (32, 1),
                                                                        (32, 2))]
    AUTOTUNE = keras.data.AUTOTUNE
    train_ds, val_ds, test_ds = raw

    # ---- from the tutorial ("Configure the dataset for performance" on) ----
    train_ds = train_ds.cache().prefetch(buffer_size=AUTOTUNE)
    val_ds = val_ds.cache().prefetch(buffer_size=AUTOTUNE)
    test_ds = test_ds.cache().prefetch(buffer_size=AUTOTUNE)

    embedding_dim = 16

    model = tf.keras.Sequential([
      layers.Embedding(max_features + 1, embedding_dim),
      layers.Dropout(0.2),
      layers.GlobalAveragePooling1D(),
      layers.Dropout(0.2),
      layers.Dense(1)])

    model.summary()

    model.compile(loss=losses.BinaryCrossentropy(from_logits=True),
                  optimizer='adam',
                  metrics=[tf.metrics.BinaryAccuracy(threshold=0.0)])

    epochs = 10
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs)

    loss, accuracy = model.evaluate(test_ds)

    print("Loss: ", loss)
    print("Accuracy: ", accuracy)

    history_dict = history.history
    history_dict.keys()

    acc = history_dict['binary_accuracy']
    val_acc = history_dict['val_binary_accuracy']
    loss = history_dict['loss']
    val_loss = history_dict['val_loss']

    epochs = range(1, len(acc) + 1)
    # ---- end of the tutorial's code ----

    assert len(acc) == len(val_acc) == len(loss) == len(val_loss) == 10
    assert loss[-1] < loss[0]                       # it learns the training set
    assert model.count_params() == (max_features + 1) * 16 + 17
    assert [type(l).__name__ for l in model.layers] == [
        "Embedding", "Dropout", "GlobalAveragePooling1D", "Dropout", "Dense"]


def test_tensorflow_word_embeddings_guide():
    # Embed a 1,000 word vocabulary into 5 dimensions.
    embedding_layer = tf.keras.layers.Embedding(1000, 5)

    result = embedding_layer(tf.constant([1, 2, 3]))
    result.numpy() if hasattr(result, "numpy") else result
    assert result.shape == (3, 5)

    result = embedding_layer(tf.constant([[0, 1, 2], [3, 4, 5]]))
    assert result.shape == (2, 3, 5)                # "TensorShape([2, 3, 5])"
    np.testing.assert_array_equal(result[1, 0], embedding_layer.get_weights()[0][3])


def test_keras_embedding_api_example():
    model = keras.Sequential()
    model.add(keras.layers.Embedding(1000, 64))
    # The model will take as input an integer matrix of size (batch,
    # input_length), and the largest integer (i.e. word index) in the input
    # should be no larger than 999 (vocabulary size).
    # Now model.output_shape is (None, 10, 64), where `None` is the batch
    # dimension.
    input_array = np.random.randint(1000, size=(32, 10))
    model.compile('rmsprop', 'mse')
    output_array = model.predict(input_array)
    print(output_array.shape)
    assert output_array.shape == (32, 10, 64)
    np.testing.assert_array_equal(output_array, model.get_weights()[0][input_array])


@pytest.mark.skipif(not hasattr(keras.layers, "LSTM"),
                    reason="LSTM (engineer H) is not merged yet")
def test_keras_masking_api_example():
    samples, timesteps, features = 32, 10, 8
    inputs = np.random.random([samples, timesteps, features]).astype(np.float32)
    inputs[:, 3, :] = 0.
    inputs[:, 5, :] = 0.

    model = keras.models.Sequential()
    model.add(keras.layers.Masking(mask_value=0.0))
    model.add(keras.layers.LSTM(32))
    output = model(inputs)
    # The time step 3 and 5 will be skipped from LSTM calculation.
    assert output.shape == (32, 32)
    skipped = np.delete(inputs, [3, 5], axis=1)
    np.testing.assert_allclose(model.layers[-1](skipped), output, rtol=1e-5, atol=1e-6)
