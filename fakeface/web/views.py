"""The page's JSON views of an answer, built on the CLI's own (`fakeface.classify.face_to_dict`)."""

from __future__ import annotations

import base64
from typing import Any

from blackboard.board import NO_FACE_HINT
from fakeface.classify import face_to_dict, response_meta
from fakeface.rpc.fakeface.v1 import detector_pb2 as pb
from fakeface.rpc_convert import verdict_name


def _reason(face: pb.Face) -> str:
    """The face's explanation text, from any string field whose name mentions a reason."""
    for field in face.DESCRIPTOR.fields:
        if "reason" in field.name and field.type == field.TYPE_STRING:
            value = getattr(face, field.name)
            if value:
                return str(value)
    return ""


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a page or a report."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# Formats a browser's <img> may not show (Chrome and Firefox decode neither): the page gets a JPEG
# preview of the decoded picture instead of showing the file it sent.
BROWSER_UNSHOWN = ("HEIF", "TIFF")
# Longest side of that preview in pixels: the page scales the picture to its column anyway.
PREVIEW_SIDE = 1600


def preview_data_uri(data: bytes) -> str | None:
    """A JPEG ``data:`` URI of an uploaded picture in a format browsers may not show, upright and
    at most `PREVIEW_SIDE` on its longer side; None for the formats they show as sent."""
    import cv2

    from vision.media import decode_image, read_header

    if read_header(data)[2] not in BROWSER_UNSHOWN:
        return None
    rgb = decode_image(data)
    scale = min(1.0, PREVIEW_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


def face_view(face_dict: dict[str, Any], face: pb.Face | None) -> dict[str, Any]:
    """The page's view of one face, built on `face_to_dict` (heatmaps as data URIs).

    Args:
        face_dict: `face_to_dict` of the face.
        face: the wire face, for its label and reason; None keeps ``face_dict["verdict"]``.
    """
    out = {k: v for k, v in face_dict.items() if k != "heatmaps"}
    out["box"] = [float(v) for v in face_dict["box"]]
    out["label"] = face_dict.get("verdict", "undecided") if face is None else verdict_name(face.label)
    out["reason"] = str(face_dict.get("reason", "")) if face is None else _reason(face)
    out["heatmaps"] = {agent: png_data_uri(png) for agent, png in sorted(face_dict.get("heatmaps", {}).items())}
    return out


def response_view(resp: pb.ClassifyResponse) -> dict[str, Any]:
    """The page's JSON for one image answer."""
    return {
        **response_meta(resp),
        "width": int(resp.image_width),
        "height": int(resp.image_height),
        # The board's hint names the CLI and gRPC switches; the page offers its own button instead.
        "no_face_reason": resp.no_face_reason.replace(NO_FACE_HINT, ""),
        "faces": [face_view(face_to_dict(f), f) for f in resp.faces],
    }
