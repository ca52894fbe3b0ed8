"""The resumable output of `fakeface batch`: a plan, one part per shard, and the final assembly.

The inputs are cut into shards of ``--shard-size`` files, fixed once in ``OUT.parts/plan.json``.
The driver collects each shard's rows (`ShardState`, de-duplicated by input, frame and face, so
a retried Ray task cannot add a row twice) and writes ``OUT.parts/shard-NNNNN.parquet`` by temp
file + rename as soon as every input of the shard is complete. ``--resume`` skips the shards
already on disk; the final ``OUT`` (and ``OUT.rejects.csv``) is assembled from the parts and
renamed into place, so a killed run never leaves a partial output and never loses a row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.atomic import atomic_write
from fakeface.batch_config import BatchConfig, BatchError

PLAN_FORMAT = 1
PLAN_FILE = "plan.json"


def output_columns(agents: Sequence[str]):
    """The pyarrow schema of the output rows (the parts' schema too)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),  # absolute path of the input file
            ("kind", pa.string()),  # "image", "frame" (one video frame) or "video" (verdict)
            ("frame", pa.int32()),  # frame number in the video; -1 for images and verdicts
            ("time_s", pa.float32()),  # frame time in seconds; NaN for images and verdicts
            ("face_index", pa.int32()),  # face number in the image/frame; -1 = no face / verdict
            ("box_x", pa.float32()), ("box_y", pa.float32()), ("box_w", pa.float32()), ("box_h", pa.float32()),
            ("face_confidence", pa.float32()),  # detector confidence (1.0 when used as a crop)
            ("aligned", pa.bool_()),  # crop rotated upright from the eye landmarks
        ]
        + [(f"{a}_p_fake", pa.float32()) for a in agents]
        + [
            ("p_fake", pa.float32()),  # ensemble probability of fake
            ("label", pa.string()),  # "real" / "fake" / "uncertain" (see reason); "" when there is no face
            ("threshold", pa.float32()),  # threshold on p_fake used for the label
            ("degraded", pa.bool_()),  # an agent's vote is missing
            ("status", pa.string()),  # "ok", "no_face" (or "rejected", rejects file only)
            ("combiner", pa.string()),  # "controller:<version>" or "mean" (bundle has no controller)
            ("bundle_version", pa.string()),  # content id of the model bundle
            ("node_id", pa.string()),  # Ray node that detected the face (cluster diagnostics)
            ("reason", pa.string()),  # why: label "uncertain" (e.g. "too small"), no_face, rejected
        ]
    )


def shard_path(parts: Path, shard: int) -> Path:
    """Where shard number ``shard`` of a job is written, in its parts folder."""
    return parts / f"shard-{shard:05d}.parquet"


