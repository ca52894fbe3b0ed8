"""How long `make bundle` takes from a fresh clone (issue 21: "reproducible by make bundle in <= 3 h").

Clones this checkout's HEAD beside it (so the clone's manifests find ``../shared/data`` as this
checkout's do), runs ``make bundle`` there, set-up included (a fresh clone has no .venv), and
stamps every line of its output with the seconds since the start. The result lists each command
make echoed with the time it appeared: a step lasts until the next one appears. `make bundle`
trains custom and forensic side by side in a sub-make with ``--output-sync=target``, whose
output (the echoed command included) appears when that target ends, so for those two the time
listed is when each finished. The full log is kept beside the result; the clone is removed
unless ``--keep``. ``--dry-run`` passes ``-n`` to make (nothing is trained: it checks the script).

    python benchmarks/bench_make_bundle.py [--clone ../bundle_run] [--keep] [--dry-run]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO, bench_parser, machine_and_load, stamp, use_checkout, write_json

use_checkout()

# What a step's echoed command starts with: the project's executables, and the sub-make.
STEP_PREFIXES = (".venv/bin/", "make ", "test ", "touch ")


def steps_of(lines: list[tuple[float, str]]) -> list[dict]:
    """The echoed commands among ``(seconds, line)`` output lines, each with when it appeared and
    how long until the next (the last one: until the end)."""
    found = [(t, line.strip()) for t, line in lines if line.startswith(STEP_PREFIXES)]
    end = lines[-1][0] if lines else 0.0
    return [{"at_s": round(t, 1), "until_next_s": round((found[i + 1][0] if i + 1 < len(found) else end) - t, 1),
             "command": command} for i, (t, command) in enumerate(found)]


def main(argv: list[str]) -> None:
    parser = bench_parser(__doc__, out="make_bundle.json")
    parser.add_argument("--clone", type=Path, default=REPO.parent / "bundle_run",
                        help="where to clone (beside this checkout, so ../shared resolves the same)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its bundle and work folder)")
    parser.add_argument("--dry-run", action="store_true", help="make -n: print the commands, run none")
    args = parser.parse_args(argv)
    if args.clone.exists():
        parser.error(f"--clone {args.clone} already exists; remove it or pass another path")

    subprocess.run(["git", "clone", "-q", str(REPO), str(args.clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.clone, check=True,
                          capture_output=True, text=True).stdout.strip()
    log_path = args.out.with_suffix(".log")
    load_before = os.getloadavg()
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    with open(log_path, "w") as log:
        # Text mode reads Keras's carriage-return progress redraws as lines of their own: each
        # redraw is stamped, rather than one line per epoch.
        proc = subprocess.Popen(["make", *(["-n"] if args.dry_run else []), "bundle"], cwd=args.clone,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                t = time.monotonic() - start
                lines.append((t, line.rstrip("\n")))
                log.write(f"{t:9.1f} {line}")
        rc = proc.wait()
    total = time.monotonic() - start
    result = {**stamp(argv), **machine_and_load(load_before), "commit": head, "returncode": rc,
              "dry_run": args.dry_run, "total_s": round(total, 1), "total_h": round(total / 3600, 2),
              "goal_h": 3.0, "log": os.path.relpath(log_path, REPO), "steps": steps_of(lines)}
    write_json(args.out, result)
    for step in result["steps"]:
        print(f"{step['at_s']:8.0f} s  {step['until_next_s']:7.0f} s  {step['command'][:100]}")
    print(f"make bundle: exit {rc}, {total / 3600:.2f} h (goal 3 h)")
    if not args.keep:
        shutil.rmtree(args.clone, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main(sys.argv[1:])
