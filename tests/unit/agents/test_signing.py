"""Signed bundles: every tampering an attacker tried is refused at load with its own reason.

The bundles here are hand-made (model files are random bytes: loading verifies signature,
inventory and checksums before any model is opened), signed with throwaway keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from agents.bundle import DEFAULT_BUNDLE, BundleError, load_bundle, sign_bundle, update_bundle
from agents.signing import (ALLOW_UNSIGNED_ENV, PROJECT_KEYS_DIR, SIGNATURE_FILE, SIGNING_KEY_ENV, TRUSTED_KEYS_ENV,
                            TrustPolicy, generate_key_pair, key_id, load_private_key, load_public_key)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(path: Path) -> Path:
    """A two-agent bundle with a controller extra, unsigned."""
    files = {"a.keras": os.urandom(256), "b.keras": os.urandom(256), "controller/v1.json": b'{"q": 1}'}
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    manifest = {
        "format": "fakeface-bundle", "format_version": 1,
        "agents": {name: {"file": f"{name}.keras", "sha256": _sha(files[f"{name}.keras"]), "preprocessing": {},
                          "threshold": 0.5} for name in ("a", "b")},
        "extras": {"controller": {"file": "controller/v1.json", "sha256": _sha(files["controller/v1.json"])}},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two throwaway key pairs: "ours" (trusted) and "theirs" (not)."""
    root = tmp_path_factory.mktemp("keys")
    ours, theirs = generate_key_pair(root, "ours"), generate_key_pair(root, "theirs")
    return {"ours": ours, "theirs": theirs,
            "trust": TrustPolicy(keys={key_id(load_public_key(ours[1])): (load_public_key(ours[1]), "test")})}


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    path = make_bundle(tmp_path / "bundle")
    sign_bundle(path, load_private_key(keys["ours"][0]))
    return path


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path: Path, manifest: dict) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_signed_bundle_loads_and_names_its_signer(signed, keys):
    bundle = load_bundle(signed, trust=keys["trust"])
    assert bundle.signer == key_id(load_public_key(keys["ours"][1]))
    assert set(bundle.manifest["files"]) == {"a.keras", "b.keras", "controller/v1.json"}


def test_key_pair_is_private_and_never_overwritten(keys):
    private, public = keys["ours"]
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE" not in public.read_bytes()
    with pytest.raises(FileExistsError):
        generate_key_pair(private.parent, "ours")


def test_unsigned_is_refused_with_the_fix_unless_allowed(tmp_path, keys, caplog):
    path = make_bundle(tmp_path / "plain")
    with pytest.raises(BundleError, match="is not signed") as err:
        load_bundle(path, trust=keys["trust"])
    assert str(path) in str(err.value) and "fakeface bundle sign" in str(err.value)
    assert "--allow-unsigned" in str(err.value)
    with caplog.at_level("WARNING", logger="fakeface.bundle"):
        bundle = load_bundle(path, trust=TrustPolicy(keys=keys["trust"].keys, allow_unsigned=True))
    assert bundle.signer is None
    assert any("allow-unsigned" in r.getMessage() for r in caplog.records)


def test_untrusted_signer_is_refused(tmp_path, keys):
    path = make_bundle(tmp_path / "theirs")
    sign_bundle(path, load_private_key(keys["theirs"][0]))
    stranger = key_id(load_public_key(keys["theirs"][1]))
    with pytest.raises(BundleError, match=f"signed by key {stranger}, which is not trusted"):
        load_bundle(path, trust=keys["trust"])


