#!/usr/bin/env python3
"""Keep the minimum supported Rust version true, without a second toolchain.

Fails when a locked dependency's `rust-version` is above ours (Cargo.toml's
`rust-version`, which every workspace member must share), or when README.md states
another minimum. Warns when ours is above every dependency's: then only our own code
can justify it (clippy's incompatible_msrv lint, on by default, already fails on a
standard-library API newer than ours).
"""
import json
import re
import subprocess
import sys


def version(s):
    return tuple(int(x) for x in s.split(".")) + (0,) * (3 - len(s.split(".")))


def show(v):
    return ".".join(map(str, v[:2])) if v[2] == 0 else ".".join(map(str, v))


meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked"], check=True,
    capture_output=True).stdout)
members = set(meta["workspace_members"])
ours = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
problems = []
if len(set(ours.values())) != 1 or None in ours.values():
    problems.append(f"workspace members disagree on rust-version: {ours}")
want = version(ours["scrape-guard"])
locked = [(version(p["rust_version"]), p["name"], p["version"]) for p in meta["packages"]
          if p["id"] not in members and p.get("rust_version")]
top = max(v for v, _, _ in locked)
for v, name, ver in sorted(locked, reverse=True):
    if v > want:
        problems.append(f"{name} {ver} needs Rust {show(v)}, Cargo.toml says rust-version = "
                        f"\"{show(want)}\": raise it (and README.md), or hold the dependency back")
stated = set(re.findall(r"(?:Rust ≥|Minimum Rust:) ([0-9]+\.[0-9]+(?:\.[0-9]+)?)", open("README.md", encoding="utf-8").read()))
if stated != {show(want)}:
    problems.append(f"README.md states Rust ≥ {sorted(stated)}, Cargo.toml {show(want)}")
if top < want:
    print(f"msrv: warning: rust-version {show(want)} is above every dependency's "
          f"({show(top)}); only our own code can need it")
for p in problems:
    print("msrv:", p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"msrv: rust-version {show(want)}; highest among {len(locked)} locked dependencies: "
      f"{show(top)} ({', '.join(sorted({n for v, n, _ in locked if v == top}))})")
