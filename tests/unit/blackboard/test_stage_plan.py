"""How the stages are laid out on Ray Data: CPU shares that pack, the default agent sets, quiet output."""

from __future__ import annotations

import pytest

from blackboard.stage_plan import cpu_per_actor, plan_stages, ray_data_output


@pytest.mark.parametrize("nodes,actors", [([2.0], 5), ([2.0], 8), ([1.0, 1.0], 6), ([1.0, 1.0], 5),
                                          ([0.0, 4.0, 4.0], 14), ([16.0], 8)])
def test_actor_cpus_pack_onto_the_nodes(nodes, actors):
    """Every actor of every pool fits at once (whole CPUs per actor would deadlock 2 CPUs)."""
    share = cpu_per_actor(nodes, actors)
    assert 0 < share <= 1.0
    assert sum(int(0.9 * c / share + 1e-9) for c in nodes) >= actors
    assert share * actors <= 0.9 * sum(nodes) + 1e-9


@pytest.mark.parametrize("nodes,expected_sets,expected_threads", [([2.0], 2, 1), ([1.0, 1.0], 2, 1),
                                                                 ([64.0], 16, 4), ([0.5], 1, 1)])
def test_default_layout_is_one_agent_set_per_cpu(nodes, expected_sets, expected_threads):
    plan = plan_stages(nodes, bundle=None, agents=("a", "b", "c"), detect="off", other_actors=1)
    assert (plan.agent_set_actors, plan.threads) == (expected_sets, expected_threads)
    assert plan.spread == (len(nodes) > 1)
    n_actors = plan.face_actors + plan.agent_set_actors + 1
    assert sum(int(0.9 * c / plan.cpus_per_actor + 1e-9) for c in nodes) >= n_actors  # all fit at once
    pools = plan_stages(nodes, bundle=None, agents=("a", "b", "c"), detect="off", agent_actors=(1, 2, 1))
    assert pools.agent_set_actors == 0 and pools.agent_actors == (1, 2, 1) and pools.threads >= 1
    # A job of one batch gets one agent set, with the threads the others would have had.
    small = plan_stages(nodes, bundle=None, agents=("a", "b", "c"), detect="off", other_actors=1, max_agent_sets=1)
    assert small.agent_set_actors == 1 and small.threads == max(1, int(sum(nodes)))


def test_ray_data_advice_is_quiet_unless_verbose():
    """Without --verbose, Ray Data's "Progress bars disabled..." warning is not printed beside
    our own bar (its logger, as the installed Ray names it, is raised to ERROR); with it, it is."""
    import logging

    import ray.data._internal.execution.streaming_executor as ray_executor
    import ray.data._internal.progress as ray_progress

    # The loggers Ray Data writes those lines to, as the installed Ray names them.
    advice, finished = ray_progress.logger, ray_executor.logger
    try:
        ray_data_output(False)
        assert not advice.isEnabledFor(logging.WARNING) and not finished.isEnabledFor(logging.INFO)
        assert finished.isEnabledFor(logging.WARNING)  # its real warnings still show
        ray_data_output(True)
        assert advice.isEnabledFor(logging.WARNING) and finished.isEnabledFor(logging.INFO)
    finally:
        ray_data_output(False)



def test_the_face_stage_gets_an_actor_per_cpu_where_faces_are_detected():
    from blackboard.stage_plan import AUTO_MAX_FACE_ACTORS, auto_face_actors

    assert auto_face_actors([2.0], "auto") == auto_face_actors([2.0], "on") == 2  # MTCNN: most of a photo's cost
    assert auto_face_actors([2.0], "off") == 1  # crops used whole: decoding only
    assert auto_face_actors([1.0, 1.0], "auto") == 2 and auto_face_actors([0.5], "auto") == 1
    assert auto_face_actors([64.0], "auto") == AUTO_MAX_FACE_ACTORS
    # Asked for, a size is kept; left open (0 or absent), the plan sizes it.
    assert plan_stages([2.0], bundle=None, agents=("a",), detect="auto", face_actors=3).face_actors == 3
    assert plan_stages([2.0], bundle=None, agents=("a",), detect="auto", face_actors=0).face_actors == 2
    assert plan_stages([2.0], bundle=None, agents=("a",), detect="off").face_actors == 1
    # No more than an image-only job has batches: an actor without one would sit idle.
    assert plan_stages([4.0], bundle=None, agents=("a",), detect="auto", max_agent_sets=2).face_actors == 2
