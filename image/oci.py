#!/usr/bin/env python3
"""Pack a root filesystem directory into an OCI image archive, without a daemon.

    image/oci.py ROOTFS OUT.tar --name REF [--user 65532:65532] [--entrypoint /x]
                 [--cmd ARG]... [--port 8443] [--env K=V]... [--owner PATH=UID:GID]...

One layer (the directory, files owned by root unless --owner says otherwise, mtimes
zeroed, entries sorted, so the same input gives the same digest), an image config, a
manifest and an index whose annotations name the image for `ctr images import`
(io.containerd.image.name) and for other OCI tools (org.opencontainers.image.ref.name).
Only the Python standard library: this runs on a bare CI machine.
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rootfs")
    p.add_argument("out")
    p.add_argument("--name", required=True, help="image reference, e.g. scrape-guard:dev")
    p.add_argument("--user", default="")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=["PATH=/usr/local/bin:/usr/bin:/bin"])
    p.add_argument("--owner", action="append", default=[], help="PATH=UID:GID inside the image")
    args = p.parse_args()

    owners = {}
    for spec in args.owner:
        path, ids = spec.split("=", 1)
        uid, gid = ids.split(":")
        owners[path] = (int(uid), int(gid))

    raw = layer_tar(args.rootfs, owners)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    blobs = {}
    layer_digest = blob(blobs, layer)

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Env": args.env,
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "ExposedPorts": {f"{port}/tcp": {} for port in args.port} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "image/oci.py " + os.path.basename(args.rootfs.rstrip("/"))}],
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
    manifest_digest = blob(blobs, manifest_bytes)

    name = args.name
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
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
    print(f"{args.out}: {name} manifest {manifest_digest} layer {len(layer)} bytes ({len(raw)} unpacked)")


if __name__ == "__main__":
    main()
