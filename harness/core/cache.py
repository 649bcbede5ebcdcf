"""Content-addressed on-disk cache for derived data (crops, landmarks, features, generated videos).

Keys hash the input file's bytes + the parameters + a code version, so a changed input, setting or
algorithm never returns a stale entry. Writes go to a temp file (fsynced) then os.replace(): two runs at
once, or a run killed mid-write, cannot leave a half-written entry, and two processes writing one key both
write the same bytes, so whichever rename lands last is as good as the first (tests/test_shared_cache.py).
Readers never delete an entry another process has just replaced (see _drop_if_same).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core.fsutil import atomic_write_bytes, atomic_write_with
from harness.core.paths import cache_dir


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) for the life of the process."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _DIGESTS.get(memo_key)
    if hit:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    _DIGESTS[memo_key] = h.hexdigest()
    return _DIGESTS[memo_key]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def make_key(kind: str, version: str, inputs: list[str | os.PathLike] | None = None, **params: Any) -> str:
    """Stable key: kind/version + input file hashes + JSON of the parameters."""
    payload = {
        "kind": kind,
        "version": version,
        "inputs": [file_digest(p) for p in (inputs or [])],
        "params": params,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:32]}"


class Cache:
    """A folder of entries: <root>/<kind>/<key>.npz (arrays) or .json (metadata) or a directory of files."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else cache_dir()
        self.enabled = enabled

    def _path(self, key: str, suffix: str) -> Path:
        kind = key.split("-", 1)[0]
        return self.root / kind / f"{key}{suffix}"

    def _atomic_write(self, dst: Path, data: bytes) -> None:
        atomic_write_bytes(dst, data)

    # arrays -------------------------------------------------------------------------------------------
    def get_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        p = self._path(key, ".npz")
        if not self.enabled:
            return None
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            return None
        with f:
            try:
                with np.load(f, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                _drop_if_same(p, os.fstat(f.fileno()))  # corrupt entry (e.g. disk full): recompute
                return None

    def put_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._atomic_write(self._path(key, ".npz"), buf.getvalue())

    def arrays(self, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Return the cached arrays for key, computing and storing them on a miss."""
        hit = self.get_arrays(key)
        if hit is not None:
            return hit
        value = compute()
        self.put_arrays(key, value)
        return value

    # json ---------------------------------------------------------------------------------------------
    def get_json(self, key: str) -> Any | None:
        p = self._path(key, ".json")
        if not self.enabled or not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def put_json(self, key: str, value: Any) -> None:
        if self.enabled:
            self._atomic_write(self._path(key, ".json"), json.dumps(value, default=str).encode())

    # files --------------------------------------------------------------------------------------------
    def file_path(self, key: str, suffix: str) -> Path:
        """Where a file-valued entry (e.g. a generated .mp4) lives; write it via put_file."""
        return self._path(key, suffix)

    def put_file(self, key: str, src: str | os.PathLike, suffix: str) -> Path:
        def copy(out: Any) -> None:
            with open(src, "rb") as inp:
                shutil.copyfileobj(inp, out)

        return atomic_write_with(self._path(key, suffix), copy)

    # admin --------------------------------------------------------------------------------------------
    def info(self) -> dict[str, dict[str, int]]:
        """Entries and bytes per kind."""
        out: dict[str, dict[str, int]] = {}
        if not self.root.exists():
            return out
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            sizes = [_size(f) for f in kind_dir.rglob("*") if not f.name.startswith(".tmp-")]
            sizes = [n for n in sizes if n is not None]  # files another process replaced or cleared meanwhile
            out[kind_dir.name] = {"entries": len(sizes), "bytes": sum(sizes)}
        return out

    def clear(self, kind: str | None = None) -> int:
        """Delete all entries (or one kind); returns the number of files removed."""
        target = self.root / kind if kind else self.root
        if not target.exists():
            return 0
        n = sum(1 for f in target.rglob("*") if f.is_file())
        shutil.rmtree(target)
        return n


def _size(p: Path) -> int | None:
    """Size of a regular file, None for folders and files gone since they were listed."""
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _drop_if_same(p: Path, seen: os.stat_result) -> None:
    """Unlink p only if it is still the file that was read: another process may have renamed a good entry
    over it since, and deleting that would make every other reader recompute it (or, mid-read, fail)."""
    try:
        now = os.stat(p)
    except FileNotFoundError:
        return
    if (now.st_ino, now.st_dev) == (seen.st_ino, seen.st_dev):
        p.unlink(missing_ok=True)


def default_cache() -> Cache:
    return Cache(enabled=os.environ.get("REALTALK_BENCH_NO_CACHE", "") == "")
