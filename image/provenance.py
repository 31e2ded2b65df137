#!/usr/bin/env python3
"""The in-toto statement with an SLSA v1 provenance predicate for one image archive.

    image/provenance.py --summary S.json --variant default|fips [--features F]
        [--sbom F.cdx.json]... [--rootfs linux/ARCH=DIR]... --out P.json

Subjects: the image index (the tag's digest) and each platform's manifest. Build
definition: the variant, platforms and features (external parameters); the source
commit, Cargo.lock's digest, each toolchain (rustc, cargo, cargo-auditable, the C
cross compiler) and every file of each platform's base with its SHA-256 and Debian
package (resolved dependencies). Run details: the builder (GitHub Actions' workflow
when GITHUB_ACTIONS is set, else this host) and start and finish times. The statement
is what the build itself asserts; the release workflow signs it with cosign keyless,
which ties it to the workflow's identity (docs/releases.md says what that proves).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(__file__))
from sbom import base_files, sha256_file  # noqa: E402

REPO = "https://github.com/scrape-guard/scrape-guard"


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def toolchains(archs):
    tools = {"rustc (amd64)": run("rustc", "--version"), "cargo (amd64)": run("cargo", "--version"),
             "cargo-auditable": run("cargo-auditable", "--version")}
    if "arm64" in archs:
        tools.update({"rustc (arm64, Debian rustc-web)": run("/usr/bin/rustc", "--version"),
                      "cargo (arm64, Debian cargo-web)": run("/usr/bin/cargo", "--version"),
                      "aarch64-linux-gnu-gcc": (run("aarch64-linux-gnu-gcc", "--version") or "").split("\n")[0]})
    # A resource descriptor needs a uri or a digest: a purl of the tool and its version.
    return [{"name": name, "uri": f"pkg:generic/{name.split()[0]}@{v.split()[-1] if name.endswith('gcc') else v.split()[1]}",
             "annotations": {"version": v}} for name, v in tools.items() if v and len(v.split()) > 1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--features", action="append", default=[])
    p.add_argument("--sbom", action="append", default=[])
    p.add_argument("--rootfs", action="append", default=[])
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with open(args.summary) as f:
        summary = json.load(f)

    name = summary["name"]
    subjects = [{"name": name, "digest": {"sha256": summary["digest"].split(":", 1)[1]}}]
    for img in summary["images"]:
        subjects.append({"name": f"{name.rsplit(':', 1)[0]}@{img['manifest']} ({img['platform']})",
                         "digest": {"sha256": img["manifest"].split(":", 1)[1]}})

    commit = run("git", "rev-parse", "HEAD") or os.environ.get("GITHUB_SHA", "unknown")
    dirty = bool(run("git", "status", "--porcelain", "--untracked-files=no"))
    deps = [{"uri": f"git+{REPO}@{commit}", "digest": {"gitCommit": commit},
             "annotations": {"dirty": dirty}},
            {"uri": "Cargo.lock", "digest": {"sha256": sha256_file("Cargo.lock")}}]
    archs = []
    for spec in args.rootfs:
        plat, _, rootfs = spec.partition("=")
        archs.append(plat.split("/", 1)[1])
        for f in base_files(rootfs):
            dep = {"uri": f"file://{f['path']}", "digest": {"sha256": f["sha256"]},
                   "annotations": {"platform": plat}}
            if "package" in f:
                dep["annotations"]["debianPackage"] = f"{f['package']}={f['version']}"
            deps.append(dep)
    deps += toolchains(archs)
    byproducts = [{"name": os.path.basename(s), "digest": {"sha256": sha256_file(s)},
                   "mediaType": "application/vnd.cyclonedx+json"} for s in args.sbom]

    if os.environ.get("GITHUB_ACTIONS") == "true":
        env = os.environ
        builder = f"{env.get('GITHUB_SERVER_URL')}/{env.get('GITHUB_WORKFLOW_REF')}"
        invocation = f"{env.get('GITHUB_SERVER_URL')}/{env.get('GITHUB_REPOSITORY')}/actions/runs/{env.get('GITHUB_RUN_ID')}/attempts/{env.get('GITHUB_RUN_ATTEMPT')}"
    else:
        builder, invocation = f"local:{platform.node()}", None
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"finishedOn": now}
    if invocation:
        metadata["invocationId"] = invocation
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": f"{REPO}/blob/main/image/build.sh",
                "externalParameters": {"variant": args.variant, "features": args.features,
                                       "platforms": [i["platform"] for i in summary["images"]],
                                       "name": name, "source": REPO, "revision": commit},
                "internalParameters": {"profile": "release (fat LTO, codegen-units 1, stripped)",
                                       "cargoFlags": ["--locked", "--bin", "scrape-guard"]},
                "resolvedDependencies": deps,
            },
            "runDetails": {"builder": {"id": builder}, "metadata": metadata,
                           "byproducts": byproducts},
        },
    }
    with open(args.out, "w") as f:
        json.dump(statement, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{args.out}: {len(subjects)} subjects, {len(deps)} resolved dependencies")


if __name__ == "__main__":
    main()
