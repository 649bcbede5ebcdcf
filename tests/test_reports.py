"""Report pieces: the paper table's ranking/footnotes, the exports, and the report of a real demo run
opened in headless Chromium (every method row present, every image loaded)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from reports.export import to_csv, to_latex, to_markdown
from reports.load import load_run
from reports.tables import paper_table


def _summary(results: dict, unavailable: dict | None = None, latency: dict | None = None) -> dict:
    return {"run_id": "t", "config": {"split": "demo"}, "results": results, "unavailable": unavailable or {},
            "protocols": {}, "latency": latency or {}, "git_hash": "abc", "versions": {}, "machine": {}}


def _v(mean: float, hib: bool, lo: float | None = None, hi: float | None = None) -> dict:
    return {"mean": mean, "ci_low": lo if lo is not None else mean, "ci_high": hi if hi is not None else mean,
            "n_clips": 3, "higher_is_better": hib}


@pytest.fixture()
def synthetic_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    rec = {"ground_truth": {"M-LMD": _v(0.0, False), "SSIM": _v(1.0, True)},
           "a": {"M-LMD": _v(2.0, False, 1.5, 2.5), "SSIM": _v(0.8, True)},
           "b": {"M-LMD": _v(3.0, False), "SSIM": _v(0.9, True)},
           "c": {"M-LMD": _v(4.0, False), "SSIM": _v(0.7, True)},
           "static_frame": {"M-LMD": _v(1.0, False), "SSIM": _v(0.95, True)}}
    lat = {"a": {"a2e": {"p50_ms_per_frame": 1.0}, "renderer": {"p50_ms_per_frame": 10.0}},
           "b": {"generator": {"p50_ms_per_frame": 5.0}}}
    (run / "summary.json").write_text(json.dumps(_summary({"reconstruction": rec},
                                                           {"syncnet": "syncnet_v2.model not at /x"}, lat)))
    return run


def test_paper_table_ranks_and_footnotes(synthetic_run: Path) -> None:
    table = paper_table([load_run(synthetic_run)])
    cols = [c[1] for c in table.columns]
    by = {r.method: r for r in table.rows}
    m = cols.index("M-LMD")
    s = cols.index("SSIM")
    assert by["a"].cells[m].rank == 1 and by["b"].cells[m].rank == 2 and by["c"].cells[m].rank == 3
    assert by["ground_truth"].cells[m].rank is None  # the target is not ranked
    assert by["static_frame"].cells[m].rank is None  # nor the floor, though its value is "best" here
    assert by["b"].cells[s].rank == 1 and by["a"].cells[s].rank == 2
    assert by["a"].runtime.mean == pytest.approx(11.0) and by["b"].runtime.rank == 1
    sync = cols.index("Sync_conf")
    cell = by["a"].cells[sync]
    assert not cell.available and "syncnet_v2.model not at /x" in table.footnotes[cell.footnote - 1]
    assert any("cross_audio was not run" in f for f in table.footnotes)
    assert table.arrows()[m] == "↓" and table.arrows()[s] == "↑"


def test_bars_accept_split_level_values_without_ci(synthetic_run: Path, tmp_path: Path) -> None:
    """FID is split-level: its summary entry has ci_low/ci_high = None; the bars draw it without an error bar."""
    from reports.plots import metric_bars

    summary = json.loads((synthetic_run / "summary.json").read_text())
    summary["results"]["reconstruction"]["a"]["FID"] = {"mean": 12.0, "ci_low": None, "ci_high": None,
                                                        "n_clips": 3, "higher_is_better": False}
    (synthetic_run / "summary.json").write_text(json.dumps(summary))
    paths = metric_bars(load_run(synthetic_run), "reconstruction", "FID", tmp_path)
    assert paths and all(p.stat().st_size > 0 for p in paths)


def test_exports(synthetic_run: Path) -> None:
    table = paper_table([load_run(synthetic_run)])
    md = to_markdown(table)
    assert "| demo | a | " in md and "**2.000** [1.500, 2.500]" in md and "<u>3.000</u>" in md and "[^1]:" in md
    tex = to_latex(table)
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{2.000}" in tex and "\\underline{3.000}" in tex
    assert "ground\\_truth" in tex and "\\multicolumn{7}{c}{Reconstruction}" in tex
    rows = to_csv(table).strip().splitlines()
    assert rows[0].startswith("dataset,method,group,metric")
    assert len(rows) == 1 + 5 * (len(table.columns) + 1)


def test_runtime_falls_back_to_generation_wall_time(synthetic_run: Path) -> None:
    summary = json.loads((synthetic_run / "summary.json").read_text())
    summary["latency"] = {}
    summary["timings"] = {"c": {"reconstruction": {"generate_ms_per_frame": 250.0}}}
    (synthetic_run / "summary.json").write_text(json.dumps(summary))
    table = paper_table([load_run(synthetic_run)])
    c = next(r for r in table.rows if r.method == "c")
    assert c.runtime.mean == 250.0 and c.runtime.rank == 1
    assert "wall time of the whole method" in table.footnotes[c.runtime.footnote - 1]
    assert "**250.000**[^" in to_markdown(table)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A real run on two demo test clips (short), reference methods, cheap metrics."""
    from harness.cli import main

    out = tmp_path_factory.mktemp("runs") / "demo-mini"
    rc = main(["run", "--split", "demo", "--root", str(data_root), "--methods", "ground_truth,static_frame",
               "--settings", "reconstruction,cross_audio", "--metrics", "lmd,ssim,psnr",
               "--clips", "feifeili_clip3,vr_face4", "--max-frames", "30", "--out", str(out)])
    assert rc == 0
    return out


def test_report_of_real_run(demo_run: Path, tmp_path: Path) -> None:
    from harness.cli import main

    out = tmp_path / "report"
    assert main(["report", str(demo_run), "--out", str(out), "--columns", "4"]) == 0
    html = (out / "index.html").read_text()
    for method in ("ground_truth", "static_frame"):
        assert f'data-method="{method}"' in html
    assert (out / "table.md").exists() and (out / "table.tex").exists() and (out / "table.csv").exists()
    grids = list((out / "grids").rglob("*.png"))
    assert len(grids) == 4  # 2 clips x 2 settings
    assert list((out / "videos").rglob("*.mp4"))
    assert list((out / "plots").rglob("*.svg"))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.browser
def test_report_in_headless_chromium(demo_run: Path, tmp_path: Path) -> None:
    """Open the report in real headless Chromium via chromedriver: every method row is in the table and
    every image loaded (naturalWidth > 0); a screenshot is saved next to the report."""
    if not _chromium() or not shutil.which("chromedriver"):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium / chromedriver missing under CI (the Debian packages chromium, chromium-driver)")
        pytest.skip("chromium / chromedriver not installed")
    selenium = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from harness.cli import main

    out = tmp_path / "report"
    assert main(["report", str(demo_run), "--out", str(out), "--columns", "4", "--no-videos"]) == 0
    opts = selenium.ChromeOptions()
    opts.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,2200"):
        opts.add_argument(flag)
    driver = selenium.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        driver.get((out / "index.html").as_uri())
        driver.execute_script("return document.readyState")
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#paper tr.method-row')).map(r => r.dataset.method)")
        assert set(rows) == {"ground_truth", "static_frame"}
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images, "the report has no images"
        broken = [src for src, complete, width in images if not complete or width == 0]
        assert not broken, f"images that did not load: {broken}"
        shot = out / "screenshot.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("REALTALK_BENCH_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)
    finally:
        driver.quit()
