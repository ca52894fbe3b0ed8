"""`training.evaluate_pipeline`: the duration `fakeface evaluate` announces before it runs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def test_duration_estimate_tells_crops_from_photos(tmp_path):
    from training.evaluate_pipeline import STARTUP_S, estimate_seconds

    crop, photo = str(tmp_path / "crop.png"), str(tmp_path / "photo.png")
    cv2.imwrite(crop, np.zeros((224, 224, 3), np.uint8))
    cv2.imwrite(photo, np.zeros((480, 640, 3), np.uint8))
    crops, photos = estimate_seconds([crop] * 1000, "auto", 2), estimate_seconds([photo] * 1000, "auto", 2)
    assert STARTUP_S < crops < photos
    assert estimate_seconds([crop] * 1000, "on", 2) == pytest.approx(photos)  # --detect on runs MTCNN on all
    assert estimate_seconds([photo] * 1000, "off", 2) == pytest.approx(crops)
    assert estimate_seconds([crop] * 1000, "auto", 4) < crops  # more CPUs, shorter



def test_cached_gate_reasons_follow_the_bundles_ood_model():
    from training.evaluate_gate import gate_salt

    class Bundle:
        def __init__(self, ood):
            self.ood = ood

        def extra(self, key):
            return self.ood if key == "ood" else None

    without, fitted, refitted = Bundle(None), Bundle({"sha256": "a" * 64}), Bundle({"sha256": "b" * 64})
    salts = {gate_salt(without), gate_salt(fitted), gate_salt(refitted)}
    assert len(salts) == 3 and gate_salt(Bundle({"sha256": "a" * 64})) == gate_salt(fitted)
