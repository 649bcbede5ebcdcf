"""Where things live: the data root, the cache, the model files. One place, overridable by env vars."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """Root for realtalk-bench's own files (cache, checkpoints, weights): $REALTALK_BENCH_HOME or ~/.cache/realtalk-bench."""
    return Path(os.environ.get("REALTALK_BENCH_HOME", Path.home() / ".cache" / "realtalk-bench")).expanduser()


def cache_dir() -> Path:
    """Content-addressed cache of derived data: $REALTALK_BENCH_CACHE or <home>/cache."""
    return Path(os.environ.get("REALTALK_BENCH_CACHE", home() / "cache")).expanduser()


def weights_dir() -> Path:
    """Project-owned model files (those without a conventional location of their own): <home>/weights."""
    return Path(os.environ.get("REALTALK_BENCH_WEIGHTS", home() / "weights")).expanduser()


def torch_hub_checkpoints() -> Path:
    """torch hub checkpoint folder, honouring $TORCH_HOME like torch.hub does."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch"
    )
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The demo data root: --root, else $REALTALK_BENCH_DATA, else ../shared/data beside the project."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("REALTALK_BENCH_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()
