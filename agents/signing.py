"""Ed25519 signatures over a bundle's manifest, and which public keys a process trusts.

A bundle's ``manifest.json`` lists every file of the bundle with its sha256 (see
`agents.bundle_files`), so one signature over the manifest's exact bytes covers the whole bundle.
The signature is a detached file beside it, ``manifest.json.sig``: a small JSON object naming the
algorithm, the signing key's id and the base64 signature.

Trust: the project's public keys ship in ``agents/keys/*.pub``; an operator adds their own with
``--trusted-key PATH`` (any `fakeface` command; it lands in ``$FAKEFACE_TRUSTED_KEYS``, which Ray
workers started by the command inherit). ``--allow-unsigned`` (``$FAKEFACE_ALLOW_UNSIGNED=1``)
loads an unsigned or wrongly signed bundle with a warning. Private keys never live in the
repository: ``$FAKEFACE_SIGNING_KEY`` or ``~/.config/fakeface/bundle-signing.key`` (docs/usage/bundle.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents.errors import read_bytes

SIGNATURE_FILE = "manifest.json.sig"
SIGNATURE_FORMAT = "fakeface-bundle-signature"
ALGORITHM = "ed25519"
# The project's public keys, shipped with the package.
PROJECT_KEYS_DIR = Path(__file__).resolve().parent / "keys"
TRUSTED_KEYS_ENV = "FAKEFACE_TRUSTED_KEYS"  # extra public keys, os.pathsep-separated
ALLOW_UNSIGNED_ENV = "FAKEFACE_ALLOW_UNSIGNED"
SIGNING_KEY_ENV = "FAKEFACE_SIGNING_KEY"  # private key: `bundle sign` default; bundle writers sign with it
KEY_NAME = "bundle-signing"
# A signature file is ~200 bytes; anything far bigger is not one (and is not read whole).
_MAX_SIGNATURE_BYTES = 4096

log = logging.getLogger("fakeface.bundle")


class SignatureError(ValueError):
    """A bundle is unsigned, signed by an untrusted key, or its signature does not match."""


def default_signing_key() -> Path:
    """``$FAKEFACE_SIGNING_KEY``, else ``~/.config/fakeface/bundle-signing.key`` (outside any checkout)."""
    env = os.environ.get(SIGNING_KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "fakeface" / f"{KEY_NAME}.key"


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Creates ``path`` with ``mode`` from the start (never briefly world-readable); refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate_key_pair(out_dir: str | os.PathLike[str], name: str = KEY_NAME) -> tuple[Path, Path]:
    """Writes a new key pair: ``NAME.key`` (PKCS#8 PEM, mode 600) and ``NAME.pub`` (PEM).

    Raises:
        FileExistsError: either file exists already (a key is never overwritten).
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; keys are never overwritten. Choose another --out or --name.")
    private = Ed25519PrivateKey.generate()
    _write_new(key_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
    _write_new(pub_path, private.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return key_path, pub_path


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Reads an unencrypted PEM ed25519 private key; warns when others may read it."""
    path = Path(path).expanduser()
    key = _read_key(path, lambda data: serialization.load_pem_private_key(data, password=None), Ed25519PrivateKey,
                    role="signing key", fix=" Make one with `fakeface bundle keygen --out DIR`, or pass --key.",
                    what="an unencrypted PEM private key", other="key; make one with `fakeface bundle keygen`")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("signing key %s can be read by other users; run `chmod 600 %s`", path, path)
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Reads a PEM ed25519 public key."""
    return _read_key(Path(path).expanduser(), serialization.load_pem_public_key, Ed25519PublicKey,
                     role="trusted key", fix="", what="a PEM public key", other="public key.")


def _read_key(path: Path, parse: Callable[[bytes], Any], expected: type, *, role: str, fix: str, what: str,
              other: str) -> Any:
    """The key ``parse`` reads from a PEM file, checked to be an ``expected`` ed25519 key;
    otherwise a SignatureError naming the file and what it should have been."""
    data = read_bytes(path, error=lambda message: SignatureError(message + fix), what=role)
    try:
        key = parse(data)
    except (ValueError, TypeError) as err:
        raise SignatureError(f"{path} is not {what} ({err}).") from err
    if not isinstance(key, expected):
        raise SignatureError(f"{path} is not an ed25519 {other}")
    return key


def signature_bytes(manifest: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The detached signature file's content for the exact bytes of a manifest."""
    record = {"format": SIGNATURE_FORMAT, "algorithm": ALGORITHM, "key_id": key_id(private_key.public_key()),
              "signature": base64.b64encode(private_key.sign(manifest)).decode()}
    return (json.dumps(record, indent=2) + "\n").encode()


@dataclass(frozen=True)
class TrustPolicy:
    """Which keys a bundle may be signed with, and whether an unsigned one loads anyway.

    Attributes:
        keys: key id -> (public key, where it came from).
        allow_unsigned: load a bundle without a valid signature (a warning is logged).
        quiet: no warning for an allowed unsigned bundle (bundle writers re-reading their own output).
    """

    keys: dict[str, tuple[Ed25519PublicKey, str]] = field(default_factory=dict)
    allow_unsigned: bool = False
    quiet: bool = False

    @classmethod
    def from_env(cls) -> "TrustPolicy":
        """The project's keys plus ``$FAKEFACE_TRUSTED_KEYS``; ``$FAKEFACE_ALLOW_UNSIGNED``."""
        paths = sorted(PROJECT_KEYS_DIR.glob("*.pub"))
        paths += [Path(p) for p in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep) if p]
        keys = {}
        for path in paths:
            key = load_public_key(path)
            keys.setdefault(key_id(key), (key, str(path)))
        allow = os.environ.get(ALLOW_UNSIGNED_ENV, "").lower() in ("1", "true", "yes")
        return cls(keys=keys, allow_unsigned=allow)


# For code that writes a bundle and re-reads it: the checksums still count, a signature cannot yet.
WRITER = TrustPolicy(allow_unsigned=True, quiet=True)
_FIX = ("Sign it with `fakeface bundle sign --key PRIVATE --bundle {path}` and trust the public key "
        "with --trusted-key PUB, or pass --allow-unsigned to load it anyway.")


def _verify(manifest: bytes, sig_path: Path, policy: TrustPolicy, bundle: Path) -> str:
    """The id of the trusted key that signed ``manifest``; raises SignatureError with the reason."""
    fix = _FIX.format(path=bundle)
    if not sig_path.is_file():
        raise SignatureError(f"Bundle {bundle} is not signed ({SIGNATURE_FILE} is missing). {fix}")
    try:
        with open(sig_path, "rb") as f:
            record = json.loads(f.read(_MAX_SIGNATURE_BYTES + 1)[:_MAX_SIGNATURE_BYTES])
        if not isinstance(record, dict) or record.get("format") != SIGNATURE_FORMAT:
            raise ValueError("not a fakeface bundle signature")
        if record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {record.get('algorithm')!r}, expected {ALGORITHM}")
        signer, signature = str(record["key_id"]), base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise SignatureError(f"Bundle {bundle}: {SIGNATURE_FILE} is unreadable ({err}). {fix}") from err
    if signer not in policy.keys:
        trusted = ", ".join(sorted(policy.keys)) or "none"
        raise SignatureError(f"Bundle {bundle} is signed by key {signer}, which is not trusted (trusted: "
                             f"{trusted}). Pass --trusted-key PUB with that key's public half, or re-sign it.")
    try:
        policy.keys[signer][0].verify(signature, manifest)
    except InvalidSignature:
        raise SignatureError(f"Bundle {bundle}: the signature does not match {bundle / 'manifest.json'}: the "
                             f"manifest was changed after it was signed by key {signer}. Rebuild or re-copy "
                             "the bundle; if you changed it on purpose, re-sign it.") from None
    return signer


def check_signature(manifest: bytes, bundle: Path, policy: TrustPolicy | None = None) -> str | None:
    """Verifies the detached signature of a bundle's manifest bytes.

    Args:
        manifest: the exact bytes of ``manifest.json`` (verified before they are parsed).
        bundle: the bundle directory (the signature is ``bundle / SIGNATURE_FILE``).
        policy: trusted keys and the unsigned switch; None reads `TrustPolicy.from_env`.

    Returns:
        The trusted signer's key id, or None for an unsigned bundle the policy allows.

    Raises:
        SignatureError: unsigned, untrusted signer or mismatching signature, and not allowed.
    """
    policy = TrustPolicy.from_env() if policy is None else policy
    try:
        return _verify(manifest, bundle / SIGNATURE_FILE, policy, bundle)
    except SignatureError as err:
        if not policy.allow_unsigned:
            raise
        if not policy.quiet:
            log.warning("loading bundle without a valid signature (--allow-unsigned): %s", err)
        return None


def sign_manifest(bundle: Path, private_key: Ed25519PrivateKey, write) -> str:
    """Signs ``bundle/manifest.json`` as it is now; ``write(path, bytes)`` stores the signature atomically."""
    manifest = (bundle / "manifest.json").read_bytes()
    write(bundle / SIGNATURE_FILE, signature_bytes(manifest, private_key))
    return key_id(private_key.public_key())
