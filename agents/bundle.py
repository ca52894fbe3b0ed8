"""Model bundles: a directory with `manifest.json` and one model file per agent.

A Keras agent's file is `.keras`; the forensic agent's (``kind: "forensic"``) is a skops.io
file (`.skops`), loaded with a fixed list of trusted types and never unpickled.
Loading first verifies the manifest's ed25519 signature against the trusted keys
(`agents.signing`), then the format version, then that the directory holds exactly the files the
manifest lists, each with its sha256 (`agents.bundle_files`): a tampered, incomplete or padded
bundle is refused with the reason before any model file is opened; Keras models load with
``safe_mode=True``. Writers list every file and sign when ``$FAKEFACE_SIGNING_KEY`` names a key;
otherwise their output is unsigned until `fakeface bundle sign`.
Every write builds a complete bundle in a temporary sibling directory and renames it into
place, so a reader never sees half a bundle.

Other components (the controller's trust table, training curves) join a bundle as extra files
through :func:`update_bundle`; the manifest lists them with their checksums too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from agents import bundle_files, signing
from agents.atomic import atomic_write_bytes
from agents.bundle_files import MANIFEST, sha256_file
from agents.bundle_staging import staged_bundle
from agents.errors import parse_json
from agents.labels import CLASSES, POSITIVE
from agents.model_files import export_agent_onnx, load_model_file, save_model_file
from agents.preprocessing import Preprocessing

FORMAT = "fakeface-bundle"
FORMAT_VERSION = 1
# The bundle shipped in the repository (trained on ../shared/data/dfdc, see README).
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_bundle"


class BundleError(ValueError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced a bundle (recorded for provenance)."""
    out = {}
    for dist in ("keras", "tensorflow", "torch", "numpy", "scikit-learn", "skops", "fakeface"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    out["keras_backend"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    return out


@dataclass(frozen=True)
class AgentInfo:
    """One agent's manifest entry."""

    name: str  # registry name
    file: str  # .keras file, relative to the bundle
    sha256: str  # checksum of that file
    preprocessing: Preprocessing  # input contract the model was trained with
    temperature: float  # softmax temperature fitted on val (1.0 = uncalibrated)
    threshold: float  # decision threshold on calibrated p_fake
    threshold_rule: str  # how the threshold was chosen (e.g. "f0.5")
    val_metrics: dict[str, Any]  # metrics on the val split at that threshold
    training: dict[str, Any]  # data description, hyper-parameters, epochs, timings
    kind: str = "keras"  # "keras" (a .keras model) or "forensic" (a skops gradient-boosting model)
    # Added to the fake class's log-odds after the temperature: set by `fakeface fit-controller`
    # so that an agent's own probability assumes the same fake share as the ensemble's (0.5).
    bias: float = 0.0
    # The same network exported for ONNX Runtime (`agents.onnx_model`), relative to the bundle, and
    # its checksum; "" for the forensic agent and for bundles written before the export existed.
    onnx_file: str = ""
    onnx_sha256: str = ""


class Bundle:
    """A verified, read-only view of a model bundle directory."""

    def __init__(self, path: str | os.PathLike[str], manifest: dict[str, Any], signer: str | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.signer = signer  # id of the trusted key that signed it; None: loaded unsigned

    @property
    def version(self) -> str:
        """Short content id: sha256 of the manifest (which holds every file's sha256)."""
        return hashlib.sha256((self.path / MANIFEST).read_bytes()).hexdigest()[:12]

    @property
    def agent_names(self) -> list[str]:
        return list(self.manifest["agents"])

    def agent(self, name: str) -> AgentInfo:
        try:
            entry = self.manifest["agents"][name]
        except KeyError:
            raise BundleError(
                f"Bundle {self.path} has no agent {name!r}; it has: {', '.join(self.agent_names)}."
            ) from None
        return AgentInfo(
            name=name,
            file=entry["file"],
            sha256=entry["sha256"],
            preprocessing=Preprocessing.from_dict(entry["preprocessing"]),
            temperature=float(entry.get("temperature", 1.0)),
            threshold=float(entry.get("threshold", 0.5)),
            threshold_rule=str(entry.get("threshold_rule", "default")),
            val_metrics=dict(entry.get("val_metrics", {})),
            training=dict(entry.get("training", {})),
            kind=str(entry.get("kind", "keras")),
            bias=float(entry.get("bias", 0.0)),
            onnx_file=str(entry.get("onnx", {}).get("file", "")),
            onnx_sha256=str(entry.get("onnx", {}).get("sha256", "")),
        )

    def load_model(self, name: str, *, runtime: str = "auto"):
        """Re-verifies the agent's checksum, then loads its model (safe mode / trusted types).

        Args:
            name: the agent.
            runtime: "auto" runs the agent's ONNX export when the bundle has one (no TensorFlow or
                scikit-learn in the process: `agents.onnx_model.OnnxModel`, or for the forensic
                agent `agents.forensic_onnx`), else its model file; "keras" always loads the model
                file (Grad-CAM and training need the Keras layers, fitting the scikit-learn trees).
        """
        if runtime not in ("auto", "keras"):
            raise ValueError(f"runtime must be 'auto' or 'keras', received {runtime!r}.")
        info = self.agent(name)
        if info.onnx_file and runtime == "auto":
            from agents.forensic_onnx import load_forensic_onnx
            from agents.onnx_model import OnnxModel

            path = self.path / info.onnx_file
            _verify_file(path, info.onnx_sha256)
            try:
                return load_forensic_onnx(path) if info.kind == "forensic" else OnnxModel(path)
            except ValueError as err:
                raise BundleError(str(err)) from err
        path = self.path / info.file
        _verify_file(path, info.sha256)
        if info.kind == "forensic":
            from agents.forensic import load_forensic

            try:
                return load_forensic(path)
            except ValueError as err:
                raise BundleError(str(err)) from err
        if info.kind != "keras":
            raise BundleError(f"Bundle {self.path}: agent {name!r} has unknown kind {info.kind!r}; "
                              "upgrade fakeface or retrain the bundle.")
        return load_model_file(path)

    def extra(self, key: str) -> dict[str, Any] | None:
        """The manifest entry of an extra component (e.g. "controller"), or None."""
        return self.manifest.get("extras", {}).get(key)

    def extra_path(self, key: str) -> Path | None:
        entry = self.extra(key)
        return None if entry is None else self.path / entry["file"]

    def read_extra(self, key: str) -> bytes | None:
        """Bytes of an extra component's file after verifying its checksum."""
        entry = self.extra(key)
        if entry is None:
            return None
        path = self.path / entry["file"]
        _verify_file(path, entry["sha256"])
        return path.read_bytes()


def _verify_file(path: Path, expected: str) -> None:
    if not path.is_file():
        raise BundleError(f"Bundle is incomplete: {path} is missing. Re-copy or rebuild the bundle.")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(
            f"Checksum mismatch for {path}: manifest says {expected[:12]}…, file is {actual[:12]}…. "
            "The bundle was modified or damaged; rebuild it with `fakeface train`."
        )


def _entry_problem(path: Path, rel: Any, expected: Any, actual: dict[str, str]) -> str | None:
    """Why a manifest entry's file is not the file in the directory (``actual``: path -> sha256)."""
    if not isinstance(rel, str) or rel not in actual:
        return f"Bundle {path} is incomplete: {rel} (named in its manifest) is missing. Re-copy or rebuild the bundle."
    if actual[rel] != expected:
        return bundle_files.problem(path, {rel: str(expected)}, {rel: actual[rel]})
    return None


def _entries(manifest: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(file, sha256) of every model, artefact and extra component the manifest names.

    Each must be a file of the bundle's own inventory (`_entry_problem`), so a name like
    ``../x`` or ``/etc/x`` is refused here, before a bundle edit copies or removes it.
    """
    agents = manifest["agents"].values()
    out = [(e.get("file"), e.get("sha256")) for e in agents]
    out += [(e["onnx"].get("file"), e["onnx"].get("sha256")) for e in agents if isinstance(e.get("onnx"), dict)]
    for e in agents:  # artefacts (curves, logs): a list that is not a mapping names no file of ours
        files = e.get("files") or {}
        out += list(files.items()) if isinstance(files, dict) else [(files, None)]
    return out + [(e.get("file"), e.get("sha256")) for e in manifest.get("extras", {}).values()]


def load_bundle(path: str | os.PathLike[str] | None = None, *,
                trust: signing.TrustPolicy | None = None) -> Bundle:
    """Opens and verifies a bundle (the shipped default when ``path`` is None).

    Args:
        path: the bundle directory.
        trust: trusted keys and whether an unsigned bundle loads; None: the project's keys plus
            ``--trusted-key`` / ``--allow-unsigned`` (`agents.signing.TrustPolicy.from_env`).

    Raises:
        BundleError: missing directory or manifest, no trusted signature, unknown format or
            version, a file missing, added or changed.
    """
    path = Path(DEFAULT_BUNDLE if path is None else path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"No model bundle at {path}: {MANIFEST} not found. Pass --bundle DIR of a bundle made "
            "by `fakeface train`."
        )
    raw = manifest_path.read_bytes()
    try:  # the signature covers the exact bytes: checked before they are parsed
        signer = signing.check_signature(raw, path, trust)
    except signing.SignatureError as err:
        raise BundleError(str(err)) from err
    manifest = parse_json(raw, what=str(manifest_path), error=BundleError)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{manifest_path} is not a fakeface bundle (format={found!r}).")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has format_version {manifest.get('format_version')!r}; this fakeface "
            f"reads version {FORMAT_VERSION}. Upgrade fakeface or retrain the bundle."
        )
    if not manifest.get("agents"):
        raise BundleError(f"{manifest_path} lists no agents.")
    for name, entry in manifest["agents"].items():
        for key in ("file", "sha256", "preprocessing"):
            if key not in entry:
                raise BundleError(f"{manifest_path}: agent {name!r} lacks {key!r}.")
    try:
        actual = bundle_files.scan(path)
    except bundle_files.InventoryError as err:
        raise BundleError(str(err)) from err
    listed = manifest.get("files")
    if listed is None and signer is not None:
        raise BundleError(f"{manifest_path} lists no file inventory; re-sign the bundle with `fakeface bundle "
                          f"sign --bundle {path}` (it adds one).")
    reasons = [] if listed is None else [bundle_files.problem(path, dict(listed), actual)]
    reasons += [_entry_problem(path, rel, sha, actual) for rel, sha in _entries(manifest)]
    reason = next((r for r in reasons if r), None)
    if reason:
        raise BundleError(reason)
    return Bundle(path, manifest, signer)


def sign_bundle(bundle_dir: str | os.PathLike[str], private_key: Any) -> Bundle:
    """Signs a bundle as it is, after verifying it (a bundle written before inventories gets one).

    Args:
        bundle_dir: the bundle; its files must match its manifest's checksums.
        private_key: an `Ed25519PrivateKey` (`agents.signing.load_private_key`).

    Returns:
        The bundle, verified with the new signature trusted.
    """
    bundle = load_bundle(bundle_dir, trust=signing.WRITER)
    if "files" not in bundle.manifest:  # only the manifest changes: the files were just verified
        manifest = dict(bundle.manifest, files=bundle_files.scan(bundle.path))
        atomic_write_bytes(bundle.path / MANIFEST, json.dumps(manifest, indent=2).encode())
    signing.sign_manifest(bundle.path, private_key, atomic_write_bytes)
    public = private_key.public_key()
    return load_bundle(bundle.path, trust=signing.TrustPolicy(keys={signing.key_id(public): (public, "signer")}))


def write_bundle(
    out_dir: str | os.PathLike[str],
    agents: Mapping[str, Mapping[str, Any]],
    *,
    description: Mapping[str, Any] | None = None,
    storage_dtype: str = "float32",
) -> Bundle:
    """Writes a new bundle atomically.

    Args:
        out_dir: destination directory; an existing bundle there is replaced whole.
        agents: name -> {"model": keras.Model, "preprocessing": Preprocessing, "temperature",
            "threshold", "threshold_rule", "val_metrics", "training", and optional "files":
            {relative name: source path} of artefacts such as curves and logs, and "kind":
            "keras" (default) or "forensic" (then "model" is an `agents.forensic.ForensicModel`)}.
        description: free-form provenance (data set, licence) stored in the manifest.
        storage_dtype: "float32" or "float16" for the weights in the files.

    Returns:
        The verified bundle.
    """
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "classes": list(CLASSES),
        "positive_class": POSITIVE,
        "description": dict(description or {}),
        "storage_dtype": storage_dtype,
        "agents": {},
        "extras": {},
    }
    with staged_bundle(out_dir, manifest) as tmp:
        for name, art in agents.items():
            kind = str(art.get("kind", "keras"))
            if kind == "forensic":
                from agents.forensic import save_forensic

                file = f"{name}.skops"
                save_forensic(art["model"], tmp / file)
            elif kind == "keras":
                file = f"{name}.keras"
                save_model_file(art["model"], tmp / file, storage_dtype=storage_dtype)
            else:
                raise ValueError(f"Agent {name!r} has unknown kind {kind!r}; expected 'keras' or 'forensic'.")
            extra_files = {}
            for rel, src in dict(art.get("files", {})).items():
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                extra_files[rel] = sha256_file(dest)
            pp = art["preprocessing"]
            manifest["agents"][name] = {
                "kind": kind,
                "file": file,
                "sha256": sha256_file(tmp / file),
                "preprocessing": pp.to_dict() if isinstance(pp, Preprocessing) else dict(pp),
                "temperature": float(art.get("temperature", 1.0)),
                "threshold": float(art.get("threshold", 0.5)),
                "threshold_rule": str(art.get("threshold_rule", "default")),
                "val_metrics": dict(art.get("val_metrics", {})),
                "training": dict(art.get("training", {})),
                "files": extra_files,
            }
            manifest["agents"][name]["onnx"] = export_agent_onnx(tmp, name, file, kind=kind)
    return load_bundle(out_dir, trust=signing.WRITER)


def update_bundle(
    bundle_dir: str | os.PathLike[str],
    *,
    extras: Mapping[str, tuple[str, bytes, Mapping[str, Any]]] | None = None,
    agent_updates: Mapping[str, Mapping[str, Any]] | None = None,
) -> Bundle:
    """Adds or replaces extra components / agent fields, atomically (copy, edit, rename).

    Args:
        bundle_dir: an existing, valid bundle.
        extras: key -> (relative file name, file bytes, extra manifest fields). E.g. the
            controller: ``{"controller": ("controller/v3.json", data, {"version": 3})}``.
            Files of earlier versions stay in the bundle (for rollback) unless overwritten.
        agent_updates: agent name -> manifest fields to overwrite (e.g. temperature).

    Returns:
        The verified, updated bundle.
    """
    # Its signature cannot survive the edit: the new manifest is signed again only with a key at hand.
    current = load_bundle(bundle_dir, trust=signing.WRITER)
    manifest = json.loads(json.dumps(current.manifest))
    with staged_bundle(bundle_dir, manifest, copy_of=bundle_dir, stamp_updated=True) as tmp:
        manifest.setdefault("extras", {})
        for key, (rel, data, fields) in dict(extras or {}).items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest, data)
            manifest["extras"][key] = {**dict(fields), "file": rel, "sha256": sha256_file(dest)}
        for name, fields in dict(agent_updates or {}).items():
            if name not in manifest["agents"]:
                raise BundleError(f"Bundle {bundle_dir} has no agent {name!r}.")
            manifest["agents"][name].update(dict(fields))
    return load_bundle(bundle_dir, trust=signing.WRITER)
