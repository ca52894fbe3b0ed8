"""The Ray Data stages of `fakeface batch`: faces, one stage per agent, decision.

Each stage is a plain class whose ``__init__`` loads its model once and whose ``__call__`` maps a
batch dict (column -> numpy array) to a batch dict, so Ray Data runs it as an actor pool
(``map_batches(Stage, fn_constructor_kwargs=..., concurrency=k, num_cpus=...)``).

Row contract between the stages (one row per face, or one placeholder row per input or video
frame without a face, so that every input leaves a trace and the driver can tell when an input
is complete): ``rows_for_input`` is how many rows the face stage emitted for that input.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from agents.labels import CLASSES, FAKE_INDEX
from agents.predictor import AgentPredictor
from training.batch_inputs import UnreadableInput, is_video, video_frames

CROP_SIZE = 224
# Row status values.
OK, NO_FACE, REJECTED = "ok", "no_face", "rejected"


def limit_threads(threads: int) -> None:
    """Caps TensorFlow/OpenMP threads in this worker before TensorFlow starts.

    Several actors share the machine's cores; each one spinning up a thread per core would
    oversubscribe them and make 2 actors slower than 1.
    """
    value = str(max(1, int(threads)))
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = value
    try:
        import cv2

        cv2.setNumThreads(int(value))
    except ImportError:
        return


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


class FaceStage:
    """Decodes each input (image, or video frames at ``fps``) and cuts out its faces.

    Args:
        detect: "auto", "on" or "off" (see `blackboard.faces.extract_faces`).
        fps: frames per second sampled from videos.
        min_face_size: smallest face (pixels) the detector looks for.
        threads: CPU threads this actor may use.
    """

    def __init__(self, *, detect: str, fps: float, min_face_size: int = 40, threads: int = 1) -> None:
        limit_threads(threads)
        from blackboard.faces import FaceDetector

        self.detect = detect
        self.fps = float(fps)
        # MTCNN loads once per actor, never per batch; "off" needs no detector at all.
        self.detector = None if detect == "off" else FaceDetector(min_face_size=min_face_size)
        self.node_id = _node_id()

    def _faces(self, rgb: np.ndarray) -> list:
        from blackboard.faces import extract_faces

        return extract_faces(rgb, self.detector, mode=self.detect, all_faces=True, size=CROP_SIZE)

    def _input_rows(self, path: str) -> list[dict[str, Any]]:
        """All rows of one input; a decoding failure becomes one REJECTED row."""
        import cv2

        from blackboard.faces import ImageError, read_image

        rows: list[dict[str, Any]] = []
        try:
            if is_video(path):
                frames = ((idx, t, rgb, "frame") for idx, t, rgb in video_frames(path, fps=self.fps))
            else:
                frames = iter([(-1, float("nan"), read_image(path), "image")])
            for frame, time_s, rgb, kind in frames:
                faces = self._faces(rgb)
                if not faces:
                    rows.append(_row(kind=kind, frame=frame, time_s=time_s, status=NO_FACE,
                                     reason="no face found"))
                for i, face in enumerate(faces):
                    x, y, w, h = (float(v) for v in face.box)
                    rows.append(_row(kind=kind, frame=frame, time_s=time_s, face_index=i, box=(x, y, w, h),
                                     confidence=float(face.confidence), aligned=bool(face.aligned),
                                     crop=np.asarray(face.crop, dtype=np.uint8), status=OK))
        except (UnreadableInput, ImageError, cv2.error, OSError) as err:
            # Frames already read from a video that then fails are dropped with it: a video is
            # either classified whole or rejected whole.
            rows = [_row(kind="video" if is_video(path) else "image", frame=-1, time_s=float("nan"),
                         status=REJECTED, reason=f"{type(err).__name__}: {err}")]
        return rows

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: list[dict[str, Any]] = []
        for path, input_index, shard in zip(batch["source"], batch["input_index"], batch["shard"]):
            rows = self._input_rows(str(path))
            for row in rows:
                row.update(source=str(path), input_index=int(input_index), shard=int(shard),
                           rows_for_input=len(rows), node_id=self.node_id)
            out.extend(rows)
        return _columns(out)


def _row(*, kind: str, frame: int, time_s: float, status: str, face_index: int = -1,
         box: tuple[float, float, float, float] = (np.nan, np.nan, np.nan, np.nan),
         confidence: float = np.nan, aligned: bool = False, crop: np.ndarray | None = None,
         reason: str = "") -> dict[str, Any]:
    if crop is None:
        # A fixed-shape placeholder keeps the face column one tensor type; agents skip it.
        crop = np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    elif crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        import cv2

        crop = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    return {
        "kind": kind, "frame": int(frame), "time_s": float(time_s), "face_index": int(face_index),
        "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3],
        "face_confidence": float(confidence), "aligned": bool(aligned), "face": crop,
        "has_face": status == OK, "status": status, "reason": reason,
    }


_DTYPES = {
    "frame": np.int32, "face_index": np.int32, "rows_for_input": np.int32, "input_index": np.int64,
    "shard": np.int64, "time_s": np.float32, "box_x": np.float32, "box_y": np.float32,
    "box_w": np.float32, "box_h": np.float32, "face_confidence": np.float32, "aligned": bool,
    "has_face": bool,
}


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Row dicts -> column arrays with stable dtypes (strings as object arrays)."""
    cols: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key == "face":
            cols[key] = np.stack(values).astype(np.uint8)
        elif key in _DTYPES:
            cols[key] = np.asarray(values, dtype=_DTYPES[key])
        else:
            cols[key] = np.asarray(values, dtype=object)
    return cols


