"""keras.io "Timeseries classification from scratch" (FordA), run with `import pynn as keras`:
https://keras.io/examples/timeseries/timeseries_classification_from_scratch/

The model-building, training and evaluation code is the example's, as written for Keras 3
(`import keras`; the checkpoint is "best_model.keras": the TF 2 version of the page saved
"best_model.h5").  Only the data loading changed: random series of the FordA shapes (labels
-1 and 1, then the example's own reshape, shuffle and relabelling), 64 training and 32 test
series of length 40 instead of the 3601 x 500 download, and the number of epochs (the
example's 500, with early stopping after 50 without progress, would take minutes).  The
plots are left out (matplotlib's figures).
"""
import numpy as np

import pynn as keras


def test_timeseries_classification_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(1)

    # ---- data: random series in place of readucr(root_url + "FordA_TRAIN.tsv") ----
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(64, 40))
    y_train = rng.choice([-1, 1], size=64)
    x_train[y_train == 1] += np.sin(np.linspace(0, 6, 40))     # something to learn
    x_test = rng.normal(size=(32, 40))
    y_test = rng.choice([-1, 1], size=32)
    x_test[y_test == 1] += np.sin(np.linspace(0, 6, 40))

    # ---- the example, from "Standardizing the data" on ----
    x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
    x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))

    num_classes = len(np.unique(y_train))

    idx = np.random.permutation(len(x_train))
    x_train = x_train[idx]
    y_train = y_train[idx]

    y_train[y_train == -1] = 0
    y_test[y_test == -1] = 0

    def make_model(input_shape):
        input_layer = keras.layers.Input(input_shape)

        conv1 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(input_layer)
        conv1 = keras.layers.BatchNormalization()(conv1)
        conv1 = keras.layers.ReLU()(conv1)

        conv2 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv1)
        conv2 = keras.layers.BatchNormalization()(conv2)
        conv2 = keras.layers.ReLU()(conv2)

        conv3 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv2)
        conv3 = keras.layers.BatchNormalization()(conv3)
        conv3 = keras.layers.ReLU()(conv3)

        gap = keras.layers.GlobalAveragePooling1D()(conv3)

        output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)

        return keras.models.Model(inputs=input_layer, outputs=output_layer)

    model = make_model(input_shape=x_train.shape[1:])
    try:
        import matplotlib  # noqa: F401   (plot_model draws with matplotlib)
    except ImportError:
        matplotlib = None
    if matplotlib is not None:
        keras.utils.plot_model(model, show_shapes=True)

    epochs = 3          # the example: 500
    batch_size = 32

    callbacks = [
        keras.callbacks.ModelCheckpoint(
            "best_model.keras", save_best_only=True, monitor="val_loss"
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=20, min_lr=0.0001
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, verbose=1),
    ]
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        validation_split=0.2,
        verbose=1,
    )

    model = keras.models.load_model("best_model.keras")

    test_loss, test_acc = model.evaluate(x_test, y_test)

    print("Test accuracy", test_acc)
    print("Test loss", test_loss)

    metric = "sparse_categorical_accuracy"
    train_curve, val_curve = history.history[metric], history.history["val_" + metric]

    # ---- what Keras guarantees for this code ----
    assert num_classes == 2
    assert model.count_params() == (3 * 1 * 64 + 64) + 2 * (3 * 64 * 64 + 64) + \
        3 * 4 * 64 + 64 * 2 + 2
    conv = [la for la in model.layers if isinstance(la, keras.layers.Conv1D)]
    assert [c.kernel.shape for c in conv] == [(3, 1, 64), (3, 64, 64), (3, 64, 64)]
    assert model.outputs[0].shape == (None, 2)
    assert len(train_curve) == len(val_curve) == epochs
    assert set(history.history) >= {"loss", metric, "val_loss", "val_" + metric}
    assert all(np.isfinite(history.history["loss"]))
    assert 0.0 <= test_acc <= 1.0 and np.isfinite(test_loss)
    # the checkpoint holds the epoch of the lowest validation loss: evaluating it on the
    # validation rows gives that loss back
    best = int(np.argmin(history.history["val_loss"]))
    split = int(len(x_train) * (1 - 0.2))           # Keras's validation_split: the last rows
    val_loss = model.evaluate(x_train[split:], y_train[split:], verbose=0)[0]
    assert abs(val_loss - history.history["val_loss"][best]) <= 1e-4 * max(1.0, val_loss)
