"""`fakeface feedback`: tell a running server that one of its answers is wrong.

The answer is named by the ``request_id`` that `fakeface classify --server ... --json` prints
(and the page shows in its evidence report); ``--face N`` names one face of a group picture. The
server stores the label as evidence beside the answer's votes and changes no answer: an operator
promotes the feedback later (README, "Feedback").

    fakeface feedback 3f2c... fake --face 1 --server 127.0.0.1:50051

Exit codes: 0 stored; 1 the server failed or could not be reached; 2 bad input (the server's
reason is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from fakeface.classify import TOKEN_ENV


def build_parser(prog: str = "fakeface feedback") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("request_id", help="the answer's request_id (classify --json prints it)")
    parser.add_argument("label", type=str.lower, choices=("real", "fake"), help="what the picture or face really is")
    parser.add_argument("--face", type=int, default=None, metavar="N",
                        help="the face of the answer the label is for (its index, 0 first); "
                             "None: the whole picture")
    parser.add_argument("--server", metavar="HOST:PORT", required=True, help="the `fakeface serve` that answered")
    parser.add_argument("--token", default=None, help=f"bearer token for --server (None: ${TOKEN_ENV})")
    parser.add_argument("--tls-ca", default=None, help="PEM certificate to trust for a TLS --server")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the call")
    parser.add_argument("--json", action="store_true", help="print the server's acknowledgement as JSON")
    return parser


def main(argv: list[str]) -> int:
    """Sends one label; prints what the server did with it."""
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print(f"fakeface feedback: --timeout must be positive, received {args.timeout}.", file=sys.stderr)
        return 2
    if args.tls_ca and not os.path.isfile(args.tls_ca):
        print(f"fakeface feedback: --tls-ca {args.tls_ca}: no such file.", file=sys.stderr)
        return 2
    from fakeface.client import ClientError, DetectorClient

    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        with DetectorClient(args.server, token=token, tls_ca=args.tls_ca, timeout_s=args.timeout) as client:
            ack = client.feedback(args.request_id, args.label, face_index=args.face)
    except ValueError as err:  # the client checks --face before any call
        print(f"fakeface feedback: --face: {err}", file=sys.stderr)
        return 2
    except ClientError as err:
        print(f"fakeface feedback: {err}", file=sys.stderr)
        return err.exit_code
    if args.json:
        print(json.dumps({"stored": ack.stored, "applied": ack.applied, "detail": ack.detail,
                          "controller_version": ack.controller_version}))
    else:
        which = "the picture" if args.face is None else f"face #{args.face}"
        print(f"{args.request_id}: {args.label} for {which} {ack.detail} (controller {ack.controller_version})")
    return 0
