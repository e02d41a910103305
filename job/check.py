"""Check a finished run: ``python -m job.check --input_dir IN --out_dir OUT``.

Reads every rank's manifest and checks that each listed input was done by
exactly one rank (``ok`` or ``skipped``), none failed, and, unless
``--no-content``, that each output is byte-exact against the token
splitter's reference. Prints one line per rank and a verdict; exit 0 if
all holds, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict

from .journal import MANIFEST_DIR
from .listing import InputDirError, list_inputs
from .tokens import split_bytes

MANIFEST_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.json$")


def load_manifests(out_dir: str) -> dict[tuple[int, int], dict]:
    """``{(index, count): manifest}`` for every final manifest in ``out_dir``."""
    folder = os.path.join(out_dir, MANIFEST_DIR)
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = MANIFEST_NAME.match(name)
        if match:
            with open(os.path.join(folder, name), encoding="utf-8") as stream:
                found[int(match[1]), int(match[2])] = json.load(stream)
    return found


def check(input_dir: str, out_dir: str, pattern: str | None = None,
          content: bool = True) -> tuple[int, list[str]]:
    """The number of input files, and the problems found (none when the run is complete
    and correct); prints a table."""
    listing = [f.rel for f in list_inputs(input_dir, out_dir, pattern)]
    manifests = load_manifests(out_dir)
    counts = {count for _, count in manifests}
    if not manifests:
        return len(listing), [f"no manifests in {os.path.join(out_dir, MANIFEST_DIR)}"]
    if len(counts) > 1:
        return len(listing), [f"manifests of several shard counts {sorted(counts)}: "
                              "use a fresh out_dir"]
    count = counts.pop()
    problems = [f"shard {i} of {count} has no manifest" for i in range(count)
                if (i, count) not in manifests]
    owners: dict[str, list[int]] = defaultdict(list)
    for (index, _), manifest in sorted(manifests.items()):
        totals = manifest["totals"]
        print(f"rank {index}/{count}: {totals['files']:4d} files {totals['bytes_in']:>10,d} bytes "
              f"{totals['tokens']:>9,d} tokens  ({totals['ok']} done, {totals['skipped']} skipped, "
              f"{totals['failed']} failed)")
        for record in manifest["files"]:
            if record["status"] == "failed":
                problems.append(f"{record['input']}: failed on rank {index}: {record['error']}")
            else:
                owners[record["input"]].append(index)
    for rel in listing:
        if len(owners.get(rel, ())) != 1:
            problems.append(f"{rel}: done by {len(owners.get(rel, ()))} ranks, not exactly one")
        elif content:
            with open(os.path.join(input_dir, rel), "rb") as source:
                expected = split_bytes(source.read())
            try:
                with open(os.path.join(out_dir, rel), "rb") as output:
                    actual = output.read()
            except FileNotFoundError:
                actual = None
            if actual != expected:
                problems.append(f"{rel}: output differs from the reference")
    problems += [f"{rel}: in a manifest but not in the input listing"
                 for rel in sorted(set(owners) - set(listing))]
    return len(listing), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job.check", description=__doc__.split("\n")[0])
    parser.add_argument("--input_dir", "--input-dir", required=True)
    parser.add_argument("--out_dir", "--out-dir", required=True)
    parser.add_argument("--pattern", default=None)
    parser.add_argument("--no-content", action="store_true",
                        help="do not compare outputs with the token splitter's reference")
    args = parser.parse_args(argv)
    try:
        count, problems = check(args.input_dir, args.out_dir, args.pattern, not args.no_content)
    except InputDirError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in problems[:20]:
        print(f"problem: {problem}")
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    exact = ", outputs byte-exact" if not args.no_content else ""
    print(f"OK: {count} input files, each done by exactly one rank{exact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
