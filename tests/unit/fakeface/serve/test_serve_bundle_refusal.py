"""`fakeface serve` refuses every tampered bundle at start, with the reason, within 10 s.

The tiny bundle is signed with the suite's throwaway key (tests/conftest.py), trusted the way an
operator's key is; each case is the attack from issue 26 on a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.bundle import update_bundle

REPO = Path(__file__).resolve().parents[3]
LIMIT_S = 10.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite(bundle: Path, edit) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _edit_model(b: Path) -> None:
    with open(b / "lenet.keras", "ab") as f:
        f.write(b"\0")


def _edit_controller(b: Path) -> None:
    (b / "controller" / "v1.json").write_bytes(b'{"kind": "logodds", "weights": [9, 9, 9]}')


def _edit_controller_and_checksums(b: Path) -> None:
    _edit_controller(b)
    digest = _sha(b / "controller" / "v1.json")

    def edit(m):
        m["extras"]["controller"]["sha256"] = m["files"]["controller/v1.json"] = digest
    _rewrite(b, edit)


def _swap_models(b: Path) -> None:
    a, c = b / "custom.keras", b / "lenet.keras"
    da, dc = a.read_bytes(), c.read_bytes()
    a.write_bytes(dc)
    c.write_bytes(da)

    def edit(m):
        for name, rel in (("custom", "custom.keras"), ("lenet", "lenet.keras")):
            m["agents"][name]["sha256"] = m["files"][rel] = _sha(b / rel)
    _rewrite(b, edit)


def _rewrite_manifest(b: Path) -> None:
    def edit(m):
        m["agents"]["lenet"]["threshold"] = 0.01
    _rewrite(b, edit)


CASES = {
    "edited model": (_edit_model, "Checksum mismatch for lenet.keras"),
    "edited controller": (_edit_controller, "Checksum mismatch for controller/v1.json"),
    "edited controller, checksums rewritten": (_edit_controller_and_checksums, "signature does not match"),
    "swapped models, checksums rewritten": (_swap_models, "signature does not match"),
    "rewritten manifest": (_rewrite_manifest, "signature does not match"),
    "deleted file": (lambda b: (b / "vgg16.keras").unlink(), "vgg16.keras listed in its manifest is missing"),
    "extra file": (lambda b: (b / "controller" / "v2.json").write_text("{}"), "controller/v2.json, not listed"),
    "unsigned": (lambda b: (b / "manifest.json.sig").unlink(), "is not signed"),
}


@pytest.fixture(scope="module")
def signed_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with a controller file, signed (bundle writers sign with the suite's key)."""
    path = tmp_path_factory.mktemp("refusal") / "signed"
    shutil.copytree(tiny_bundle, path)
    update_bundle(path, extras={"controller": ("controller/v1.json", b'{"kind": "logodds"}', {"version": "1"})})
    assert (path / "manifest.json.sig").is_file()
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_a_tampered_bundle_fast_with_the_reason(case, signed_bundle, tmp_path):
    tamper, reason = CASES[case]
    bundle = tmp_path / "bundle"
    shutil.copytree(signed_bundle, bundle)
    tamper(bundle)
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fakeface.cli", "serve", "--bundle", str(bundle), "--port", "0",
                           "--http-port", "0"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert reason in proc.stderr and str(bundle) in proc.stderr, proc.stderr[-2000:]
    assert "SERVING" not in proc.stdout
    assert elapsed <= LIMIT_S, f"{case}: refused after {elapsed:.1f} s"


def test_the_untampered_copy_is_accepted_by_verify(signed_bundle):
    """The cases above fail for their tampering, not because the copy itself is refused."""
    proc = subprocess.run([sys.executable, "-m", "fakeface.cli", "bundle", "verify", "--bundle", str(signed_bundle)],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "signed by trusted key" in proc.stdout, proc.stderr
