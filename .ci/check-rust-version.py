#!/usr/bin/env python3
"""Checks that the declared `rust-version` of every workspace crate is true.

For each crate, the minimum toolchain its dependencies declare (their `rust_version` in
`cargo metadata`, over what the crate builds with: normal and build dependencies, and its own
dev-dependencies, on this host's platform) must not be newer than the crate's own
`rust-version`; and every crate must declare the same one. Exits non-zero, saying which
dependency needs what, when either fails. Needs only the lock file: nothing is downloaded
beyond what `cargo metadata` fetches for a build anyway. Extra arguments go to
`cargo metadata` (`--manifest-path fuzz/Cargo.toml` checks the fuzz workspace).
"""

import json
import subprocess
import sys


def version(text):
    """`1.88`, `1.88.0` as comparable tuples (zero-padded, so the two are equal)."""
    parts = [int(part) for part in text.split(".")] if text else [0]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    host = next(
        line.split()[1]
        for line in subprocess.check_output(["rustc", "-vV"], text=True).splitlines()
        if line.startswith("host:")
    )
    metadata = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", host]
            + sys.argv[1:]  # e.g. --manifest-path fuzz/Cargo.toml
        )
    )
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}

    def needed(root):
        """What `root` builds with: its dependencies' closure, dev-dependencies at the top only."""
        seen, stack = set(), [(root, True)]
        while stack:
            package, top = stack.pop()
            if package in seen:
                continue
            seen.add(package)
            for dep in nodes[package]["deps"]:
                kinds = {k["kind"] for k in dep["dep_kinds"]}
                if kinds & {None, "build"} or (top and "dev" in kinds):
                    stack.append((dep["pkg"], False))
        seen.discard(root)
        return seen

    failures = []
    declared_versions = set()
    for member in metadata["workspace_members"]:
        crate = packages[member]
        declared = crate.get("rust_version")
        declared_versions.add(declared)
        if not declared:
            failures.append(f"{crate['name']}: no rust-version declared")
            continue
        # Path dependencies are our own crates, checked in their own right.
        external = [p for p in needed(member) if packages[p]["source"] is not None]
        newest = max(external, key=lambda p: version(packages[p]["rust_version"]))
        wants = packages[newest]["rust_version"]
        status = "ok"
        if version(wants) > version(declared):
            status = "TOO OLD"
            failures.append(
                f"{crate['name']}: declares rust-version {declared}, "
                f"but {packages[newest]['name']} {packages[newest]['version']} needs {wants}"
            )
        print(f"{crate['name']}: declares {declared}, dependencies need {wants} "
              f"({packages[newest]['name']}): {status}")
    if len(declared_versions) > 1:
        failures.append(f"the crates disagree: {sorted(map(str, declared_versions))}")
    for failure in failures:
        print(f"check-rust-version: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
