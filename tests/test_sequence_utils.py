"""keras.utils.pad_sequences: Keras's documented examples, its errors, and (with Keras
installed, PYNN_KERAS_PYTHON as tests/test_keras_files.py) the same arrays as Keras's on
ragged sequences with every option."""
import json

import numpy as np
import pytest

import pynn
from test_keras_files import keras_python, run_keras  # noqa: F401  (fixture)

pad = pynn.utils.pad_sequences


def test_keras_documented_examples():
    seqs = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(pad(seqs), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad(seqs, value=-1), [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad(seqs, padding="post"), [[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    np.testing.assert_array_equal(pad(seqs, maxlen=2), [[0, 1], [2, 3], [5, 6]])
    assert pad(seqs).dtype == np.int32
    assert pad([[], [1.5, 2.5]], dtype="float32").tolist() == [[0, 0], [1.5, 2.5]]
    steps = pad([np.ones((2, 3)), np.ones((1, 3))])        # sequences of vectors
    assert steps.shape == (2, 2, 3) and steps[1, 0].tolist() == [0, 0, 0]
    # maxlen=0: empty rows (Keras 3.15 fails there, slicing s[-0:] as the whole sequence)
    assert pad(seqs, maxlen=0).shape == (3, 0)


@pytest.mark.parametrize("kwargs,words", [
    (dict(padding="middle"), "padding 'pre' or 'post', received padding='middle'"),
    (dict(truncating=None), "truncating 'pre' or 'post'"),
    (dict(maxlen=-1), "maxlen a non-negative integer or None, received maxlen=-1"),
    (dict(value="x"), "needs dtype=object"),
])
def test_bad_arguments_name_themselves(kwargs, words):
    with pytest.raises(ValueError, match=words):
        pad([[1, 2]], **kwargs)
    with pytest.raises(ValueError, match="sequence 1 to be a sequence, received int"):
        pad([[1], 5])
    with pytest.raises(ValueError, match=r"sequence 1 has steps of shape \(2,\)"):
        pad([np.ones((2, 3)), np.ones((1, 2))])


def test_same_arrays_as_keras(keras_python, tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=rng.integers(0, 9)).tolist() for _ in range(12)]
    cases = [dict(), dict(maxlen=5), dict(maxlen=5, padding="post", truncating="post"),
             dict(maxlen=4, truncating="post", value=-3), dict(dtype="float32")]
    (tmp_path / "in.json").write_text(json.dumps({"seqs": seqs, "cases": cases}))
    out = run_keras(keras_python, tmp_path, """
        import json
        spec = json.load(open("in.json"))
        print(json.dumps([keras.utils.pad_sequences(spec["seqs"], **c).tolist()
                          for c in spec["cases"]]))
    """)
    expected = json.loads(out.strip().splitlines()[-1])
    for case, want in zip(cases, expected):
        got = pad(seqs, **case)
        np.testing.assert_array_equal(got, np.asarray(want, dtype=got.dtype).reshape(got.shape),
                                      err_msg=str(case))
