"""Keras code as the keras.io guides write it ("The Sequential model", "The Functional API",
"Transfer learning & fine-tuning", "Writing your own callbacks", "Training & evaluation
with the built-in methods") and as the TensorFlow tutorials write it ("Basic
classification", "Convolutional Neural Network", "Save and load models"), run with `import pynn as keras` and only the data loading
changed (random arrays of the guides' shapes, smaller, instead of MNIST/CIFAR downloads).
Each test follows one section of a guide and checks what Keras's own results guarantee:
shapes, parameter counts, log keys, frozen weights unchanged."""
import numpy as np
import pytest

import pynn as keras
from pynn import layers


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(1)


def test_sequential_guide():
    model = keras.Sequential([
        layers.Dense(2, activation="relu", name="layer1"),
        layers.Dense(3, activation="relu", name="layer2"),
        layers.Dense(4, name="layer3"),
    ])
    x = keras.ops.ones((3, 3))
    y = model(x)
    assert y.shape == (3, 4)

    layer1 = layers.Dense(2, activation="relu", name="l1")
    layer2 = layers.Dense(3, activation="relu", name="l2")
    layer3 = layers.Dense(4, name="l3")
    assert layer3(layer2(layer1(x))).shape == (3, 4)

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu"))
    model.add(layers.Dense(3, activation="relu"))
    model.add(layers.Dense(4))
    model.pop()
    assert len(model.layers) == 2

    layer = layers.Dense(3)
    assert layer.weights == []
    layer(keras.ops.ones((1, 4)))
    assert [w.shape for w in layer.weights] == [(4, 3), (3,)]

    model = keras.Sequential([layers.Dense(2, activation="relu"), layers.Dense(3, activation="relu"),
                              layers.Dense(4)])
    model(keras.ops.ones((1, 4)))
    assert len(model.weights) == 6

    model = keras.Sequential()
    model.add(keras.Input(shape=(4,)))
    model.add(layers.Dense(2, activation="relu"))
    assert [type(l).__name__ for l in model.layers] == ["Dense"]

    model = keras.Sequential()
    model.add(keras.Input(shape=(250, 250, 3)))
    model.add(layers.Conv2D(32, 5, strides=2, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))
    assert model.output_shape == (None, 40, 40, 32)       # "The answer was: (40, 40, 32)"
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(2))
    assert model.output_shape == (None, 4, 4, 32)

    initial_model = keras.Sequential([
        keras.Input(shape=(50, 50, 3)),
        layers.Conv2D(8, 5, strides=2, activation="relu"),
        layers.Conv2D(8, 3, activation="relu", name="my_intermediate_layer"),
        layers.Conv2D(8, 3, activation="relu"),
    ])
    feature_extractor = keras.Model(inputs=initial_model.inputs,
                                    outputs=[layer.output for layer in initial_model.layers])
    features = feature_extractor(keras.ops.ones((1, 50, 50, 3)))
    assert [f.shape for f in features] == [(1, 23, 23, 8), (1, 21, 21, 8), (1, 19, 19, 8)]
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=initial_model.get_layer(name="my_intermediate_layer").output)
    assert feature_extractor(keras.ops.ones((1, 50, 50, 3))).shape == (1, 21, 21, 8)

    # Transfer learning with a Sequential model: freeze all layers except the last one.
    model = keras.Sequential([keras.Input(shape=(784)), layers.Dense(32, activation="relu"),
                              layers.Dense(32, activation="relu"), layers.Dense(10)])
    for layer in model.layers[:-1]:
        layer.trainable = False
    frozen = [l.get_weights() for l in model.layers[:-1]]
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.random.random((64, 784)), np.random.randint(0, 10, 64), verbose=0)
    for layer, before in zip(model.layers[:-1], frozen):
        for a, b in zip(layer.get_weights(), before):
            np.testing.assert_array_equal(a, b)


