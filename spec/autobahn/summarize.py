#!/usr/bin/env python3
"""Summarizes an Autobahn|Testsuite fuzzing-client report (index.json) as Markdown.

Exits 1 when a case FAILED or was UNIMPLEMENTED, or when fewer cases ran than expected, and
says which. The summary lists every case that was not plainly OK with what the suite said,
so that a NON-STRICT or INFORMATIONAL verdict is visible in review. With --committed, it also
says whether this run differs from the committed summary (a change to look at, not a failure).
"""

import argparse
import json
import sys
from collections import Counter

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case_id):
    """Sorts "9.10.2" after "9.2.1"."""
    return [int(part) for part in case_id.split(".")]


def summarize(index):
    (agent, cases), = index.items()
    lines = [
        "# Autobahn|Testsuite: the WebSocket layer, from outside",
        "",
        "The fuzzing client of Autobahn|Testsuite 0.8.2 against `ferrocast-echo` (the server's",
        "sockets, handshake, codec, output queues and close paths with an echo protocol), made by",
        "`spec/autobahn/run.sh` as part of `./test.sh`.",
        "",
        f"Agent `{agent}`, {len(cases)} cases.",
        "",
        "| behaviour | close behaviour | cases |",
        "|---|---|---|",
    ]
    counts = Counter((c["behavior"], c["behaviorClose"]) for c in cases.values())
    for (behaviour, close), n in sorted(counts.items()):
        lines.append(f"| {behaviour} | {close} | {n} |")
    lines += ["", "Cases not plainly OK:", ""]
    odd = [
        (case_id, c)
        for case_id, c in sorted(cases.items(), key=lambda kv: case_key(kv[0]))
        if c["behavior"] != "OK" or c["behaviorClose"] != "OK"
    ]
    for case_id, c in odd:
        lines.append(
            f"- {case_id}: {c['behavior']} (close {c['behaviorClose']}, "
            f"code {c.get('remoteCloseCode')})"
        )
    if not odd:
        lines.append("- none")
    failed = [
        case_id
        for case_id, c in cases.items()
        if c["behavior"] not in PASSING or c["behaviorClose"] not in PASSING
    ]
    return "\n".join(lines) + "\n", len(cases), sorted(failed, key=case_key)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("index", help="the report's index.json")
    parser.add_argument("summary", help="where to write the Markdown summary")
    parser.add_argument("--expect-cases", type=int, required=True)
    parser.add_argument("--committed", help="the committed summary to compare with")
    args = parser.parse_args()
    with open(args.index) as f:
        text, ran, failed = summarize(json.load(f))
    with open(args.summary, "w") as f:
        f.write(text)
    print(text)
    if args.committed:
        try:
            with open(args.committed) as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            print(f"autobahn: this run differs from {args.committed}; "
                  f"if the change is right, copy {args.summary} there")
    problems = []
    if ran < args.expect_cases:
        problems.append(f"only {ran} of {args.expect_cases} cases ran")
    if failed:
        problems.append("not passed: " + ", ".join(failed))
    for problem in problems:
        print(f"autobahn: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
