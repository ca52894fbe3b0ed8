"""A batch job's plan (`fakeface.batch_shards`): a damaged plan.json on --resume is a clear refusal."""

from __future__ import annotations

import pytest

from fakeface.batch_config import BatchError, build_parser, config_from_args
from fakeface.batch_shards import prepare_plan


@pytest.mark.parametrize("content", ['{"inputs": ["a.jpg"', "[1, 2]", b"\xff\xfe"], ids=["torn", "list", "binary"])
def test_a_plan_that_is_not_ours_is_refused_and_left_in_place(tmp_path, content):
    cfg = config_from_args(build_parser().parse_args(
        ["--input", str(tmp_path), "--output", str(tmp_path / "o.parquet"), "--resume"]))
    cfg.parts_dir.mkdir()
    plan = cfg.parts_dir / "plan.json"
    plan.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BatchError, match=r"--resume: .*plan.json is not a plan this command wrote .*delete"):
        prepare_plan(cfg, inputs=["a.jpg"], settings={})
    assert plan.read_bytes() == (content if isinstance(content, bytes) else content.encode())
