"""Bundle model files (`agents.model_files`): weights only, float16 storage that loads back as
float32 within rounding, atomic saves, and a clear error naming a file that is not a model."""

from __future__ import annotations

import numpy as np
import pytest

from agents.model_files import load_model_file, save_model_file


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4096, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    model.train_on_batch(x, np.arange(16) % 2)  # the optimizer now holds state a bundle must not carry
    return model, x


def test_float16_storage_halves_the_file_and_loads_back_as_float32(model, tmp_path):
    net, x = model
    save_model_file(net, tmp_path / "full.keras")
    save_model_file(net, tmp_path / "half.keras", storage_dtype="float16")
    full, half = (tmp_path / "full.keras").stat().st_size, (tmp_path / "half.keras").stat().st_size
    assert half < 0.65 * full
    exact, rounded = load_model_file(tmp_path / "full.keras"), load_model_file(tmp_path / "half.keras")
    assert all(np.asarray(w).dtype == np.float32 for w in rounded.get_weights())
    np.testing.assert_array_equal(exact.predict_on_batch(x), net.predict_on_batch(x))
    np.testing.assert_allclose(rounded.predict_on_batch(x), net.predict_on_batch(x), atol=2e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.keras", "half.keras"]  # no temporary file left


def test_a_weights_only_file_is_smaller_than_keras_own_save_with_its_optimizer(model, tmp_path):
    net, _ = model
    save_model_file(net, tmp_path / "bundle.keras")
    net.save(tmp_path / "with-optimizer.keras")
    assert (tmp_path / "bundle.keras").stat().st_size < 0.6 * (tmp_path / "with-optimizer.keras").stat().st_size


def test_an_unknown_storage_dtype_is_refused_naming_it(model, tmp_path):
    with pytest.raises(ValueError, match="received 'int8'"):
        save_model_file(model[0], tmp_path / "m.keras", storage_dtype="int8")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"plain text"])
def test_a_file_that_is_no_model_is_named_in_the_error(tmp_path, content):
    path = tmp_path / "custom.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="custom.keras does not load as a Keras model"):
        load_model_file(path)
