"""Degradations a face goes through before a victim sends it: re-encoding, resizing, screens.

Two uses share one set of operations:

* **benchmark transforms**, registered by name with fixed parameters (:data:`TRANSFORMS`,
  :func:`names`, :func:`apply`): e.g. ``jpeg50``, ``scale0.5``, ``blur1``, ``h264``,
  ``player``. The same name always gives the same pixels for the same seed.
* **training augmentation** (:func:`random_chain`): one to three operations of the same kinds
  with parameters drawn at random from ranges around (never equal to) the benchmark's.

Every operation takes and returns RGB uint8 ``(H, W, 3)``. Pixel work is OpenCV (JPEG, resize,
blur, look-up tables) and PyAV's libx264 (H.264); the screenshot compositions live in
:mod:`vision.screens`. A *composition* returns a whole screen in which the face must be found
again (:func:`is_composition`, :func:`compose` also gives its box).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

import cv2
import numpy as np

from agents.errors import lookup
from vision import screen_photo, screens

Op = Callable[..., np.ndarray]  # op(image, rng, **params) -> image
_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Transform:
    """One named benchmark transform: an operation and its fixed parameters."""

    name: str
    op: Op
    params: dict[str, Any] = field(default_factory=dict)
    composition: bool = False  # True: the output is a whole screen, not the face

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.op(image, rng, **self.params)


TRANSFORMS: dict[str, Transform] = {}
# Operation kinds for random chains: name -> (operation, sampler of random parameters, composition).
_KINDS: dict[str, tuple[Op, Callable[[np.random.Generator], dict[str, Any]], bool]] = {}


def register(name: str, *, composition: bool = False, **params: Any) -> Callable[[Op], Op]:
    """Registers ``op`` under ``name`` with fixed ``params`` (decorators stack: one op, many names)."""
    def decorate(op: Op) -> Op:
        if name in TRANSFORMS:
            raise ValueError(f"Degradation {name!r} is registered twice.")
        TRANSFORMS[name] = Transform(name, op, dict(params), composition)
        return op
    return decorate


def kind(name: str, sampler: Callable[[np.random.Generator], dict[str, Any]], *,
         composition: bool = False) -> Callable[[Op], Op]:
    """Makes ``op`` available to :func:`random_chain` with parameters drawn by ``sampler``."""
    def decorate(op: Op) -> Op:
        _KINDS[name] = (op, sampler, composition)
        return op
    return decorate


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Degradations need an RGB uint8 image (H, W, 3), received {image.dtype} {image.shape}.")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"Degradations need at least 8x8 pixels, received {image.shape[1]}x{image.shape[0]}.")
    return np.ascontiguousarray(image)


def _uniform_except(rng: np.random.Generator, low: float, high: float, avoid: tuple[float, ...],
                    tol: float) -> float:
    """A uniform draw that stays ``tol`` away from the benchmark's fixed values."""
    while True:
        value = float(rng.uniform(low, high))
        if all(abs(value - a) > tol for a in avoid):
            return value


