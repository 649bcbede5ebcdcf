"""harness.cache: keys change with inputs/params/version; concurrent writers never leave a broken entry."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from harness.cache import Cache, make_key


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
