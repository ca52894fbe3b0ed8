"""The forensic agent's resize-robust features (agents.forensic_robust, feature version 2)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agents.forensic_features import CONTRACT, FEATURE_NAMES, FEATURE_VERSION, GROUPS, N_FEATURES, image_features
from agents.forensic_robust import group_names
from agents.preprocessing import prepare_image
from vision import degrade

ROBUST = ("canon", "npr", "bandnorm", "colourmix", "profile", "quality")


def test_version_and_name_table():
    assert FEATURE_VERSION == 2
    assert set(ROBUST) <= set(GROUPS)
    for group, names in group_names().items():
        assert [FEATURE_NAMES[i] for i in GROUPS[group]] == [f"{group}.{n}" for n in names]
    assert N_FEATURES == sum(len(c) for c in GROUPS.values()) == len(set(FEATURE_NAMES))


@pytest.mark.parametrize("shape", [(32, 32), (33, 47), (224, 224), (300, 180)])
def test_features_are_deterministic_and_finite_on_small_and_odd_inputs(shape):
    rng = np.random.default_rng(sum(shape))
    kinds = {
        "noise": rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        "flat": np.full((*shape, 3), 200, np.uint8),
        "black": np.zeros((*shape, 3), np.uint8),
        "saturated": np.dstack([np.full(shape, 255, np.uint8), np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)]),
    }
    for name, image in kinds.items():
        f = image_features(image)
        assert f.shape == (N_FEATURES,) and f.dtype == np.float32
        assert np.isfinite(f).all(), (name, [FEATURE_NAMES[i] for i in np.flatnonzero(~np.isfinite(f))])
        np.testing.assert_array_equal(f, image_features(image.copy()))


def _relative_change(a: np.ndarray, b: np.ndarray, group: str) -> float:
    cols = list(GROUPS[group])
    return float(np.mean(np.abs(a[cols] - b[cols]) / (np.abs(a[cols]) + 1.0)))


@pytest.mark.parametrize("transform", ["scale0.5", "blur1"])
def test_robust_groups_change_less_than_fine_detail_under_resize_and_blur(face_crop, transform):
    """A face shown at half size (or blurred) and fed as the crop keeps its robust features."""
    clean = image_features(prepare_image(face_crop, CONTRACT))
    shown = image_features(prepare_image(degrade.apply(transform, face_crop, seed=0), CONTRACT))
    fine = _relative_change(clean, shown, "spectrum")
    assert _relative_change(clean, shown, "profile") < 0.25 * fine
    assert _relative_change(clean, shown, "colourmix") < 0.25 * fine
    assert _relative_change(clean, shown, "canon") < 0.5 * _relative_change(clean, shown, "noise")


def test_quality_features_see_how_degraded_a_crop_is(face_crop):
    idx = FEATURE_NAMES.index("quality.grad_224_over_112")
    clean = image_features(prepare_image(face_crop, CONTRACT))[idx]
    small = image_features(prepare_image(degrade.apply("scale0.35", face_crop, seed=0), CONTRACT))[idx]
    blurred = image_features(cv2.GaussianBlur(face_crop, (0, 0), 2.0))[idx]
    assert small < clean - 0.1 and blurred < clean - 0.1


def test_npr_sees_nearest_neighbour_upsampling():
    """Generators that upsample by pixel repetition leave a zero 2x2 residual; a photo does not."""
    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), (0, 0), 0.7)
    repeated = cv2.resize(photo[::2, ::2], (224, 224), interpolation=cv2.INTER_NEAREST)
    idx = FEATURE_NAMES.index("npr.Y_border_level_224")
    assert image_features(repeated)[idx] < image_features(photo)[idx] - 3


def test_a_model_of_the_first_feature_set_still_loads_and_reads_only_its_columns(tmp_path):
    """Version 2 appended groups, so a version-1 model (the shipped bundle's) keeps scoring the same."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from agents.forensic import ForensicModel, load_forensic, save_forensic

    v1 = 1 + max(i for g in ("colour", "saturation", "spectrum", "noise", "sharpness", "jpeg") for i in GROUPS[g])
    assert v1 == 144
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    y = (x[:, 3] + x[:, 200] > 0).astype(int)  # column 200 is a version-2 feature: the old model cannot see it
    old = ForensicModel(HistGradientBoostingClassifier(max_iter=20), feature_version=1, n_features=v1).fit(x[:, :v1], y)
    save_forensic(old, tmp_path / "old.skops")
    loaded = load_forensic(tmp_path / "old.skops")
    assert (loaded.feature_version, loaded.n_features) == (1, v1)
    np.testing.assert_allclose(loaded.predict_features(x), old.predict_features(x[:, :v1]), atol=1e-7)
    assert set(loaded.explain_features(x[:2])[0]) == {"colour", "saturation", "spectrum", "noise", "sharpness", "jpeg"}
    with pytest.raises(ValueError, match=r"features must be \(N, "):
        loaded.predict_features(x[:, :100])
    # The current version must carry every current feature: a cut one is refused, not guessed at.
    cut = ForensicModel(HistGradientBoostingClassifier(max_iter=5), feature_version=FEATURE_VERSION,
                        n_features=v1).fit(x[:, :v1], y)
    save_forensic(cut, tmp_path / "cut.skops")
    with pytest.raises(ValueError, match="Retrain"):
        load_forensic(tmp_path / "cut.skops")
