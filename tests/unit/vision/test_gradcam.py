"""Grad-CAM's layer choice and maps (`vision.gradcam`), on models built so the answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agents.labels import FAKE_INDEX
from vision.gradcam import GradCamRenderer, _feature_layers, conv_stages, grad_cam, target_layer_index
from vision.heatmap_quality import AgentMap, concentration, mask_lift, withheld_reason


def _pyramid(*, norm: bool = False, nested: bool = False):
    """Convolutions at 32, 16, 8 and 4 cells (named c32 ... c4), GAP, softmax."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 1))
    x = inputs
    for side in (32, 16, 8, 4):
        x = layers.Conv2D(2, 3, padding="same", name=f"c{side}")(x)
        if norm:
            x = layers.BatchNormalization(name=f"bn{side}")(x)
            x = layers.Activation("relu", name=f"relu{side}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{side}")(x)
    if nested:  # a transfer base inside the agent, as VGG-16's is
        base = keras.Model(inputs, x, name="base")
        outer_in = keras.Input((32, 32, 1))
        x, inputs = base(outer_in), outer_in
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name="pyramid")


def _name_at(model, index: int) -> str:
    return _feature_layers(model)[index].name


def test_the_rule_reads_the_last_convolution_with_at_least_8_cells_after_its_activation():
    plain = _pyramid()
    assert [(name, side) for name, _, side in conv_stages(plain)] == [("c32", 32), ("c16", 16), ("c8", 8), ("c4", 4)]
    assert _name_at(plain, target_layer_index(plain)) == "c8"  # c4 is too coarse to place anything
    assert _name_at(plain, target_layer_index(plain, min_side=16)) == "c16"
    assert _name_at(plain, target_layer_index(plain, min_side=64)) == "c32"  # none fine enough: the finest
    normed = _pyramid(norm=True)
    assert _name_at(normed, target_layer_index(normed)) == "relu8"  # what the next stage sees
    nested = _pyramid(nested=True)
    assert _name_at(nested, target_layer_index(nested)) == "c8"  # found inside the nested base


def test_a_declared_layer_wins_and_a_wrong_one_is_named():
    model = _pyramid(norm=True)
    assert _name_at(model, target_layer_index(model, layer="c4")) == "relu4"
    with pytest.raises(ValueError, match=r"no convolution named 'c5'.*\['c32', 'c16', 'c8', 'c4'\]"):
        target_layer_index(model, layer="c5")
    import keras

    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")], name="flat")
    with pytest.raises(ValueError, match="has no Conv2D layer"):
        target_layer_index(flat)


def test_the_registered_agents_read_a_map_of_at_least_8_cells_at_their_sizes():
    from agents.registry import get_agent

    # custom's blocks convolve at the input's size, then halve it: at 64 px its block 4 has 8
    # cells, at 32 px 4 (so block 3, 8 cells, is read). LeNet's second stage (conv, batch norm, ReLU)
    # has 32 cells at 64 px.
    cases = {("custom", 64): "block4_relu2", ("custom", 32): "block3_relu2", ("lenet", 64): "relu2",
             ("vgg16", 64): "block4_conv3", ("vgg16", 224): "block5_conv3"}
    for (agent, size), expected in cases.items():
        model = get_agent(agent).build(input_size=size)
        index = target_layer_index(model, layer=get_agent(agent).heatmap_layer)
        assert _name_at(model, index) == expected, (agent, size)
        assert min(_feature_layers(model)[index].output.shape[1:3]) >= 8


def _identity_model():
    """fake score = mean of the input: Grad-CAM of "fake" is then the input itself, normalised."""
    import keras
    from keras import layers

    inputs = keras.Input((16, 16, 1))
    x = layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="feat")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    head = layers.Dense(2, activation="softmax", kernel_initializer="zeros", name="head")
    model = keras.Model(inputs, head(x), name="identity")
    kernel = np.zeros((1, 2), np.float32)
    kernel[0, FAKE_INDEX] = 1.0
    head.kernel.assign(kernel)
    return model


def test_grad_cam_points_at_the_patch_the_score_comes_from_and_a_flat_input_is_withheld():
    model = _identity_model()
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 2:6, 2:6] = 1.0
    patch = np.zeros((16, 16), np.float32)
    patch[2:6, 2:6] = 1.0
    cam = grad_cam(model, image)[0]
    assert cam.shape == (16, 16) and cam.max() == pytest.approx(1.0)
    assert mask_lift(cam, patch) == pytest.approx(16.0)  # all of it in 1/16 of the area
    assert withheld_reason("identity", cam) == ""
    flat = grad_cam(model, np.full((1, 16, 16, 1), 0.5, np.float32))[0]
    assert concentration(flat) == pytest.approx(0.0, abs=1e-6)
    assert "shows no location" in withheld_reason("identity", flat)
    with pytest.raises(ValueError, match="received shape"):
        grad_cam(model, image[0])


def test_the_renderer_withholds_declared_agents_and_draws_the_others(tiny_bundle, face_crop):
    from agents.registry import get_agent

    crops = [face_crop, np.ascontiguousarray(face_crop[::-1])]
    declared = GradCamRenderer(tiny_bundle).render_png(crops)
    for tiles in declared:
        for agent, tile in tiles.items():
            # The registry's measured reason, word for word, and no picture.
            assert tile == AgentMap(withheld=get_agent(agent).heatmap_withheld) and tile.png == b""
    shown = GradCamRenderer(tiny_bundle, withheld={"lenet": "lenet: not today."}).render_png(crops)
    for tiles in shown:
        assert tiles["lenet"].withheld == "lenet: not today."
        for agent in ("custom", "vgg16"):
            tile = tiles[agent]
            if tile.png:
                assert cv2.imdecode(np.frombuffer(tile.png, np.uint8), cv2.IMREAD_COLOR).shape == (224, 224, 3)
            else:  # a tiny random model may well spread its map evenly: then it says so
                assert "shows no location" in tile.withheld
