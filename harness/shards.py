"""`run --shard I/N`: which clips one of N machines evaluates.

Clips are sorted by clip_id and clip k (0-based) goes to shard (k mod N) + 1: the assignment depends only
on the run's clip selection (same manifest, same --clips/--role/--max-frames), never on the machine, the
order of the manifest or a hash seed, and the shards differ in size by at most one clip.
"""
from __future__ import annotations

from typing import Any, Sequence

from harness.core.errors import BenchError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' (1 <= I <= N) -> (I, N); None stays None. A malformed value is a one-line error."""
    if text is None:
        return None
    i_s, sep, n_s = str(text).partition("/")
    try:
        i, n = int(i_s), int(n_s)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise BenchError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/2 and 2/2")
    return i, n


def shard_clips(clips: Sequence[Any], shard: str | None) -> list[Any]:
    """The clips of shard I/N (all clips when shard is None), in their original order."""
    parsed = parse_shard(shard)
    if parsed is None:
        return list(clips)
    i, n = parsed
    ids = sorted(c.clip_id for c in clips)
    mine = {cid for k, cid in enumerate(ids) if k % n == i - 1}
    return [c for c in clips if c.clip_id in mine]
