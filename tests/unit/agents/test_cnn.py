"""The pieces the CNN builders share: argument checks, the Conv/BN/ReLU block and the heads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from agents.cnn import NUM_CLASSES, check_dropout, conv_bn_relu_block, image_shape, pooled_classifier


def test_image_shape_converts_and_says_what_it_received():
    assert image_shape([32.0, 16, 3]) == (32, 16, 3)
    assert image_shape((8, 8, 3), channels=3) == (8, 8, 3)
    with pytest.raises(ValueError, match=r"\(height, width, channels\), received \(8, 8\)"):
        image_shape((8, 8))
    with pytest.raises(ValueError, match=r"received \(8, 0, 1\)"):
        image_shape((8, 0, 1))
    with pytest.raises(ValueError, match=r"\(height, width, 3\), received \(8, 8, 1\)"):
        image_shape((8, 8, 1), channels=3)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 2])
def test_dropout_outside_the_unit_interval_is_refused(dropout):
    with pytest.raises(ValueError, match=f"received {dropout}"):
        check_dropout(dropout)


def test_block_names_its_layers_and_halves_the_map():
    inputs = keras.Input(shape=(8, 8, 1))
    model = keras.Model(inputs, conv_bn_relu_block(inputs, block=3, filters=4, convs=3,
                                                   kernel_initializer="he_normal"))
    names = [layer.name for layer in model.layers[1:]]
    assert names == [f"block3_{kind}{c}" for c in (1, 2, 3) for kind in ("conv", "bn", "relu")] + ["block3_pool"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(not c.use_bias and c.kernel_initializer.__class__.__name__ == "HeNormal" for c in convs)
    assert model.output_shape == (None, 4, 4, 4)


def test_pooled_classifier_outputs_float32_probabilities():
    inputs = keras.Input(shape=(6, 6, 2))
    model = pooled_classifier(inputs, inputs, dropout=0.3, num_classes=NUM_CLASSES, name="tiny")
    assert model.name == "tiny"
    assert [layer.name for layer in model.layers[1:]] == ["head_dropout", "head_gap", "predictions"]
    probs = np.asarray(model.predict_on_batch(np.random.default_rng(0).random((3, 6, 6, 2), dtype=np.float32)))
    assert probs.shape == (3, NUM_CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
