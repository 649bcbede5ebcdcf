"""Evaluation splits: YAML manifests in this folder (harness/core/splits/<name>.yaml) and their loader.

A manifest names clips by paths relative to a data root (harness.core.paths.data_root: --root, else
$REALTALK_BENCH_DATA, else ../shared/data), pins every file (sha256, duration, fps, source URL at a fixed
commit) where known, and states the rule that picked its clips, so a split is reproducible and checkable.

Manifest schema (YAML):
  name, description, selection_rule: str
  sources: {name: {repo, commit, license, ...}}         # where the files come from
  tolerance: {duration_s: 0.05, fps_rel: 0.01}          # for `splits verify`
  files: {rel_path: {sha256, duration, fps, sample_rate?, url?}}   # optional per-file pins
  clips: [{clip_id, identity, role, video, audio, frame_range, drive_audio, drive_clip, sha256, duration, fps}]
  pending: {list_file, parse, n, seed, cross_audio, video, audio}  # clips picked from an official list (voxceleb1)
Paths are relative to the data root, or absolute (`splits make` writes absolute paths by default). A split
whose clips have no drive_audio/drive_clip runs reconstruction only (settings_for).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.core.errors import ManifestError
from harness.core.media import Video, align_audio, read_audio, read_video

SPLITS_DIR = Path(__file__).resolve().parent
ROLES = ("train", "test")


@dataclass
class ClipEntry:
    clip_id: str
    identity: str
    video: str  # relative to the data root
    audio: str | None = None  # separate speech file; None: the video's own audio track
    frame_range: tuple[int, int] | None = None  # output frames [start, end) at the split's fps
    role: str = "test"  # "train" | "test"
    drive_audio: str | None = None  # rel path of the cross-audio speech
    drive_clip: str | None = None  # clip_id whose speech drive_audio is (None: speech from outside the split)
    sha256: str | None = None  # of the video file
    duration: float | None = None  # of the video (s)
    fps: float | None = None  # average source fps of the video

    def audio_path(self) -> str:
        """Where this clip's own speech is: the separate file, else the video's track."""
        return self.audio or self.video


@dataclass
class Split:
    name: str
    description: str
    selection_rule: str
    clips: list[ClipEntry]
    sources: dict = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel path -> {sha256, duration, fps, url}
    tolerance: dict[str, float] = field(default_factory=lambda: {"duration_s": 0.05, "fps_rel": 0.01})
    path: Path | None = None
    pending: dict[str, Any] | None = None  # selection computed from an official list under the data root

    def by_role(self, role: str) -> list[ClipEntry]:
        return [c for c in self.clips if c.role == role]

    def get(self, clip_id: str) -> ClipEntry:
        for c in self.clips:
            if c.clip_id == clip_id:
                return c
        raise KeyError(f"clip {clip_id!r} not in split {self.name!r}")

    def all_files(self) -> dict[str, dict[str, Any]]:
        """Every file the split uses (videos, audio, driving audio) with its pins (empty dict if none)."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.clips:
            for rel in (c.video, c.audio, c.drive_audio):
                if rel and rel not in out:
                    out[rel] = dict(self.files.get(rel, {}))
            if c.video in out:
                pins = out[c.video]
                for k in ("sha256", "duration", "fps"):
                    if pins.get(k) is None and getattr(c, k) is not None:
                        pins[k] = getattr(c, k)
        return out


def list_splits() -> list[str]:
    """Names of the shipped manifests."""
    return sorted(p.stem for p in SPLITS_DIR.glob("*.yaml"))


def _manifest_path(name: str | os.PathLike) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = SPLITS_DIR / f"{name}.yaml"
    if not cand.exists():
        raise ManifestError(f"unknown split {str(name)!r}; known: {', '.join(list_splits())}", cand)
    return cand


