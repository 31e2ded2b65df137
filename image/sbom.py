#!/usr/bin/env python3
"""A CycloneDX 1.5 SBOM of one scrape-guard image platform, from `cargo metadata`.

    image/sbom.py --target TRIPLE [--features F] --rootfs DIR --name REF --out F.cdx.json

Components: every crate the binary is built from (the resolve of `cargo metadata
--filter-platform TRIPLE`, walked from scrape-guard along normal and build
dependencies, so dev-dependencies and other platforms' crates are left out), with
their purl, license and the Cargo.lock checksum; and every file of the base (glibc,
libgcc, the CA bundle) with its SHA-256 and the Debian package it comes from. The
crate list is the one `cargo auditable` embeds in the binary; .ci/image-check.py
compares the two. Why not cargo-cyclonedx: it is one more program to compile in CI
(minutes, against a hard time budget), it knows nothing of the image's base files, and
this is the same data in ~100 lines of the standard library.
"""
import argparse
import hashlib
import json
import os
import subprocess
import uuid

ROOT = "scrape-guard"


def cargo_metadata(target, features):
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target]
    if features:
        cmd += ["--features", ",".join(features)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)


def crates(meta):
    """(packages reachable from the root through normal/build deps, edges, root id)."""
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(i for i, p in pkgs.items() if p["name"] == ROOT and p["source"] is None)
    seen, stack, edges = set(), [root], {}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        deps = [d["pkg"] for d in nodes[pid]["deps"]
                if any(k["kind"] in (None, "build") for k in d["dep_kinds"])]
        edges[pid] = sorted(set(deps))
        stack.extend(deps)
    return {i: pkgs[i] for i in seen}, edges, root


def lock_checksums(lock_path):
    """name@version -> sha256 from Cargo.lock (registry crates only)."""
    sums, name, version, in_package = {}, None, None, False
    with open(lock_path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                in_package = line == "[[package]]"
                name = version = None
            elif not in_package:
                continue
            elif line.startswith("name = "):
                name = line.split('"')[1]
            elif line.startswith("version = "):
                version = line.split('"')[1]
            elif line.startswith("checksum = "):
                sums[f"{name}@{version}"] = line.split('"')[1]
    return sums


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def debian_package(path):
    """(package:arch, version) owning PATH on this machine, or None."""
    for candidate in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":", 2)
            pkg = pkg[0] + ":" + pkg[1].split(",")[0].strip() if len(pkg) == 3 else pkg[0]
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                 capture_output=True, text=True, check=True).stdout
            return pkg, ver
    return None


def base_files(rootfs, skip=("/scrape-guard",)):
    """Every regular file of the staged rootfs but the binary: path, sha256, package."""
    out = []
    for dirpath, _, files in os.walk(rootfs):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(full, rootfs)
            if rel in skip or os.path.islink(full):
                continue
            entry = {"path": rel, "sha256": sha256_file(full)}
            if rel == "/etc/ssl/certs/ca-certificates.crt":
                owner = debian_package("/usr/share/ca-certificates")  # generated from it
            elif rel.startswith(("/lib", "/usr/lib")):
                owner = debian_package(rel)
            else:
                owner = None  # passwd, group, nsswitch.conf: written by image/lib.sh
            if owner:
                entry["package"], entry["version"] = owner
            out.append(entry)
    return sorted(out, key=lambda e: e["path"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True)
    p.add_argument("--features", action="append", default=[])
    p.add_argument("--rootfs", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    meta = cargo_metadata(args.target, args.features)
    pkgs, edges, root = crates(meta)
    sums = lock_checksums(os.path.join(meta["workspace_root"], "Cargo.lock"))

    def ref(pid):
        return f"pkg:cargo/{pkgs[pid]['name']}@{pkgs[pid]['version']}"

    components = []
    for pid in sorted(pkgs, key=ref):
        if pid == root:
            continue
        pk = pkgs[pid]
        c = {"type": "library", "bom-ref": ref(pid), "name": pk["name"],
             "version": pk["version"], "purl": ref(pid)}
        if pk.get("license"):
            c["licenses"] = [{"expression": pk["license"]}]
        if f"{pk['name']}@{pk['version']}" in sums:
            c["hashes"] = [{"alg": "SHA-256", "content": sums[f"{pk['name']}@{pk['version']}"]}]
        components.append(c)
    for f in base_files(args.rootfs):
        c = {"type": "file", "bom-ref": "file:" + f["path"], "name": f["path"],
             "hashes": [{"alg": "SHA-256", "content": f["sha256"]}]}
        if "package" in f:
            name, _, arch = f["package"].partition(":")
            c["purl"] = f"pkg:deb/debian/{name}@{f['version']}" + (f"?arch={arch}" if arch else "")
            c["version"] = f["version"]
        components.append(c)

    rootpkg = pkgs[root]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, args.name + args.target
                                                     + ",".join(args.features))),
        "version": 1,
        "metadata": {
            "component": {"type": "container", "bom-ref": ref(root), "name": args.name,
                          "version": rootpkg["version"], "purl": ref(root),
                          "licenses": [{"expression": rootpkg.get("license") or "NOASSERTION"}],
                          "properties": [{"name": "scrape-guard:target", "value": args.target},
                                         {"name": "scrape-guard:features",
                                          "value": ",".join(args.features) or "default"}]},
            "tools": {"components": [{"type": "application", "name": "image/sbom.py"}]},
        },
        "components": components,
        "dependencies": [{"ref": ref(pid), "dependsOn": [ref(d) for d in edges[pid]]}
                         for pid in sorted(pkgs, key=ref)],
    }
    with open(args.out, "w") as f:
        json.dump(bom, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{args.out}: {len(pkgs) - 1} crates, {len(components) - len(pkgs) + 1} base files")


if __name__ == "__main__":
    main()
