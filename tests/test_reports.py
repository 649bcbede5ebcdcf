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
    # a, b and c are all worse than static_frame's M-LMD 1.0: ranked and flagged (†)
    assert "| demo | a | " in md and "**2.000**† [1.500, 2.500]" in md and "<u>3.000</u>†" in md and "[^1]:" in md
    tex = to_latex(table)
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{2.000}$^\\dagger$" in tex
    assert "\\underline{3.000}" in tex and "ground\\_truth" in tex
    n_rec = sum(1 for c in table.columns if c[0] == "Reconstruction")
    assert f"\\multicolumn{{{n_rec + 1}}}{{c}}{{Reconstruction}}" in tex  # + the n column
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
    assert c.runtime.mean == 250.0
    assert c.runtime.rank is None  # the only method with a runtime: nothing to be best among
    assert "wall time of the whole method" in table.footnotes[c.runtime.footnote - 1]
    md = to_markdown(table)
    assert "| 250.000[^" in md and "**250.000**" not in md


def _write(tmp_path: Path, results: dict, **extra) -> Path:
    run = tmp_path / "run-rules"
    run.mkdir(exist_ok=True)
    (run / "summary.json").write_text(json.dumps({**_summary(results), **extra}))
    return run


def _cells(table, value_name: str, setting: str = "reconstruction") -> dict:
    j = next(i for i, c in enumerate(table.columns) if c[3] == value_name and c[2] == setting)
    return {r.method: r.cells[j] for r in table.rows}


def test_best_and_second_need_two_ranked_methods(tmp_path: Path) -> None:
    """With one competitor (the references are not ranked) nothing is bold or underlined; with two, ranks."""
    rec = {"ground_truth": {"SSIM": _v(1.0, True)}, "static_frame": {"SSIM": _v(0.9, True)},
           "a": {"SSIM": _v(0.7, True)}}
    one = paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))])
    assert all(c.rank is None for c in _cells(one, "SSIM").values())
    md = to_markdown(one)
    assert "**" not in md and "<u>" not in md
    assert "\\textbf" not in to_latex(one) and "\\underline" not in to_latex(one)
    rec["b"] = {"SSIM": _v(0.8, True)}
    two = _cells(paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))]), "SSIM")
    assert (two["b"].rank, two["a"].rank, two["static_frame"].rank, two["ground_truth"].rank) == (1, 2, None, None)


def test_floor_flag_only_when_worse_than_static_frame(tmp_path: Path) -> None:
    """A ranked method worse than static_frame on M-LMD (lower better) or AV-corr (higher better) is flagged;
    one better, equal, or a metric that is not a lip metric (SSIM) is not; without static_frame, no flag."""
    rec = {"static_frame": {"M-LMD": _v(2.0, False), "AV-corr": _v(0.20, True), "SSIM": _v(0.9, True)},
           "worse": {"M-LMD": _v(2.5, False), "AV-corr": _v(0.10, True), "SSIM": _v(0.5, True)},
           "better": {"M-LMD": _v(1.5, False), "AV-corr": _v(0.30, True), "SSIM": _v(0.6, True)},
           "equal": {"M-LMD": _v(2.0, False), "AV-corr": _v(0.20, True), "SSIM": _v(0.7, True)}}
    table = paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))])
    for value in ("M-LMD", "AV-corr"):
        cells = _cells(table, value)
        assert cells["worse"].flags == ["floor"]
        assert cells["better"].flags == [] and cells["equal"].flags == [] and cells["static_frame"].flags == []
    assert all(c.flags == [] for c in _cells(table, "SSIM").values())
    md = to_markdown(table)
    worse_row = next(line for line in md.splitlines() if line.startswith("| demo | worse |"))
    better_row = next(line for line in md.splitlines() if line.startswith("| demo | better |"))
    assert worse_row.count("†") == 2 and "†" not in better_row
    assert any(line.startswith("- † worse than static_frame") for line in md.splitlines())
    del rec["static_frame"]
    no_floor = paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))])
    assert "†" not in to_markdown(no_floor) and not any("static_frame" in x for x in no_floor.legend())


def test_coverage_flag_below_95_percent(tmp_path: Path) -> None:
    """FaceCov < 0.95 flags FaceCov and the values of its metric (they cover the found frames only);
    frames_used / frames_total < 0.95 flags that value; exactly 0.95 is not flagged."""
    lmd = {"metric": "lmd"}
    rec = {"low": {"FaceCov": {**_v(0.94, True), **lmd}, "M-LMD": {**_v(2.0, False), **lmd},
                   "SSIM": {**_v(0.8, True), "frames_used": 94, "frames_total": 100}},
           "ok": {"FaceCov": {**_v(0.95, True), **lmd}, "M-LMD": {**_v(2.1, False), **lmd},
                  "SSIM": {**_v(0.7, True), "frames_used": 95, "frames_total": 100}}}
    table = paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))])
    for value in ("FaceCov", "M-LMD", "SSIM"):
        cells = _cells(table, value)
        assert cells["low"].flags == ["coverage"], value
        assert cells["ok"].flags == [], value
    md = to_markdown(table)
    low_row = next(line for line in md.splitlines() if line.startswith("| demo | low |"))
    assert low_row.count("‡") == 3 and "‡" not in next(x for x in md.splitlines() if x.startswith("| demo | ok |"))
    assert any(line.startswith("- ‡ coverage below 95%") for line in md.splitlines())


