"""Conversions between the blackboard's records and the `fakeface.v1` wire messages.

The one home of the wire's enum maps (detection mode, label) and of the request builder: the
gRPC servicer, the client, the CLI and the web page all convert through here.
"""

from __future__ import annotations

import json
from typing import Sequence

from agents.labels import FAKE, REAL
from blackboard.case import UNCERTAIN, Case
from blackboard.model_info import EnsembleInfo
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from vision.heatmap_quality import AgentMap

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Detector"].full_name
# FaceDetection value -> the ensemble's mode (an unset value means the default, "auto").
DETECT_MODES = {
    pb.FACE_DETECTION_UNSPECIFIED: "auto",
    pb.FACE_DETECTION_AUTO: "auto",
    pb.FACE_DETECTION_ON: "on",
    pb.FACE_DETECTION_OFF: "off",
}
# The ensemble's mode -> the FaceDetection value a request sends for it.
DETECT_ENUMS = {mode: enum for enum, mode in DETECT_MODES.items() if enum != pb.FACE_DETECTION_UNSPECIFIED}
# A face's verdict -> its Label value, and back (UNSPECIFIED: no decision was made).
LABEL_ENUMS = {REAL: pb.LABEL_REAL, FAKE: pb.LABEL_FAKE, UNCERTAIN: pb.LABEL_UNCERTAIN}
VERDICTS = {enum: label for label, enum in LABEL_ENUMS.items()}
# The labels a person may give an answer in feedback (a "can't tell" is not a label).
FEEDBACK_LABELS = {label: LABEL_ENUMS[label] for label in (REAL, FAKE)}
UNDECIDED = "undecided"


def enum_name(enum: object, value: int) -> str:
    """The name of an enum value, or ``<number>`` for a value the contract does not define."""
    try:
        return enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return f"<undefined value {value}>"


def verdict_name(label: int) -> str:
    """A face's Label value as a word: "real", "fake", "uncertain", or "undecided" (none made)."""
    return VERDICTS.get(label, UNDECIDED)


def classify_request(image: bytes, *, detect: str = "auto", heatmaps: bool = False, source: str = "",
                     sequence_id: int = 0) -> pb.ClassifyRequest:
    """The ClassifyRequest for one encoded image.

    Raises:
        ValueError: ``detect`` is not one of "auto", "on", "off".
    """
    if detect not in DETECT_ENUMS:
        raise ValueError(f"detect must be one of {sorted(DETECT_ENUMS)}, received {detect!r}.")
    options = pb.ClassifyOptions(face_detection=DETECT_ENUMS[detect], want_heatmaps=heatmaps)
    if source:
        options.source = source
    return pb.ClassifyRequest(image=image, options=options, sequence_id=sequence_id)


def feedback_label(label: int) -> str:
    """A FeedbackRequest's Label value as the service's label: "real", "fake", or else the
    value's name (which the service refuses, naming it)."""
    for word, enum in FEEDBACK_LABELS.items():
        if label == enum:
            return word
    return enum_name(pb.Label, label)


def case_to_proto(case: Case, *, heatmaps: Sequence[dict[str, AgentMap]] | None = None) -> pb.ClassifyResponse:
    """Converts a blackboard `Case` into the wire answer.

    Args:
        case: the decided case.
        heatmaps: optional per-face dicts agent -> its tile or why it is withheld (same order as
            ``case.faces``).
    """
    resp = pb.ClassifyResponse(
        request_id=case.request_id,
        bundle_version=str(case.bundle_version),
        controller_version=str(case.controller_version),
        no_face_reason=case.no_face_reason,
        source=case.source,
    )
    if len(case.image_shape) >= 2:
        resp.image_height, resp.image_width = int(case.image_shape[0]), int(case.image_shape[1])
    for stage, ms in case.timings_ms.items():
        resp.timings_ms[stage] = float(ms)
    for i, rec in enumerate(case.faces):
        face = resp.faces.add(
            index=int(rec.index),
            degraded=bool(rec.degraded),
            missing_agents=list(rec.missing_agents),
            detector_confidence=float(rec.confidence),
        )
        x, y, w, h = (float(v) for v in rec.box)
        face.box.CopyFrom(pb.Box(x=x, y=y, width=w, height=h))
        for px, py in rec.landmarks:
            face.landmarks.add(x=float(px), y=float(py))
        if rec.decision is not None:
            face.label = LABEL_ENUMS.get(rec.decision.label, pb.LABEL_UNSPECIFIED)
            face.p_fake = float(rec.decision.p_fake)
            face.threshold = float(rec.decision.threshold)
            face.combiner = rec.decision.combiner
            face.uncertain_reason = rec.decision.reason
        if rec.ood_score is not None:
            face.ood_score = float(rec.ood_score)
        for name, value in rec.context.items():
            face.context[name] = float(value)
        for vote in rec.votes.values():
            face.votes.add(
                agent=vote.agent, p_fake=float(vote.p_fake), weight=float(vote.weight),
                latency_ms=float(vote.latency_ms), model_sha=vote.model_sha, context_shift=float(vote.context_shift),
            )
        if heatmaps is not None and i < len(heatmaps):
            for agent, tile in heatmaps[i].items():
                face.heatmaps.add(agent=agent, png=tile.png, withheld=tile.withheld)
    return resp


def model_info_to_proto(info: EnsembleInfo, *, feedback_records: int = 0) -> pb.ModelInfo:
    """Converts `Ensemble.describe()` into the wire message.

    Thresholds are named ``ensemble`` and ``agent:<name>``; the whole record (health included:
    ``degraded``, ``detector_up``, each agent's ``up``) also goes into ``info_json``.
    """
    out = pb.ModelInfo(
        bundle_version=info.bundle_version,
        controller_version=info.controller_version,
        manifest_json=json.dumps(info.manifest, sort_keys=True, default=str),
        info_json=json.dumps(info.to_dict(), sort_keys=True, default=str),
        feedback_records=int(feedback_records),
    )
    out.thresholds["ensemble"] = float(info.threshold)
    for agent in info.agents:
        pp = agent.preprocessing
        out.agents.add(
            name=agent.name, model_sha=agent.sha256, threshold=float(agent.threshold),
            temperature=float(agent.temperature), input_height=pp.height, input_width=pp.width,
            input_channels=pp.channels, input_scale=pp.scale, bias=float(agent.bias),
        )
        out.thresholds[f"agent:{agent.name}"] = float(agent.threshold)
    for agent, weights in info.trust.items():
        entry = out.trust.add(agent=agent)
        for cls, weight in weights.items():
            entry.weights[cls] = float(weight)
    return out
