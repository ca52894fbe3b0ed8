"""The stages in this process: blocks side by side on threads (or forked worker processes for a
large job), in input order, Keras kept to one caller."""

from __future__ import annotations

import os
import sys
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

from blackboard import local_stages
from blackboard.stage_plan import plan_stages
from blackboard.stage_rows import OK, REJECTED


@pytest.mark.parametrize("cpus, blocks, expected", [
    (2, 8, (2, 1)),    # two blocks at once, each model on one core
    (2, 1, (1, 2)),    # one block: its models use both cores
    (1, 5, (1, 1)),
    (3, 2, (2, 1)),    # never more workers than blocks
    (16, 100, (local_stages.LOCAL_MAX_WORKERS, 16 // local_stages.LOCAL_MAX_WORKERS)),
])
def test_workers_split_the_cores_between_blocks(cpus, blocks, expected, monkeypatch):
    monkeypatch.delenv(local_stages.WORKERS_ENV, raising=False)
    assert local_stages.local_workers(cpus, blocks) == expected


def test_the_environment_sets_the_blocks_at_once(monkeypatch):
    monkeypatch.setenv(local_stages.WORKERS_ENV, "1")
    assert local_stages.local_workers(2, 8) == (1, 2)  # one block at a time, its models on both cores
    monkeypatch.setenv(local_stages.WORKERS_ENV, "3")
    assert local_stages.local_workers(2, 2) == (2, 1)  # never more than the blocks
    monkeypatch.setenv(local_stages.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="FAKEFACE_LOCAL_WORKERS must be a whole number >= 1, received 'two'"):
        local_stages.local_workers(2, 8)


def test_workers_refuse_no_cores_or_no_blocks():
    with pytest.raises(ValueError, match="received cpus=0, blocks=3"):
        local_stages.local_workers(0, 3)
    with pytest.raises(ValueError, match="received cpus=2, blocks=0"):
        local_stages.local_workers(2, 0)


def test_parts_come_back_in_order_with_a_bounded_lead():
    started: list[int] = []
    lead = []

    def run(part: int) -> int:
        started.append(part)
        time.sleep(0.002 * (8 - part % 8))  # later parts finish first
        return part * 10

    results = []
    for value in local_stages._ordered(run, list(range(24)), workers=2):
        results.append(value)
        lead.append(len(started) - len(results))
    assert results == [10 * p for p in range(24)]
    assert max(lead) <= 2 * 2  # never more than twice the workers started ahead of the caller


def test_a_failing_part_fails_the_run():
    def run(part: int) -> int:
        if part == 3:
            raise RuntimeError("block 3 broke")
        return part

    with pytest.raises(RuntimeError, match="block 3 broke"):
        list(local_stages._ordered(run, list(range(8)), workers=2))


def test_a_reader_that_stops_early_waits_only_for_the_running_parts():
    started: list[int] = []

    def run(part: int) -> int:
        started.append(part)
        time.sleep(0.0 if part == 0 else 0.5)
        return part

    parts = local_stages._ordered(run, list(range(20)), workers=2)
    assert next(parts) == 0  # five parts queued by now: 0 done at once, 1 and 2 running, 3 and 4 waiting
    parts.close()
    # 2 may or may not have started when the reader stopped; 3 and 4 were cancelled, not run.
    assert {0, 1} <= set(started) <= {0, 1, 2}


def _plan(bundle):
    return plan_stages([2.0], bundle=str(bundle), agents=("custom", "lenet"), detect="off", all_faces=False,
                       batch_size=4, max_agent_sets=1)


def _crop_items(tmp_path, face_crop, n: int) -> list[dict]:
    items = []
    for i in range(n):
        path = tmp_path / f"crop{i}.png"
        shifted = np.roll(face_crop, 3 * i, axis=1)  # each crop its own pixels, so its own votes
        cv2.imwrite(str(path), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR))
        items.append({"source": str(path), "input_index": i, "shard": 0})
    (tmp_path / "bad.png").write_bytes(b"not an image")
    items.append({"source": str(tmp_path / "bad.png"), "input_index": n, "shard": 0})
    return items


@pytest.mark.slow  # loads the tiny bundle's three agents twice
def test_blocks_on_two_threads_give_the_rows_of_one_block_after_another(tmp_path, face_crop, tiny_bundle,
                                                                         monkeypatch):
    items = _crop_items(tmp_path, face_crop, 7)
    plan = _plan(tiny_bundle)
    workers = []
    ordered = local_stages._ordered
    monkeypatch.setattr(local_stages, "_ordered", lambda run, parts, n: workers.append(n) or ordered(run, parts, n))
    runs = {}
    for cpus in (1.0, 2.0):
        monkeypatch.setattr(local_stages, "local_cpus", lambda cpus=cpus: [cpus])
        frames = list(local_stages.run_stages(items, plan, blocks=4))
        runs[cpus] = pd.concat(frames, ignore_index=True)
    assert workers == [1, 2]
    one, two = runs[1.0], runs[2.0]
    assert list(two["input_index"]) == list(range(8))  # input order, whatever block finished first
    assert list(two["status"]) == [OK] * 7 + [REJECTED]
    pd.testing.assert_frame_equal(one, two)
    assert two.loc[two["status"] == OK, "custom_p_fake"].nunique() > 1  # real votes, not one constant


def test_a_keras_model_is_never_called_from_two_threads_at_once(tmp_path, face_crop, monkeypatch):
    from blackboard import agent_stages

    inside, most = [0], [0]
    lock = threading.Lock()

    class KerasAgents:  # stands in for a bundle without ONNX exports
        thread_safe = False

        def __init__(self, **_):
            pass

        def __call__(self, batch):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return {**batch, "custom_p_fake": np.full(len(batch["status"]), 0.5, np.float32)}

    monkeypatch.setattr(agent_stages, "AgentSetStage", KerasAgents)
    monkeypatch.setattr(local_stages, "local_cpus", lambda: [2.0])
    plan = plan_stages([2.0], bundle=None, agents=("custom",), detect="off", all_faces=False, batch_size=2,
                       max_agent_sets=1)
    frames = list(local_stages.run_stages(_crop_items(tmp_path, face_crop, 6), plan, blocks=4))
    assert sum(len(f) for f in frames) == 7 and most[0] == 1


class _StampPid:
    """An after-stage that stamps each row with the process that ran its block."""

    def __call__(self, batch):
        return {**batch, "pid": np.full(len(batch["status"]), os.getpid())}


class _ExitAbruptly:
    """An after-stage whose worker ends without a word (as one the kernel kills for memory)."""

    def __call__(self, batch):
        os._exit(3)


class _SlowAfterTheFirst:
    """An after-stage that takes a minute on every block but the one holding input 0."""

    def __call__(self, batch):
        if 0 not in set(np.asarray(batch["input_index"]).tolist()):
            time.sleep(60)
        return batch


@pytest.fixture
def on_processes(monkeypatch):
    """Two cores, and worker processes for a job of any size."""
    monkeypatch.setattr(local_stages, "local_cpus", lambda: [2.0])
    monkeypatch.setattr(local_stages, "LOCAL_PROCESS_MIN", 1)
    monkeypatch.delenv(local_stages.PROCESSES_ENV, raising=False)


@pytest.mark.slow  # loads the tiny bundle's agents in this process and in two workers
def test_a_large_job_runs_its_blocks_on_worker_processes_with_the_rows_of_threads(tmp_path, face_crop, tiny_bundle,
                                                                                   on_processes, monkeypatch):
    items = _crop_items(tmp_path, face_crop, 7)  # 8 inputs with the unreadable one
    runs, frames = {}, {}
    for switch in ("0", ""):
        monkeypatch.setenv(local_stages.PROCESSES_ENV, switch)
        frames[switch] = list(local_stages.run_stages(items, _plan(tiny_bundle), blocks=4, after=_StampPid))
        runs[switch] = pd.concat(frames[switch], ignore_index=True)
    threads, processes = runs["0"], runs[""]
    # The processes' last two blocks (of 2 inputs) came back in pieces of one; the rows are the same.
    assert [len(f) for f in frames["0"]] == [2, 2, 2, 2] and [len(f) for f in frames[""]] == [2, 2, 1, 1, 1, 1]
    assert set(threads["pid"]) == {os.getpid()}
    assert os.getpid() not in set(processes["pid"])  # every block ran in a worker process
    assert list(processes["input_index"]) == list(range(8))
    assert list(processes["status"]) == [OK] * 7 + [REJECTED]
    pd.testing.assert_frame_equal(threads.drop(columns="pid"), processes.drop(columns="pid"))


def test_the_last_blocks_of_a_job_on_processes_are_cut_finer_in_order():
    items = [{"input_index": i} for i in range(100)]
    cut = local_stages._blocks(items, 5)
    finer = local_stages._finer_tail(cut, 2)
    assert finer[:3] == cut[:3]
    assert len(finer) == 3 + 2 * local_stages.TAIL_PIECES
    assert [item for piece in finer for item in piece] == items
    assert max(map(len, finer[3:])) - min(map(len, finer[3:])) <= 1
    # Fewer blocks than workers: every block is cut; pieces are never empty.
    assert [len(p) for p in local_stages._finer_tail(local_stages._blocks(items[:3], 1), 2)] == [1, 1, 1]


def test_worker_processes_detect_with_the_compiled_loops_and_threads_without(monkeypatch, on_processes):
    setups = []
    monkeypatch.setattr(local_stages, "uses_processes", lambda n, bundle, agents: n >= 4)
    monkeypatch.setattr(local_stages, "_ordered_in_processes", lambda setup, parts, workers: setups.append(setup) or [])
    monkeypatch.setattr(local_stages, "_block_runner", lambda **setup: setups.append(setup) or (lambda block: block))
    plan = SimpleNamespace(detect="on", bundle="", agents=())
    items = [{"source": f"{i}.png", "input_index": i, "shard": 0} for i in range(4)]
    for n in (4, 2):  # worker processes, then two threads
        list(local_stages.run_stages(items[:n], plan, blocks=2))
    assert setups[0]["compiled_loops"] is True and setups[0]["detector"]
    assert "compiled_loops" not in setups[1]  # _block_runner's default: NumPy's loops


def test_small_jobs_the_switch_and_keras_models_keep_blocks_on_threads(tiny_bundle, monkeypatch):
    monkeypatch.delenv(local_stages.PROCESSES_ENV, raising=False)
    agents = ("custom", "lenet")
    assert local_stages.uses_processes(local_stages.LOCAL_PROCESS_MIN, str(tiny_bundle), agents)
    assert not local_stages.uses_processes(local_stages.LOCAL_PROCESS_MIN - 1, str(tiny_bundle), agents)
    monkeypatch.setenv(local_stages.PROCESSES_ENV, "0")
    assert not local_stages.uses_processes(local_stages.LOCAL_PROCESS_MIN, str(tiny_bundle), agents)
    monkeypatch.delenv(local_stages.PROCESSES_ENV)
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(is_initialized=lambda: True))  # a Ray driver
    assert not local_stages.uses_processes(local_stages.LOCAL_PROCESS_MIN, str(tiny_bundle), agents)
    monkeypatch.setitem(sys.modules, "ray", None)
    from agents import bundle as bundle_module

    keras_only = SimpleNamespace(agent=lambda name: SimpleNamespace(kind="keras", onnx_file=""))
    monkeypatch.setattr(bundle_module, "load_bundle", lambda path: keras_only)
    assert not local_stages.uses_processes(local_stages.LOCAL_PROCESS_MIN, str(tiny_bundle), agents)


@pytest.mark.slow  # loads the tiny bundle's agents in a worker
def test_a_worker_that_dies_ends_the_job_with_a_way_out(tmp_path, face_crop, tiny_bundle, on_processes):
    items = _crop_items(tmp_path, face_crop, 3)
    with pytest.raises(RuntimeError, match=f"ended without a result.*{local_stages.PROCESSES_ENV}=0"):
        list(local_stages.run_stages(items, _plan(tiny_bundle), blocks=2, after=_ExitAbruptly))


@pytest.mark.slow  # loads the tiny bundle's agents in two workers
def test_a_reader_that_stops_early_ends_the_workers_at_once(tmp_path, face_crop, tiny_bundle, on_processes):
    import multiprocessing

    items = _crop_items(tmp_path, face_crop, 7)
    frames = local_stages.run_stages(items, _plan(tiny_bundle), blocks=4, after=_SlowAfterTheFirst)
    assert 0 in set(next(frames)["input_index"])
    started = time.perf_counter()
    frames.close()  # as a failed write or Ctrl-C would: the blocks still running are not waited for
    assert time.perf_counter() - started < 10
    assert not multiprocessing.active_children()
