"""fit / evaluate / predict on streams of batches (pynn/models/data_source.py): a dataset
(anything iterable, re-iterable per epoch), a PyDataset, a Python generator, each batch
`x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` as Keras 3 unpacks it.  Each batch is one
step of the same plans arrays use, so the same batches give bitwise the same weights and
logs as arrays."""
import io
import contextlib

import numpy as np
import pytest

import pynn
from pynn import layers as L

from conftest import StopAtBatch, assert_bitwise

ROWS, BATCH = 40, 8


def data():
    rng = np.random.default_rng(1)
    return (rng.normal(size=(ROWS, 6)).astype(np.float32), rng.integers(0, 3, ROWS),
            rng.uniform(0.5, 2.0, ROWS).astype(np.float32))


def model(with_input=True):
    pynn.utils.set_random_seed(3)
    layers = ([L.Input((6,))] if with_input else []) + [L.Dense(8, activation="relu"),
                                                         L.Dense(3, activation="softmax")]
    m = pynn.Sequential(layers)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
              weighted_metrics=["accuracy"])
    return m


class Batches:
    """A minimal re-iterable dataset: the arrays cut into batches, in order."""

    def __init__(self, *arrays, batch=BATCH):
        self.arrays, self.batch = arrays, batch

    def __len__(self):
        return -(-len(self.arrays[0]) // self.batch)

    def __iter__(self):
        for i in range(0, len(self.arrays[0]), self.batch):
            items = tuple(a[i:i + self.batch] for a in self.arrays)
            yield items if len(items) > 1 else items[0]


class PyDataset:
    """Shaped like keras.utils.PyDataset (the trainer recognises the class by name)."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.epochs_begun = 0

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]

    def on_epoch_begin(self):
        self.epochs_begun += 1


def arrays_fit(**kwargs):
    x, y, w = data()
    m = model()
    h = m.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, **kwargs)
    return m, h


def same(a, b, ha, hb):
    for u, v in zip(a.get_weights(), b.get_weights()):
        assert_bitwise(u, v)
    assert ha.history == hb.history


def test_a_dataset_trains_as_the_same_batches_of_arrays():
    x, y, w = data()
    ref, href = arrays_fit(validation_data=(x[:16], y[:16]))
    m = model()
    h = m.fit(Batches(x, y), epochs=3, verbose=0, shuffle=False,
              validation_data=Batches(x[:16], y[:16]))
    same(m, ref, h, href)
    assert m.optimizer.iterations == 3 * (ROWS // BATCH)
    # arrays trained, a dataset validating (Keras takes any mix)
    m = model()
    h = m.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0,
              validation_data=Batches(x[:16], y[:16]))
    same(m, ref, h, href)
    # evaluate and predict read streams too
    assert m.evaluate(Batches(x, y), verbose=0, return_dict=True) == \
        m.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert_bitwise(m.predict(Batches(x), verbose=0), m.predict(x, batch_size=BATCH, verbose=0))
    assert_bitwise(m.predict(Batches(x, y), verbose=0), m.predict(x, batch_size=BATCH, verbose=0))


def test_weighted_batches_and_class_weight():
    x, y, w = data()
    ref, href = arrays_fit(sample_weight=w)
    m = model()
    h = m.fit(Batches(x, y, w), epochs=3, verbose=0, shuffle=False)
    same(m, ref, h, href)
    table = {0: 0.5, 1: 2.0, 2: 1.0}
    ref, href = arrays_fit(class_weight=table)
    m = model()
    h = m.fit(Batches(x, y), epochs=3, verbose=0, shuffle=False, class_weight=table)
    same(m, ref, h, href)


def test_an_endless_generator_with_steps_per_epoch_and_a_pydataset():
    x, y, _ = data()

    def endless():
        while True:
            for i in range(0, ROWS, BATCH):
                yield x[i:i + BATCH], y[i:i + BATCH]

    ref, href = arrays_fit()
    m = model()
    with pytest.warns(UserWarning, match="shuffle=True"):     # Keras warns: a generator's order
        h = m.fit(endless(), steps_per_epoch=ROWS // BATCH, epochs=3, verbose=0)
    same(m, ref, h, href)
    ds = PyDataset(x, y)
    m = model()
    h = m.fit(ds, epochs=3, verbose=0, shuffle=False)
    same(m, ref, h, href)
    assert ds.epochs_begun == 3


def test_a_model_without_input_is_built_from_the_first_batch():
    x, y, _ = data()
    m = model(with_input=False)
    m.fit(Batches(x, y), epochs=1, verbose=0, shuffle=False)
    assert m.built and m.count_params() == 6 * 8 + 8 + 8 * 3 + 3


def test_steps_per_epoch_goes_on_through_the_pass_and_warns_when_it_ends():
    x, y, _ = data()
    m = model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(Batches(x, y), epochs=3, steps_per_epoch=3, verbose=0, shuffle=False)
    # 5 batches a pass: epoch 1 takes 3, epoch 2 the other 2 (and warns), epoch 3 starts anew
    assert m.optimizer.iterations == 3 + 2 + 3
    assert len(h.history["loss"]) == 3


def test_what_streams_refuse():
    x, y, w = data()
    m = model()

    def gen():
        yield x[:8], y[:8]

    with pytest.raises(ValueError, match="`y` should not be passed"):
        m.fit(Batches(x), y, verbose=0)
    with pytest.raises(ValueError, match="`sample_weight` should not be passed"):
        m.fit(Batches(x, y), sample_weight=w, verbose=0)
    with pytest.raises(ValueError, match="class_weight"):
        m.fit(gen(), class_weight={0: 1.0}, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(Batches(x, y), validation_split=0.2, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="only once"):         # a generator, two epochs
        m.fit(gen(), epochs=2, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="tuple of 4"):
        m.fit(Batches(x, y, w, w), verbose=0, shuffle=False)

    class Broken(Batches):
        def __iter__(self):
            yield x[:8], y[:8]
            raise ValueError("cannot decode photos/cat/3.jpg")

    with pytest.raises(ValueError, match="photos/cat/3.jpg"):   # the source's own error
        m.fit(Broken(x, y), verbose=0, shuffle=False)
    bad = y.copy()
    bad[3] = 7
    with pytest.raises(ValueError, match="label"):
        m.fit(Batches(x, bad), verbose=0, shuffle=False)


def test_progress_of_a_stream_of_unknown_length():
    x, y, _ = data()

    def endless():
        while True:
            for i in range(0, ROWS, BATCH):
                yield x[i:i + BATCH], y[i:i + BATCH]

    class Unsized:
        def __iter__(self):
            return iter(Batches(x, y))

    m = model()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        m.fit(Unsized(), epochs=2, verbose=2, shuffle=False)
    lines = out.getvalue().splitlines()
    # as Keras: the length is learnt at the end of the first epoch ("Unknown" before)
    assert lines == ["Epoch 1/2", lines[1], "Epoch 2/2", lines[3]]
    assert lines[1].startswith("5/5 - ") and lines[3].startswith("5/5 - ")
    bar = pynn.callbacks.Progbar(None, verbose=1)
    assert bar._line(3, {"loss": 1.0}, False).startswith("3/Unknown ")
    with contextlib.redirect_stdout(io.StringIO()):
        with pytest.warns(UserWarning, match="shuffle"):
            m.fit(endless(), steps_per_epoch=2, epochs=1, verbose=1)


# ---- pynn's own datasets (pynn/data) -------------------------------------------------------
def test_pynn_datasets_and_pydataset_train_as_arrays():
    x, y, w = data()
    ref, href = arrays_fit()
    m = model()
    h = m.fit(pynn.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).prefetch(2), epochs=3,
              verbose=0, shuffle=False)
    same(m, ref, h, href)

    class Batched(pynn.utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

        def __len__(self):
            return ROWS // BATCH

        def __getitem__(self, i):
            return x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]

    for workers in (1, 3):
        m = model()
        h = m.fit(Batched(workers=workers), epochs=3, verbose=0, shuffle=False)
        same(m, ref, h, href)
    # fit(shuffle=True) reorders a PyDataset's batches per epoch (Keras), reproducibly
    runs = []
    for workers in (1, 3):
        m = model()
        m.fit(Batched(workers=workers), epochs=3, verbose=0, shuffle=True)
        runs.append(m.get_weights())
    for a, b in zip(*runs):
        assert_bitwise(a, b)


def _folder(root, per_class=12, size=20):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "hotdog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            img[..., c] = 200
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def conv_model():
    pynn.utils.set_random_seed(5)
    m = pynn.Sequential([L.Input((16, 16, 3)), L.Conv2D(4, 3, activation="relu"),
                         L.MaxPooling2D(), L.Flatten(), L.Dense(3)])
    m.compile("adam", pynn.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    return m


def test_a_folder_streams_into_fit_with_the_same_weights_whatever_the_workers(tmp_path):
    """The issue's determinism: the same seed gives bitwise the same trained weights with
    1, 2 or 4 decoding workers."""
    pytest.importorskip("PIL")
    folder = _folder(tmp_path / "photos")
    runs = []
    for workers in (1, 2, 4):
        train, val = pynn.utils.image_dataset_from_directory(
            folder, image_size=(16, 16), batch_size=8, validation_split=0.25,
            subset="both", seed=7, verbose=False, workers=workers)
        m = conv_model()
        with pytest.warns(UserWarning, match="shuffle=True"):
            h = m.fit(train, validation_data=val, epochs=2, verbose=0)
        runs.append((m.get_weights(), h.history))
        assert m.optimizer.iterations == 2 * len(train)
    for weights, history in runs[1:]:
        for a, b in zip(weights, runs[0][0]):
            assert_bitwise(a, b)
        assert history == runs[0][1]
    # evaluate and predict on the folder, against the arrays of the same images
    ds = pynn.utils.image_dataset_from_directory(folder, image_size=(16, 16), batch_size=8,
                                                 shuffle=False, verbose=False)
    xs, ys = zip(*ds)
    xa, ya = np.concatenate(xs), np.concatenate(ys)
    assert m.evaluate(ds, verbose=0, return_dict=True) == \
        m.evaluate(xa, ya, batch_size=8, verbose=0, return_dict=True)
    assert_bitwise(m.predict(ds, verbose=0), m.predict(xa, batch_size=8, verbose=0))



def test_a_backup_inside_an_epoch_of_a_shuffled_dataset_resumes_bitwise(tmp_path):
    """BackupAndRestore(save_freq=2) on a shuffled dataset: the resumed fit skips the
    batches the backup had trained (the dataset's order is a function of its seed and the
    epoch) and ends with the weights and History of an uninterrupted run."""
    x, y, _ = data()

    def ds():
        return pynn.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=3).batch(BATCH)

    straight = model()
    ref = straight.fit(ds(), epochs=3, verbose=0, shuffle=False)
    folder = tmp_path / "backup"
    first = model()
    with pytest.raises(KeyboardInterrupt):
        first.fit(ds(), epochs=3, verbose=0, shuffle=False,
                  callbacks=[pynn.callbacks.BackupAndRestore(folder, save_freq=2),
                             StopAtBatch(1, 2)])
    again = model()
    h = again.fit(ds(), epochs=3, verbose=0, shuffle=False,
                  callbacks=[pynn.callbacks.BackupAndRestore(folder, save_freq=2)])
    assert h.epoch == [1, 2]
    for a, b in zip(again.get_weights(), straight.get_weights()):
        assert_bitwise(a, b)
    for key, values in h.history.items():
        assert values == ref.history[key][1:], key
