#!/usr/bin/env python3
"""Check a multi-arch image archive from image/build.sh, and what lies beside it.

    .ci/image-check.py ARCHIVE.oci.tar [--platforms linux/amd64,linux/arm64]
                       [--extract ARCH=PATH]...

- index.json names the image and points at one image index listing exactly the
  expected platforms; every descriptor's digest and size match its blob;
- each platform's config says that os/architecture, runs as 65532:65532 with
  /scrape-guard as entrypoint; its layer holds /scrape-guard built for that machine
  (ELF e_machine), that machine's glibc loader, and no shell;
- the binary carries `cargo auditable`'s dependency list (.dep-v0), which names the
  same crates as the platform's CycloneDX SBOM beside the archive;
- the provenance statement beside it has the index and every manifest as subjects.
--extract writes a platform's /scrape-guard out (the smoke test runs that very file).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import zlib

MACHINE = {"amd64": 62, "arm64": 183}  # ELF e_machine: EM_X86_64, EM_AARCH64
LOADER = {"amd64": "lib64/ld-linux-x86-64.so.2", "arm64": "lib/ld-linux-aarch64.so.1"}
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def elf_section(data, wanted):
    """The bytes of section WANTED of a little-endian ELF64 file, or None."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        name, _typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size
    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        name, off, size = header(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end].decode() == wanted:
            return data[off:off + size]
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("archive")
    p.add_argument("--platforms", default="linux/amd64,linux/arm64")
    p.add_argument("--extract", action="append", default=[])
    args = p.parse_args()
    extract = dict(e.split("=", 1) for e in args.extract)
    base = args.archive[: -len(".oci.tar")] if args.archive.endswith(".oci.tar") else args.archive

    with tarfile.open(args.archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    def blob(desc):
        data = files.get("blobs/sha256/" + desc["digest"].split(":", 1)[1])
        if check(data is not None, f"blob {desc['digest']} missing"):
            check(hashlib.sha256(data).hexdigest() == desc["digest"].split(":", 1)[1]
                  and len(data) == desc["size"], f"blob {desc['digest']}: digest or size mismatch")
        return data or b"{}"

    top = json.loads(files["index.json"])["manifests"]
    check(len(top) == 1, "index.json: expected one entry")
    entry = top[0]
    check("io.containerd.image.name" in entry.get("annotations", {}), "index.json: no image name")
    check(entry["mediaType"] == "application/vnd.oci.image.index.v1+json", "index.json: not an image index")
    nested = json.loads(blob(entry))
    expected = args.platforms.split(",")
    found = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in nested["manifests"]]
    check(sorted(found) == sorted(expected), f"platforms {found}, expected {expected}")

    provenance_path = base + ".provenance.json"
    subjects = set()
    if check(os.path.exists(provenance_path), f"{provenance_path} missing"):
        statement = json.load(open(provenance_path))
        check(statement["predicateType"] == "https://slsa.dev/provenance/v1", "provenance: predicateType")
        subjects = {s["digest"]["sha256"] for s in statement["subject"]}
        check(entry["digest"].split(":")[1] in subjects, "provenance: the index is not a subject")

    for desc in nested["manifests"]:
        arch = desc["platform"]["architecture"]
        manifest = json.loads(blob(desc))
        check(desc["digest"].split(":")[1] in subjects, f"provenance: {arch} manifest is not a subject")
        config = json.loads(blob(manifest["config"]))
        check(config["architecture"] == arch and config["os"] == "linux", f"{arch}: config says {config['os']}/{config['architecture']}")
        check(config["config"].get("User") == "65532:65532", f"{arch}: user {config['config'].get('User')}")
        check(config["config"].get("Entrypoint") == ["/scrape-guard"], f"{arch}: entrypoint")
        (layer_desc,) = manifest["layers"]
        raw = gzip.decompress(blob(layer_desc))
        check("sha256:" + hashlib.sha256(raw).hexdigest() == config["rootfs"]["diff_ids"][0], f"{arch}: diff_id")
        with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
            names = set(layer.getnames())
            binary = layer.extractfile("scrape-guard").read()
        check(LOADER[arch] in names, f"{arch}: no {LOADER[arch]} in the layer")
        check(not {"bin/sh", "usr/bin/sh"} & names, f"{arch}: a shell in the image")
        machine, = struct.unpack_from("<H", binary, 0x12)
        check(machine == MACHINE[arch], f"{arch}: /scrape-guard is built for ELF machine {machine}")
        deps = elf_section(binary, ".dep-v0")
        if check(deps is not None, f"{arch}: no cargo auditable .dep-v0 section in /scrape-guard"):
            embedded = {(p["name"], p["version"]) for p in json.loads(zlib.decompress(deps))["packages"]
                        if not p.get("root")}
            sbom = json.load(open(f"{base}.linux-{arch}.cdx.json"))
            listed = {(c["name"], c["version"]) for c in sbom["components"] if c["type"] == "library"}
            check(embedded == listed, f"{arch}: SBOM and embedded list differ: only embedded "
                  f"{sorted(embedded - listed)[:5]}, only in SBOM {sorted(listed - embedded)[:5]}")
            print(f"image-check: linux/{arch}: {len(embedded)} crates embedded = SBOM; "
                  f"layer {layer_desc['size']} bytes, binary {len(binary)} bytes")
        if arch in extract:
            with open(extract[arch], "wb") as f:
                f.write(binary)
            os.chmod(extract[arch], 0o755)

    for msg in problems:
        print("image-check:", msg, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"image-check: {args.archive}: {', '.join(found)} ok, index {entry['digest']}")


if __name__ == "__main__":
    main()