def test_informational_values_unranked_without_arrow(tmp_path: Path) -> None:
    """AV offsets (higher_is_better None) are shown, never ranked, no arrow, no bold, in every export."""
    rec = {"a": {"LSE-offset": _v(3.0, None), "AV-offset": _v(-1.0, None), "LSE-C": _v(5.0, True)},
           "b": {"LSE-offset": _v(1.0, None), "AV-offset": _v(0.0, None), "LSE-C": _v(6.0, True)}}
    table = paper_table([load_run(_write(tmp_path, {"reconstruction": rec}))])
    heads = [c[1] for c in table.columns]
    arrows = table.arrows()
    for value in ("LSE-offset", "AV-offset"):
        j = next(i for i, c in enumerate(table.columns) if c[3] == value and c[2] == "reconstruction")
        assert arrows[j] == "" and heads[j].endswith("_off")
        assert all(c.rank is None and c.available for c in _cells(table, value).values())
    assert _cells(table, "LSE-C")["b"].rank == 1 and _cells(table, "LSE-C")["a"].rank == 2
    md = to_markdown(table)
    assert "| Rec Sync_off | Rec AV-corr↑ | Rec AV_off |" in md
    row_a = next(line for line in md.splitlines() if line.startswith("| demo | a |"))
    assert "| 3.00 [3.00, 3.00] |" in row_a and "| -1.00 [-1.00, -1.00] |" in row_a and "**3.00" not in row_a
    assert "Sync_off" in next(x for x in table.legend() if "informational" in x)


def test_no_negative_zero_anywhere(tmp_path: Path) -> None:
    """Means and CI bounds that round to zero print as 0, never -0.000, in Markdown, LaTeX, CSV and HTML
    (including the per-clip tables)."""
    from reports.html import build_report
    from reports.tables import fmt

    assert fmt(-0.0001) == "0.000" and fmt(-0.0) == "0.000" and fmt(-0.0006) == "-0.001" and fmt(-0.00004, 4) == "0.0000"
    rec = {"a": {"M-LMD": _v(-0.0001, False, -0.0004, 0.0003), "AV-offset": _v(-0.001, None, -0.004, 0.0)},
           "b": {"M-LMD": _v(-0.0, False), "AV-offset": _v(-0.0, None)}}
    run = _write(tmp_path, {"reconstruction": rec})
    (run / "per_clip.csv").write_text("method,setting,clip_id,metric,value_name,value,protocol\n"
                                      "a,reconstruction,c1,lmd,M-LMD,-0.00001,p\nb,reconstruction,c1,lmd,M-LMD,-0.0,p\n")
    table = paper_table([load_run(run)])
    for text in (to_markdown(table), to_latex(table)):
        assert "-0.00" not in text
    import csv as _csv

    fields = [f for row in _csv.reader(to_csv(table).splitlines()) for f in row]
    assert "-0.0001" in fields and "-0.0" not in fields  # CSV keeps full precision, minus a negative zero
    html = build_report([run], tmp_path / "report", videos=False).read_text()
    assert "-0.00" not in html
    assert "0.0000" in html  # the per-clip values are there, printed as zero


def test_failures_excluded_clips_n_and_coverage_in_html(tmp_path: Path) -> None:
    """The HTML lists each failure (method, setting, clip, error) and the clips excluded from the common set;
    n is the common set's size; the per-clip tables show frames used / total from the clip records."""
    from reports.html import build_report

    rec = {"a": {"M-LMD": {**_v(2.0, False), "n_clips": 2}}, "b": {"M-LMD": {**_v(3.0, False), "n_clips": 2}}}
    failures = [{"method": "b", "setting": "reconstruction", "clip_id": "c3", "error": "NoFaceError: no face in c3.mp4"},
                {"method": "a", "setting": "reconstruction", "clip_id": None, "error": "metric fid aggregate: boom"}]
    clip_set = {"reconstruction": {"common": ["c1", "c2"], "excluded": {"c3": ["b"]}}}
    run = _write(tmp_path, {"reconstruction": rec}, failures=failures, clip_set=clip_set)
    (run / "per_clip.csv").write_text("method,setting,clip_id,metric,value_name,value,protocol\n"
                                      "a,reconstruction,c1,lmd,M-LMD,2.0,p\nb,reconstruction,c1,lmd,M-LMD,3.0,p\n")
    rec_dir = run / "clips" / "a" / "reconstruction"
    rec_dir.mkdir(parents=True)
    (rec_dir / "c1.json").write_text(json.dumps({"method": "a", "setting": "reconstruction", "clip_id": "c1",
                                                  "status": "ok", "extra": {"lmd": {"frames_used": 27,
                                                                                    "frames_total": 30}}}))
    table = paper_table([load_run(run)])
    assert [r.n["reconstruction"] for r in table.rows] == [2, 2]
    assert any("c3" in f and "1 excluded" in f for f in table.footnotes)
    html = build_report([run], tmp_path / "report", videos=False).read_text()
    fail_table = html[html.index('<table class="failures">'):]
    fail_table = fail_table[:fail_table.index("</table>")]
    assert ("<td class=\"l\">b</td><td class=\"l\">reconstruction</td><td class=\"l\">c3</td>"
            "<td class=\"l\">NoFaceError: no face in c3.mp4</td>") in fail_table
    assert "(split level)" in fail_table and "metric fid aggregate: boom" in fail_table
    excluded = html[html.index('<table class="excluded">'):]
    assert '<td class="l">c3</td><td class="l">b</td>' in excluded[:excluded.index("</table>")]
    assert ">frames lmd</th>" in html and '<td class=" low">27/30</td>' in html  # 90% < 95%: marked low
    for line in table.legend():
        assert line.split(":")[0] in html


