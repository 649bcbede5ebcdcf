"""Check a split's files against its manifest (exist, sha256, duration, fps) and fetch them from pins."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import file_digest
from harness.core.errors import BenchError, ManifestError
from harness.core.media import probe_audio, probe_video
from harness.core.paths import data_root
from harness.core.splits import Split

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


@dataclass
class FileCheck:
    rel: str
    ok: bool
    problems: list[str]
    sha256: str | None = None
    duration: float | None = None
    fps: float | None = None


def check_file(root: Path, rel: str, pins: dict, tol: dict[str, float], hash_files: bool = True) -> FileCheck:
    path = root / rel
    if not path.exists():
        return FileCheck(rel, False, ["missing"])
    problems: list[str] = []
    digest = None
    if hash_files and pins.get("sha256"):
        digest = file_digest(path)
        if digest != pins["sha256"]:
            problems.append(f"sha256 {digest[:12]}... != {pins['sha256'][:12]}...")
    dur = fps = None
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            info = probe_video(path)
            dur, fps = info.duration, info.avg_fps
        else:
            dur = probe_audio(path).duration
    except BenchError as exc:
        problems.append(f"unreadable: {exc.problem}")
    if dur is not None and pins.get("duration") is not None and abs(dur - float(pins["duration"])) > tol["duration_s"]:
        problems.append(f"duration {dur:.3f}s != {float(pins['duration']):.3f}s")
    if fps is not None and pins.get("fps"):
        if abs(fps - float(pins["fps"])) > tol["fps_rel"] * float(pins["fps"]):
            problems.append(f"fps {fps:.3f} != {float(pins['fps']):.3f}")
    return FileCheck(rel, not problems, problems, digest, dur, fps)


def verify_split(split: Split, root: str | os.PathLike | None = None, hash_files: bool = True) -> list[FileCheck]:
    """One FileCheck per file the split uses."""
    from harness.core.splits import materialize

    base = data_root(root)
    if split.pending and not split.clips:
        try:
            materialize(split, base)
        except ManifestError as exc:
            return [FileCheck(split.pending["list_file"], False, [exc.problem])]
    return [check_file(base, rel, pins, split.tolerance, hash_files) for rel, pins in split.all_files().items()]


def fetch_split(split: Split, root: str | os.PathLike | None = None, timeout: float = 30.0) -> list[FileCheck]:
    """Download every file with a pinned URL that is missing or wrong, verify sha256; connected machines only."""
    import hashlib
    import urllib.error
    import urllib.request

    base = data_root(root)
    results = []
    for rel, pins in split.all_files().items():
        chk = check_file(base, rel, pins, split.tolerance)
        if chk.ok:
            results.append(chk)
            continue
        url = pins.get("url")
        if not url:
            raise ManifestError(f"{rel}: no pinned URL in the manifest; obtain it from the dataset owners "
                                f"(see the manifest's sources)", split.path)
        dst = base / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:  # noqa: S310 - pinned URL
                h = hashlib.sha256()
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    h.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            tmp.unlink(missing_ok=True)
            raise ManifestError(f"download failed (no network?): {url}: {exc}", dst) from exc
        if pins.get("sha256") and h.hexdigest() != pins["sha256"]:
            tmp.unlink(missing_ok=True)
            raise ManifestError(f"downloaded sha256 {h.hexdigest()} != pinned {pins['sha256']}", dst)
        os.replace(tmp, dst)
        results.append(check_file(base, rel, pins, split.tolerance))
    return results