def _edit_model_file(bundle: Path) -> None:
    # Flip the first byte: writing a fixed byte left the random file unchanged 1 time in 256.
    with open(bundle / "b.keras", "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


def _edit_controller(bundle: Path) -> None:
    (bundle / "controller" / "v1.json").write_bytes(b'{"q": 9}')


def _edit_controller_and_its_checksums(bundle: Path) -> None:
    data = b'{"q": 9}'
    (bundle / "controller" / "v1.json").write_bytes(data)
    manifest = _manifest(bundle)
    manifest["extras"]["controller"]["sha256"] = manifest["files"]["controller/v1.json"] = _sha(data)
    _write_manifest(bundle, manifest)


def _swap_files_and_their_checksums(bundle: Path) -> None:
    a, b = (bundle / "a.keras").read_bytes(), (bundle / "b.keras").read_bytes()
    (bundle / "a.keras").write_bytes(b)
    (bundle / "b.keras").write_bytes(a)
    manifest = _manifest(bundle)
    manifest["agents"]["a"]["sha256"], manifest["agents"]["b"]["sha256"] = _sha(b), _sha(a)
    manifest["files"]["a.keras"], manifest["files"]["b.keras"] = _sha(b), _sha(a)
    _write_manifest(bundle, manifest)


def _rewrite_manifest(bundle: Path) -> None:
    manifest = _manifest(bundle)
    manifest["agents"]["a"]["threshold"] = 0.01  # no file touched
    _write_manifest(bundle, manifest)


def _link_outside(bundle: Path) -> None:
    outside = bundle.parent / "outside.bin"
    outside.write_bytes(b"x")
    (bundle / "link.bin").symlink_to(outside)


# Each tampering -> the reason its refusal gives.
TAMPERING = {
    "edited model file": (_edit_model_file, r"Checksum mismatch for b\.keras"),
    "edited controller": (_edit_controller, r"Checksum mismatch for controller/v1\.json"),
    "edited controller, checksums rewritten": (_edit_controller_and_its_checksums,
                                               "signature does not match .*manifest was changed after it was signed"),
    "swapped files, checksums rewritten": (_swap_files_and_their_checksums, "signature does not match"),
    "rewritten manifest": (_rewrite_manifest, "signature does not match"),
    "deleted file": (lambda b: (b / "controller" / "v1.json").unlink(),
                     r"controller/v1\.json listed in its manifest is missing \(deleted\)"),
    "extra file": (lambda b: (b / "controller" / "v2.json").write_bytes(b"{}"),
                   r"holds controller/v2\.json, not listed in its manifest"),
    "symbolic link": (_link_outside, "symbolic link"),
    "garbled signature": (lambda b: (b / SIGNATURE_FILE).write_bytes(b"\x00" * 10_000), "unreadable"),
}


@pytest.mark.parametrize("tamper, refusal", TAMPERING.values(), ids=list(TAMPERING))
def test_tampered_bundle_is_refused_with_its_reason(signed, keys, tamper, refusal):
    tamper(signed)
    with pytest.raises(BundleError, match=refusal):
        load_bundle(signed, trust=keys["trust"])


def test_sign_refuses_a_damaged_bundle(signed, keys):
    with open(signed / "a.keras", "ab") as f:
        f.write(b"!")
    with pytest.raises(BundleError, match="Checksum mismatch"):
        sign_bundle(signed, load_private_key(keys["ours"][0]))


def test_update_drops_the_old_signature_or_signs_with_the_configured_key(signed, keys, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    update_bundle(signed, extras={"ood": ("ood/ood.json", b"{}", {})})
    assert not (signed / SIGNATURE_FILE).exists()  # the old one signed another manifest
    with pytest.raises(BundleError, match="is not signed"):
        load_bundle(signed, trust=keys["trust"])
    monkeypatch.setenv(SIGNING_KEY_ENV, str(keys["ours"][0]))
    update_bundle(signed, extras={"ood": ("ood/ood.json", b"{ }", {})})
    assert "ood/ood.json" in load_bundle(signed, trust=keys["trust"]).manifest["files"]


def test_shipped_bundle_is_signed_by_the_project_key():
    project = {key_id(load_public_key(p)) for p in PROJECT_KEYS_DIR.glob("*.pub")}
    assert project, "agents/keys/ ships no public key"
    bundle = load_bundle(DEFAULT_BUNDLE, trust=TrustPolicy(
        keys={key_id(load_public_key(p)): (load_public_key(p), str(p)) for p in PROJECT_KEYS_DIR.glob("*.pub")}))
    assert bundle.signer in project


def test_cli_keygen_sign_verify_and_trusted_key(tmp_path, monkeypatch, capsys):
    from fakeface.cli import main

    monkeypatch.setenv(TRUSTED_KEYS_ENV, os.environ.get(TRUSTED_KEYS_ENV, ""))  # restored after the test
    monkeypatch.delenv(ALLOW_UNSIGNED_ENV, raising=False)
    path = make_bundle(tmp_path / "cli")
    assert main(["bundle", "keygen", "--out", str(tmp_path / "k"), "--name", "op"]) == 0
    assert main(["bundle", "verify", "--bundle", str(path)]) == 1
    assert "is not signed" in capsys.readouterr().err
    assert main(["bundle", "sign", "--key", str(tmp_path / "k" / "op.key"), "--bundle", str(path)]) == 0
    assert main(["bundle", "verify", "--bundle", str(path)]) == 1  # signed, but by a key nobody trusts yet
    assert "not trusted" in capsys.readouterr().err
    assert main(["bundle", "verify", "--bundle", str(path), "--trusted-key", str(tmp_path / "k" / "op.pub")]) == 0
    assert "signed by trusted key" in capsys.readouterr().out
    assert main(["bundle", "verify", "--bundle", str(path), "--trusted-key", str(tmp_path / "none.pub")]) == 2
    assert "no such file" in capsys.readouterr().err
    (path / "extra.txt").write_text("x")
    assert main(["bundle", "verify", "--bundle", str(path)]) == 1
    assert "extra.txt, not listed" in capsys.readouterr().err