def test_functional_api_guide(tmp_path, capsys):
    inputs = keras.Input(shape=(784,))
    assert inputs.shape == (None, 784) and inputs.dtype == "float32"
    img_inputs = keras.Input(shape=(32, 32, 3))
    assert img_inputs.shape == (None, 32, 32, 3)
    dense = layers.Dense(64, activation="relu")
    x = dense(inputs)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")
    model.summary()
    assert "mnist_model" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    for name, kwargs in (("my_first_model.png", {}),
                         ("my_first_model_with_shape_info.png", {"show_shapes": True})):
        path = keras.utils.plot_model(model, tmp_path / name, **kwargs)
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert model.count_params() == 784 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10

    x_train = np.random.rand(512, 28, 28).reshape(512, 784).astype("float32")
    y_train = np.random.randint(0, 10, 512)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras.optimizers.RMSprop(), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=2, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    test_scores = model.evaluate(x_train[:100], y_train[:100], verbose=2)
    assert len(test_scores) == 2

    model.save(tmp_path / "path_to_my_model")
    del model
    model = keras.models.load_model(tmp_path / "path_to_my_model")
    assert model.name == "mnist_model"

    # All models are callable, just like layers: ensembling
    def get_model():
        inputs = keras.Input(shape=(128,))
        outputs = layers.Dense(1)(inputs)
        return keras.Model(inputs, outputs)

    model1, model2, model3 = get_model(), get_model(), get_model()
    inputs = keras.Input(shape=(128,))
    y1, y2, y3 = model1(inputs), model2(inputs), model3(inputs)
    outputs = layers.average([y1, y2, y3])
    ensemble_model = keras.Model(inputs=inputs, outputs=outputs)
    x = np.random.rand(4, 128).astype("float32")
    want = (model1.predict(x, verbose=0) + model2.predict(x, verbose=0) +
            model3.predict(x, verbose=0)) / 3
    np.testing.assert_allclose(ensemble_model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_toy_resnet_from_the_functional_guide():
    inputs = keras.Input(shape=(32, 32, 3), name="img")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    block_1_output = layers.MaxPooling2D(3)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_1_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_2_output = layers.add([x, block_1_output])
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_2_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_3_output = layers.add([x, block_2_output])
    x = layers.Conv2D(64, 3, activation="relu")(block_3_output)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="toy_resnet")
    assert model.count_params() == 223_242               # what Keras's summary reports
    x_train = np.random.rand(40, 32, 32, 3).astype("float32")
    y_train = keras.utils.to_categorical(np.random.randint(0, 10, 40), 10)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["acc"])
    history = model.fit(x_train, y_train, batch_size=16, epochs=1, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}
    assert np.isfinite(history.history["loss"][0])


def test_multi_input_multi_output_from_the_functional_guide():
    # The guide's ticket model, with Dense encoders in place of Embedding/LSTM.
    num_tags, num_words, num_departments = 12, 100, 4
    title_input = keras.Input(shape=(10,), name="title")
    body_input = keras.Input(shape=(20,), name="body")
    tags_input = keras.Input(shape=(num_tags,), name="tags")
    title_features = layers.Dense(16, activation="relu")(title_input)
    body_features = layers.Dense(8, activation="relu")(body_input)
    x = layers.concatenate([title_features, body_features, tags_input])
    priority_pred = layers.Dense(1, name="priority")(x)
    department_pred = layers.Dense(num_departments, name="department")(x)
    model = keras.Model(inputs=[title_input, body_input, tags_input],
                        outputs=[priority_pred, department_pred])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                  loss=[keras.losses.BinaryCrossentropy(from_logits=True),
                        keras.losses.CategoricalCrossentropy(from_logits=True)],
                  loss_weights=[1.0, 0.2])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3),
                  loss={"priority": keras.losses.BinaryCrossentropy(from_logits=True),
                        "department": keras.losses.CategoricalCrossentropy(from_logits=True)},
                  loss_weights={"priority": 1.0, "department": 0.2})
    title_data = np.random.randint(num_words, size=(128, 10)).astype("float32") / num_words
    body_data = np.random.randint(num_words, size=(128, 20)).astype("float32") / num_words
    tags_data = np.random.randint(2, size=(128, num_tags)).astype("float32")
    priority_targets = np.random.random(size=(128, 1))
    dept_targets = np.random.randint(2, size=(128, num_departments))
    history = model.fit({"title": title_data, "body": body_data, "tags": tags_data},
                        {"priority": priority_targets, "department": dept_targets},
                        epochs=2, batch_size=32, verbose=0)
    logs = history.history
    assert set(logs) == {"loss", "priority_loss", "department_loss"}
    np.testing.assert_allclose(logs["loss"], np.array(logs["priority_loss"]) +
                               0.2 * np.array(logs["department_loss"]), rtol=1e-6)