def test_html_without_clip_set_or_failures(synthetic_run: Path, tmp_path: Path) -> None:
    """Older runs (no clip_set, no failures key): n falls back to the values' n_clips and the page says none failed."""
    from reports.html import build_report

    table = paper_table([load_run(synthetic_run)])
    assert {r.n["reconstruction"] for r in table.rows} == {3} and {r.n["cross_audio"] for r in table.rows} == {None}
    html = build_report([synthetic_run], tmp_path / "report", videos=False).read_text()
    assert "No failures recorded." in html and '<table class="excluded">' not in html


def _burnt_in(frames):
    """The old label: drawn into the frame's bottom-left (what landed inside 256x256 face crops)."""
    import cv2

    out = frames.copy()
    for fr in out:
        cv2.putText(fr, "GENERATED", (4, fr.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def _row_err(a, b):
    """Mean absolute difference per image row (over frames, columns, channels)."""
    import numpy as np

    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return d.mean(axis=(0, 2, 3)) if d.ndim == 4 else d.mean(axis=(1, 2))


def test_label_band_below_frame_not_in_grid_crops(data_root: Path, tmp_path: Path) -> None:
    """A 256x256 face-crop clip (the crop covers the frame): the GENERATED label goes in a band added below
    the frame, so the grid's crops of the labelled video equal those of the unlabelled one up to codec loss;
    the tolerance comes from encoding the unlabelled frames (two encodes, each within e0 of the source)."""
    import cv2
    import numpy as np

    from harness.core.labels import LABEL_BAND, label_band_rows, label_frames
    from harness.core.faces.clip import clip_faces
    from harness.core.faces.crop import crop_frames
    from harness.core.media import read_video, write_video
    from reports.grids import CAPTION_H, comparison_grid

    src = read_video(data_root / "styletalk" / "video" / "feifeili_clip3.mp4", fps=25.0, max_frames=10)
    frames = src.frames
    t, h, w, _ = frames.shape
    labelled = label_frames(frames)
    assert labelled.shape == (t, h + label_band_rows(h), w, 3) and h % 16 == 0
    assert np.array_equal(labelled[:, :h], frames)  # the picture itself is untouched
    band = labelled[:, h:]
    assert band.shape[1] == LABEL_BAND and np.median(band) == 0 and (band > 128).mean() > 0.01  # text on black
    odd = label_frames(frames[:, :250])  # unaligned height: edge rows up to 256, then the band
    assert odd.shape[1] == 256 + LABEL_BAND and np.array_equal(odd[:, 250:256], np.repeat(frames[:, 249:250], 6, 1))

    run = tmp_path / "run"
    audio = np.zeros(t * 640, np.float32)
    gt_path = write_video(run / "videos" / "ground_truth" / "reconstruction" / "c.mp4", frames, 25.0, audio)
    write_video(run / "videos" / "gen" / "reconstruction" / "c.mp4", labelled, 25.0, audio)
    (run / "summary.json").write_text(json.dumps({
        **_summary({"reconstruction": {"ground_truth": {}, "gen": {}}}),
        "methods": {"ground_truth": {"kind": "reference"}, "gen": {"kind": "in-process"}}}))
    png = comparison_grid(load_run(run), "c", "reconstruction", tmp_path / "grid.png", columns=3)
    grid = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    row_h = grid.shape[0] // 2
    gt_tiles = grid[CAPTION_H:CAPTION_H + 256]
    gen_tiles = grid[row_h + CAPTION_H:row_h + CAPTION_H + 256]
    assert gt_tiles.shape == gen_tiles.shape == (256, 3 * 256, 3)

    decoded = read_video(gt_path, fps=None)
    track = clip_faces(decoded).crop_track
    e0 = _row_err(crop_frames(decoded.frames, track), crop_frames(frames, track)).max()
    tol = 2 * e0 * 1.5  # triangle inequality over the two encodes, 1.5x for rate-control differences
    assert 0 < e0 and _row_err(gen_tiles, gt_tiles).max() <= tol
    # the check can fail: a label burnt into the frame shows up in the crops far above that tolerance
    assert _row_err(crop_frames(_burnt_in(frames), track), crop_frames(frames, track)).max() > 3 * tol


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
