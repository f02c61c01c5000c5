#!/usr/bin/env python3
# Runs on Python 3 (or 2.7).
"""Check an Autobahn|Testsuite client report (reports/clients/index.json).

Prints a tally per behavior and the ids of non-OK cases, then a closing line
`autobahn: N passed, M failed`. Exits 1 if any case failed or no case ran.

usage: check_report.py INDEX_JSON [AGENT]
"""
from __future__ import print_function

import json
import re
import sys

PASSING = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"]


def case_key(case_id):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.]", case_id)]


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = sys.argv[1]
    agent = sys.argv[2] if len(sys.argv) == 3 else "wsapp"
    try:
        with open(path) as f:
            index = json.load(f)
    except (IOError, OSError, ValueError) as e:
        print("autobahn: cannot read report %s: %s" % (path, e))
        print("autobahn: 0 passed, 0 failed")
        return 1
    cases = index.get(agent)
    if cases is None:
        print("autobahn: no results for agent %r in %s (agents: %s)"
              % (agent, path, ", ".join(sorted(index)) or "none"))
        cases = {}

    tally = {}
    non_ok = {}
    for case_id in sorted(cases, key=case_key):
        behavior = cases[case_id].get("behavior", "MISSING")
        tally[behavior] = tally.get(behavior, 0) + 1
        if behavior != "OK":
            non_ok.setdefault(behavior, []).append(case_id)

    # Anything not in PASSING (FAILED, NO_CLOSE, ...) counts as a failure.
    order = PASSING + ["FAILED"] + sorted(set(tally) - set(PASSING) - {"FAILED"})
    print("autobahn: %d cases for agent %s" % (len(cases), agent))
    for behavior in order:
        print("  %-14s %d" % (behavior, tally.get(behavior, 0)))
    for behavior in order:
        if behavior in non_ok:
            print("  %s: %s" % (behavior, " ".join(non_ok[behavior])))

    passed = sum(tally.get(b, 0) for b in PASSING)
    failed = len(cases) - passed
    if not cases:
        print("autobahn: no case ran")
    print("autobahn: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
