"""Real Keras code with recurrent layers, run with `import pynn as keras`: only the data
loading is changed (small random arrays instead of the downloaded data and tf.data).
"""
import numpy as np

import pynn as keras


def test_timeseries_weather_forecasting_lstm(tmp_path, monkeypatch):
    """https://keras.io/examples/timeseries/timeseries_weather_forecasting/ : the model
    ("Training" section) and its fit with EarlyStopping and ModelCheckpoint, as written
    there; the jena climate windows replaced by random (batch, 120, 7) arrays."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    learning_rate = 0.001
    epochs = 2
    # data loading, changed: random windows in place of keras.preprocessing.timeseries_dataset_from_array
    x_train = rng.standard_normal((64, 120, 7)).astype(np.float32)
    y_train = rng.standard_normal((64, 1)).astype(np.float32)
    x_val = rng.standard_normal((32, 120, 7)).astype(np.float32)
    y_val = rng.standard_normal((32, 1)).astype(np.float32)
    inputs = x_train  # the example takes the shape from its first batch

    # ---- the example's code ----
    inputs = keras.layers.Input(shape=(inputs.shape[1], inputs.shape[2]))
    lstm_out = keras.layers.LSTM(32)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)

    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    model.summary()

    path_checkpoint = "model_checkpoint.weights.h5"
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)

    modelckpt_callback = keras.callbacks.ModelCheckpoint(
        monitor="val_loss",
        filepath=path_checkpoint,
        verbose=1,
        save_weights_only=True,
        save_best_only=True,
    )

    history = model.fit(
        x_train, y_train,            # changed: arrays for dataset_train
        epochs=epochs,
        validation_data=(x_val, y_val),
        callbacks=[es_callback, modelckpt_callback],
    )
    # ---- end of the example's code ----
    assert len(history.history["loss"]) == epochs
    assert np.isfinite(history.history["val_loss"]).all()
    assert (tmp_path / path_checkpoint).exists()
    model.load_weights(path_checkpoint)
    assert model.predict(x_val, verbose=0).shape == (32, 1)


def test_bidirectional_lstm_sequence_classification():
    """https://keras.io/api/layers/recurrent_layers/bidirectional/ : the example's model,
    as written there, trained on random (batch, 5, 10) sequences with 5 classes."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 5, 10)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)]

    # ---- the example's code ----
    model = keras.Sequential([
        keras.Input(shape=(5, 10)),
        keras.layers.Bidirectional(keras.layers.LSTM(10, return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.LSTM(10)),
        keras.layers.Dense(5, activation="softmax"),
    ])
    model.compile(loss='categorical_crossentropy', optimizer='rmsprop')
    # ---- end of the example's code ----
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x, verbose=0).shape == (16, 5)
