"""harness.core.cache: keys change with inputs/params/version; concurrent writers never leave a broken entry."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from harness.core.cache import Cache, make_key


def test_keying(tmp_path: Path) -> None:
    f = tmp_path / "in.bin"
    f.write_bytes(b"abc")
    k = make_key("faces", "1", inputs=[f], size=256)
    assert k.startswith("faces-") and k == make_key("faces", "1", inputs=[f], size=256)
    assert k != make_key("faces", "2", inputs=[f], size=256)
    assert k != make_key("faces", "1", inputs=[f], size=128)
    assert k != make_key("landmarks", "1", inputs=[f], size=256)
    import os
    import time
    time.sleep(0.01)
    f.write_bytes(b"abd")  # same size, new content
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert k != make_key("faces", "1", inputs=[f], size=256)


def test_arrays_json_and_admin(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5)}

    assert np.array_equal(c.arrays("faces-k1", compute)["x"], np.arange(5))
    assert np.array_equal(c.arrays("faces-k1", compute)["x"], np.arange(5))
    assert len(calls) == 1
    c.put_json("meta-k2", {"a": 1})
    assert c.get_json("meta-k2") == {"a": 1}
    assert c.info() == {"faces": {"entries": 1, "bytes": c.info()["faces"]["bytes"]},
                        "meta": {"entries": 1, "bytes": c.info()["meta"]["bytes"]}}
    assert c.clear("faces") == 1 and "faces" not in c.info()
    assert c.clear() == 1 and c.info() == {}
    assert Cache(tmp_path / "off", enabled=False).get_arrays("faces-k1") is None


def _writer(root: str, value: int, n: int) -> None:
    c = Cache(root)
    big = np.full((256, 256, 16), value, np.uint8)  # 1 MiB: a torn write would be visible
    for _ in range(n):
        c.put_arrays("faces-same", {"a": big})


def test_two_processes_same_key(tmp_path: Path) -> None:
    root = str(tmp_path / "c")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, v, 15)) for v in (1, 2)]
    for p in procs:
        p.start()
    reads = 0
    c = Cache(root)
    while any(p.is_alive() for p in procs):
        hit = c.get_arrays("faces-same")
        if hit is not None:  # every read sees a complete entry from one writer
            assert hit["a"].shape == (256, 256, 16) and len(np.unique(hit["a"])) == 1
            reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = c.get_arrays("faces-same")
    assert final is not None and int(final["a"][0, 0, 0]) in (1, 2)
    assert not list((Path(root) / "faces").glob(".tmp-*"))  # no leftovers


def test_feature_cache_keys_on_content_and_fingerprint(tmp_path: Path) -> None:
    """metrics.feature_cache: same content (any array object) hits; changed content or fingerprint misses;
    a lookup-only call never stores; the in-process layer is emptied by frame_memo.clear_all()."""
    from metrics import frame_memo
    from metrics.feature_cache import array_digest, cached_features

    c = Cache(tmp_path / "c")
    frames = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    calls: list[int] = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"features": frames.reshape(3, -1).astype(np.float32)}

    fp = {"protocol": "p1", "weights": "w1"}
    first = cached_features("gtinception", frames, fp, compute, cache=c)
    frame_memo.clear_all()  # a new process: only the disk entry is left
    again = cached_features("gtinception", frames.copy(), fp, compute, cache=c)
    assert len(calls) == 1 and np.array_equal(first["features"], again["features"])
    changed = frames.copy()
    changed[0, 0, 0, 0] ^= 1
    assert array_digest(changed) != array_digest(frames)
    assert cached_features("gtinception", changed, fp, None, cache=c) is None  # lookup only: a miss
    cached_features("gtinception", frames, {**fp, "weights": "w2"}, compute, cache=c)
    assert len(calls) == 2  # new weights: recomputed
    assert array_digest(frames.astype(np.int16)) != array_digest(frames)  # dtype is part of the content
    assert c.info()["gtinception"]["entries"] == 2


def test_pass_log_counts_by_content() -> None:
    from metrics.frame_memo import FrameMemo
    from metrics.passes import PassLog, PASSES

    frames = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    PASSES.reset()
    memo = FrameMemo(network="t_net")
    memo.map("ns", frames[[0, 1, 0]], lambda f: list(range(len(f))))
    assert PASSES.frames["t_net"] == 2 and PASSES.times("t_net", frames) == [1, 1, 0, 0]
    memo.map("ns2", frames[:1], lambda f: [0])  # another namespace (e.g. backend): a second pass of frame 0
    assert PASSES.times("t_net", frames[:1]) == [2] and PASSES.seen("t_net", frames) == 2
    log = PassLog()
    log.load("x")
    assert log.summary() == {"x": {"passes": 0, "loads": 1}}
