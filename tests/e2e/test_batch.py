"""`fakeface batch` end to end on real Ray Data, real Keras agents and real MTCNN.

One local Ray instance serves the module; the runs are `python -m fakeface.cli batch`
subprocesses joining it by address: one hard-killed after its first shards, one finishing it with
--resume. The output is checked against what the inputs must give (every input exactly once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fakeface import batch
from fakeface.batch_shards import output_columns
from vision.inputs import InputError, list_inputs

REPO = Path(__file__).resolve().parents[2]
FPS = 2.0  # the test clip has 6 frames at 6 fps: frames 0 and 3 are sampled
N_COPIES = 6  # extra shifted astronaut images, so the kill lands between shards


@pytest.fixture(scope="module")
def ray_local(ray_session) -> str:
    """The session's local Ray (tests/conftest.py), by address for the CLI runs."""
    import ray

    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, face_rgb, face_crop) -> Path:
    """Images with a face, a crop, a short mp4, a corrupt image and a non-media file."""
    root = tmp_path_factory.mktemp("media")
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(face_rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "sub" / "crop.jpg"), cv2.cvtColor(face_crop, cv2.COLOR_RGB2BGR))
    for i in range(N_COPIES):
        shifted = np.roll(face_rgb, 8 * (i + 1), axis=1)
        cv2.imwrite(str(root / "sub" / f"copy{i}.jpg"), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("not media, skipped")
    small = cv2.resize(face_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 6.0, (256, 256))
    for i in range(6):
        writer.write(cv2.cvtColor(np.roll(small, 2 * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return root


def _expected_inputs(media_dir: Path) -> tuple[list[str], str, str]:
    images = [str(media_dir / "astronaut.png"), str(media_dir / "sub" / "crop.jpg")] + [
        str(media_dir / "sub" / f"copy{i}.jpg") for i in range(N_COPIES)]
    return images, str(media_dir / "clip.mp4"), str(media_dir / "broken.jpg")


def _keys(df: pd.DataFrame) -> list[tuple[str, int, int, str]]:
    return sorted(zip(df["source"], df["frame"].astype(int), df["face_index"].astype(int), df["kind"]))


@pytest.fixture(scope="module")
def resumed_run(ray_local, media_dir, tiny_bundle, tmp_path_factory) -> dict:
    """A run hard-killed after its first shards, then finished with --resume (subprocesses)."""
    work = tmp_path_factory.mktemp("killed")
    out, parts = work / "res.parquet", work / "res.parts"
    cmd = [sys.executable, "-m", "fakeface.cli", "batch", "--input", str(media_dir), "--output", str(out),
           "--bundle", str(tiny_bundle), "--fps", str(FPS), "--shard-size", "1", "--batch-size", "1",
           "--ray-address", ray_local, "--keep-parts",
           # Two agent sets and one face actor: the session Ray's 4 logical CPUs would make four of
           # each (automatic sizes), each a process loading its models, in both runs.
           "--agent-set-actors", "2", "--detect-actors", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # carries conftest's Ray auth token
    with open(work / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while not list(parts.glob("shard-*.parquet")):
                assert proc.poll() is None, (work / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no shard completed within 240 s"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the interruption under test: a hard kill
            proc.wait()
    before = {p.name: pq.read_table(p).to_pandas() for p in sorted(parts.glob("shard-*.parquet"))}
    exists_after_kill = out.exists()
    second = subprocess.run(cmd + ["--resume"], cwd=work, env=env, capture_output=True, timeout=400)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    summary = json.loads(second.stdout.decode().strip().splitlines()[-1])
    return {"out": out, "parts": parts, "before": before, "summary": summary,
            "exists_after_kill": exists_after_kill}


def test_rows_schema_and_rejects(resumed_run, media_dir, tiny_bundle):
    import pyarrow as pa

    from agents.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    table = pq.read_table(resumed_run["out"])
    assert table.schema.equals(output_columns(bundle.agent_names))
    assert table.schema.field("frame").type == pa.int32() and table.schema.field("p_fake").type == pa.float32()
    rows = table.to_pandas()
    images, video, broken = _expected_inputs(media_dir)
    assert set(rows["source"]) == set(images) | {video}
    # Images: kind "image", frame -1, faces numbered 0..k-1 with a box inside the image.
    img = rows[rows["kind"] == "image"]
    assert (img["frame"] == -1).all() and set(img["source"]) == set(images)
    for _, faces in img.groupby("source"):
        assert sorted(faces["face_index"]) == list(range(len(faces)))
    assert (img["box_w"] > 0).all() and (img["box_x"] >= 0).all()
    # Video: the sampled frames, then one verdict row (the one video rule, as `classify` applies it).
    from vision.video import track_video

    frames = rows[rows["kind"] == "frame"]
    assert sorted(set(frames["frame"])) == [0, 3] and (frames["source"] == video).all()
    verdict = rows[rows["kind"] == "video"]
    assert len(verdict) == 1 and verdict.iloc[0]["face_index"] == -1 and verdict.iloc[0]["frame"] == -1
    per_frame = [[{"box": (f.box_x, f.box_y, f.box_w, f.box_h), "p_fake": f.p_fake, "threshold": f.threshold,
                   "votes": {}} for f in g.itertuples()] for _, g in frames.groupby("frame")]
    expected = track_video(per_frame)[1]["p_fake"]
    assert verdict.iloc[0]["p_fake"] == pytest.approx(expected, abs=1e-6)
    # Votes, decision and provenance.
    ok = rows[rows["status"] == "ok"]
    assert len(ok) == len(rows)
    for agent in bundle.agent_names:
        assert ok[f"{agent}_p_fake"].between(0, 1).all()
    assert ok["p_fake"].between(0, 1).all()
    from blackboard.borderline import DEFAULT_HALF_WIDTH  # the tiny bundle has no controller: the default band

    inside = (ok["p_fake"] - ok["threshold"]).abs() < DEFAULT_HALF_WIDTH
    assert (ok.loc[inside, "label"] == "uncertain").all()
    assert ((ok.loc[~inside, "p_fake"] >= ok.loc[~inside, "threshold"]) == (ok.loc[~inside, "label"] == "fake")).all()
    assert (rows["bundle_version"] == bundle.version).all()
    assert not ok["degraded"].any()
    # The corrupt file is rejected, the text file silently skipped.
    rejects = pd.read_csv(resumed_run["out"].with_name("res.parquet.rejects.csv"))
    assert list(rejects["path"]) == [broken]
    assert "not a decodable image" in rejects["reason"][0]


def test_kill_and_resume_is_exact(resumed_run, media_dir):
    n_inputs = len(list_inputs(media_dir).paths)
    before = resumed_run["before"]
    # The kill landed between shards, and left no partial output behind.
    assert 1 <= len(before) < n_inputs and not resumed_run["exists_after_kill"]
    assert resumed_run["summary"]["shards_run"] == n_inputs - len(before)
    rows = pq.read_table(resumed_run["out"]).to_pandas()
    rejects = pd.read_csv(resumed_run["out"].with_name("res.parquet.rejects.csv"))
    # Every input exactly once: in the output or in the rejects, never both, no key twice.
    assert len(_keys(rows)) == len(set(_keys(rows)))
    images, video, broken = _expected_inputs(media_dir)
    assert set(rows["source"]) | set(rejects["path"]) == set(images) | {video, broken}
    assert not set(rows["source"]) & set(rejects["path"])
    # Shards finished before the kill are in the output unchanged (not recomputed).
    for part in before.values():
        kept = part[part["status"] != "rejected"]
        merged = kept.merge(rows, on=["source", "frame", "face_index", "kind"], suffixes=("", "_out"))
        assert len(merged) == len(kept)
        np.testing.assert_allclose(merged["p_fake"], merged["p_fake_out"], atol=1e-6)


def test_csv_reexport_from_kept_parts(resumed_run, media_dir, tiny_bundle):
    """--format csv over the kept parts: no Ray work, same rows as the parquet output."""
    out_csv = resumed_run["out"].with_suffix(".csv")
    code = batch.main(["--input", str(media_dir), "--output", str(out_csv), "--bundle", str(tiny_bundle),
                       "--fps", str(FPS), "--shard-size", "1", "--resume", "--format", "csv"])
    assert code == 0
    as_csv = pd.read_csv(out_csv, keep_default_na=False, na_values=[""])
    as_parquet = pq.read_table(resumed_run["out"]).to_pandas()
    assert list(as_csv.columns) == list(as_parquet.columns)
    assert _keys(as_csv) == _keys(as_parquet)
    merged = as_csv.merge(as_parquet, on=["source", "frame", "face_index", "kind"], suffixes=("", "_pq"))
    np.testing.assert_allclose(merged["p_fake"], merged["p_fake_pq"], rtol=1e-6)
    assert (merged["label"] == merged["label_pq"]).all()
    assert not resumed_run["parts"].exists()  # parts dropped once exported without --keep-parts


def test_leftover_parts_need_resume(media_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "res.parquet"
    (tmp_path / "res.parts").mkdir()
    code = batch.main(["--input", str(media_dir), "--output", str(out), "--bundle", str(tiny_bundle)])
    assert code == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_refuses_changed_inputs(media_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "res.parquet"
    parts = tmp_path / "res.parts"
    parts.mkdir()
    (parts / "plan.json").write_text(json.dumps({"format": 1, "shard_size": 64, "settings": {},
                                                 "inputs": ["/elsewhere/a.jpg"]}))
    code = batch.main(["--input", str(media_dir), "--output", str(out), "--bundle", str(tiny_bundle), "--resume"])
    assert code == 2
    assert "inputs differ" in capsys.readouterr().err
    assert (parts / "plan.json").is_file()  # nothing of the interrupted run is lost


def test_bad_arguments_are_one_line_errors(tmp_path, tiny_bundle, capsys):
    assert batch.main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o.parquet"),
                       "--bundle", str(tiny_bundle)]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad_csv = tmp_path / "m.csv"
    bad_csv.write_text("file,label\na.jpg,real\n")
    assert batch.main(["--input", str(bad_csv), "--output", str(tmp_path / "o.parquet")]) == 2
    assert "'path' column" in capsys.readouterr().err
    assert batch.main(["--input", str(tmp_path), "--output", str(tmp_path / "o.parquet"), "--fps", "0"]) == 2


def test_manifest_and_list_inputs_resolve_relative_paths(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.mp4").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.jpg,real\nb.mp4,fake\na.jpg,real\n")
    found = list_inputs(manifest)
    assert found.paths == (str(tmp_path / "a.jpg"), str(tmp_path / "b.mp4")) and found.duplicates == 1
    listing = tmp_path / "files.txt"
    listing.write_text(f"# inputs\nb.mp4\n\n{tmp_path / 'a.jpg'}\n")
    assert list_inputs(listing).paths == (str(tmp_path / "b.mp4"), str(tmp_path / "a.jpg"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images or videos"):
        list_inputs(tmp_path / "empty")


def test_a_small_job_runs_in_process_and_gives_the_ray_paths_rows(resumed_run, media_dir, tiny_bundle, tmp_path):
    # Same inputs and settings as the Ray run above, but no cluster named: under
    # local_stages.local_max_work() the CLI must not start Ray, and every row must be the same.
    out = tmp_path / "local.parquet"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "fakeface.cli", "batch", "--input", str(media_dir), "--output",
                           str(out), "--bundle", str(tiny_bundle), "--fps", str(FPS), "--shard-size", "1",
                           "--batch-size", "1"], cwd=tmp_path, env=env, capture_output=True, timeout=400)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert summary["ran_on"] == "in-process"
    local = pq.read_table(out).to_pandas()
    ray_rows = pq.read_table(resumed_run["out"]).to_pandas()
    assert (local["node_id"] == "").all() and (ray_rows["node_id"] != "").any()  # the one column allowed to differ
    pd.testing.assert_frame_equal(local.drop(columns="node_id"), ray_rows.drop(columns="node_id"))
    rejects = pd.read_csv(f"{out}.rejects.csv")
    assert rejects.equals(pd.read_csv(f"{resumed_run['out']}.rejects.csv"))


def test_the_job_size_and_a_named_cluster_choose_the_path(monkeypatch, tmp_path):
    from blackboard import local_stages
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as in a fresh CLI process: no Ray joined
    # The limit follows the cores: the measured one on 2, smaller where Ray has more processes to
    # gain from, never under the floor.
    assert local_stages.local_max_work(2) == local_stages.LOCAL_WORK_ON_2_CORES
    assert local_stages.local_max_work(8) < local_stages.local_max_work(4) < local_stages.local_max_work(2)
    assert local_stages.local_max_work(64) == local_stages.LOCAL_MIN_WORK
    monkeypatch.setattr(local_stages, "local_cpus", lambda: [2.0])
    images = [f"{i}.jpg" for i in range(local_stages.local_max_work())]
    assert local_stages.runs_locally(images, None)
    assert not local_stages.runs_locally(images + ["one-more.jpg"], None)
    assert not local_stages.runs_locally(["a.mp4"] * (len(images) // local_stages.VIDEO_WEIGHT + 1), None)
    assert not local_stages.runs_locally(images[:3], "local")  # --ray-address always means Ray
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert not local_stages.runs_locally(images[:3], None)
