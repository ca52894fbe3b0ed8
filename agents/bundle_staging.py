"""Writing a bundle without ever showing half of one: build it in a temporary sibling folder,
seal its manifest, then rename it over the old one.

Every bundle writer (`agents.bundle.write_bundle`, `agents.bundle.update_bundle`,
`agents.bundle_edit.swap_agents`) goes through :func:`staged_bundle`, so the checksums, the
signature and the swap are done the same way whatever the edit.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from agents import bundle_files, signing
from agents.atomic import atomic_write_bytes
from agents.bundle_files import MANIFEST


def replace_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Moves a complete directory into place, replacing an older one."""
    out_dir = Path(out_dir)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp_dir, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def seal(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Lists every file in the manifest, writes it, and signs it with ``$FAKEFACE_SIGNING_KEY`` if set."""
    (bundle_dir / signing.SIGNATURE_FILE).unlink(missing_ok=True)  # it signed the old manifest
    manifest["files"] = bundle_files.scan(bundle_dir)
    atomic_write_bytes(bundle_dir / MANIFEST, json.dumps(manifest, indent=2).encode())
    key = os.environ.get(signing.SIGNING_KEY_ENV)
    if key:
        signing.sign_manifest(bundle_dir, signing.load_private_key(key), atomic_write_bytes)
    else:
        signing.log.warning("the bundle is written unsigned; commands will refuse it until it is signed: "
                            "`fakeface bundle sign --bundle DIR` (or set $%s)", signing.SIGNING_KEY_ENV)


@contextmanager
def staged_bundle(out_dir: str | os.PathLike[str], manifest: dict[str, Any], *,
                  copy_of: str | os.PathLike[str] | None = None, stamp_updated: bool = False) -> Iterator[Path]:
    """Yields a temporary folder next to ``out_dir`` to build a bundle in; when the block ends
    without an error, seals ``manifest`` (as the block left it) there and renames the folder to
    ``out_dir``. On any error the folder is removed and ``out_dir`` is left as it was.

    Args:
        out_dir: where the bundle ends up; an existing bundle there is replaced whole.
        manifest: the manifest to seal; the block may still change it.
        copy_of: a bundle folder whose files the temporary folder starts with (None: empty).
        stamp_updated: record the time of sealing as the manifest's "updated" field (an edit of
            an existing bundle, as opposed to a new one).

    Yields:
        The temporary folder.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        if copy_of is not None:
            shutil.copytree(copy_of, tmp, dirs_exist_ok=True)
        yield tmp
        if stamp_updated:
            manifest["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        seal(tmp, manifest)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
