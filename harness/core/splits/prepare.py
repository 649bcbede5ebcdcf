"""Warm a split before a run: decode every clip (25 fps video, 16 kHz audio) and cache its face track.

Whole files are processed (the manifest's frame_range is ignored) so one pass checks that every clip
decodes and has a trackable face, and times each stage. A clip that fails is recorded with its error
and the pass goes on; the caller decides the exit status.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from harness.core.cache import Cache, default_cache
from harness.core.errors import BenchError, ManifestError
from harness.core.splits import ClipEntry, Split, resolve

FPS = 25.0
SAMPLE_RATE = 16000


@dataclass
class PrepareRow:
    """One clip's outcome. Timings are wall seconds; None where the stage did not run."""

    clip_id: str
    role: str
    frames: int | None = None  # at 25 fps
    audio_s: float | None = None  # seconds of 16 kHz audio decoded
    decode_s: float | None = None  # video + audio
    face_s: float | None = None  # detect + track + crop + landmarks (or the cache lookup)
    cached: bool | None = None  # face track came from the cache
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class _HitCache(Cache):
    """The default cache, remembering whether the last array lookup hit (clip_faces does not say)."""

    hit: bool = False

    def get_arrays(self, key: str):  # type: ignore[override]
        found = super().get_arrays(key)
        self.hit = found is not None
        return found


def select_clips(split: Split, names: Iterable[str] | None = None) -> list[ClipEntry]:
    """All clips of both roles, or the named ones in the order given; ManifestError names unknown ids."""
    if names is None:
        return list(split.clips)
    wanted = [n for n in names if n]
    if not wanted:
        raise ManifestError("no clip ids given (--clips a,b)", split.path)
    known = {c.clip_id: c for c in split.clips}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ManifestError(f"clips not in split {split.name!r}: {', '.join(unknown)}; known: {', '.join(known)}",
                            split.path)
    return [known[n] for n in wanted]


def prepare_clip(entry: ClipEntry, root: str | os.PathLike | None, max_frames: int | None = None,
                 cache: _HitCache | None = None) -> PrepareRow:
    """Decode one clip and run the cached face pipeline on it; errors land in the row, not raised."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_audio, read_video

    row = PrepareRow(clip_id=entry.clip_id, role=entry.role)
    cache = cache if cache is not None else _default_hit_cache()
    try:
        t0 = time.perf_counter()
        video = read_video(resolve(root, entry.video), fps=FPS, max_frames=max_frames)
        row.frames = len(video)
        audio = read_audio(resolve(root, entry.audio_path()), sample_rate=SAMPLE_RATE,
                           duration_s=None if max_frames is None else len(video) / FPS)
        row.audio_s = round(len(audio) / SAMPLE_RATE, 4)
        row.decode_s = time.perf_counter() - t0
        cache.hit = False
        t1 = time.perf_counter()
        clip_faces(video, cache=cache)
        row.face_s = time.perf_counter() - t1
        row.cached = cache.hit
    except (BenchError, OSError) as exc:
        row.error = f"{type(exc).__name__}: {exc}"
    return row


def _default_hit_cache() -> _HitCache:
    base = default_cache()
    return _HitCache(base.root, enabled=base.enabled)


def prepare_split(clips: list[ClipEntry], root: str | os.PathLike | None, max_frames: int | None = None,
                  progress: bool = True) -> list[PrepareRow]:
    """prepare_clip on each clip in turn (one shared cache), with a tqdm bar on stderr naming the clip."""
    from tqdm import tqdm

    cache = _default_hit_cache()
    rows: list[PrepareRow] = []
    bar = tqdm(clips, desc="prepare", unit="clip", dynamic_ncols=True, disable=not progress)
    for entry in bar:
        bar.set_postfix_str(entry.clip_id)
        rows.append(prepare_clip(entry, root, max_frames, cache))
    bar.close()
    return rows


def totals(rows: list[PrepareRow], wall_s: float) -> dict[str, Any]:
    """Sums over the rows (failed clips count what they got through) and the pass's wall time."""
    return {"clips": len(rows), "failed": sum(not r.ok for r in rows), "cached": sum(bool(r.cached) for r in rows),
            "frames": sum(r.frames or 0 for r in rows), "decode_s": sum(r.decode_s or 0.0 for r in rows),
            "face_s": sum(r.face_s or 0.0 for r in rows), "wall_s": wall_s}


__all__ = ["PrepareRow", "select_clips", "prepare_clip", "prepare_split", "totals", "FPS", "SAMPLE_RATE"]
