#!/usr/bin/env python3
"""Pack root filesystem directories into an OCI image archive, without a daemon.

    image/oci.py ROOTFS OUT.tar --name REF [options]             (one image, linux/amd64)
    image/oci.py OUT.tar --name REF --platform linux/amd64=ROOTFS --platform linux/arm64=ROOTFS2
    options: [--user 65532:65532] [--entrypoint /x] [--cmd ARG]... [--port 8443]
             [--env K=V]... [--owner PATH=UID:GID]... [--annotation K=V]... [--summary F.json]

Per platform: one layer (the directory, files owned by root unless --owner says
otherwise, mtimes zeroed, entries sorted, so the same input gives the same digest), an
image config (its `architecture` is the platform's) and a manifest. One platform: the
archive's index.json lists the manifest. Several: index.json lists one image index (a
"multi-arch image") which lists the manifests with their platforms — what `skopeo copy
--all` and `docker buildx` push as one tag. The entry in index.json carries the
annotations that name the image for `ctr images import` (io.containerd.image.name) and
for other OCI tools (org.opencontainers.image.ref.name). --summary writes the digests
(for the provenance statement). Only the Python standard library: this runs on a bare
CI machine.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile


def layer_tar(rootfs, owners):
    """The rootfs as an uncompressed, reproducible tar (bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                entries.append(os.path.join(dirpath, name))
        for path in sorted(entries, key=lambda p: os.path.relpath(p, rootfs)):
            rel = os.path.relpath(path, rootfs)
            info = tar.gettarinfo(path, arcname=rel)
            info.uid, info.gid = owners.get("/" + rel, (0, 0))
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return "sha256:" + digest


def image(blobs, rootfs, arch, args, owners):
    """Layer, config and manifest for one platform; the manifest's descriptor."""
    raw = layer_tar(rootfs, owners)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    layer_digest = blob(blobs, layer)

    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": args.env,
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "ExposedPorts": {f"{port}/tcp": {} for port in args.port} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "image/oci.py " + os.path.basename(rootfs.rstrip("/"))}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = blob(blobs, config_bytes)

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": blob(blobs, manifest_bytes),
        "size": len(manifest_bytes),
        "platform": {"architecture": arch, "os": "linux"},
    }
    summary = {
        "platform": f"linux/{arch}",
        "manifest": descriptor["digest"],
        "config": config_digest,
        "layer": layer_digest,
        "layer_bytes": len(layer),
        "unpacked_bytes": len(raw),
    }
    return descriptor, summary


def parse_platforms(args, p):
    if args.first is not None and args.out is not None:  # ROOTFS OUT: one linux/amd64 image
        if args.platform:
            p.error("give either ROOTFS OUT or OUT with --platform")
        args.platform = [f"linux/amd64={args.first}"]
    elif args.first is not None:  # OUT --platform ...
        args.out = args.first
    if args.out is None:
        p.error("OUT.tar missing")
    platforms = []
    for spec in args.platform:
        plat, _, rootfs = spec.partition("=")
        os_name, _, arch = plat.partition("/")
        if os_name != "linux" or not arch or not rootfs:
            p.error(f"--platform {spec}: expected linux/ARCH=ROOTFS")
        platforms.append((arch, rootfs))
    if not platforms:
        p.error("no platform: give ROOTFS OUT or --platform linux/ARCH=ROOTFS")
    return platforms


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first", metavar="ROOTFS", nargs="?", help="(one-image form) the root filesystem")
    p.add_argument("out", metavar="OUT.tar", nargs="?")
    p.add_argument("--name", required=True, help="image reference, e.g. scrape-guard:dev")
    p.add_argument("--platform", action="append", default=[], help="linux/ARCH=ROOTFS, repeatable")
    p.add_argument("--user", default="")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=["PATH=/usr/local/bin:/usr/bin:/bin"])
    p.add_argument("--owner", action="append", default=[], help="PATH=UID:GID inside the image")
    p.add_argument("--annotation", action="append", default=[], help="K=V on the index entry")
    p.add_argument("--summary", help="write the digests and sizes here (JSON)")
    args = p.parse_args()
    platforms = parse_platforms(args, p)

    owners = {}
    for spec in args.owner:
        path, ids = spec.split("=", 1)
        uid, gid = ids.split(":")
        owners[path] = (int(uid), int(gid))

    blobs = {}
    built = [image(blobs, rootfs, arch, args, owners) for arch, rootfs in platforms]

    name = args.name
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    annotations = dict(a.split("=", 1) for a in args.annotation)
    annotations.update({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag})
    if len(built) == 1:
        top = dict(built[0][0], annotations=annotations)
    else:
        nested = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [descriptor for descriptor, _ in built],
        }
        nested_bytes = json.dumps(nested, sort_keys=True).encode()
        top = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": blob(blobs, nested_bytes),
            "size": len(nested_bytes),
            "annotations": annotations,
        }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [top],
    }

    def add(tar, arcname, data, mode=0o644):
        info = tarfile.TarInfo(arcname)
        info.size, info.mode, info.mtime = len(data), mode, 0
        tar.addfile(info, io.BytesIO(data))

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add(tar, "index.json", json.dumps(index, sort_keys=True).encode())
        for digest in sorted(blobs):
            add(tar, f"blobs/sha256/{digest}", blobs[digest])
    os.replace(tmp, args.out)
    summary = {"name": name, "digest": top["digest"], "mediaType": top["mediaType"],
               "images": [s for _, s in built]}
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
    for s in summary["images"]:
        print(f"{args.out}: {name} {s['platform']} manifest {s['manifest']} "
              f"layer {s['layer_bytes']} bytes ({s['unpacked_bytes']} unpacked)")
    print(f"{args.out}: {name} {top['digest']}")


if __name__ == "__main__":
    main()