def prepare_plan(cfg: BatchConfig, *, inputs: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Creates ``OUT.parts/plan.json``, or checks that a resumed run matches it.

    Raises:
        BatchError: leftover parts without --resume, or a resume with other inputs/settings.
    """
    parts, plan_path = cfg.parts_dir, cfg.parts_dir / PLAN_FILE
    plan = {"format": PLAN_FORMAT, "shard_size": cfg.shard_size, "settings": settings, "inputs": list(inputs)}
    if parts.exists() and not cfg.resume:
        raise BatchError(
            f"{parts} holds the shards of an earlier run; pass --resume to finish (or re-export) it, "
            f"or delete {parts} to start over."
        )
    if cfg.resume and plan_path.is_file():
        try:
            old = json.loads(plan_path.read_text())
            if not isinstance(old, dict):
                raise ValueError(f"a JSON {type(old).__name__}, not an object")
        except (ValueError, UnicodeDecodeError, OSError) as err:  # plan.json is written then renamed: not ours
            raise BatchError(f"--resume: {plan_path} is not a plan this command wrote ({err}); delete {parts} "
                             "to start over.") from err
        if old.get("inputs") != plan["inputs"]:
            raise BatchError(
                f"--resume: the inputs differ from those in {plan_path} ({len(old.get('inputs', []))} planned, "
                f"{len(inputs)} now); restore the input or delete {parts} to start over."
            )
        if old.get("settings") != settings or old.get("shard_size") != cfg.shard_size:
            raise BatchError(
                f"--resume: settings {settings} (shard size {cfg.shard_size}) differ from the interrupted run's "
                f"{old.get('settings')} (shard size {old.get('shard_size')}) in {plan_path}; rerun with those, "
                f"or delete {parts} to start over."
            )
        return old
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(plan_path, lambda tmp: tmp.write_text(json.dumps(plan)))
    return plan


def video_verdicts(rows, agents: Sequence[str]):
    """One `kind="video"` row per video: its frame rows tracked and judged by the one video
    rule, `vision.video.VIDEO_RULE` (the same as `fakeface classify`).

    Each agent's column is that agent's mean over the video's faces.
    """
    import pandas as pd

    from vision.video import track_video

    frames = rows[rows["kind"] == "frame"]
    out = []
    for source, g in frames.groupby("source", sort=False):
        faces = g[g["status"] == "ok"]
        base = g.iloc[0]
        row = {c: np.nan for c in rows.columns}
        row.update(source=source, kind="video", frame=-1, time_s=np.nan, face_index=-1, aligned=False,
                   threshold=base["threshold"], combiner=base["combiner"], bundle_version=base["bundle_version"],
                   node_id="", reason="", input_index=base["input_index"])
        per_frame = [[{"box": (f.box_x, f.box_y, f.box_w, f.box_h), "p_fake": float(f.p_fake),
                       "threshold": float(f.threshold), "verdict": f.label, "reason": getattr(f, "reason", ""),
                       "degraded": bool(f.degraded), "votes": {}} for f in fr.itertuples() if f.status == "ok"]
                     for _, fr in g.groupby("frame", sort=True)]
        _, video = track_video(per_frame)
        if video["p_fake"] is not None or video["verdict"] == "uncertain":
            row.update(p_fake=np.nan if video["p_fake"] is None else video["p_fake"], label=video["verdict"],
                       reason=video["reason"], degraded=bool(faces["degraded"].any()), status="ok",
                       threshold=base["threshold"] if video["threshold"] is None else video["threshold"],
                       **{f"{a}_p_fake": float(faces[f"{a}_p_fake"].mean()) for a in agents})
        else:
            row.update(p_fake=np.nan, label="", degraded=False, status="no_face")
        out.append(row)
    return pd.DataFrame(out, columns=rows.columns)


def write_shard(path: Path, frames: list, agents: Sequence[str]) -> int:
    """Sorts a complete shard's rows, adds video verdicts and writes the part atomically."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pd.concat(frames, ignore_index=True)
    rows = pd.concat([rows, video_verdicts(rows, agents)], ignore_index=True)
    # Verdict rows follow their video's frames; everything else in input order.
    rows["_verdict"] = rows["kind"] == "video"
    rows = rows.sort_values(["input_index", "_verdict", "frame", "face_index"], kind="stable")
    schema = output_columns(agents)
    table = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
    table = table.replace_schema_metadata(None)  # pandas metadata would describe the dropped index
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return len(rows)


class ShardState:
    """Rows collected for one shard, keyed so that a duplicate row is dropped."""

    def __init__(self, inputs: Sequence[int]):
        self.expected: dict[int, int | None] = {i: None for i in inputs}
        self.seen: dict[int, set] = {i: set() for i in inputs}
        self.frames: list = []

    def add(self, rows) -> None:
        keep = []
        for pos, (idx, frame, face, n) in enumerate(
            zip(rows["input_index"], rows["frame"], rows["face_index"], rows["rows_for_input"])
        ):
            key = (int(frame), int(face))
            if key not in self.seen[int(idx)]:
                self.seen[int(idx)].add(key)
                self.expected[int(idx)] = int(n)
                keep.append(pos)
        if keep:
            self.frames.append(rows.iloc[keep])

    @property
    def complete(self) -> bool:
        return all(n is not None and len(self.seen[i]) == n for i, n in self.expected.items())


def assemble(cfg: BatchConfig, *, n_shards: int, agents: Sequence[str]) -> tuple[int, int]:
    """Concatenates the parts into OUT and OUT.rejects.csv (each renamed into place).

    Returns:
        (output rows, rejected inputs).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = output_columns(agents)
    tables = [pq.read_table(shard_path(cfg.parts_dir, s)) for s in range(n_shards)]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    rejected = pc.equal(table["status"], "rejected")
    rejects = table.filter(rejected).select(["source", "reason"]).rename_columns(["path", "reason"])
    rows = table.filter(pc.invert(rejected)).select(schema.names)
    if cfg.fmt == "parquet":
        atomic_write(cfg.output, lambda tmp: pq.write_table(rows, tmp))
    else:
        atomic_write(cfg.output, lambda tmp: pacsv.write_csv(rows, tmp))
    atomic_write(cfg.rejects_path, lambda tmp: pacsv.write_csv(rejects, tmp))
    return rows.num_rows, rejects.num_rows

