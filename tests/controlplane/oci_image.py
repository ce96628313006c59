"""Writes an OCI image archive (an OCI image layout in a tar file, as
`ctr images import` reads it) from directories, without a container engine.

Usage: oci_image.py --name REF --out ARCHIVE [--entrypoint JSON] [--cmd JSON] [--user U]
                    [--workdir DIR] [--env K=V ...] [--port N/tcp ...] LAYER_DIR...

Each LAYER_DIR becomes one uncompressed layer, in order, holding its files with their
numeric owners, modes and symlinks as they are on disk (so the caller sets ownership), and
every timestamp set to 0 so the same input gives the same digests.
"""

import argparse
import hashlib
import io
import json
import os
import tarfile


def layer(directory: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, directory))
                info.mtime = 0
                info.uname = info.gname = ""
                info.pax_headers = {}
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
    return digest


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True, help="full reference, e.g. canvaschat.local/pause:3.10.2")
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint", type=json.loads)
    p.add_argument("--cmd", type=json.loads)
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("layers", nargs="+")
    args = p.parse_args()

    layers = [layer(d) for d in args.layers]
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            k: v
            for k, v in {
                "Entrypoint": args.entrypoint,
                "Cmd": args.cmd,
                "User": args.user,
                "WorkingDir": args.workdir,
                "Env": args.env or None,
                "ExposedPorts": {port: {} for port in args.port} or None,
            }.items()
            if v is not None
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "tests/controlplane/oci_image.py"} for _ in layers],
    }
    tmp = args.out + ".partial"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        layer_descs = [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": blob(tar, data),
                "size": len(data),
            }
            for data in layers
        ]
        config_bytes = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(tar, config_bytes),
                "size": len(config_bytes),
            },
            "layers": layer_descs,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": manifest["mediaType"],
                    "digest": blob(tar, manifest_bytes),
                    "size": len(manifest_bytes),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    # containerd names the image by the first, other tools by the second.
                    "annotations": {
                        "io.containerd.image.name": args.name,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        for name, data in (
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps(index, sort_keys=True).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(manifest["config"]["digest"])


if __name__ == "__main__":
    main()
