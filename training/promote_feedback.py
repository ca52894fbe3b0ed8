"""`fakeface promote-feedback`: the operator's offline promotion of a feedback log (no server needed).

Fits a candidate from the bundle's own controller on every request id of the log (each counted
once), and writes it as the live version into ``controller-state/`` beside the log only when the
distinct-client and case minimums and the replay guard pass (`blackboard.feedback_promotion`). A
server started on that log serves it; a running one picks it up on its next start (or use the
page's ``POST /api/admin/promote`` to promote live). ``--list`` shows the versions,
``--rollback VERSION`` makes one live again.

    fakeface promote-feedback --feedback-log ~/.local/state/fakeface/feedback.jsonl [--min-clients 5]
"""

from __future__ import annotations

import argparse
import json

from agents.bundle import BundleError, load_bundle
from agents.command_line import add_bundle_arg, command_parser
from blackboard.controller_state import ControllerState, StateError, state_folder_for
from blackboard.controllers.store import load_controller, load_replay
from blackboard.feedback_promotion import PromotionRule, promote_from_log
from training.cli_args import run_command


def build_parser(prog: str = "fakeface promote-feedback") -> argparse.ArgumentParser:
    parser = command_parser(prog, __doc__)
    parser.add_argument("--feedback-log", required=True, help="the server's feedback JSONL")
    add_bundle_arg(parser, help="model bundle the server runs (default: the shipped one)")
    parser.add_argument("--min-clients", type=int, default=PromotionRule.min_clients,
                        help="distinct clients the feedback must come from")
    parser.add_argument("--min-cases", type=int, default=PromotionRule.min_cases,
                        help="distinct answers (request ids) with votes the feedback must cover")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the versions and exit")
    group.add_argument("--rollback", metavar="VERSION", help="make this version live again and exit")
    return parser


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    base = load_controller(bundle)
    if base is None:
        raise ValueError(f"Bundle {bundle.path} has no controller; run `fakeface fit-controller` first.")
    state = ControllerState(state_folder_for(args.feedback_log), bundle.version, base.version)
    if args.list:
        print(json.dumps(state.versions(), indent=2))
        return 0
    if args.rollback:
        state.rollback(args.rollback)
        print(f"live controller: {state.active} (a running server serves it after its next start)")
        return 0
    result = promote_from_log(base, load_replay(bundle), args.feedback_log,
                              PromotionRule(min_clients=args.min_clients, min_cases=args.min_cases))
    if result.promoted:
        state.promote(result.controller, {"cases": result.cases, "clients": result.clients,
                                          "replay_auc_base": result.replay_auc_live,
                                          "replay_auc": result.replay_auc_candidate, "by": "promote-feedback"})
    print(json.dumps(result.to_dict(), indent=2))
    return 0 if result.promoted else 1


def main(argv: list[str]) -> int:
    """Entry point; errors are one line and exit code 2 (1 = nothing promoted)."""
    return run_command("fakeface promote-feedback", run, build_parser().parse_args(argv),
                       (BundleError, StateError, ValueError, OSError))