def test_transfer_learning_guide_trainable_api():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    assert (len(layer.weights), len(layer.trainable_weights), len(layer.non_trainable_weights)) \
        == (2, 2, 0)
    layer = keras.layers.BatchNormalization()
    layer.build((None, 4))
    assert (len(layer.weights), len(layer.trainable_weights), len(layer.non_trainable_weights)) \
        == (4, 2, 2)
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    layer.trainable = False
    assert (len(layer.weights), len(layer.trainable_weights), len(layer.non_trainable_weights)) \
        == (2, 0, 2)

    layer1 = keras.layers.Dense(3, activation="relu")
    layer2 = keras.layers.Dense(3, activation="sigmoid")
    model = keras.Sequential([keras.Input(shape=(3,)), layer1, layer2])
    layer1.trainable = False
    initial_layer1_weights_values = layer1.get_weights()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.random((2, 3)), np.random.random((2, 3)), verbose=0)
    final_layer1_weights_values = layer1.get_weights()
    np.testing.assert_allclose(initial_layer1_weights_values[0], final_layer1_weights_values[0])
    np.testing.assert_allclose(initial_layer1_weights_values[1], final_layer1_weights_values[1])

    inner_model = keras.Sequential([keras.Input(shape=(3,)),
                                    keras.layers.Dense(3, activation="relu"),
                                    keras.layers.Dense(3, activation="relu")])
    model = keras.Sequential([keras.Input(shape=(3,)), inner_model,
                              keras.layers.Dense(3, activation="sigmoid")])
    model.trainable = False
    assert inner_model.trainable == False           # noqa: E712 (the guide's own assertion)
    assert inner_model.layers[0].trainable == False  # noqa: E712


def test_transfer_learning_guide_workflow():
    # A small "pretrained" convolutional base with BatchNormalization stands in for Xception.
    base_in = keras.Input(shape=(24, 24, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(base_in)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    base_model = keras.Model(base_in, h, name="base")
    x_new = np.random.rand(32, 24, 24, 3).astype("float32")
    y_new = np.random.randint(0, 2, size=(32, 1)).astype("float32")
    base_model.trainable = False
    pretrained = base_model.get_weights()

    inputs = keras.Input(shape=(24, 24, 3))
    x = base_model(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_new, y_new, epochs=2, batch_size=8, verbose=0,
              validation_data=(x_new[:8], y_new[:8]))
    for before, after in zip(pretrained, base_model.get_weights()):
        np.testing.assert_array_equal(before, after)

    base_model.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-5),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_new, y_new, epochs=1, batch_size=8, verbose=0)
    after = base_model.get_weights()
    assert not np.array_equal(after[0], pretrained[0])         # the base trains now
    bn = base_model.layers[2]
    np.testing.assert_array_equal(bn.moving_mean.numpy(), pretrained[4])   # BN in inference mode