def _clip(d: dict[str, Any], files: dict[str, dict[str, Any]], path: Path) -> ClipEntry:
    try:
        clip_id, video = str(d["clip_id"]), str(d["video"])
    except KeyError as exc:
        raise ManifestError(f"clip entry lacks {exc.args[0]!r}: {d}", path) from exc
    fr = d.get("frame_range")
    if fr is not None:
        if len(fr) != 2 or int(fr[0]) < 0 or int(fr[1]) <= int(fr[0]):
            raise ManifestError(f"clip {clip_id}: bad frame_range {fr}", path)
        fr = (int(fr[0]), int(fr[1]))
    role = d.get("role", "test")
    if role not in ROLES:
        raise ManifestError(f"clip {clip_id}: role must be one of {ROLES}, got {role!r}", path)
    for rel in (video, d.get("audio"), d.get("drive_audio")):
        if rel is not None and not os.path.isabs(str(rel)) and os.path.normpath(str(rel)).split(os.sep)[0] == "..":
            raise ManifestError(f"clip {clip_id}: path {rel!r} escapes the data root (refused)", path)
    pins = files.get(video, {})
    return ClipEntry(
        clip_id=clip_id, identity=str(d.get("identity", clip_id)), video=video, audio=d.get("audio"),
        frame_range=fr, role=role, drive_audio=d.get("drive_audio"), drive_clip=d.get("drive_clip"),
        sha256=d.get("sha256", pins.get("sha256")), duration=d.get("duration", pins.get("duration")),
        fps=d.get("fps", pins.get("fps")),
    )


def load_split(name: str | os.PathLike) -> Split:
    """Load a manifest by name (harness/core/splits/<name>.yaml) or by path to a .yaml file."""
    path = _manifest_path(name)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        why = (f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
               if mark is not None and getattr(exc, "problem", None) else " ".join(str(exc).split()))
        raise ManifestError(f"cannot read manifest: {why}", path) from None
    if not isinstance(doc, dict) or "clips" not in doc:
        raise ManifestError("manifest must be a mapping with a 'clips' list", path)
    files = doc.get("files") or {}
    clips = [_clip(d, files, path) for d in doc["clips"] or []]
    ids = [c.clip_id for c in clips]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ManifestError(f"duplicate clip_id in manifest: {', '.join(repr(i) for i in dup)}", path)
    for c in clips:
        if c.drive_clip is not None and c.drive_clip not in ids:
            raise ManifestError(f"clip {c.clip_id}: drive_clip {c.drive_clip!r} is not in the split", path)
    split = Split(
        name=str(doc.get("name", path.stem)), description=str(doc.get("description", "")),
        selection_rule=str(doc.get("selection_rule", "")), clips=clips, sources=doc.get("sources") or {},
        files=files, path=path,
    )
    if doc.get("tolerance"):
        split.tolerance.update({k: float(v) for k, v in doc["tolerance"].items()})
    split.pending = doc.get("pending")
    return split


def _parse_list(path: Path, how: str) -> list[str]:
    """Utterance stems (<id>/<yt>/<utt>) from an official list file."""
    stems: set[str] = set()
    for line in path.read_text().splitlines():
        parts = line.split()
        if how == "veri_pairs" and len(parts) == 3:
            cols = parts[1:]
        elif how == "iden_split" and len(parts) == 2:
            cols = parts[1:]
        else:
            continue
        stems.update(c.rsplit(".", 1)[0] for c in cols)
    return sorted(stems)


def materialize(split: Split, root: str | os.PathLike | None = None) -> Split:
    """Apply a manifest's pending seeded selection to the official list found under the data root.
    Returns the split unchanged when it has nothing pending; ManifestError when the list is absent."""
    if not split.pending or split.clips:
        return split
    pend = split.pending
    lst = resolve(root, pend["list_file"])
    if not lst.exists():
        raise ManifestError(f"split {split.name} needs the official list to pick its clips (see selection_rule)", lst)
    population = _parse_list(lst, pend.get("parse", "veri_pairs"))
    n = int(pend["n"])
    if len(population) < n:
        raise ManifestError(f"list has {len(population)} utterances, the split needs {n}", lst)
    picked = sorted(np.random.default_rng(int(pend.get("seed", 0))).choice(population, n, replace=False).tolist())
    clips = []
    for stem in picked:
        clips.append(ClipEntry(clip_id=stem.replace("/", "_"), identity=stem.split("/")[0],
                               video=pend["video"].format(stem=stem), audio=pend["audio"].format(stem=stem), role="test"))
    if pend.get("cross_audio") == "next":
        for k, c in enumerate(clips):
            nxt = clips[(k + 1) % len(clips)]
            c.drive_audio, c.drive_clip = nxt.audio_path(), nxt.clip_id
    split.clips = clips
    return split


