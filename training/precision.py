"""Which Keras precision policy a training run uses.

`mixed_bfloat16` halves the cost of a convolution on hardware that computes in bfloat16 (a recent
GPU, or a CPU with AVX-512 BF16 or AMX), and makes it many times *slower* where it does not: there
every bfloat16 operation is emulated (measured: BENCHMARKS.md, "Training precision follows the CPU").
A recipe that names `auto` therefore runs as fast as the machine allows on either kind of box.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, get_args

Precision = Literal["auto", "float32", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
# CPU feature flags (as Linux's /proc/cpuinfo names them) that compute bfloat16 natively.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags, or none where the system does not list them (not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def has_gpu() -> bool:
    """Whether the Keras backend in use sees a GPU that computes bfloat16 (NVIDIA compute
    capability 8.0 or later: Ampere, Hopper and on; older GPUs emulate it as a CPU does)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available()) and torch.cuda.get_device_capability(0) >= (8, 0)
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    import tensorflow as tf

    for device in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(device).get("compute_capability")
        if capability is None or tuple(capability) >= (8, 0):
            return True
    return False


def resolve_precision(requested: str, *, flags: Iterable[str] | None = None,
                      gpu: bool | None = None) -> tuple[str, str]:
    """The policy to train under, and why.

    Args:
        requested: one of `PRECISIONS`; `auto` picks bfloat16 only where it is computed natively.
        flags: the CPU's feature flags (default: read from the system).
        gpu: whether a GPU that computes bfloat16 is in use (default: asked of the Keras backend).

    Returns:
        `(policy, reason)`: `policy` is `float32` or `mixed_bfloat16`.

    Raises:
        ValueError: if `requested` is not one of `PRECISIONS`.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; received {requested!r}")
    flags = frozenset(cpu_flags() if flags is None else flags)
    native = BF16_FLAGS & flags
    if requested == "float32" or (requested == "mixed_bfloat16" and (native or not flags)):
        return requested, "as requested"
    if gpu is None:
        gpu = has_gpu()
    if requested == "mixed_bfloat16":
        return requested, ("as requested" if gpu else "as requested, but this CPU has no bfloat16 "
                           "instructions: it emulates them, many times slower (auto would take float32)")
    if gpu:
        return "mixed_bfloat16", "auto: a GPU computes bfloat16"
    if native:
        return "mixed_bfloat16", f"auto: the CPU computes bfloat16 ({', '.join(sorted(native))})"
    return "float32", "auto: this CPU has no bfloat16 instructions (it would emulate them, many times slower)"
