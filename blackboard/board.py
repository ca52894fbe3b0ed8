"""The blackboard: one case per request, its faces, every agent's vote and the controller's decision.

A case: faces found and every agent's votes on ALL of them, in one pass where the workers are
(``_find``, `blackboard.ingress`; ``_vote`` for crops given) -> the controller decides per face
(`blackboard.decision`), the uncertainty gate may answer "can't tell" (`blackboard.ood`).
Agents that have not voted by the deadline drop out of the decision and the face is marked
degraded with their names; with no vote at all, or no detection in time,
:class:`DeadlineExceeded` is raised. ``classify`` is thread-safe (gRPC calls it from many threads).

`Board` holds this logic once for every way of running the workers: `blackboard.ensemble.Ensemble`
runs the detector and the agents as Ray Serve deployments (the service),
`blackboard.inprocess.InProcessBoard` runs the same deployment bodies in this process (one image
from the CLI, no Ray to start). A subclass provides ``_find`` and ``_vote``; the decision
(controller, context, fragile copies, the uncertainty gate) happens here only.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
import uuid
from typing import Any

import numpy as np
from cachetools import LRUCache

from agents.bundle import Bundle, load_bundle
from agents.preprocessing import as_rgb_uint8
from blackboard.model_info import AgentInfo, EnsembleInfo
from blackboard.case import Case, Decision, FaceRecord, Vote
from blackboard.borderline import borderline_for, val_error_rates
from blackboard.ood import UncertaintyGate
from blackboard.controllers.base import Controller
from blackboard.controllers.store import (
    find_version, list_controller_versions, load_controller, load_replay, read_stored_controller,
)
from blackboard.fragile import FragileConfig, mark_fragile, vote_with_copies
from blackboard.ingress import FindOptions, Found
from blackboard.combine import vote_matrix
from blackboard.config import EnsembleConfig
from blackboard.decision import context_for, decide, decider_name, decider_version
from vision.context import face_context
from vision.face_detector import smallest_face_note
from vision.faces import DETECT_MODES

# How to classify the whole image anyway, in each front end's words.
NO_FACE_HINT = ("; to classify the whole image as a face crop, use `--detect off` (CLI), "
                "face_detection=FACE_DETECTION_OFF (gRPC) or \"classify the whole image\" (web page)")


def _no_face_reason(shape: tuple[int, ...], detect: str) -> str:
    """Why a picture got no face, with the size a face must have to be found in a picture this size
    (a face in a small video window is often under it) and how to classify the whole image."""
    size = (f"{smallest_face_note(shape)}; a face in a small video window can be smaller: show the video "
            "larger or full screen before taking the screenshot")
    found = "no face found by the detector" if detect == "on" else "no face found"
    crop = "" if detect == "on" else ", and the image is not shaped like a face crop"
    return f"{found} ({size}){crop}{NO_FACE_HINT}"


# Cases whose votes are kept for feedback (a bounded LRU: memory stays flat under load).
FEEDBACK_CACHE = 1024
# Controllers kept in memory for rollback after feedback updates.
CONTROLLER_HISTORY = 32


class DeadlineExceeded(TimeoutError):
    """No agent voted in time, or face detection did not finish before the deadline."""


class Board(contextlib.AbstractContextManager):
    """The case logic: faces -> votes -> decision, feedback and rollback, whatever runs the workers.

    Args:
        bundle: bundle directory, loaded `Bundle`, or None for the shipped default.
        config: deployment settings (the in-process board uses only ``deadline_s`` and ``agents``).
        controller: overrides the bundle's controller (else the bundle's, else mean voting).
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 config: EnsembleConfig = EnsembleConfig(), *, controller: Controller | None = None) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.config = config
        names = list(config.agents) if config.agents is not None else self.bundle.agent_names
        for name in names:
            self.bundle.agent(name)  # raises naming the bundle's agents
        self.agent_names: list[str] = names
        self.bundle_version: str = self.bundle.version
        self._lock = threading.Lock()
        self._controller: Controller | None = controller if controller is not None else load_controller(self.bundle)
        if self._controller is not None and not set(self._controller.agents) <= set(names):
            raise ValueError(f"the controller weighs agents {list(self._controller.agents)}, but only {names} are "
                             "served here; serve them all (or fit a controller for these with `fakeface fit-controller`).")
        self._history: list[Controller] = [] if self._controller is None else [self._controller]
        self.base_controller = self._controller  # the bundle's own: operator promotions start from it
        self.replay = load_replay(self.bundle)  # held-out val votes: the promotion guard and the borderline fit
        # Fitted for the bundle's controller and kept when an operator promotes another (the
        # band is a width around whichever threshold is live).
        self.borderline = borderline_for(self._controller, self.replay)
        self._val_rates = val_error_rates(self._controller, self.replay, self.borderline)  # the page's model card
        # Per recent case: its votes, their mask and context, and the deciding controller's agents
        # and context names (the columns' labels: the live controller may change before feedback).
        self._cases: LRUCache[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...], tuple[str, ...]]] \
            = LRUCache(FEEDBACK_CACHE)
        self._model_sha = {name: self.bundle.agent(name).sha256 for name in names}
        self._up: dict[str, bool] = {}  # component -> answered its last probe (component_status)
        self._recoveries: dict[str, int] = {}  # component -> replicas started to replace dead ones
        self._gate = UncertaintyGate.from_bundle(self.bundle)  # "uncertain" for tiny / out-of-domain faces
        self._fragile = FragileConfig(enabled=config.fragile_check, margin=config.fragile_margin)
        # One case's NumPy/OpenCV work (decision, context, uncertainty gate) at a time. Dozens of
        # short GIL-releasing calls from 16 request threads at once thrash the GIL: measured 2.1 ms
        # of CPU per case instead of 0.65 ms, 8 % of the served throughput on 2 cores.
        self._numeric = threading.Lock()

    # ------------------------------------------------------------ the workers
    def _find(self, image: np.ndarray, mode: str, deadline: float, deadline_s: float, options: FindOptions) -> Found:
        """The image's faces and every agent's votes on them, in one pass through the workers
        (`blackboard.ingress.CasePipeline.find`), before ``deadline`` (time.monotonic).

        Raises:
            DeadlineExceeded: no answer at all by the deadline (e.g. the workers were restarting).
        """
        raise NotImplementedError

    def _vote(self, crops: list[np.ndarray], deadline: float) -> dict[str, tuple[np.ndarray, float]]:
        """Each agent that answered in time: (p_fake per crop, milliseconds per crop)."""
        raise NotImplementedError

    def _replica_stats(self) -> dict[str, dict[str, int]]:
        """Micro-batch counters per agent ({"batches", "crops"}), {} where unknown."""
        return {}

    # --------------------------------------------------------------- properties
    @property
    def controller(self) -> Controller | None:
        return self._controller

    @property
    def controller_version(self) -> str:
        return decider_version(self._controller)

    # ------------------------------------------------------------------ cases
    def classify(self, image_rgb: np.ndarray, *, detect: str = "auto", deadline_s: float | None = None,
                 request_id: str | None = None, source: str = "", keep_crops: bool = True) -> Case:
        """Detects faces in an RGB image and decides each one.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image.
            detect: "auto" (detect; a crop-shaped image without a detected face is used whole),
                "on" (detect only) or "off" (the image is the face crop).
            deadline_s: seconds for the whole case (default ``config.deadline_s``).
            request_id: id for logs and feedback (a new uuid when None).
            source: file name or client label.
            keep_crops: bring the face crops back onto the case (``FaceRecord.crop``); a server
                that needs no pixels (no heat maps) says False and the crops stay with the workers.

        Raises:
            ValueError: bad image or mode.
            DeadlineExceeded: detection did not finish in time, or no agent voted in time.
        """
        if detect not in DETECT_MODES:
            raise ValueError(f"detect must be one of {DETECT_MODES}, received {detect!r}.")
        image = _check_image(image_rgb)
        start = time.perf_counter()
        deadline_s = self._deadline(deadline_s)
        deadline = time.monotonic() + deadline_s
        case = Case(request_id=request_id or uuid.uuid4().hex, source=source, image_shape=tuple(image.shape))
        # Faces and votes in one pass where the workers are; the crops come back only if asked.
        found = self._find(image, detect, deadline, deadline_s,
                           FindOptions(fragile=self._fragile, ood_features=self._gate.ood is not None,
                                       keep_crops=keep_crops))
        if found.faces is None:
            raise DeadlineExceeded(f"face detection did not finish within the {deadline_s:g} s deadline")
        case.timings_ms.update(found.timings_ms)
        for i, face in enumerate(found.faces):
            case.faces.append(FaceRecord(index=i, box=face.box, landmarks=list(face.landmarks),
                                         confidence=face.confidence, crop=face.crop, context=dict(face.context)))
        if not case.faces:
            case.no_face_reason = _no_face_reason(image.shape, detect)
        case = self._conclude(case, found.votes, found.copy_votes, start)
        with self._numeric:
            return self._gate.apply(case, features=found.ood_features)

    def classify_faces(self, crops: list[np.ndarray], *, deadline_s: float | None = None,
                       request_id: str | None = None, source: str = "") -> Case:
        """Decides already-cropped faces (no detection); each crop is one face."""
        if len(crops) == 0:
            raise ValueError("classify_faces needs at least one face crop, received none.")
        checked = [_check_image(c) for c in crops]
        start = time.perf_counter()
        deadline = time.monotonic() + self._deadline(deadline_s)
        case = Case(request_id=request_id or uuid.uuid4().hex, source=source,
                    image_shape=(len(checked), *checked[0].shape))
        for i, crop in enumerate(checked):
            h, w = crop.shape[:2]
            case.faces.append(FaceRecord(index=i, box=(0.0, 0.0, float(w), float(h)), landmarks=[], confidence=1.0,
                                         crop=crop, context=face_context(crop)))
        case.timings_ms["detect"] = 0.0
        t_agents = time.perf_counter()
        results, copy_votes = vote_with_copies(self._vote, checked, deadline, self._fragile)
        case.timings_ms["agents"] = (time.perf_counter() - t_agents) * 1000.0
        case = self._conclude(case, results, copy_votes, start)
        with self._numeric:
            return self._gate.apply(case)

    def _deadline(self, deadline_s: float | None) -> float:
        value = self.config.deadline_s if deadline_s is None else float(deadline_s)
        if not value > 0:
            raise ValueError(f"deadline_s must be positive, received {deadline_s!r}.")
        return value

    def _conclude(self, case: Case, results: dict[str, tuple[np.ndarray, float]], copy_votes: dict[str, np.ndarray],
                  start: float) -> Case:
        """Decides every face of the case on the votes that came in time (the one place a case is decided)."""
        case.bundle_version = self.bundle_version
        if not case.faces:
            case.controller_version = self.controller_version
            case.timings_ms["total"] = (time.perf_counter() - start) * 1000.0
            return case
        if not results:
            raise DeadlineExceeded(
                f"no agent voted within the deadline for case {case.request_id} "
                f"(agents: {', '.join(self.agent_names)})"
            )
        t_decide = time.perf_counter()
        controller = self._controller  # one consistent controller for the whole case
        case.controller_version = decider_version(controller)
        with self._numeric:
            votes, present, context, agents = self._decide(case, results, controller)
            mark_fragile(case.faces, copy_votes, controller, context, self._fragile)
        if controller is not None:  # a case decided without one keeps no evidence
            with self._lock:
                self._cases[case.request_id] = (votes, present, context, agents, tuple(controller.context_names))
        case.timings_ms["decide"] = (time.perf_counter() - t_decide) * 1000.0
        case.timings_ms["total"] = (time.perf_counter() - start) * 1000.0
        return case

    def _decide(self, case: Case, results: dict[str, tuple[np.ndarray, float]],
                controller: Controller | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
        """Fills votes and decisions on every face (``blackboard.decision.decide``); returns the
        (F, A) votes, mask and context in the decider's column order, and those columns' agents
        (kept for feedback)."""
        by_agent = {name: results[name][0] for name in self.agent_names if name in results}
        context = context_for(controller, [face.crop for face in case.faces], [face.context for face in case.faces])
        decided = decide(by_agent, controller, context=context, band=self.borderline)
        votes = vote_matrix(by_agent, decided.agents)[0]
        present = decided.present
        missing = [name for name in self.agent_names if name not in results]
        for i, face in enumerate(case.faces):
            weights, shifts = decided.weights[i], decided.context_shift[i]
            for name, (p_agent, latency_ms) in results.items():
                face.votes[name] = Vote(agent=name, p_fake=float(p_agent[i]), latency_ms=float(latency_ms),
                                        model_sha=self._model_sha[name], weight=float(weights.get(name, 0.0)),
                                        context_shift=float(shifts.get(name, 0.0)))
            face.decision = Decision(label=str(decided.labels[i]), p_fake=float(decided.p_fake[i]),
                                     threshold=decided.threshold, combiner=decided.combiner,
                                     controller_version=case.controller_version, reason=decided.reasons[i])
            face.degraded = bool(missing)
            face.missing_agents = list(missing)
        return votes, present, context, tuple(decided.agents)

    # --------------------------------------------------------------- feedback
    def case_evidence(self, request_id: str) -> dict[str, Any] | None:
        """The votes a recent case was decided on, in the decider's columns, for the feedback log.

        Feedback never changes the live controller (`blackboard.feedback_promotion`): these
        votes are stored with the label so an operator can fit a candidate from them later.

        Returns:
            ``{"agents", "votes", "context", "context_names"}`` in the columns of the controller that
            decided the case (live or not by now; NaN votes as None), or None when the case is not
            among the last ``FEEDBACK_CACHE`` or was decided without a controller.
        """
        with self._lock:
            stored = self._cases.get(request_id)
        if stored is None:
            return None
        votes, present, context, agents, context_names = stored
        rows = [[round(float(v), 6) if ok else None for v, ok in zip(row, mask)] for row, mask in zip(votes, present)]
        ctx = None if context is None else [[None if not np.isfinite(v) else round(float(v), 6) for v in row]
                                            for row in context]
        return {"agents": list(agents), "votes": rows, "context": ctx, "context_names": list(context_names)}

    def set_controller(self, controller: Controller) -> str:
        """Makes ``controller`` live (an operator's promotion or a restored state); returns its version.

        Raises:
            ValueError: it weighs agents this board does not run.
        """
        if not set(controller.agents) <= set(self.agent_names):
            raise ValueError(f"Controller agents {list(controller.agents)} are not all served here "
                             f"({self.agent_names}).")
        return self._activate(controller)

    def _activate(self, controller: Controller) -> str:
        """Makes ``controller`` live and remembers it (the last CONTROLLER_HISTORY); returns its version."""
        with self._lock:
            self._controller = controller
            if controller not in self._history:
                self._history.append(controller)
                del self._history[:-CONTROLLER_HISTORY]
        return controller.version

    def rollback_controller(self, version: str | None = None) -> str:
        """Restores an earlier controller: the previous one (None), a version seen in this
        process, or a version stored in the bundle (checksum-verified). Returns the version now active."""
        with self._lock:
            restored = None
            if version is None:
                # The one before the active controller in the order they became active.
                current = max((i for i, c in enumerate(self._history) if c is self._controller), default=0)
                if current < 1:
                    raise ValueError("No earlier controller in this process to roll back to.")
                restored = self._history[current - 1]
            else:
                restored = next((c for c in reversed(self._history) if c.version == version), None)
        if restored is None:
            record = find_version(list_controller_versions(self.bundle), version)
            if record is None:
                known = [ctrl.version for ctrl in self._history]
                raise ValueError(f"Unknown controller version {version!r}; known in this process: {known}.")
            restored = read_stored_controller(self.bundle, record)
        return self._activate(restored)

    # ------------------------------------------------------------------- info
    def describe(self) -> EnsembleInfo:
        """Bundle, agents, controller, thresholds and the components' health, as typed records."""
        controller = self._controller
        agents = []
        counts = self._replica_stats()
        for name in self.agent_names:
            info = self.bundle.agent(name)
            agents.append(AgentInfo(
                name=name, sha256=info.sha256, preprocessing=info.preprocessing, temperature=info.temperature,
                threshold=info.threshold, threshold_rule=info.threshold_rule, val_metrics=dict(info.val_metrics),
                replicas=self.config.replicas, batches_sent=counts.get(name, {}).get("batches", 0),
                crops_sent=counts.get(name, {}).get("crops", 0), up=self._up.get(f"agent/{name}", True),
                bias=info.bias,
            ))
        return EnsembleInfo(
            bundle_path=str(self.bundle.path),
            bundle_version=self.bundle_version,
            manifest=copy.deepcopy(self.bundle.manifest),
            agents=tuple(agents),
            combiner=decider_name(controller),
            controller_version=self.controller_version,
            controller=controller.summary() if controller is not None else None,
            trust=controller.trust() if controller is not None else {},
            threshold=float(controller.threshold) if controller is not None else 0.5,
            config={k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
            detector_up=self._up.get("detector", True),
            restarts=dict(self._recoveries),
            borderline={**self.borderline.to_dict(), "val": self._val_rates},
        )

    def model_info(self) -> dict[str, Any]:
        """`describe` as a plain dict (agents keyed by name)."""
        return self.describe().to_dict()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Releases the workers."""


def _check_image(image: Any) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array, or a ValueError saying what was received."""
    # Pixels are refused, not clipped, when not uint8: a caller that sends floats has a bug.
    return np.ascontiguousarray(as_rgb_uint8(np.asarray(image), min_side=8, clip=False))
