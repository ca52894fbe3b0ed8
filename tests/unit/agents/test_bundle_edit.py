"""Taking a retrained agent from one bundle into another (agents/bundle_edit.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from agents import signing
from agents.bundle import BundleError, load_bundle
from agents.bundle_edit import swap_agents
from fakeface.bundle_cli import main as bundle_main


@pytest.fixture(scope="module")
def other_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with its lenet and custom recalibrated: a stand-in for retrained agents."""
    from agents.bundle import update_bundle

    path = tmp_path_factory.mktemp("other") / "b"
    shutil.copytree(tiny_bundle, path)
    update_bundle(path, agent_updates={"lenet": {"temperature": 2.5}, "custom": {"threshold": 0.3}})
    (path / "logs").mkdir(exist_ok=True)
    return path


def test_swap_takes_the_agent_and_drops_what_was_fitted_on_the_old_votes(controlled_bundle, other_bundle, tmp_path):
    target = controlled_bundle()
    before = load_bundle(target, trust=signing.WRITER)
    assert before.extra("controller") is not None
    source = load_bundle(other_bundle, trust=signing.WRITER)

    swapped = swap_agents(target, other_bundle, ["lenet"], out_dir=tmp_path / "new")
    lenet = swapped.manifest["agents"]["lenet"]
    assert lenet == source.manifest["agents"]["lenet"] != before.manifest["agents"]["lenet"]
    assert swapped.manifest["agents"]["custom"] == before.manifest["agents"]["custom"]  # not asked for
    assert swapped.extra("controller") is None and swapped.extra("replay") is None
    assert not (tmp_path / "new" / "controller").exists()  # the controller's history went with it
    assert swapped.signer is None  # its files changed: only a trusted key may vouch for it again
    assert load_bundle(target, trust=signing.WRITER).manifest == before.manifest  # the input is untouched
    assert swapped.agent("lenet").temperature == 2.5
    assert swapped.load_model("lenet") is not None  # its file came along and matches the manifest


def test_swap_refuses_an_agent_the_source_lacks_and_leaves_nothing_behind(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="no agent"):
        swap_agents(tiny_bundle, tiny_bundle, ["forensic-v9"], out_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_swap_agent_command_changes_the_bundle_in_place(tiny_bundle, other_bundle, tmp_path, capsys):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    assert bundle_main(["swap-agent", "--bundle", str(target), "--from", str(other_bundle), "--agent", "custom"]) == 0
    assert "fit-controller" in capsys.readouterr().out
    manifest = json.loads((target / "manifest.json").read_text())
    assert list(manifest["description"]["swapped_agents"]) == ["custom"]
    assert bundle_main(["swap-agent", "--bundle", str(target), "--from", str(other_bundle), "--agent", "nope"]) == 1
    assert "no agent" in capsys.readouterr().err