def test_tensorflow_basic_classification_tutorial():
    tf = type("tf", (), {"keras": keras})            # the tutorial writes tf.keras.*
    train_images = np.random.rand(120, 28, 28).astype("float32")
    train_labels = np.random.randint(0, 10, 120)
    model = tf.keras.Sequential([
        tf.keras.layers.Flatten(input_shape=(28, 28)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(10)
    ])
    model.compile(optimizer="adam",
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=2, verbose=0)
    test_loss, test_acc = model.evaluate(train_images, train_labels, verbose=0)
    assert np.isfinite(test_loss) and 0.0 <= test_acc <= 1.0
    probability_model = tf.keras.Sequential([model, tf.keras.layers.Softmax()])
    predictions = probability_model.predict(train_images, verbose=0)
    assert predictions.shape == (120, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    logits = model.predict(train_images, verbose=0)
    np.testing.assert_array_equal(np.argmax(predictions, axis=1), np.argmax(logits, axis=1))
    img = np.expand_dims(train_images[1], 0)
    np.testing.assert_allclose(probability_model.predict(img, verbose=0)[0], predictions[1],
                               rtol=1e-5, atol=1e-7)


def test_tensorflow_cnn_tutorial(capsys):
    from pynn import models
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.summary()
    assert "Total params: 56,320" in capsys.readouterr().out     # the tutorial's summary
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10))
    model.summary()
    assert "Total params: 122,570" in capsys.readouterr().out
    train_images = np.random.rand(48, 32, 32, 3).astype("float32")
    train_labels = np.random.randint(0, 10, (48, 1))              # CIFAR's labels: (n, 1)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(train_images, train_labels, epochs=2, verbose=0,
                        validation_data=(train_images[:16], train_labels[:16]))
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["val_accuracy"]) == 2
    test_loss, test_acc = model.evaluate(train_images[:16], train_labels[:16], verbose=0)
    assert test_loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)


def test_writing_your_own_callbacks_guide():
    """keras.io "Writing your own callbacks": every hook, with the log keys Keras passes."""
    seen = []

    class CustomCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(("Starting training", list(logs.keys())))

        def on_train_end(self, logs=None):
            seen.append(("Stop training", list(logs.keys())))

        def on_epoch_begin(self, epoch, logs=None):
            seen.append((f"Start epoch {epoch}", list(logs.keys())))

        def on_epoch_end(self, epoch, logs=None):
            seen.append((f"End epoch {epoch}", list(logs.keys())))

        def on_test_begin(self, logs=None):
            seen.append(("Start testing", list(logs.keys())))

        def on_test_end(self, logs=None):
            seen.append(("Stop testing", list(logs.keys())))

        def on_predict_begin(self, logs=None):
            seen.append(("Start predicting", list(logs.keys())))

        def on_predict_end(self, logs=None):
            seen.append(("Stop predicting", list(logs.keys())))

        def on_train_batch_begin(self, batch, logs=None):
            seen.append((f"Training: start of batch {batch}", list(logs.keys())))

        def on_train_batch_end(self, batch, logs=None):
            seen.append((f"Training: end of batch {batch}", list(logs.keys())))

        def on_test_batch_begin(self, batch, logs=None):
            seen.append((f"Evaluating: start of batch {batch}", list(logs.keys())))

        def on_test_batch_end(self, batch, logs=None):
            seen.append((f"Evaluating: end of batch {batch}", list(logs.keys())))

        def on_predict_batch_begin(self, batch, logs=None):
            seen.append((f"Predicting: start of batch {batch}", list(logs.keys())))

        def on_predict_batch_end(self, batch, logs=None):
            seen.append((f"Predicting: end of batch {batch}", list(logs.keys())))

    def get_model():
        model = keras.Sequential()
        model.add(keras.layers.Dense(1))
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.1),
                      loss="mean_squared_error", metrics=["mean_absolute_error"])
        return model

    x_train = np.random.rand(512, 784).astype("float32")
    y_train = np.random.rand(512).astype("float32")
    model = get_model()
    model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0, validation_split=0.5,
              callbacks=[CustomCallback()])
    keys = ["loss", "mean_absolute_error"]
    val = keys + ["val_loss", "val_mean_absolute_error"]
    assert seen == [("Starting training", []), ("Start epoch 0", []),
                    ("Training: start of batch 0", []), ("Training: end of batch 0", keys),
                    ("Training: start of batch 1", []), ("Training: end of batch 1", keys),
                    ("Start testing", []),
                    ("Evaluating: start of batch 0", []), ("Evaluating: end of batch 0", keys),
                    ("Evaluating: start of batch 1", []), ("Evaluating: end of batch 1", keys),
                    ("Stop testing", keys), ("End epoch 0", val), ("Stop training", val)]
    seen.clear()
    res = model.evaluate(x_train, y_train, batch_size=128, verbose=0,
                         callbacks=[CustomCallback()])
    assert seen[0] == ("Start testing", []) and seen[-1] == ("Stop testing", keys)
    assert len(seen) == 2 + 2 * 4 and len(res) == 2
    seen.clear()
    model.predict(x_train, batch_size=128, callbacks=[CustomCallback()])
    assert seen == [("Start predicting", [])] + [
        item for b in range(4) for item in ((f"Predicting: start of batch {b}", []),
                                            (f"Predicting: end of batch {b}", ["outputs"]))
    ] + [("Stop predicting", [])]

    # the guide's LossAndErrorPrintingCallback reads logs["loss"] and logs["mean_absolute_error"]
    printed = []

    class LossAndErrorPrintingCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            printed.append(("batch", batch, logs["loss"]))

        def on_test_batch_end(self, batch, logs=None):
            printed.append(("test", batch, logs["loss"]))

        def on_epoch_end(self, epoch, logs=None):
            printed.append(("epoch", epoch, logs["loss"], logs["mean_absolute_error"]))

    model = get_model()
    model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0,
              callbacks=[LossAndErrorPrintingCallback()])
    res = model.evaluate(x_train, y_train, batch_size=128, verbose=0,
                         callbacks=[LossAndErrorPrintingCallback()])
    assert [p[0] for p in printed] == ["batch"] * 4 + ["epoch"] + ["batch"] * 4 + ["epoch"] + \
        ["test"] * 4
    assert printed[4][2] == pytest.approx(printed[3][2])  # the epoch's loss: the running mean
    assert printed[-1][2] == pytest.approx(res[0], rel=1e-6)

    # LambdaCallback
    epochs = []
    model.fit(x_train, y_train, batch_size=128, epochs=2, verbose=0, callbacks=[
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))])
    assert epochs == [0, 1]