def has_cross_audio(clips: list[ClipEntry]) -> bool:
    """Whether any of these clips has a cross-audio pair (drive_audio or drive_clip)."""
    return any(c.drive_audio or c.drive_clip for c in clips)


def settings_for(split: Split, clips: list[ClipEntry], requested: list[str] | None,
                 known: tuple[str, ...]) -> tuple[list[str], str | None]:
    """(settings to run, a one-line note or None). requested None = the split's default: every known
    setting, or reconstruction only when no chosen clip has a cross-audio pair (MEAD), said once instead of
    a failure per clip. cross_audio asked for explicitly on such a split is a ManifestError."""
    if requested is not None:
        bad = [s for s in requested if s not in known]
        if bad:
            raise ManifestError(f"unknown setting {bad[0]!r}; known: {', '.join(known)}")
        if not requested:
            raise ManifestError(f"no settings given; known: {', '.join(known)}")
    pairs = has_cross_audio(clips)
    if requested is None:
        if pairs or "cross_audio" not in known:
            return list(known), None
        return [s for s in known if s != "cross_audio"], (
            f"split {split.name}: no clip has a cross-audio pair (drive_audio/drive_clip): running reconstruction only")
    if "cross_audio" in requested and not pairs:
        raise ManifestError(f"--settings cross_audio: split {split.name} has no cross-audio pairs (no clip has "
                            f"drive_audio or drive_clip); use --settings reconstruction", split.path)
    return list(requested), None


def resolve(root: str | os.PathLike | None, rel: str) -> Path:
    from harness.core.paths import data_root

    return data_root(root) / rel


def load_clip_media(entry: ClipEntry, root: str | os.PathLike | None = None, fps: float = 25.0,
                    sample_rate: int = 16000) -> tuple[Video, np.ndarray]:
    """Frames of entry.frame_range at `fps` and the clip's own 16 kHz speech aligned to them
    (len = n_frames * sample_rate / fps; a shortfall up to 0.1 s is zero-padded with a warning,
    more is a MediaError)."""
    vpath = resolve(root, entry.video)
    start, end = entry.frame_range if entry.frame_range else (0, None)
    video = read_video(vpath, fps=fps, start=start, max_frames=None if end is None else end - start)
    n = len(video)
    if end is not None and n != end - start:
        raise ManifestError(
            f"clip {entry.clip_id}: frame_range {entry.frame_range} exceeds the video ({start + n} frames at {fps:g} fps)",
            vpath)
    apath = resolve(root, entry.audio_path())
    audio = read_audio(apath, sample_rate=sample_rate, start_s=start / fps, duration_s=n / fps)
    audio = align_audio(audio, n, fps, sample_rate, path=apath)
    return video, audio


def load_drive_audio(entry: ClipEntry, root: str | os.PathLike | None = None, n_frames: int | None = None,
                     fps: float = 25.0, sample_rate: int = 16000) -> np.ndarray:
    """The cross-audio speech for a clip (from its start); trimmed/aligned to n_frames when given."""
    if not entry.drive_audio:
        raise ManifestError(f"clip {entry.clip_id} has no drive_audio (no cross-audio pair)")
    apath = resolve(root, entry.drive_audio)
    audio = read_audio(apath, sample_rate=sample_rate,
                       duration_s=None if n_frames is None else n_frames / fps)
    return audio if n_frames is None else align_audio(audio, n_frames, fps, sample_rate, path=apath)