class AgentStage(AgentPredictor):
    """One agent's actor: adds ``{agent}_p_fake`` (NaN on placeholder rows without a face).

    Args:
        bundle: bundle directory (None = shipped default).
        agent: agent name in the bundle.
        batch_size: images per forward pass.
        threads: CPU threads this actor may use.
    """

    def __init__(self, *, bundle: str | None, agent: str, batch_size: int = 32, threads: int = 1) -> None:
        limit_threads(threads)
        super().__init__(bundle, agent, batch_size=batch_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = np.asarray(batch["has_face"], dtype=bool)
        p = np.full(len(mask), np.nan, dtype=np.float32)
        if mask.any():
            p[mask] = self.predict_p_fake(np.asarray(batch["face"])[mask])
        out = dict(batch)
        out[f"{self.name}_p_fake"] = p
        return out


class DecisionStage:
    """Combines the agents' votes with the bundle's controller (mean of votes if it has none).

    Drops the face crops so only small columns travel back to the driver.

    Args:
        bundle: bundle directory (None = shipped default).
    """

    def __init__(self, *, bundle: str | None) -> None:
        from agents.bundle import load_bundle
        from blackboard.controller_store import load_controller

        loaded = load_bundle(bundle)
        self.bundle_version = loaded.version
        self.controller = load_controller(loaded)
        self.agents = list(loaded.agent_names)
        self.combiner_name = "mean" if self.controller is None else f"controller:{self.controller.version}"
        self.threshold = 0.5 if self.controller is None else float(self.controller.threshold)
        from blackboard.ood import UncertaintyGate

        self.gate = UncertaintyGate.from_bundle(loaded)  # the same "uncertain" rule as the service

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from blackboard.decision import context_for, decide

        has_face = np.asarray(batch["has_face"], dtype=bool)
        n = len(has_face)
        votes = np.stack([np.asarray(batch[f"{a}_p_fake"], dtype=np.float64) for a in self.agents], axis=1)
        present = np.isfinite(votes)
        p = np.full(n, np.nan, dtype=np.float32)
        if has_face.any():
            faces = list(np.asarray(batch["face"])[has_face]) if "face" in batch else [None]
            decided = decide({a: votes[has_face, j] for j, a in enumerate(self.agents)}, self.controller,
                             context=context_for(self.controller, faces), explain=False)
            p[has_face] = decided.p_fake
        label = np.where(has_face, np.where(p >= self.threshold, CLASSES[FAKE_INDEX], CLASSES[1 - FAKE_INDEX]),
                         "").astype(object)
        reason = np.asarray(batch["reason"], dtype=object).copy()
        faces = np.flatnonzero(has_face)
        if len(faces):
            sizes = zip(np.asarray(batch["box_w"])[faces], np.asarray(batch["box_h"])[faces])
            why, _ = self.gate.assess(list(np.asarray(batch["face"])[faces]), list(sizes))
            for i, text in zip(faces, why):
                if text:
                    label[i], reason[i] = "uncertain", text
        out = {k: v for k, v in batch.items() if k != "face" and not k.endswith("_latency_ms")}
        out.update(
            reason=reason,
            p_fake=p,
            label=label.astype(object),
            threshold=np.full(n, self.threshold, dtype=np.float32),
            degraded=has_face & ~present.all(axis=1),
            combiner=np.full(n, self.combiner_name, dtype=object),
            bundle_version=np.full(n, self.bundle_version, dtype=object),
        )
        return out