def test_training_and_evaluation_with_built_in_methods_guide(tmp_path):
    """keras.io "Training & evaluation with the built-in methods": metric objects in
    compile, their names as log keys, evaluate and predict."""
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    x_train = np.random.rand(600, 784).astype("float32")
    y_train = np.random.randint(0, 10, 600)
    x_val, y_val = x_train[-100:], y_train[-100:]
    model.compile(optimizer=keras.optimizers.RMSprop(),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    history = model.fit(x_train, y_train, batch_size=64, epochs=2,
                        validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) == {"loss", "sparse_categorical_accuracy", "val_loss",
                                    "val_sparse_categorical_accuracy"}
    results = model.evaluate(x_val, y_val, batch_size=128, verbose=0)
    assert len(results) == 2
    predictions = model.predict(x_val[:3], verbose=0)
    assert predictions.shape == (3, 10)
    # the metric object on its own gives what evaluate logged
    acc = keras.metrics.SparseCategoricalAccuracy()
    acc.update_state(y_val, model.predict(x_val, verbose=0))
    assert float(acc.result()) == pytest.approx(results[1], abs=1e-6)
    acc.reset_state()
    assert float(acc.result()) == 0.0
    # the guide's other spellings: a name=, RMSE, strings beside objects; saved and loaded
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseCategoricalAccuracy(name="acc")])
    history = model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "acc"}
    assert history.history["accuracy"] == history.history["acc"]
    model.save(tmp_path / "m.pynn")
    again = keras.models.load_model(tmp_path / "m.pynn")
    assert again.evaluate(x_val, y_val, verbose=0, return_dict=True) == \
        pytest.approx(model.evaluate(x_val, y_val, verbose=0, return_dict=True))
    regression = keras.Sequential([keras.Input((4,)), layers.Dense(1)])
    regression.compile("sgd", "mse", metrics=[keras.metrics.RootMeanSquaredError(),
                                              keras.metrics.MeanAbsoluteError()])
    xr, yr = np.random.rand(64, 4).astype("float32"), np.random.rand(64, 1).astype("float32")
    logs = regression.evaluate(xr, yr, verbose=0, return_dict=True)
    assert logs["root_mean_squared_error"] == pytest.approx(np.sqrt(logs["loss"]), rel=1e-5)
    rmse = keras.metrics.RootMeanSquaredError()
    rmse.update_state(yr, regression.predict(xr, verbose=0))
    assert float(rmse.result()) == pytest.approx(logs["root_mean_squared_error"], rel=1e-5)
    with pytest.raises(ValueError, match="Mean"):
        regression.compile("sgd", "mse", metrics=[keras.metrics.Mean()])


