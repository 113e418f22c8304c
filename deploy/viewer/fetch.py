"""Fetches the pinned OHIF viewer build (the npm package @ohif/app, whose `dist/` is the prebuilt
static site) at set-up, checks it against the integrity hash npm publishes for that version, and
unpacks `dist/` to build/viewer/ohif-VERSION with a `.integrity` file naming the package it came from.
Nothing is fetched at run time; a build unpacked from the pinned package is left alone, so `make
setup` needs no network the second time.

    python -m deploy.viewer.fetch [--registry URL] [--out DIR]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OHIF_VERSION = "3.13.2"
# `npm view @ohif/app@3.13.2 dist.integrity`
OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
DEFAULT_REGISTRY = "https://registry.npmjs.org"
OHIF_DIST = ROOT / "build" / "viewer" / f"ohif-{OHIF_VERSION}"


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


MARKER = ".integrity"


def unpack_dist(tarball: bytes, out: Path) -> Path:
    """`package/dist/` of an npm tarball to `out`, all or nothing (a half-written viewer never serves)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch, tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/dist/") and (m.isfile() or m.isdir())]
        tar.extractall(scratch, members=members, filter="data")  # "data": no links out, no absolute paths
        if not (Path(scratch) / "package" / "dist" / "index.html").is_file():
            raise ValueError("the package holds no dist/index.html: not an OHIF build")
        (Path(scratch) / "package" / "dist" / MARKER).write_text(integrity(tarball))
        shutil.rmtree(out, ignore_errors=True)
        (Path(scratch) / "package" / "dist").rename(out)
    return out


def fetch(registry: str = DEFAULT_REGISTRY, out: Path = OHIF_DIST) -> Path:
    if (out / MARKER).is_file() and (out / MARKER).read_text() == OHIF_INTEGRITY:
        return out
    url = f"{registry.rstrip('/')}/@ohif/app/-/app-{OHIF_VERSION}.tgz"
    print(f"fetching OHIF {OHIF_VERSION} from {url}", flush=True)
    with urllib.request.urlopen(url, timeout=300) as response:
        tarball = response.read()
    if integrity(tarball) != OHIF_INTEGRITY:
        raise ValueError(f"{url} does not match the pinned integrity hash of @ohif/app {OHIF_VERSION}")
    return unpack_dist(tarball, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.viewer.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="npm registry (a site mirror)")
    parser.add_argument("--out", type=Path, default=OHIF_DIST)
    args = parser.parse_args(argv)
    try:
        print(f"OHIF {OHIF_VERSION} in {fetch(args.registry, args.out)}")
    except (OSError, ValueError) as exc:
        print(f"could not fetch the OHIF viewer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
