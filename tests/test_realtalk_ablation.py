"""`realtalk-bench ablation`: the paper's tables from the command line (train -> export -> run -> table), on
short segments of real clips with a few steps (values are not the paper's; the machinery is), and the
table model's layout, ranking and footnotes."""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from reports.ablation import COLUMNS, AblationTable, row_from_summary, to_html, to_markdown


def _summary(means: dict[str, float], failed: list[str] = ()) -> dict:
    hib = {"SSIM": True, "PSNR": True, "M-LMD": False, "FID": False, "LPIPS": False}
    return {"results": {"reconstruction": {"realtalk": {
        k: {"mean": v, "n_clips": 2, "higher_is_better": hib[k]} for k, v in means.items()}}},
        "failures": [{"method": "realtalk", "setting": "reconstruction", "clip_id": c, "error": "x"} for c in failed]}


def test_table_layout_best_and_footnotes():
    a = row_from_summary("flow", "Flow-based", False, _summary({"SSIM": 0.5, "PSNR": 20.0, "M-LMD": 3.0}, ["c9"]))
    b = row_from_summary("full", "FIA (blocks=2, Ours)", True, _summary({"SSIM": 0.6, "PSNR": 19.0, "M-LMD": 2.0}))
    a.params, a.paper_params, b.params, b.paper_params = 82_901_415, 82_940_000, 68_753_891, 69_240_000
    t = AblationTable(7, "Table 7", [a, b], {"lpips": "no weights", "fid": "not run (--metrics)", "csim": "other"})
    assert t.headers() == ["Variant", "Params (M)", "Paper (M)"] + [h for h, _, _ in COLUMNS[7]] + ["n"]
    md = to_markdown(t)
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # header + one row per variant
    flow, full = lines[1].split(" | "), lines[2].split(" | ")
    assert flow[1:3] == ["82.90", "82.94"] and full[1:3] == ["68.75", "69.24"]
    assert "**0.600**" in lines[2] and "**20.000**" in lines[1] and "**2.000**" in lines[2]  # best per direction
    assert "—[1]" in lines[1] and "—[2]" in lines[1]  # fid, lpips: a footnote each, never dropped
    assert "[1] fid: unavailable here (not run (--metrics))" in md and "csim" not in md  # only this table's metrics
    assert "1 failed" in lines[1] and "Flow-based: c9" in md
    assert "<b>0.600</b>" in to_html(t) and "ablation-table-7" in to_html(t)


def test_bad_data_is_one_line_error(capsys):
    assert main(["ablation", "--table", "6", "--data", "no_such_split", "--out", "/tmp/unused-ablation"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_split" in err[0]


@pytest.mark.slow
def test_ablation_table6_end_to_end(data_root, tmp_path, capsys):
    """Table 6 on 1 train clip (40 frames) and 2 test clips (first 20 frames), 2 steps per stage."""
    out = tmp_path / "abl6"
    argv = ["ablation", "--table", "6", "--data", "demo", "--root", str(data_root), "--out", str(out),
            "--steps", "2", "--train-clips", "Obama_clip1", "--max-frames", "40",
            "--clips", "Obama_clip3,feifeili_clip3", "--eval-max-frames", "20", "--metrics", "ssim,psnr,lmd",
            "--no-perceptual", "--no-progress"]
    assert main(argv) == 0
    t = json.loads((out / "table6.json").read_text())
    assert [r["label"] for r in t["rows"]] == ["Naive mask", "Learnable mask (Ours)"]
    assert t["headers"] == ["Variant"] + [h for h, _, _ in COLUMNS[6]] + ["n"]
    for r in t["rows"]:
        assert r["n_clips"] == 2 and not r["failed"]
        assert 0 < r["values"]["SSIM"] <= 1 and r["values"]["PSNR"] > 0 and r["values"]["M-LMD"] >= 0
        assert r["values"]["FID"] is None and r["values"]["LPIPS"] is None  # not run: footnoted
    assert "fid" in t["unavailable"] and "lpips" in t["unavailable"]
    import torch

    ck = {k: torch.load(out / k / "realtalk.pt", map_location="cpu", weights_only=False)["config"]["renderer"]["mask"]
          for k in ("mask_naive", "full")}
    assert ck == {"mask_naive": "naive", "full": "learnable"}
    # the two variants share the one A2E trained in shared/ and differ in their renderers only
    assert (out / "shared" / "a2e.pt").exists() and not (out / "shared" / "renderer.pt").exists()
    md = (out / "table6.md").read_text()
    assert "Naive mask" in md and (out / "table6.html").read_text().startswith("<!doctype html>")
    # rerunning resumes: nothing retrained or regenerated, the same table
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads((out / "table6.json").read_text())["rows"] == t["rows"]


def test_params_prints_ours_next_to_the_papers(capsys):
    assert main(["ablation", "--table", "7", "--params", "--config", "paper"]) == 0
    out = capsys.readouterr().out
    for ours, paper in (("82.90M", "82.94M"), ("98.69M", "98.79M"), ("50.99M", "52.53M"), ("68.75M", "69.24M"),
                        ("86.52M", "85.96M")):
        assert any(ours in line and paper in line for line in out.splitlines()), (ours, out)


@pytest.mark.slow
def test_ablation_table5_variant_shares_the_renderer(data_root, tmp_path):
    """Table 5's path: one shared renderer, the A2E varied (here only w/o history, 1 test clip)."""
    out = tmp_path / "abl5"
    assert main(["ablation", "--table", "5", "--data", "demo", "--root", str(data_root), "--out", str(out),
                 "--steps", "2", "--train-clips", "Obama_clip1", "--max-frames", "40", "--variants", "no_history",
                 "--clips", "Obama_clip3", "--eval-max-frames", "20", "--metrics", "lmd", "--no-perceptual",
                 "--no-progress"]) == 0
    t = json.loads((out / "table5.json").read_text())
    assert [r["label"] for r in t["rows"]] == ["w/o history"]
    assert t["headers"] == ["Variant"] + [h for h, _, _ in COLUMNS[5]] + ["n"]
    r = t["rows"][0]
    assert r["n_clips"] == 1 and all(r["values"][k] >= 0 for k in ("LMD", "M-LMD", "F-LMD"))
    assert r["values"]["LSE-C"] is None and "syncnet" in t["unavailable"]  # Sync_conf: footnoted
    assert (out / "shared" / "renderer.pt").exists() and (out / "no_history" / "a2e.pt").exists()
    import torch

    cfg = torch.load(out / "no_history" / "realtalk.pt", map_location="cpu", weights_only=False)["config"]
    assert cfg["a2e"]["use_history"] is False and cfg["a2e"]["use_shape"] is True


def test_train_takes_the_ablation_switches():
    from harness.cli import build_parser
    from harness.commands.ablation import apply_variant_flags
    from realtalk.config import get_config

    args = build_parser().parse_args(["train", "renderer", "--no-shape", "--no-history", "--mask", "naive",
                                      "--blocks", "3", "--reference-module", "deform"])
    cfg = apply_variant_flags(get_config("small"), args)
    assert (cfg.a2e.use_shape, cfg.a2e.use_history) == (False, False)
    assert (cfg.renderer.mask, cfg.renderer.fia_blocks, cfg.renderer.reference_module) == ("naive", 3, "deform")
    plain = apply_variant_flags(get_config("small"), build_parser().parse_args(["train", "a2e"]))
    assert plain == get_config("small")  # no switch: the preset unchanged
