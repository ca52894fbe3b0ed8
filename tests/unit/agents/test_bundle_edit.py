"""Editing a bundle's agents: taking a retrained one from another bundle, dropping one (agents/bundle_edit.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from agents import signing
from agents.bundle import BundleError, load_bundle
from agents.bundle_edit import drop_agents, swap_agents
from fakeface.bundle_cli import main as bundle_main


@pytest.fixture(scope="module")
def other_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with its lenet and custom recalibrated: a stand-in for retrained agents."""
    from agents.bundle import update_bundle

    path = tmp_path_factory.mktemp("other") / "b"
    shutil.copytree(tiny_bundle, path)
    update_bundle(path, agent_updates={"lenet": {"temperature": 2.5, "bias": -0.4}, "custom": {"threshold": 0.3}})
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
    assert swapped.agent("lenet").temperature == 2.5 and swapped.agent("lenet").bias == -0.4
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
    assert bundle_main(["swap-agent", "--bundle", str(target), "--from", str(other_bundle), "--agent", "lenet"]) == 0
    manifest = json.loads((target / "manifest.json").read_text())
    assert sorted(manifest["description"]["swapped_agents"]) == ["custom", "lenet"], "a second swap adds its name"
    assert bundle_main(["swap-agent", "--bundle", str(target), "--from", str(other_bundle), "--agent", "nope"]) == 1
    assert "no agent" in capsys.readouterr().err


def test_drop_removes_the_agent_its_file_and_the_votes_fitted_on_it(controlled_bundle, tmp_path):
    target = controlled_bundle()
    before = load_bundle(target, trust=signing.WRITER)
    dropped = drop_agents(target, ["lenet"], reason="at chance on dfdc-test", out_dir=tmp_path / "new")
    assert "lenet" not in dropped.manifest["agents"]
    assert set(dropped.manifest["agents"]) == set(before.manifest["agents"]) - {"lenet"}
    assert not (tmp_path / "new" / before.manifest["agents"]["lenet"]["file"]).exists()
    assert dropped.extra("controller") is None and not (tmp_path / "new" / "controller").exists()
    assert dropped.manifest["description"]["dropped_agents"] == {"lenet": "at chance on dfdc-test"}
    assert dropped.signer is None
    assert load_bundle(target, trust=signing.WRITER).manifest == before.manifest  # the input is untouched


def test_drop_refuses_an_unknown_agent_the_last_agent_and_no_reason(tiny_bundle, tmp_path):
    everyone = list(load_bundle(tiny_bundle, trust=signing.WRITER).manifest["agents"])
    for names, reason, match in ((["nope"], "why", "no agent"), (everyone, "why", "no agent"),
                                 (["lenet"], " ", "a reason")):
        with pytest.raises(BundleError, match=match):
            drop_agents(tiny_bundle, names, reason=reason, out_dir=tmp_path / "new")
        assert not (tmp_path / "new").exists()


def test_drop_agent_command_changes_the_bundle_in_place(tiny_bundle, tmp_path, capsys):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    assert bundle_main(["drop-agent", "--bundle", str(target), "--agent", "custom", "--reason", "at chance"]) == 0
    assert "fit-controller" in capsys.readouterr().out
    assert "custom" not in json.loads((target / "manifest.json").read_text())["agents"]
    assert bundle_main(["drop-agent", "--bundle", str(target), "--agent", "custom", "--reason", "x"]) == 1
    assert "no agent" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../victim.txt", "{outside}/victim.txt"], ids=["dot-dot", "absolute"])
def test_an_artefact_named_outside_the_bundle_is_refused_and_nothing_outside_is_touched(tiny_bundle, tmp_path, name):
    from agents.bundle_files import sha256_file

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    victim = tmp_path / "victim.txt"
    victim.write_text("not the bundle's")
    manifest = json.loads((bundle / "manifest.json").read_text())
    name = name.format(outside=tmp_path)
    manifest["agents"]["lenet"]["files"] = {name: sha256_file(victim)}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "manifest.json.sig").unlink()  # a hand-edited, unsigned bundle: the writers' policy loads those
    with pytest.raises(BundleError, match="victim.txt"):
        load_bundle(bundle, trust=signing.WRITER)
    with pytest.raises(BundleError, match="victim.txt"):
        drop_agents(bundle, ["lenet"], reason="retired", out_dir=tmp_path / "new")
    assert victim.read_text() == "not the bundle's" and not (tmp_path / "new").exists()
