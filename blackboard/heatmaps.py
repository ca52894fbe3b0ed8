"""Heat maps from the Serve replicas that already hold the agents' models.

Grad-CAM needs the agents' Keras models and TensorFlow. Rendered in the server process, that
process loaded TensorFlow and every model a second time (about 0.9 GiB resident, issue 26);
rendered here, in the agent replicas, the server process never imports TensorFlow. The replicas
vote on ONNX Runtime; an agent whose map is shown loads its Keras file on the first map (the
shipped CNNs' maps are withheld, so a replica of the shipped bundle never imports TensorFlow).

* `ReplicaHeatmaps` is the replica's side: a `vision.gradcam.GradCamRenderer` built on the
  replica's loaded models, run on a worker thread so the replica's event loop keeps answering
  health checks.
* `RemoteHeatmaps` is the server's side: the ``render_png`` the servicer calls, asking every
  agent application's ``heatmaps`` method at once and merging the answers per face.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from agents.bundle import Bundle
from vision.heatmap_quality import AgentMap

log = logging.getLogger("fakeface.heatmaps")
# A blank face crop's side for the warm-up render (the agents' inputs are at most this large).
WARM_SIDE = 224


class ReplicaHeatmaps:
    """Grad-CAM PNGs from a replica's own models, the renderer built on first use (or warm-up).

    Args:
        bundle: the loaded bundle the replica's agents come from.
        models: the replica's loaded models by agent name (only these agents are explained).
        withheld: agent -> why its maps are never shown (`GradCamRenderer`'s; None: the registry's).
    """

    def __init__(self, bundle: Bundle, models: Mapping[str, object], *,
                 withheld: Mapping[str, str] | None = None) -> None:
        if not models:
            raise ValueError("heat maps need at least one agent's model, received none.")
        self.bundle = bundle
        self.models = dict(models)
        self.withheld = None if withheld is None else dict(withheld)
        self._renderer: Any = None
        self._lock = threading.Lock()

    def renderer(self) -> Any:
        """The `GradCamRenderer` on this replica's models (Keras files loaded where a map needs one)."""
        with self._lock:
            if self._renderer is None:
                from vision.gradcam import GradCamRenderer

                self._renderer = GradCamRenderer(self.bundle, models=self.models, withheld=self.withheld)
            return self._renderer

    def render_png(self, crops: Sequence[np.ndarray]) -> list[dict[str, AgentMap]]:
        """One dict per crop: agent -> its tile (PNG), or why it is withheld."""
        return self.renderer().render_png(list(crops), agents=list(self.models))

    def warm_up(self) -> None:
        """Renders one blank crop, so the first face asked for pays no gradient-tape trace."""
        self.render_png([np.zeros((WARM_SIDE, WARM_SIDE, 3), dtype=np.uint8)])

    async def render_async(self, crops: Sequence[np.ndarray]) -> list[dict[str, AgentMap]]:
        """`render_png` on a worker thread (TensorFlow and Matplotlib release the GIL while they compute)."""
        return await asyncio.to_thread(self.render_png, crops)


class RemoteHeatmaps:
    """The server's heat-map renderer: the agent replicas render, this process only merges.

    Stands where a `GradCamRenderer` stood for the servicer (``render_png``). An application
    whose replica fails or is late leaves its agents' maps out of that answer (the votes are
    already decided; a heat map is an illustration), and the failure is logged.

    Args:
        handles: Serve handles of the agent applications (each has a ``heatmaps`` method).
        timeout_s: how long to wait for the replicas' maps.
    """

    def __init__(self, handles: Mapping[str, Any], *, timeout_s: float = 30.0) -> None:
        if not handles:
            raise ValueError("remote heat maps need at least one agent application, received none.")
        if float(timeout_s) <= 0:
            raise ValueError(f"timeout_s must be > 0, received {timeout_s!r}.")
        self.handles = dict(handles)
        self.timeout_s = float(timeout_s)

    def render_png(self, crops: Sequence[np.ndarray]) -> list[dict[str, AgentMap]]:
        """One dict per crop: agent -> its tile (PNG), or why it is withheld."""
        out: list[dict[str, AgentMap]] = [{} for _ in crops]
        if len(crops) == 0:
            return out
        crops = [np.asarray(crop) for crop in crops]
        responses = {name: handle.heatmaps.remote(crops) for name, handle in self.handles.items()}
        end = time.monotonic() + self.timeout_s  # one wait for all: the applications render at once
        for name, response in responses.items():
            try:
                maps = response.result(timeout_s=max(end - time.monotonic(), 0.0))
            except Exception:  # noqa: BLE001 - a lost or late replica costs its maps, not the answer
                response.cancel()
                log.warning("heat maps of %s missing from this answer", name, exc_info=True)
                continue
            for index, per_agent in enumerate(maps):
                out[index].update(per_agent)
        return out
