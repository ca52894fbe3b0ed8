"""The shipped bundle (`agents/default_bundle`) loads as `make serve` loads it and answers a face.

Every other test trains its own small bundle, so without this one an edit to the shipped files
(a provenance line, a re-signing) could leave `make serve` refusing to start while the suite
stays green. It runs the real CLI in a subprocess, with no `--allow-unsigned`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from agents.bundle import load_bundle
from blackboard.controllers.store import load_controller

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "agents" / "default_bundle"


def test_shipped_bundle_verifies_and_its_controller_matches_the_manifest():
    bundle = load_bundle(SHIPPED)  # the project's public key ships in the package
    controller = load_controller(bundle)
    assert controller is not None
    # The table's content hash is its version; the manifest and companions name the same one.
    assert bundle.extra("controller")["version"] == controller.version
    for companion in ("baselines", "replay"):
        entry = bundle.extra(companion)
        if entry is not None:
            assert entry["controller_version"] == controller.version


def test_shipped_bundle_answers_a_face_crop(tmp_path):
    rng = np.random.default_rng(0)
    face = np.full((224, 224, 3), 150, np.uint8)
    cv2.ellipse(face, (112, 112), (70, 95), 0, 0, 360, (120, 150, 200), -1)
    face = cv2.GaussianBlur(np.clip(face + rng.normal(0, 6, face.shape), 0, 255).astype(np.uint8), (3, 3), 0)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), face)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "fakeface.cli", "classify", "--detect", "off", "--json", str(path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    faces = results[0]["faces"]
    assert len(faces) == 1
    assert 0.0 <= faces[0]["p_fake"] <= 1.0
    assert set(faces[0]["votes"]) == set(load_bundle(SHIPPED).manifest["agents"])  # every shipped agent voted
