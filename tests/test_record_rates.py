"""harness.record_rates, the one parser of clip records into per-frame rates that tests/benchmarks/device_check.py
and tests/benchmarks/gpu_path.py share, on two tiny real run stores (2 clips x 20 frames): the generation rate
is the runner's own (timings.json), cached generations and failed clips are counted and kept out of it."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import test_runner_support as sup

from harness.record_rates import GENERATE, SUITE, record_rates
from harness.runner import RunConfig, run_benchmark

BENCH = Path(__file__).resolve().parent / "benchmarks"
METRICS = ["ssim", "psnr"]


@pytest.fixture(scope="module")
def stores(data_root, tmp_path_factory):
    """Run 1 generates t_shifted (cacheable) and fails t_broken; run 2, another folder, reads t_shifted's
    frames from the cache. static_frame (a reference method) is never cached. Its own cache home: the session's
    would hand t_shifted's frames to later tests that count t_shifted's generate calls (tests/test_runner.py)."""
    sup.register_standins()
    mp = pytest.MonkeyPatch()
    try:
        tmp = tmp_path_factory.mktemp("rates")
        mp.setenv("REALTALK_BENCH_HOME", str(tmp / "home"))
        split = sup.small_split(tmp, data_root, n_frames=20)
        runs = []
        for k in (1, 2):
            out = tmp / f"run{k}"
            s = run_benchmark(RunConfig(split=split, out=str(out), root=str(data_root), settings=["reconstruction"],
                                        methods=["static_frame", "t_shifted", "t_broken"], metrics=METRICS,
                                        write_videos=False, n_boot=100), progress=False)
            assert {f["method"] for f in s["failures"]} == {"t_broken"}
            runs.append(out)
        yield runs
    finally:
        mp.undo()
        sup.unregister_standins()


def test_rates_of_a_real_store(stores):
    run1, _ = stores
    rates = record_rates(run1)
    timings = json.loads((run1 / "timings.json").read_text())["timings"]
    for m in ("static_frame", "t_shifted"):
        r = rates[m]
        assert (r.records, r.failed, r.from_cache) == (2, 0, 0)
        assert set(r.stages) == {GENERATE, SUITE, *METRICS}
        assert all(st.frames == 40 for st in r.stages.values())  # 2 clips x 20 frames, every stage timed
        want = timings[m]["reconstruction"]["generate_ms_per_frame"]  # the runner's own figure
        assert r.stage(GENERATE).ms_per_frame == pytest.approx(want, rel=1e-12)  # two sums of 2 floats
        assert r.stage(SUITE).seconds == pytest.approx(sum(r.stages[x].seconds for x in METRICS), rel=1e-12)
        assert r.stage(SUITE).frames_per_s == pytest.approx(40 / r.stage(SUITE).seconds, rel=1e-12)
    broken = rates["t_broken"]
    assert (broken.records, broken.failed, broken.stages) == (0, 2, {})  # counted, no rate


def test_cached_generation_is_not_a_generation_rate(stores):
    _, run2 = stores
    r = record_rates(run2)["t_shifted"]
    assert (r.records, r.from_cache) == (2, 2)
    assert GENERATE not in r.stages and r.stage(SUITE).frames == 40  # its metrics were still computed and timed
    assert record_rates(run2)["static_frame"].stage(GENERATE).frames == 40
    assert record_rates(run2, setting="cross_audio") == {}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmarks_use_it(stores):
    _, run2 = stores
    per = _load("gpu_path")._per_frame(run2)
    assert per["t_shifted"]["generate_ms_per_frame"] is None and per["t_shifted"]["from_cache"] == 2
    assert per["t_shifted"]["metrics_ms_per_frame"] > 0 and per["t_broken"]["failed"] == 2
    src = (BENCH / "device_check.py").read_text()
    assert "record_rates(out)" in src and 'rglob("*.json")' not in src
