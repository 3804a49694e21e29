#!/usr/bin/env python3
"""Summarizes an Autobahn|Testsuite fuzzing-client report (index.json) as Markdown.

Exits 1 when a case FAILED or was UNIMPLEMENTED (except in the groups named by --may-decline,
whose extension offers the server declines on purpose), or when fewer cases ran than expected,
and says which. The summary lists every case that was not plainly OK with what the suite said,
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


def declined(case_id, groups):
    """Whether `case_id` is in one of `groups` ("13.3" holds "13.3.1" … "13.3.18")."""
    return any(case_id.startswith(group + ".") for group in groups)


def summarize(index, may_decline):
    (agent, cases), = index.items()
    lines = [
        "# Autobahn|Testsuite: the WebSocket layer, from outside",
        "",
        "The fuzzing client of Autobahn|Testsuite 0.8.2 against `ferrocast-echo` (the server's",
        "sockets, handshake, codec, output queues and close paths with an echo protocol), made by",
        "`spec/autobahn/run.sh` as part of `./test.sh`.",
        "",
        f"Agent `{agent}`, {len(cases)} cases.",
    ]
    if may_decline:
        lines += [
            "",
            "UNIMPLEMENTED is expected in " + ", ".join(may_decline) + ": their offers ask the server",
            "to compress with a window under 32 KiB (`server_max_window_bits` < 15), which the server",
            "declines on purpose, since it compresses each broadcast once for every recipient.",
        ]
    lines += [
        "",
        "| behaviour | close behaviour | cases |",
        "|---|---|---|",
    ]
    counts = Counter((c["behavior"], c["behaviorClose"]) for c in cases.values())
    for (behaviour, close), n in sorted(counts.items()):
        lines.append(f"| {behaviour} | {close} | {n} |")
    lines += ["", "Cases not plainly OK:", ""]
    is_declined = {
        case_id
        for case_id, c in cases.items()
        if c["behavior"] == "UNIMPLEMENTED" and declined(case_id, may_decline)
    }
    odd = [
        (case_id, c)
        for case_id, c in sorted(cases.items(), key=lambda kv: case_key(kv[0]))
        if (c["behavior"] != "OK" or c["behaviorClose"] != "OK") and case_id not in is_declined
    ]
    for case_id, c in odd:
        lines.append(
            f"- {case_id}: {c['behavior']} (close {c['behaviorClose']}, "
            f"code {c.get('remoteCloseCode')})"
        )
    if is_declined:
        lines.append(f"- {len(is_declined)} cases of " + ", ".join(may_decline) + ": UNIMPLEMENTED (declined)")
    if not odd and not is_declined:
        lines.append("- none")
    failed = [
        case_id
        for case_id, c in cases.items()
        if case_id not in is_declined
        and (c["behavior"] not in PASSING or c["behaviorClose"] not in PASSING)
    ]
    return "\n".join(lines) + "\n", len(cases), sorted(failed, key=case_key)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("index", help="the report's index.json")
    parser.add_argument("summary", help="where to write the Markdown summary")
    parser.add_argument("--expect-cases", type=int, required=True)
    parser.add_argument("--committed", help="the committed summary to compare with")
    parser.add_argument(
        "--may-decline", default="", help="comma-separated case groups that may be UNIMPLEMENTED"
    )
    args = parser.parse_args()
    may_decline = [group for group in args.may_decline.split(",") if group]
    with open(args.index) as f:
        text, ran, failed = summarize(json.load(f), may_decline)
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
