"""Make a split manifest from a folder of the user's own videos (`realtalk-bench splits make`).

Every file is measured here (sha256, duration and average fps with harness.core.media), so the manifest pins
exactly the files it was made from and `splits verify` can tell when one changes. Paths are written
absolute (or relative to --root when the files lie under it), so the manifest works from any directory.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.core.cache import file_digest
from harness.core.errors import BenchError, ManifestError
from harness.core.media import probe_audio, probe_video
from harness.core.splits.verify import VIDEO_SUFFIXES

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")
CROSS_AUDIO = ("rotate", "none")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
AUDIO_SHORT_S = 0.1  # harness.core.media.align_audio zero-pads up to this much; more fails the clip at run time


@dataclass
class MadeSplit:
    """The manifest document and what the caller should tell the user."""

    doc: dict[str, Any]
    ignored: list[str] = field(default_factory=list)  # files under the folder that are not videos
    warnings: list[str] = field(default_factory=list)


def sanitize_id(text: str) -> str:
    """A clip id safe as a file name in the run store (clips/<method>/<setting>/<clip_id>.json)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return out or "clip"


def unique_ids(rels: list[Path]) -> list[str]:
    """Ids from file stems; a stem seen twice takes its folder path too, then a -2, -3 ... suffix."""
    stems = [sanitize_id(r.stem) for r in rels]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    ids: list[str] = []
    taken: set[str] = set()
    for rel, stem in zip(rels, stems):
        cand = stem if counts[stem] == 1 else sanitize_id("_".join(rel.with_suffix("").parts))
        base, k = cand, 2
        while cand in taken:
            cand, k = f"{base}-{k}", k + 1
        taken.add(cand)
        ids.append(cand)
    return ids


def find_videos(folder: Path) -> tuple[list[Path], list[str]]:
    """(video files under folder, recursively, sorted by relative path; other files, relative)."""
    if not folder.is_dir():
        raise ManifestError("not a folder (--from-folder)", folder)
    videos, ignored = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder)
        if p.suffix.lower() in VIDEO_SUFFIXES and not any(part.startswith(".") for part in rel.parts):
            videos.append(p)
        else:
            ignored.append(rel.as_posix())
    if not videos:
        raise ManifestError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in the folder"
                            + (f" ({len(ignored)} other file(s), e.g. {ignored[0]})" if ignored else " (empty)"),
                            folder)
    return videos, ignored


def find_audio(audio_dir: Path, rel: Path, video: Path) -> Path:
    """The speech file for a video: audio_dir/<same relative path>.<audio suffix>, else audio_dir/<stem>.*"""
    for base in (audio_dir / rel.with_suffix(""), audio_dir / rel.stem):
        for suf in AUDIO_SUFFIXES:
            cand = base.with_name(base.name + suf)
            if cand.is_file():
                return cand
    raise ManifestError(f"no speech file for it in --audio-dir {audio_dir} "
                        f"(looked for {rel.with_suffix('').as_posix()}.{{{','.join(s[1:] for s in AUDIO_SUFFIXES)}}})",
                        video)


def _where(path: Path, root: Path | None) -> str:
    """Manifest path of a file: relative to root when under it, else absolute."""
    path = Path(os.path.abspath(path))  # absolute, symlinks kept as the user named them
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def rotate_pairs(ids: list[str], identities: list[str], seed: int) -> list[int]:
    """drive[k] = the index whose speech drives clip k: walk a seeded permutation as a cycle and take the
    next clip, skipping clips of the same identity when another identity exists (cross-audio is then
    another person's speech, as in the shipped splits)."""
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n).tolist()
    drive = [0] * n
    for pos, k in enumerate(order):
        for step in range(1, n):
            j = order[(pos + step) % n]
            if identities[j] != identities[k]:
                break
        else:
            j = order[(pos + 1) % n]  # one identity only: the next clip of the same person
        drive[k] = j
    return drive


def _measure_video(path: Path) -> dict[str, Any]:
    info = probe_video(path)
    return {"sha256": file_digest(path), "duration": round(info.duration, 4), "fps": round(info.avg_fps, 4),
            "has_audio": info.has_audio}


def _measure_audio(path: Path) -> dict[str, Any]:
    info = probe_audio(path)
    return {"sha256": file_digest(path), "duration": round(info.duration, 4), "fps": None,
            "sample_rate": info.sample_rate}


