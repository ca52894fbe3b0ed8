"""The face stage of `fakeface batch` and `fakeface evaluate`: inputs in, one row per face out.

A plain class whose ``__init__`` sets the worker up once and whose ``__call__`` maps a batch of
inputs (``{source, input_index, shard}`` columns) to a batch of face rows
(`blackboard.stage_rows`), so Ray Data runs it as an actor pool (`blackboard.stage_plan`) and
`blackboard.local_stages` runs the very same object in process.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from blackboard.stage_rows import CROP_SIZE, NO_FACE, OK, REJECTED, context_column, face_row, to_columns
from blackboard.worker_threads import limit_threads
from vision.context import CONTEXT_NAMES, context_matrix, face_context
from vision.inputs import UnreadableInput, is_video, video_frames


def _node_id() -> str:
    # A process that never imported Ray is on no Ray node; importing it only to ask costs ~0.6 s of
    # CPU in every in-process job (`blackboard.local_stages`), before its first block.
    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else ""


class FaceStage:
    """Decodes each input (image, or video frames at ``fps``) and cuts out its faces.

    Args:
        detect: "auto", "on" or "off" (see `vision.faces.extract_faces`).
        fps: frames per second sampled from videos.
        min_face_size: smallest face (pixels) the detector looks for.
        threads: CPU threads this actor may use.
        compiled_loops: run detection's compiled loops (`vision.jit`, ~0.55 s to load with the
            detector): an actor or worker process that will see many pictures; a small job's
            threads keep NumPy.
    """

    def __init__(self, *, detect: str, fps: float, min_face_size: int = 40, threads: int = 1,
                 all_faces: bool = True, context: tuple[str, ...] = (), compiled_loops: bool = False) -> None:
        limit_threads(threads)
        self.detect = detect
        self.fps = float(fps)
        self.all_faces = bool(all_faces)
        self.context = tuple(context)
        self.min_face_size = int(min_face_size)
        self.compiled_loops = bool(compiled_loops)
        # MTCNN loads once per actor on first need, never per batch: "off", and "auto" on inputs
        # that are all face crops (used whole, see vision.faces), never pay for it.
        self._detector = None
        self.node_id = _node_id()

    @property
    def detector(self):
        """The actor's MTCNN detector, loaded on first use."""
        if self._detector is None:  # only asked for when a row's mode needs it
            from vision.face_detector import FaceDetector

            if self.compiled_loops:
                from vision.face_pyramid import load_loops

                load_loops()
            self._detector = FaceDetector(min_face_size=self.min_face_size)
        return self._detector

    def _faces(self, rgb: np.ndarray, mode: str) -> list:
        from vision.faces import CROP_TRUST_SIDE, extract_faces, looks_like_crop

        # Only touch (and so load) the detector when extract_faces will run it.
        needs_detector = mode == "on" or (mode == "auto" and not looks_like_crop(rgb, max_side=CROP_TRUST_SIDE))
        return extract_faces(rgb, self.detector if needs_detector else None, mode=mode,
                             all_faces=self.all_faces, size=CROP_SIZE)

    def _input_rows(self, path: str, rgb: np.ndarray | None = None, mode: str = "") -> list[dict[str, Any]]:
        """All rows of one input; a decoding failure becomes one REJECTED row.

        ``rgb`` is the image already decoded (and changed) by a stage before this one, and
        ``mode`` its own detection mode; otherwise ``path`` is read and the stage's mode used.
        """
        import cv2

        from vision.media import ImageError, read_image

        rows: list[dict[str, Any]] = []
        try:
            if is_video(path):
                frames = ((idx, t, rgb, "frame") for idx, t, rgb in video_frames(path, fps=self.fps))
            else:
                frames = iter([(-1, float("nan"), read_image(path) if rgb is None else rgb, "image")])
            for frame, time_s, pixels, kind in frames:
                faces = self._faces(pixels, mode or self.detect)
                if not faces:
                    rows.append(face_row(kind=kind, frame=frame, time_s=time_s, status=NO_FACE,
                                         reason="no face found"))
                for i, face in enumerate(faces):
                    x, y, w, h = (float(v) for v in face.box)
                    rows.append(face_row(kind=kind, frame=frame, time_s=time_s, face_index=i, box=(x, y, w, h),
                                         confidence=float(face.confidence), aligned=bool(face.aligned),
                                         crop=np.asarray(face.crop, dtype=np.uint8), status=OK,
                                         context=face_context(face.crop, box=face.box, source=pixels,
                                                              detected=bool(face.aligned))))
        except (UnreadableInput, ImageError, cv2.error, OSError) as err:
            # Frames already read from a video that then fails are dropped with it: a video is
            # either classified whole or rejected whole.
            rows = [face_row(kind="video" if is_video(path) else "image", frame=-1, time_s=float("nan"),
                             status=REJECTED, reason=f"{type(err).__name__}: {err}")]
        return rows

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: list[dict[str, Any]] = []
        # Pixels and a mode per input from an earlier stage (evaluate's degrade stage,
        # training.degrade_eval); an empty image there means "read the file as usual".
        images, modes = batch.get("image"), batch.get("detect")
        for k, (path, input_index, shard) in enumerate(zip(batch["source"], batch["input_index"], batch["shard"])):
            rgb = None if images is None or np.size(images[k]) == 0 else np.asarray(images[k], dtype=np.uint8)
            rows = self._input_rows(str(path), rgb, "" if modes is None else str(modes[k]))
            for row in rows:
                row.update(source=str(path), input_index=int(input_index), shard=int(shard),
                           rows_for_input=len(rows), node_id=self.node_id)
            out.extend(rows)
        # The picture's condition (vision.context) a controller may read: every feature, plus any
        # old name asked for in ``context``; NaN on rows without a face.
        contexts = [row.pop("context") for row in out]
        cols = to_columns(out)
        names = tuple(dict.fromkeys(CONTEXT_NAMES + self.context))
        values = context_matrix(contexts, names).astype(np.float32)
        for j, name in enumerate(names):
            cols[context_column(name)] = values[:, j]
        return cols