# ------------------------------------------------------------------- operations
# Stacked decorators run bottom-up: the bottom name is registered first.
@register("jpeg90", quality=90)
@register("jpeg70", quality=70)
@register("jpeg50", quality=50)
@kind("jpeg", lambda rng: {"quality": int(round(_uniform_except(rng, 30, 95, (50, 70, 90), 0.6)))})
def jpeg(image: np.ndarray, rng: np.random.Generator, *, quality: int) -> np.ndarray:
    """JPEG encode and decode at ``quality`` (OpenCV's libjpeg, 4:2:0 chroma as most encoders)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode an image of shape {image.shape}.")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _scale_sampler(rng: np.random.Generator) -> dict[str, Any]:
    if rng.random() < 0.7:  # shown smaller is the common case (a face in a window)
        factor = _uniform_except(rng, 0.25, 0.9, (0.35, 0.5, 0.75), 0.01)
        interp = str(rng.choice(["area", "linear", "cubic"], p=[0.5, 0.35, 0.15]))
    else:
        factor = _uniform_except(rng, 1.15, 2.3, (1.5, 2.0), 0.02)
        interp = str(rng.choice(["linear", "cubic"]))
    return {"factor": factor, "interpolation": interp}


@register("scale2", factor=2.0, interpolation="cubic")
@register("scale1.5", factor=1.5, interpolation="linear")
@register("scale0.75", factor=0.75, interpolation="linear")
@register("scale0.5", factor=0.5, interpolation="area")
@register("scale0.35", factor=0.35, interpolation="area")
@kind("scale", _scale_sampler)
def scale(image: np.ndarray, rng: np.random.Generator, *, factor: float, interpolation: str) -> np.ndarray:
    """The image shown ``factor`` times its size, resampled as players do; the result is that size."""
    h, w = image.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return cv2.resize(image, size, interpolation=_INTERPOLATIONS[interpolation])


@register("blur1", sigma=1.0)
@kind("blur", lambda rng: {"sigma": _uniform_except(rng, 0.4, 1.8, (1.0,), 0.03)})
def blur(image: np.ndarray, rng: np.random.Generator, *, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel size from sigma)."""
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma))


@register("gamma", gamma=1.5, gain=0.95, offset=12.0)
@kind("gamma", lambda rng: {"gamma": _uniform_except(rng, 0.6, 1.8, (1.5,), 0.03),
                            "gain": float(rng.uniform(0.8, 1.15)), "offset": float(rng.uniform(-20, 20))})
def gamma(image: np.ndarray, rng: np.random.Generator, *, gamma: float, gain: float, offset: float) -> np.ndarray:
    """Display gamma then contrast and brightness: ``gain * 255 (x/255)^gamma + offset``, clipped."""
    x = np.arange(256, dtype=np.float64) / 255.0
    table = np.clip(np.rint(gain * 255.0 * x ** float(gamma) + offset), 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)


@register("h264", crf=28, frames=3)
@kind("h264", lambda rng: {"crf": int(rng.choice([20, 23, 25, 30, 32, 35])), "frames": int(rng.integers(1, 4))})
def h264(image: np.ndarray, rng: np.random.Generator, *, crf: int, frames: int) -> np.ndarray:
    """H.264 (libx264 through PyAV, yuv420p) encode of a short still clip, decoded; the last frame.

    The last frame is inter-coded after the first, as most frames of a video are. Odd sizes are
    padded by edge replication for 4:2:0 and cropped back. The RGB <-> YUV 4:2:0 conversions are
    OpenCV's (BT.601, limited range, as a player's), so FFmpeg only encodes and decodes.
    """
    import av  # imported here: only this transform needs FFmpeg

    h, w = image.shape[:2]
    padded = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    planar = cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420)  # Y rows, then U and V rows
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = padded.shape[1], padded.shape[0]
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 25)
    # One thread and a fixed preset keep the bitstream identical from run to run.
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1"}
    packets = []
    for i in range(max(1, int(frames))):
        frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
        frame.pts = i
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    decoded = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    if not decoded:
        raise ValueError(f"H.264 round trip of a {w}x{h} image gave no frame.")
    planes = decoded[-1].to_ndarray(format="yuv420p")  # Y rows, then U and V rows, as encoded
    return np.ascontiguousarray(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420)[:h, :w])


def _screenshot_op(name: str) -> Op:
    """The face in a screenshot of kind ``name`` (`vision.screens.screenshot`): the whole screen."""
    def op(image: np.ndarray, rng: np.random.Generator, **params: Any) -> np.ndarray:
        return screens.screenshot(name, image, rng, **params)[0]
    return op


def _face_scales(low: float, high: float) -> Callable[[np.random.Generator], dict[str, Any]]:
    """A sampler of a random ``face_scale`` range inside [low, high], for random chains."""
    return lambda rng: {"face_scale": tuple(sorted(rng.uniform(low, high, 2)))}


