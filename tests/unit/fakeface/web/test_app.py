"""The page's API (`fakeface.web.app`): a correction names the face it is for; when the server
itself fails, the clip's queue slot is given back and the feedback is kept without its upload."""

from __future__ import annotations

import tempfile


from fakeface.web.app import WebConfig

CLIP = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + bytes(64)  # sniffed as an MP4; no frames in it


def test_a_clip_the_server_cannot_store_is_503_and_frees_its_queue_slot(page_client, monkeypatch):
    client = page_client(WebConfig(video_queue=1))

    def full_disk(prefix: str = "", **kwargs) -> str:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkdtemp", full_disk)
        refused = client.post("/api/classify?name=clip.mp4", content=CLIP)
    assert refused.status_code == 503 and "could not store this clip" in refused.json()["error"]
    # The one queue slot is free again: the next clip is taken (a leaked slot would answer 429).
    accepted = client.post("/api/classify?name=clip.mp4", content=CLIP)
    assert accepted.status_code == 202, accepted.text


def test_feedback_is_stored_when_its_upload_cannot_be_kept(page_client, face_crop, tmp_path):
    from vision.media import encode_png

    blocked = tmp_path / "uploads"
    blocked.write_text("a file where the uploads folder would go")
    page = page_client(WebConfig(upload_dir=str(blocked)), feedback_path=str(tmp_path / "feedback.jsonl"))
    answer = page.post("/api/classify?name=crop.png", content=encode_png(face_crop)).json()
    ack = page.post("/api/feedback", json={"request_id": answer["request_id"], "label": "real"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["stored"] and ack.json()["upload_kept"] is None
    assert (tmp_path / "feedback.jsonl").read_text().count(answer["request_id"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feedback.jsonl", "uploads"]  # no temporary left


def test_a_correction_names_its_face_in_the_log_and_the_report(page_client, face_crop, tmp_path):
    import json

    from vision.media import encode_png

    page = page_client(feedback_path=str(tmp_path / "feedback.jsonl"))
    answer = page.post("/api/classify?name=crop.png", content=encode_png(face_crop)).json()
    request_id = answer["request_id"]
    for bad, words in ((-1, "greater than or equal to 0"), ("one", "valid integer"), (4, "face_index 4 is not a face")):
        refused = page.post("/api/feedback", json={"request_id": request_id, "label": "fake", "face_index": bad})
        assert refused.status_code == 400 and words in refused.json()["error"], refused.text
    ack = page.post("/api/feedback", json={"request_id": request_id, "label": "fake", "face_index": 0})
    assert ack.status_code == 200, ack.text
    records = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [(r["label"], r["face_index"]) for r in records] == [("fake", 0)]
    report = page.get(f"/api/report/{request_id}").text
    assert "told the detector the answer for face #0 is wrong: they say it is FAKE" in report
