"""Agents: builders, preprocessing contracts, bundles (checksums, tampering) and backend parity."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.labels import CLASSES, FAKE_INDEX, label_to_index
from agents.preprocessing import Preprocessing, prepare_batch
from agents.registry import agent_names, get_agent
from agents.bundle import BundleError, load_bundle, update_bundle, write_bundle
from agents.signing import TrustPolicy
from agents.predictor import AgentPredictor, apply_temperature
from bundle_damage import append_byte, damaged_copy, edit_manifest

REPO = Path(__file__).resolve().parents[3]


def test_class_convention_defined_once():
    assert CLASSES == ("real", "fake")
    assert FAKE_INDEX == 1 and label_to_index("FAKE") == 1 and label_to_index("real") == 0
    with pytest.raises(ValueError, match="Unknown label"):
        label_to_index("maybe")


@pytest.mark.parametrize("name", agent_names(kind="keras"))
def test_builder_trains_saves_and_reloads(name, tmp_path):
    """Build, one training step, save to a bundle, verified load, same predictions."""
    import keras

    # Seeded, so the model and its step are the same in every run: unseeded, the step once left
    # every weight of the 8-unit LeNet unchanged in a CI run (not reproduced over 30 seeds; the
    # tiny bundle's build, which seeds Keras, now runs in one process of the run, not in each).
    keras.utils.set_random_seed(0)
    spec = get_agent(name)
    contract = spec.contract(32)
    kwargs = {"lenet": {"dense_units": 8}, "custom": {"filters": (4, 8)}}.get(name, {})
    model = spec.build(input_size=32, **kwargs)
    assert model.name == name
    assert model.input_shape[1:] == contract.input_shape
    assert model.output_shape == (None, len(CLASSES))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(6, 50, 50, 3), dtype=np.uint8)
    x = prepare_batch(faces, contract)
    before = [w.copy() for w in model.get_weights()]
    model.train_on_batch(x, np.array([0, 1, 0, 1, 0, 1]))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights())), "a step must change weights"
    expected = np.asarray(model.predict_on_batch(x))
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)

    bundle = write_bundle(tmp_path / "b", {name: {"model": model, "preprocessing": contract}})
    predictor = AgentPredictor(bundle.path, name)
    np.testing.assert_allclose(predictor.predict_proba(faces), expected, atol=1e-5)
    out = predictor({"face": faces})
    assert out[f"{name}_p_fake"].shape == (6,)
    np.testing.assert_allclose(out[f"{name}_p_fake"], expected[:, FAKE_INDEX], atol=1e-5)


def test_lenet_batch_norm_normalises_each_stage_and_keeps_the_flattened_map():
    from agents.lenet import build_lenet

    plain = build_lenet(input_shape=(32, 32, 3), dense_units=8)
    normed = build_lenet(input_shape=(32, 32, 3), dense_units=8, batch_norm=True)
    names = [layer.name for layer in normed.layers]
    assert {"bn1", "bn2", "fc1_bn"} <= set(names) and not any("bn" in layer.name for layer in plain.layers)
    assert normed.get_layer("conv1").use_bias is False and plain.get_layer("conv1").use_bias is True
    # The dense layer still reads where on the face a pattern is: a flattened 8x8x50 map.
    assert normed.get_layer("flatten").output.shape[-1] == 8 * 8 * 50
    assert get_agent("lenet").builder_kwargs.get("batch_norm") is True


def test_builders_validate_arguments():
    from agents.custom import build_custom
    from agents.lenet import build_lenet
    from agents.vgg16 import build_vgg16

    with pytest.raises(ValueError, match="received"):
        build_custom(input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="dropout"):
        build_lenet(dropout=1.5)
    with pytest.raises(ValueError, match="height, width, 3"):
        build_vgg16(input_shape=(64, 64, 1))
    with pytest.raises(FileNotFoundError, match="not a file"):
        build_vgg16(input_shape=(32, 32, 3), backbone_weights="/nonexistent/weights.h5")
    with pytest.raises(ValueError, match="Unknown agent"):
        get_agent("resnet")


def test_vgg16_bn_has_the_13_convolutions_and_trains_a_step():
    from agents.vgg16 import build_vgg16

    model = build_vgg16(input_shape=(32, 32, 3), batch_norm=True)
    base = model.get_layer("vgg16_base")
    convs = [l for l in base.layers if l.__class__.__name__ == "Conv2D"]
    norms = [l for l in base.layers if l.__class__.__name__ == "BatchNormalization"]
    assert len(convs) == 13 and len(norms) == 13
    assert [c.filters for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert convs[0].kernel_initializer.__class__.__name__ == "HeNormal"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = prepare_batch(np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8),
                      Preprocessing(height=32, width=32, channels=3, scale="raw"))
    before = convs[0].get_weights()[0].copy()
    model.train_on_batch(x, np.array([0, 1, 0, 1]))
    assert not np.allclose(before, convs[0].get_weights()[0])
    with pytest.raises(ValueError, match="backbone_weights must be 'none'"):
        build_vgg16(input_shape=(32, 32, 3), batch_norm=True, backbone_weights="imagenet")
    # Its input is the face standardised by its own crop: no ImageNet mean inside the model.
    assert "vgg_preprocess" not in [layer.name for layer in model.layers]
    assert "vgg_preprocess" in [layer.name for layer in build_vgg16(input_shape=(32, 32, 3)).layers]
    assert get_agent("vgg16").contract(32, batch_norm=True).normalize == "image"
    assert get_agent("vgg16").contract(32).normalize == "none"


def test_vgg16_bn_width_scales_every_convolution_and_only_for_the_bn_recipe():
    from agents.vgg16 import build_vgg16

    half = build_vgg16(input_shape=(32, 32, 3), batch_norm=True, width=0.5)
    convs = [l for l in half.get_layer("vgg16_base").layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32] * 2 + [64] * 2 + [128] * 3 + [256] * 6
    with pytest.raises(ValueError, match="width 0.5 applies to VGG-16-BN only"):
        build_vgg16(input_shape=(32, 32, 3), width=0.5)
    with pytest.raises(ValueError, match=r"width must be in \(0, 1\], received 1.5"):
        build_vgg16(input_shape=(32, 32, 3), batch_norm=True, width=1.5)


def test_npr_residual_contract():
    """NPR: each pixel minus the top-left pixel of its 2x2 cell, after scaling; stored in bundles."""
    from agents.preprocessing import npr_residual

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    contract = Preprocessing(height=16, width=16, channels=3, scale="unit", residual="npr")
    x = prepare_batch([image], contract)[0]
    unit = image.astype(np.float32) / 255.0
    np.testing.assert_allclose(x[::2, ::2], 0.0)  # the anchors
    np.testing.assert_allclose(x[1::2, 1::2], unit[1::2, 1::2] - unit[::2, ::2], atol=1e-6)
    np.testing.assert_allclose(x[::2, 1::2], unit[::2, 1::2] - unit[::2, ::2], atol=1e-6)
    # A nearest-neighbour 2x up-sampled image has nothing left: the trace NPR looks for.
    upsampled = np.repeat(np.repeat(image[:8, :8], 2, axis=0), 2, axis=1)
    assert np.abs(prepare_batch([upsampled], contract)).max() == 0.0
    assert npr_residual(np.ones((5, 7, 1), np.float32)).shape == (5, 7, 1)  # odd sides
    assert Preprocessing.from_dict({**contract.to_dict()}) == contract
    old = {"height": 16, "width": 16, "channels": 3, "scale": "unit", "color": "rgb"}  # older bundles
    assert Preprocessing.from_dict(old).residual == "none"
    with pytest.raises(ValueError, match="residual"):
        Preprocessing(height=16, width=16, channels=3, residual="fft")


def test_per_image_standardisation_keeps_how_the_face_differs_from_its_crop():
    """"image": each channel minus its mean over its spread; lighting and skin tone drop out."""
    from agents.preprocessing import NORMALIZE_FLOOR

    rng = np.random.default_rng(0)
    face = rng.integers(60, 200, size=(32, 32, 3), dtype=np.uint8)
    contract = Preprocessing(height=32, width=32, channels=3, color="ycrcb", normalize="image")
    x = prepare_batch([face], contract)[0]
    np.testing.assert_allclose(x.mean(axis=(0, 1)), 0.0, atol=1e-5)
    ycrcb = cv2.cvtColor(face, cv2.COLOR_RGB2YCrCb).astype(np.float64)
    expected = (ycrcb - ycrcb.mean(axis=(0, 1))) / (ycrcb.std(axis=(0, 1)) + NORMALIZE_FLOOR)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    # A darker, lower-contrast copy of the same scene gives nearly the same input...
    dim = cv2.convertScaleAbs(face, alpha=0.6, beta=-20)
    assert np.abs(prepare_batch([dim], contract)[0] - x).mean() < 0.1  # of a spread of 1
    # ...while a face pasted in with another tone changes it where it was pasted.
    pasted = face.copy()
    pasted[8:24, 8:24] = cv2.convertScaleAbs(face[8:24, 8:24], alpha=1.0, beta=30)
    moved = np.abs(prepare_batch([pasted], contract)[0] - x)
    assert moved[8:24, 8:24].mean() > 2 * moved[:4].mean()
    # A flat crop is not blown up by its zero spread.
    flat = prepare_batch([np.full((32, 32, 3), 128, np.uint8)], contract)[0]
    assert np.abs(flat).max() < 1e-3  # float32 rounding of the mean, not noise blown up
    custom = get_agent("custom").preprocessing
    assert custom.normalize == "image" and custom.color == "ycrcb"
    assert Preprocessing.from_dict(contract.to_dict()) == contract
    old = {"height": 16, "width": 16, "channels": 3, "scale": "unit", "color": "rgb"}  # older bundles
    assert Preprocessing.from_dict(old).normalize == "none"
    with pytest.raises(ValueError, match="normalize"):
        Preprocessing(height=16, width=16, channels=3, normalize="batch")


def test_vgg16_local_weights_and_freezing(tmp_path):
    from agents.vgg16 import build_vgg16
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "base.weights.h5"
    base.save_weights(path)
    model = build_vgg16(input_shape=(32, 32, 3), backbone_weights=str(path), trainable_blocks=1)
    loaded = model.get_layer("vgg16_base")
    np.testing.assert_allclose(loaded.get_layer("block1_conv1").get_weights()[0],
                               base.get_layer("block1_conv1").get_weights()[0])
    trainable = {l.name for l in loaded.layers if l.trainable and l.weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3"}


def test_imagenet_offline_names_the_fix(monkeypatch):
    from agents import vgg16 as vgg_module

    def offline(*args, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise OSError("no network")
        return original(*args, **kwargs)

    original = vgg_module.keras.applications.VGG16
    monkeypatch.setattr(vgg_module.keras.applications, "VGG16", offline)
    with pytest.raises(RuntimeError, match="--backbone-weights PATH"):
        vgg_module.build_vgg16(input_shape=(32, 32, 3), backbone_weights="imagenet")


def test_preprocessing_contract():
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    gray = prepare_batch([rgb], Preprocessing(height=20, width=30, channels=1, scale="unit"))
    assert gray.shape == (1, 20, 30, 1) and gray.dtype == np.float32
    np.testing.assert_allclose(gray[0, 5, 5, 0], 0.299, atol=0.01)  # luma of red
    raw = prepare_batch(rgb, Preprocessing(height=16, width=16, channels=3, scale="raw"))
    assert raw.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(raw[0, 3, 3], [255, 0, 0])
    with pytest.raises(ValueError, match="channels"):
        Preprocessing(channels=2)
    with pytest.raises(ValueError, match="RGB image"):
        prepare_batch([np.zeros((4, 4, 5), np.uint8)], Preprocessing(height=8, width=8))
    for name in agent_names():
        contract = get_agent(name).preprocessing
        assert Preprocessing.from_dict(contract.to_dict()) == contract


def test_temperature_scaling_softens():
    p = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    soft = apply_temperature(p, 3.0)
    assert soft[0, 0] < 0.9 and soft[0, 0] > 0.5


def test_bundle_manifest_describes_the_agents(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    assert set(bundle.agent_names) == set(agent_names(kind="keras"))
    manifest = bundle.manifest
    assert manifest["format_version"] == 1 and manifest["positive_class"] == "fake"
    assert "keras" in manifest["libraries"]
    with pytest.raises(BundleError, match="No model bundle"):
        load_bundle(tmp_path / "nothing")


# Damage to a bundle -> (how it is loaded, what the refusal says).
DAMAGE = {
    "model file changed": (lambda b: append_byte(b / "lenet.keras"), {}, "Checksum mismatch"),
    "model file deleted": (lambda b: (b / "custom.keras").unlink(), {}, "incomplete"),
    "ONNX export changed": (lambda b: append_byte(b / "custom.onnx"), {}, "Checksum mismatch"),
    # The format version is checked once the signature (which the edit breaks) is waived.
    "newer format": (lambda b: edit_manifest(b, lambda m: m.update(format_version=99)),
                     {"trust": TrustPolicy(allow_unsigned=True)}, "format_version"),
}


@pytest.mark.parametrize("damage, load_options, refusal", DAMAGE.values(), ids=list(DAMAGE))
def test_bundle_refuses_tampering_and_incompleteness(tiny_bundle, tmp_path, damage, load_options, refusal):
    damaged = damaged_copy(tiny_bundle, tmp_path / "damaged", damage)
    with pytest.raises(BundleError, match=refusal):
        load_bundle(damaged, **load_options)


def test_update_bundle_adds_checksummed_extra(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    bundle = update_bundle(copy, extras={"controller": ("controller/v1.json", b'{"q": 1}', {"version": "1"})})
    assert bundle.read_extra("controller") == b'{"q": 1}'
    assert bundle.extra("controller")["version"] == "1"
    (copy / "controller" / "v1.json").write_bytes(b'{"q": 2}')
    with pytest.raises(BundleError, match="Checksum mismatch"):
        load_bundle(copy)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"atomic update left temporary directories: {leftovers}"


def test_float16_storage_halves_size_and_keeps_predictions(tmp_path):
    spec = get_agent("lenet")
    model = spec.build(input_size=32, dense_units=64)
    contract = spec.contract(32)
    b32 = write_bundle(tmp_path / "f32", {"lenet": {"model": model, "preprocessing": contract}})
    b16 = write_bundle(tmp_path / "f16", {"lenet": {"model": model, "preprocessing": contract}},
                       storage_dtype="float16")
    size32 = (b32.path / "lenet.keras").stat().st_size
    size16 = (b16.path / "lenet.keras").stat().st_size
    assert size16 < 0.6 * size32
    faces = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    p32 = AgentPredictor(b32, "lenet").predict_proba(faces)
    p16 = AgentPredictor(b16, "lenet").predict_proba(faces)
    np.testing.assert_allclose(p16, p32, atol=5e-3)


@pytest.mark.slow
def test_torch_backend_reproduces_tensorflow_probabilities(tiny_bundle, face_crop, tmp_path):
    """A bundle saved under TensorFlow gives the same probabilities under KERAS_BACKEND=torch."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # an optional extra: `pip install .[torch]`
        pytest.skip("torch is not installed (the optional `torch` extra)")
    faces = np.stack([face_crop, face_crop[::-1], 255 - face_crop])
    np.save(tmp_path / "faces.npy", faces)
    expected = {n: AgentPredictor(tiny_bundle, n, runtime="keras").predict_proba(faces) for n in agent_names(kind="keras")}
    script = (
        "import sys, json, numpy as np\n"
        "import keras\n"
        "assert keras.backend.backend() == 'torch', keras.backend.backend()\n"
        "from agents.predictor import AgentPredictor\n"
        "faces = np.load(sys.argv[2])\n"
        "out = {n: AgentPredictor(sys.argv[1], n, runtime='keras').predict_proba(faces).tolist() for n in sys.argv[3].split(',')}\n"
        "print('RESULT' + json.dumps(out))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_bundle), str(tmp_path / "faces.npy"), ",".join(agent_names(kind="keras"))],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    got = json.loads(line[len("RESULT"):])
    for name in agent_names(kind="keras"):
        np.testing.assert_allclose(np.array(got[name]), expected[name], atol=1e-4, err_msg=name)