def test_tensorflow_save_and_load_tutorial(tmp_path, monkeypatch):
    import math
    import os
    monkeypatch.chdir(tmp_path)
    tf = type("tf", (), {"keras": keras})
    train_images = np.random.rand(320, 784).astype("float32")
    train_labels = np.random.randint(0, 10, 320)
    test_images, test_labels = train_images[:100], train_labels[:100]

    def create_model():
        model = tf.keras.Sequential([
            keras.layers.Dense(512, activation="relu", input_shape=(784,)),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10)
        ])
        model.compile(optimizer="adam",
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
        return model

    model = create_model()
    checkpoint_path = "training_1/cp.weights.h5"
    cp_callback = tf.keras.callbacks.ModelCheckpoint(filepath=checkpoint_path,
                                                     save_weights_only=True, verbose=0)
    model.fit(train_images, train_labels, epochs=3, verbose=0,
              validation_data=(test_images, test_labels), callbacks=[cp_callback])
    assert os.listdir("training_1") == ["cp.weights.h5"]
    trained = model.evaluate(test_images, test_labels, verbose=0)
    model = create_model()
    model.load_weights(checkpoint_path)
    assert model.evaluate(test_images, test_labels, verbose=0) == pytest.approx(trained)

    checkpoint_path = "training_2/cp-{epoch:04d}.weights.h5"
    batch_size = 32
    n_batches = math.ceil(len(train_images) / batch_size)
    cp_callback = tf.keras.callbacks.ModelCheckpoint(filepath=checkpoint_path, verbose=0,
                                                     save_weights_only=True,
                                                     save_freq=5 * n_batches)
    model = create_model()
    model.save_weights(checkpoint_path.format(epoch=0))      # the folder is made
    model.fit(train_images, train_labels, epochs=10, batch_size=batch_size, verbose=0,
              callbacks=[cp_callback], validation_data=(test_images, test_labels))
    assert sorted(os.listdir("training_2")) == ["cp-0000.weights.h5", "cp-0005.weights.h5",
                                                "cp-0010.weights.h5"]
    model.save("my_model.keras")
    new_model = tf.keras.models.load_model("my_model.keras")
    assert new_model.evaluate(test_images, test_labels, verbose=0) == \
        pytest.approx(model.evaluate(test_images, test_labels, verbose=0))
    assert new_model.predict(test_images, verbose=0).shape == (100, 10)


def test_built_in_training_guide_sample_and_class_weighting():
    """The guide's "Using sample weighting and class weighting" section."""
    def get_compiled_model():
        inputs = keras.Input(shape=(784,), name="digits")
        x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
        x = layers.Dense(64, activation="relu", name="dense_2")(x)
        outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs=inputs, outputs=outputs)
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                      metrics=["sparse_categorical_accuracy"])
        return model

    x_train = np.random.rand(256, 784).astype("float32")
    y_train = np.random.randint(0, 10, 256)
    class_weight = {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0,
                    # Set weight "2" for class "5", making this class 2x more important
                    5: 2.0, 6: 1.0, 7: 1.0, 8: 1.0, 9: 1.0}
    keras.utils.set_random_seed(1)
    model = get_compiled_model()
    model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1, verbose=0)

    sample_weight = np.ones(shape=(len(y_train),))
    sample_weight[y_train == 5] = 2.0
    keras.utils.set_random_seed(1)
    weighted = get_compiled_model()
    weighted.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1,
                 verbose=0)
    for a, b in zip(model.get_weights(), weighted.get_weights()):
        np.testing.assert_array_equal(a, b)      # the same weights, the same bits