# The screenshot compositions, each with the range random chains draw the face's size from
# (a little wider than the screen's own default, which the benchmark transforms use).
for _name, _scales in (("player", (0.2, 0.75)), ("phone", (0.25, 0.9))):
    register(_name, composition=True)(kind(_name, _face_scales(*_scales), composition=True)(_screenshot_op(_name)))


def _camera(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A phone's photo of a desktop player showing the face (`vision.screen_photo`), and the box."""
    return screen_photo.photograph(*screens.screenshot("player", image, rng), rng)


# A benchmark transform only, never a training kind: how the agents fare on a capture no agent
# was trained on (a photo of a screen: panel stripes, moiré, angle, camera noise and JPEG).
register("camera", composition=True)(lambda image, rng: _camera(image, rng)[0])
_COMPOSERS = {"camera": _camera}  # compositions not drawn by `vision.screens.screenshot` alone


# --------------------------------------------------------------------------- API
def names() -> list[str]:
    """The benchmark transforms' names, in registration order (stable)."""
    return list(TRANSFORMS)


def _get(name: str) -> Transform:
    return lookup(TRANSFORMS, name, what="degradation")


def is_composition(name: str) -> bool:
    """True when ``name`` returns a whole screenshot (the face must be detected again)."""
    return _get(name).composition


def apply(name: str, image: np.ndarray, *, seed: int) -> np.ndarray:
    """Applies the benchmark transform ``name``; the same seed gives the same pixels.

    Raises:
        ValueError: for an unknown name, or an image that is not RGB uint8 of at least 8x8.
    """
    transform = _get(name)
    return transform(_check(image), np.random.default_rng(seed))


def compose(name: str, image: np.ndarray, *, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A composition's screen and the face's box ``(x, y, w, h)`` in it (the same pixels as :func:`apply`)."""
    transform = _get(name)
    if not transform.composition:
        raise ValueError(f"Degradation {name!r} is not a composition.")
    if name in _COMPOSERS:
        return _COMPOSERS[name](_check(image), np.random.default_rng(seed), **transform.params)
    return screens.screenshot(name, _check(image), np.random.default_rng(seed), **transform.params)


def random_chain(rng: np.random.Generator, *, compositions: bool = False,
                 composed_share: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    """A random chain of one to three degradations for training, with random parameters.

    The kinds, their order and parameters and any seeds the operations need are drawn from
    ``rng`` now, so the returned function gives the same output for the same input.

    Args:
        rng: the generator to draw the chain from.
        compositions: allow (at most) one screenshot composition in the chain; its output is
            then a whole screen, which the caller must detect the face in again.
        composed_share: with ``compositions``, the chance that the chain does compose a screen
            (1.0: always). The default, 0.5, draws the same chains as before this argument
            existed; another share changes the chains of the seeds whose draw it decides otherwise.
    """
    if not 0.0 <= composed_share <= 1.0:
        raise ValueError(f"composed_share must be in [0, 1], received {composed_share}.")
    plain = [k for k, (_, _, comp) in _KINDS.items() if not comp]
    chosen = list(rng.choice(plain, size=int(rng.integers(1, 4)), replace=False))
    if compositions and rng.random() < composed_share:
        screens_ = [k for k, (_, _, comp) in _KINDS.items() if comp]
        chosen.insert(int(rng.integers(0, len(chosen) + 1)), str(rng.choice(screens_)))
    steps = []
    for k in chosen:
        op, sampler, _ = _KINDS[str(k)]
        steps.append((str(k), op, sampler(rng), int(rng.integers(2**31))))

    def chain(image: np.ndarray) -> np.ndarray:
        image = _check(image)
        for _, op, params, seed in steps:
            image = op(image, np.random.default_rng(seed), **params)
        return image

    chain.steps = [(k, p) for k, _, p, _ in steps]  # for logs and tests: what the chain does
    return chain
