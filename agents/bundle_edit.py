"""Editing a bundle's agents: take a retrained agent from another bundle, or drop one that adds nothing.

A bundle's controller, its baselines and its replay set were fitted on the votes of the agents
it held; once one agent changes they describe models that are gone. `swap_agents` therefore
removes those fitted extras, and the bundle answers with mean voting until ``fakeface
fit-controller`` fits them again on the new votes. The "can't tell" model (``ood``) stays: it
reads image statistics of the crop, not the agents' votes.
The written bundle is unsigned (its files changed); ``fakeface bundle sign`` signs it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from agents import signing
from agents.bundle import Bundle, BundleError, load_bundle
from agents.bundle_staging import staged_bundle

# Extras fitted on the agents' votes: stale as soon as an agent changes.
FITTED_EXTRAS = ("controller", "baselines", "replay", "fragile", "borderline")


def swap_agents(bundle_dir: str | os.PathLike[str], source_dir: str | os.PathLike[str],
                names: Sequence[str], *, out_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Replaces (or adds) agents of ``bundle_dir`` with those of ``source_dir``.

    Args:
        bundle_dir: the bundle to change (it must load: signed, or written by this process).
        source_dir: a bundle holding the agents to take (e.g. `fakeface train --agents forensic`).
        names: agent names to take from ``source_dir``.
        out_dir: where to write the result (default: ``bundle_dir`` itself, replaced atomically).

    Returns:
        The new bundle, loaded (unsigned, with the extras fitted on votes removed).

    Raises:
        BundleError: an agent missing from ``source_dir``, or bundles of different classes.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise BundleError("swap_agents needs at least one agent name, received none.")
    target = load_bundle(bundle_dir, trust=signing.WRITER)
    source = load_bundle(source_dir, trust=signing.WRITER)
    missing = [n for n in names if n not in source.manifest["agents"]]
    if missing:
        raise BundleError(f"{source.path} has no agent {missing}; it holds {sorted(source.manifest['agents'])}.")
    if source.manifest["classes"] != target.manifest["classes"]:
        raise BundleError(f"classes differ: {source.manifest['classes']} in {source.path}, "
                          f"{target.manifest['classes']} in {target.path}.")
    with _editing(target, out_dir) as (tmp, manifest, out_dir):
        for name in names:
            _remove_files(tmp, manifest["agents"].get(name))
            entry = json.loads(json.dumps(source.manifest["agents"][name]))
            for rel in _files_of(entry):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(source.path) / rel, tmp / rel)
            manifest["agents"][name] = entry
        # Added to, not replaced: a bundle built by several swaps names the source of each.
        manifest.setdefault("description", {}).setdefault("swapped_agents", {}).update({
            name: str(source.manifest.get("description", {}).get("manifest", source.path)) for name in names})
    return load_bundle(out_dir, trust=signing.WRITER)


def drop_agents(bundle_dir: str | os.PathLike[str], names: Sequence[str], *, reason: str,
                out_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Removes agents (their model files too) from a bundle, e.g. one measured at chance.

    Args:
        bundle_dir: the bundle to change (it must load: signed, or written by this process).
        names: agents to remove; at least one agent must remain.
        reason: why, kept in the manifest's description (``dropped_agents``) for the model card.
        out_dir: where to write the result (default: ``bundle_dir`` itself, replaced atomically).

    Returns:
        The new bundle, loaded (unsigned, with the extras fitted on votes removed: the controller
        weighed the dropped agent's votes, so ``fakeface fit-controller`` fits it again).

    Raises:
        BundleError: an agent the bundle lacks, no agent left, or an empty reason.
    """
    names = list(dict.fromkeys(names))
    if not names or not reason.strip():
        raise BundleError(f"drop_agents needs agent names and a reason, received {names!r} and {reason!r}.")
    target = load_bundle(bundle_dir, trust=signing.WRITER)
    held = target.manifest["agents"]
    missing = [n for n in names if n not in held]
    if missing:
        raise BundleError(f"{target.path} has no agent {missing}; it holds {sorted(held)}.")
    if not set(held) - set(names):
        raise BundleError(f"dropping {names} would leave {target.path} with no agent.")
    with _editing(target, out_dir) as (tmp, manifest, out_dir):
        for name in names:
            _remove_files(tmp, manifest["agents"].pop(name))
        dropped = manifest.setdefault("description", {}).setdefault("dropped_agents", {})
        dropped.update({name: reason for name in names})
    return load_bundle(out_dir, trust=signing.WRITER)


@contextmanager
def _editing(target: Bundle, out_dir: str | os.PathLike[str] | None) -> Iterator[tuple[Path, dict, Path]]:
    """(staging folder, manifest to edit, destination) of an edit of ``target``'s agents; on exit the
    extras fitted on the old votes are removed and the result replaces the destination."""
    out = Path(out_dir if out_dir is not None else target.path)
    manifest = json.loads(json.dumps(target.manifest))
    with staged_bundle(out, manifest, copy_of=target.path, stamp_updated=True) as tmp:
        yield tmp, manifest, out
        _drop_fitted_extras(tmp, manifest)


def add_onnx(bundle_dir: str | os.PathLike[str], *, out_dir: str | os.PathLike[str] | None = None) -> Bundle:
    """Gives every agent of a bundle without one its ONNX export (`agents.onnx_model`; the forensic
    agent's trees: `agents.forensic_onnx`).

    The export computes what the agent's model file does (to float32 rounding), so the controller
    and every other fitted extra stay. Bundles written by this fakeface have the exports already;
    this brings older ones to ONNX Runtime.

    Returns:
        The bundle, loaded (unsigned when a file was added: ``fakeface bundle sign`` signs it).
    """
    from agents.model_files import export_agent_onnx

    target = load_bundle(bundle_dir, trust=signing.WRITER)
    todo = [n for n in target.agent_names if not target.agent(n).onnx_file]
    out = Path(out_dir if out_dir is not None else target.path)
    if not todo and out == target.path:
        return target
    manifest = json.loads(json.dumps(target.manifest))
    with staged_bundle(out, manifest, copy_of=target.path, stamp_updated=True) as tmp:
        for name in todo:
            entry = manifest["agents"][name]
            entry["onnx"] = export_agent_onnx(tmp, name, entry["file"], kind=entry.get("kind", "keras"))
    return load_bundle(out, trust=signing.WRITER)


def _files_of(entry: dict) -> list[str]:
    """An agent entry's files: its model, its ONNX export and its artefacts (curves, logs)."""
    onnx = [entry["onnx"]["file"]] if isinstance(entry.get("onnx"), dict) else []
    return [entry["file"], *onnx, *entry.get("files", {})]


def _remove_files(tmp: Path, entry: dict | None) -> None:
    for rel in _files_of(entry) if entry else []:
        (tmp / rel).unlink(missing_ok=True)


def _drop_fitted_extras(tmp: Path, manifest: dict) -> None:
    """Removes the extras fitted on the old agents' votes, files and history folders included."""
    for key in FITTED_EXTRAS:
        extra = manifest.get("extras", {}).pop(key, None)
        if extra and extra.get("file"):
            path = tmp / extra["file"]
            if path.parent != tmp:  # its folder holds its history too (versions kept for rollback)
                shutil.rmtree(path.parent, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