def make_split(name: str, folder: str | os.PathLike, audio_dir: str | os.PathLike | None = None,
               cross_audio: str = "rotate", seed: int = 0, role: str = "test",
               root: str | os.PathLike | None = None, progress: bool = True) -> MadeSplit:
    """Measure every video under folder (and its speech) and build the manifest (schema: harness.core.splits)."""
    from tqdm import tqdm

    if not NAME_RE.match(name):
        raise BenchError(f"split name {name!r}: use letters, digits, '.', '_' or '-'")
    if cross_audio not in CROSS_AUDIO:
        raise BenchError(f"--cross-audio {cross_audio!r}: expected one of {', '.join(CROSS_AUDIO)}")
    if role not in ("train", "test"):
        raise BenchError(f"--role {role!r}: expected train or test")
    folder_p = Path(os.path.abspath(Path(folder).expanduser()))
    adir = Path(os.path.abspath(Path(audio_dir).expanduser())) if audio_dir else None
    if adir is not None and not adir.is_dir():
        raise ManifestError("not a folder (--audio-dir)", adir)
    root_p = Path(os.path.abspath(Path(root).expanduser())) if root else None
    videos, ignored = find_videos(folder_p)
    rels = [v.relative_to(folder_p) for v in videos]
    ids = unique_ids(rels)
    identities = [sanitize_id(r.parts[0]) if len(r.parts) > 1 else cid for r, cid in zip(rels, ids)]
    made = MadeSplit(doc={}, ignored=ignored)
    files: dict[str, dict[str, Any]] = {}
    clips: list[dict[str, Any]] = []
    bar = tqdm(list(zip(videos, rels, ids, identities)), desc="measure", unit="file", dynamic_ncols=True,
               disable=not progress)
    for video, rel, cid, ident in bar:
        bar.set_postfix_str(rel.as_posix())
        pins = _measure_video(video)
        audio_rel = None
        if adir is not None:
            apath = find_audio(adir, rel, video)
            audio_rel = _where(apath, root_p)
            apins = _measure_audio(apath)
            files[audio_rel] = apins
            speech_s = apins["duration"]
        elif not pins["has_audio"]:
            raise ManifestError("video has no audio track; pass --audio-dir with one speech file per video", video)
        else:
            speech_s = round(probe_audio(video).duration, 4)
        if speech_s < pins["duration"] - AUDIO_SHORT_S:
            made.warnings.append(f"clip {cid}: speech {speech_s:.2f} s is shorter than the video {pins['duration']:.2f} s "
                                 f"by more than {AUDIO_SHORT_S} s: `run` will fail it unless --max-frames stays within "
                                 f"the speech")
        clips.append({"clip_id": cid, "identity": ident, "role": role, "video": _where(video, root_p),
                      "audio": audio_rel, "frame_range": None, "drive_audio": None, "drive_clip": None,
                      "sha256": pins["sha256"], "duration": pins["duration"], "fps": pins["fps"]})
    bar.close()
    if cross_audio == "rotate" and len(clips) < 2:
        made.warnings.append("one clip only: no cross-audio pair possible (the split runs reconstruction only)")
        cross_audio = "none"
    if cross_audio == "rotate":
        for k, j in enumerate(rotate_pairs(ids, identities, seed)):
            clips[k]["drive_audio"] = clips[j]["audio"] or clips[j]["video"]
            clips[k]["drive_clip"] = clips[j]["clip_id"]
    made.doc = {
        "name": name,
        "description": f"Made by `realtalk-bench splits make` from {folder_p}: {len(clips)} clip(s), role {role}, "
                       "whole files (no frame_range).",
        "selection_rule": selection_rule(folder_p, adir, cross_audio, seed, role),
        "sources": {"user": {"folder": str(folder_p), "audio_dir": str(adir) if adir else None,
                             "made": datetime.now(timezone.utc).isoformat(timespec="seconds")}},
        "tolerance": {"duration_s": 0.05, "fps_rel": 0.01},
        "files": files,
        "clips": clips,
    }
    return made


def selection_rule(folder: Path, audio_dir: Path | None, cross_audio: str, seed: int, role: str) -> str:
    """The rule written into the manifest, so the split can be remade from the same folder."""
    rule = (f"every video file ({', '.join(VIDEO_SUFFIXES)}) under {folder}, recursively, sorted by relative path; "
            f"clip_id = the file stem sanitised to [A-Za-z0-9._-] (folder path prefixed when a stem repeats); "
            f"identity = the first sub-folder, else the clip_id; role {role}; speech: ")
    rule += (f"{audio_dir}/<relative path or stem>.<wav|flac|mp3|m4a|aac|ogg>" if audio_dir
             else "the video's own audio track")
    if cross_audio == "rotate":
        rule += (f". Cross-audio: order = numpy.random.default_rng({seed}).permutation(n_clips) walked as a cycle; "
                 "each clip is driven by the speech of the next clip in that cycle of another identity "
                 "(the next clip when there is one identity only)")
    else:
        rule += ". No cross-audio pairs (reconstruction only)"
    return rule


def write_manifest(made: MadeSplit, out: str | os.PathLike, force: bool = False) -> Path:
    """Write the YAML atomically and load it back through load_split (a manifest `run` cannot read is a bug)."""
    from harness.core.fsutil import atomic_write_text
    from harness.core.splits import load_split

    path = Path(out).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        raise BenchError(f"--out {out}: the manifest file must end in .yaml")
    if path.exists() and not force:
        raise ManifestError("exists; pass --force to overwrite", path)
    header = "# Made by `realtalk-bench splits make`; sha256, duration and fps measured with harness.core.media.\n"
    atomic_write_text(path, header + yaml.safe_dump(made.doc, sort_keys=False, allow_unicode=True, width=120))
    load_split(path)
    return path


__all__ = ["MadeSplit", "make_split", "write_manifest", "sanitize_id", "unique_ids", "rotate_pairs",
           "find_videos", "find_audio", "AUDIO_SUFFIXES", "CROSS_AUDIO"]
