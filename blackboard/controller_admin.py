"""The operator's controls over the live controller: promote from feedback, roll back, list.

`ControllerAdmin` ties a running board (`blackboard.board.Board`), its feedback log and the
persisted state (`blackboard.controller_state`) together. Nothing here runs on a visitor's
request: the web page's admin endpoints call it only with the server's token.

A candidate is always fitted from the bundle's own controller on every request id of the log
(`blackboard.feedback_promotion`), and judged against that same controller on the replay set.
So promoting twice does not count feedback twice, and a chain of promotions cannot walk the
live controller away from what val says, one small step at a time.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from blackboard.controller_state import ControllerState, StateError, state_folder_for
from blackboard.feedback_promotion import PromotionResult, PromotionRule, promote_from_log

log = logging.getLogger("fakeface.server")


class ControllerAdmin:
    """Promotion and rollback for one board, persisted next to its feedback log.

    Args:
        board: the running board (an `Ensemble` or `InProcessBoard`) with a fitted controller.
        feedback_log: the feedback log's path; the state lives in its sibling ``controller-state``.
        rule: the default promotion rule.

    Raises:
        ValueError: the board has no controller (mean voting has nothing to promote).
    """

    def __init__(self, board: Any, feedback_log: str | os.PathLike[str], rule: PromotionRule = PromotionRule()) -> None:
        base = getattr(board, "base_controller", board.controller)
        if base is None:
            raise ValueError("The bundle has no controller; fit one with `fakeface fit-controller` before "
                             "promoting feedback.")
        self.board = board
        self.log_path = Path(feedback_log)
        self.rule = rule
        self.base = base  # the bundle's own, whatever is live now: every candidate starts here
        self.state = ControllerState(state_folder_for(self.log_path), board.bundle_version, self.base.version)
        self._lock = threading.Lock()

    def restore(self) -> str:
        """Serves the persisted live version (after a restart); returns the version now live.

        A state that cannot be used (modified table) is logged and the bundle's controller kept:
        the server must still start.
        """
        try:
            controller = self.state.load()
        except StateError as err:
            log.error("promoted controller not restored; serving the bundle's own",
                      extra={"fields": {"reason": str(err)}})
            return self.board.controller_version
        self.board.set_controller(controller if controller is not None else self.base)
        if controller is not None:
            log.info("promoted controller restored", extra={"fields": {"version": controller.version}})
        return self.board.controller_version

    def promote(self, rule: PromotionRule | None = None) -> PromotionResult:
        """Fits a candidate from the whole feedback log and makes it live if the rule allows."""
        with self._lock:
            if not self.log_path.is_file():
                return PromotionResult(False, self.board.controller, "not promoted: the feedback log is empty", 0, 0)
            result = promote_from_log(self.base, self.board.replay, self.log_path, rule or self.rule)
            if not result.promoted:
                return PromotionResult(False, self.board.controller, result.detail, result.cases, result.clients,
                                       result.replay_auc_live, result.replay_auc_candidate)
            self.state.promote(result.controller, {"cases": result.cases, "clients": result.clients,
                                                   "replay_auc_base": result.replay_auc_live,
                                                   "replay_auc": result.replay_auc_candidate})
            self.board.set_controller(result.controller)
            log.warning("controller promoted by an operator", extra={"fields": result.to_dict()})
            return result

    def rollback(self, version: str) -> str:
        """Makes a known version live (the bundle's own or a promoted one); returns it.

        Raises:
            StateError: unknown version, or its stored table was modified.
        """
        with self._lock:
            controller = self.state.rollback(version)
            live = self.board.set_controller(controller if controller is not None else self.base)
            log.warning("controller rolled back by an operator", extra={"fields": {"version": live}})
            return live

    def versions(self) -> list[dict[str, Any]]:
        """The bundle's version and every promoted one, the live one marked ``active``."""
        return self.state.versions()