def test_imbalanced_classification_example(tmp_path, capsys):
    """keras.io "Imbalanced classification: credit card fraud detection", as
    examples/imbalanced_classification.py runs it (the bundled digits' 8s as the rare
    class instead of the Kaggle download): class_weight, the confusion metrics by name,
    ModelCheckpoint's {epoch} files, validation_data."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "imbalanced_classification.py")
    spec = importlib.util.spec_from_file_location("imbalanced_classification", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    history = example.main(["--epochs", "3", "--checkpoints", str(tmp_path)])
    keys = ["fn", "fp", "tn", "tp", "precision", "recall"]
    assert list(history.history) == ["fn", "fp", "loss", "precision", "recall", "tn", "tp"] + \
        ["val_" + k for k in ["fn", "fp", "loss", "precision", "recall", "tn", "tp"]] or \
        set(history.history) == {"loss", *keys, "val_loss", *["val_" + k for k in keys]}
    assert sorted(os.listdir(tmp_path)) == [f"fraud_model_at_epoch_{e}.keras" for e in (1, 2, 3)]
    features, targets = example.rare_digits()
    n_val = int(len(features) * 0.2)
    train, val = targets[:-n_val, 0], targets[-n_val:, 0]
    h = history.history
    for e in range(3):      # the confusion counts cover every sample, each epoch
        assert h["tp"][e] + h["fn"][e] == train.sum()
        assert h["tn"][e] + h["fp"][e] == len(train) - train.sum()
        assert h["val_tp"][e] + h["val_fn"][e] == val.sum()
        assert h["val_tn"][e] + h["val_fp"][e] == len(val) - val.sum()
        if h["tp"][e] + h["fp"][e]:
            assert h["precision"][e] == pytest.approx(h["tp"][e] / (h["tp"][e] + h["fp"][e]))
        assert h["recall"][e] == pytest.approx(h["tp"][e] / (h["tp"][e] + h["fn"][e]))
    # class_weight balanced the classes: the rare class is found on the validation data
    assert h["val_recall"][-1] > 0.5
    assert "caught" in capsys.readouterr().out


def _flowers_folder(root, per_class=24, size=(120, 150)):
    """A generated stand-in for flower_photos: five class folders of JPEG photos of
    different sizes, each class its own colour and shape."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    names = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    colours = [(240, 240, 240), (250, 220, 40), (200, 30, 50), (250, 180, 20), (220, 60, 160)]
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = size[0] + int(rng.integers(0, 30)), size[1] + int(rng.integers(0, 30))
            img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(20, 120, 3)))
            d = ImageDraw.Draw(img)
            cx, cy, r = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), 15 + 5 * c
            (d.ellipse if c % 2 else d.rectangle)((cx - r, cy - r, cx + r, cy + r),
                                                  fill=colours[c])
            img.save(root / name / f"{name}_{i}.jpg", quality=90)
    return root


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")     # Keras 3 warns the same
def test_tensorflow_image_classification_tutorial(tmp_path, capsys):
    """The TensorFlow tutorial "Image classification" (flowers): image_dataset_from_directory
    with a validation split, class_names, cache/shuffle/prefetch, Rescaling in a .map and in
    the model, the CNN, fit on datasets, the augmentation block with Dropout, load_img /
    img_to_array and softmax scores.  Only the download is changed: a generated folder of
    flower-like photos (fewer and smaller), and fewer epochs."""
    pytest.importorskip("PIL")
    import pathlib
    tf = type("tf", (), {"keras": keras, "data": keras.data, "expand_dims": keras.ops.expand_dims,
                         "nn": type("nn", (), {"softmax": keras.ops.softmax})})
    Sequential = keras.models.Sequential

    data_dir = pathlib.Path(_flowers_folder(tmp_path / "flower_photos"))   # (the download)
    image_count = len(list(data_dir.glob('*/*.jpg')))
    assert image_count == 120

    batch_size = 32
    img_height = 48
    img_width = 48
    train_ds = tf.keras.utils.image_dataset_from_directory(
        data_dir, validation_split=0.2, subset="training", seed=123,
        image_size=(img_height, img_width), batch_size=batch_size)
    val_ds = tf.keras.utils.image_dataset_from_directory(
        data_dir, validation_split=0.2, subset="validation", seed=123,
        image_size=(img_height, img_width), batch_size=batch_size)
    out = capsys.readouterr().out
    assert "Found 120 files belonging to 5 classes." in out
    assert "Using 96 files for training." in out and "Using 24 files for validation." in out
    class_names = train_ds.class_names
    assert class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]

    for image_batch, labels_batch in train_ds:
        assert image_batch.shape == (32, 48, 48, 3) and labels_batch.shape == (32,)
        break

    AUTOTUNE = tf.data.AUTOTUNE
    train_ds = train_ds.cache().shuffle(1000).prefetch(buffer_size=AUTOTUNE)
    val_ds = val_ds.cache().prefetch(buffer_size=AUTOTUNE)

    normalization_layer = layers.Rescaling(1. / 255)
    normalized_ds = train_ds.map(lambda x, y: (normalization_layer(x), y))
    image_batch, labels_batch = next(iter(normalized_ds))
    first_image = image_batch[0]
    assert 0.0 <= np.min(first_image) and np.max(first_image) <= 1.0

    num_classes = len(class_names)
    model = Sequential([
        layers.Rescaling(1. / 255, input_shape=(img_height, img_width, 3)),
        layers.Conv2D(16, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation='relu'),
        layers.Dense(num_classes)
    ])
    model.compile(optimizer='adam',
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.summary()
    epochs = 2
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs)
    acc = history.history['accuracy']
    val_acc = history.history['val_accuracy']
    loss = history.history['loss']
    val_loss = history.history['val_loss']
    assert len(acc) == len(val_acc) == len(loss) == len(val_loss) == epochs

    data_augmentation = keras.Sequential([
        layers.RandomFlip("horizontal", input_shape=(img_height, img_width, 3)),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
    ])
    for images, _ in train_ds.take(1):
        for i in range(9):
            augmented_images = data_augmentation(images)
            assert augmented_images[0].shape == (48, 48, 3)
    model = Sequential([
        data_augmentation,
        layers.Rescaling(1. / 255),
        layers.Conv2D(16, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding='same', activation='relu'),
        layers.MaxPooling2D(),
        layers.Dropout(0.2),
        layers.Flatten(),
        layers.Dense(128, activation='relu'),
        layers.Dense(num_classes, name="outputs")
    ])
    model.compile(optimizer='adam',
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    epochs = 3
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs)
    assert history.history["accuracy"][-1] > 0.3           # better than chance (0.2)

    sunflower_path = next((data_dir / "sunflowers").glob("*.jpg"))    # (the download)
    img = tf.keras.utils.load_img(sunflower_path, target_size=(img_height, img_width))
    img_array = tf.keras.utils.img_to_array(img)
    img_array = tf.expand_dims(img_array, 0)  # Create a batch
    predictions = model.predict(img_array)
    score = tf.nn.softmax(predictions[0])
    assert score.shape == (5,) and abs(float(np.sum(score)) - 1.0) < 1e-5
    print("This image most likely belongs to {} with a {:.2f} percent confidence."
          .format(class_names[np.argmax(score)], 100 * np.max(score)))
