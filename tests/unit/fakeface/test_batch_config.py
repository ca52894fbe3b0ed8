"""`fakeface batch`'s command line: formats from the suffix, pool sizes, layouts that conflict."""

from __future__ import annotations

import pytest

from fakeface.batch_config import BatchError, build_parser, config_from_args, parse_pool_sizes


def test_batch_output_format_follows_the_suffix_and_refuses_mismatches(tmp_path):
    def config(*extra):
        return config_from_args(build_parser().parse_args(["--input", str(tmp_path), *extra]))

    assert config("--output", str(tmp_path / "r.csv")).fmt == "csv"
    assert config("--output", str(tmp_path / "r.parquet")).fmt == "parquet"
    assert config("--output", str(tmp_path / "r")).fmt == "parquet"
    with pytest.raises(BatchError, match="says csv but --format is parquet"):
        config("--output", str(tmp_path / "r.csv"), "--format", "parquet")
    with pytest.raises(BatchError, match="does not exist"):
        config("--output", str(tmp_path / "missing" / "r.csv"))


def test_pool_sizes_parse_and_conflicting_layouts_are_refused(tmp_path, tiny_bundle):
    assert parse_pool_sizes("2") == (2, ())
    assert parse_pool_sizes("1, vgg16=3,custom=2") == (1, (("vgg16", 3), ("custom", 2)))
    for bad in ("0", "vgg16=x", "1,vgg16=2,vgg16=3", "-1"):
        with pytest.raises(BatchError, match="--actors-per-agent"):
            parse_pool_sizes(bad)
    args = ["--input", str(tmp_path), "--output", str(tmp_path / "o.parquet"), "--bundle", str(tiny_bundle)]
    with pytest.raises(BatchError, match="two layouts"):
        config_from_args(build_parser().parse_args(args + ["--actors-per-agent", "2", "--agent-set-actors", "2"]))
    cfg = config_from_args(build_parser().parse_args(args + ["--actors-per-agent", "1,lenet=3"]))
    assert cfg.pool_sizes(["custom", "lenet"]) == (1, 3)
    with pytest.raises(BatchError, match="not agents of the bundle"):
        cfg.pool_sizes(["custom"])
    auto = config_from_args(build_parser().parse_args(args))
    assert auto.pool_sizes(["custom", "lenet"]) is None  # no per-agent pools asked for: agent sets

