"""A manifest of a few real demo clips (absolute paths), for tests that preprocess them into shards."""
from __future__ import annotations

from pathlib import Path

import yaml


def demo_manifest(data_root: Path, dst: Path, clips: dict[str, str], bad: Path | None = None,
                  name: str = "scale-test") -> Path:
    """clips: {demo clip id: role}; bad: also one broken file (garbage bytes named .mp4) as a train clip."""
    from harness.core.splits import load_split

    entries = {c.clip_id: c for c in load_split("demo").clips}
    rows = []
    for cid, role in clips.items():
        e = entries[cid]
        rows.append({"clip_id": cid, "identity": e.identity, "role": role, "video": str(data_root / e.video),
                     "audio": str(data_root / e.audio) if e.audio else None})
    if bad is not None:
        bad.write_bytes(b"\x00not a video\xff" * 64)
        rows.insert(1, {"clip_id": "broken", "identity": "x", "role": "train", "video": str(bad)})
    dst.write_text(yaml.safe_dump({"name": name, "description": "test", "selection_rule": "test", "clips": rows}))
    return dst
