"""`realtalk-bench ablation --data DATA_DIR` on `preprocess` shards: short real clips (frames capped) are
prepared once, then a table is trained from the memmapped shards -- no training clip's media is opened
again -- evaluated through the runner, and written in the paper's layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from reports.ablation import COLUMNS

CLIPS = {"Obama_clip1": "train", "feifeili_clip1": "train", "feifeili_clip3": "test"}
MAX_FRAMES = 24  # >= T + 8 frames: one A2E batch of windows (small: T 16, batch 8) from two clips


@pytest.fixture(scope="module")
def shards(data_root, tmp_path_factory):
    """(shard folder, manifest, {clip id: media files}) of the three clips, first MAX_FRAMES frames."""
    from _realtalk_shards import demo_manifest

    from harness.core.splits import load_split

    tmp = tmp_path_factory.mktemp("ablation-shards")
    manifest = demo_manifest(data_root, tmp / "abl.yaml", CLIPS, name="ablation-test")
    data = tmp / "data"
    assert main(["preprocess", "--split", str(manifest), "--out", str(data), "--max-frames", str(MAX_FRAMES)]) == 0
    media = {e.clip_id: {Path(e.video).resolve(), Path(e.audio).resolve()} for e in load_split(str(manifest)).clips}
    return data, manifest, media


def test_training_clips_come_from_the_shards_as_memmaps(shards):
    """The fast half of the shard path: what `ablation` trains on, without training."""
    from harness.commands.ablation import data_record, held_out_clips, load_training_clips
    from harness.core.errors import ManifestError
    from realtalk.audio_features import get_featurizer
    from realtalk.face_models import get_face_model

    data, manifest, _ = shards
    fm, feat = get_face_model("landmark68"), get_featurizer("logmel")
    split, clips = load_training_clips(str(data), None, fm, feat, max_frames=20)
    assert split == str(manifest) and [c.clip_id for c in clips] == ["Obama_clip1", "feifeili_clip1"]
    for c in clips:
        assert isinstance(c.crops, np.memmap) and Path(c.crops.filename).is_relative_to(data.resolve())
        assert len(c) == 20 and c.crops.shape[0] == 20 and c.mask.shape[0] == 20
        assert c.audio.shape[0] == feat.tokens_per_frame * 20
    _, only = load_training_clips(str(data), None, fm, feat, None, only=["feifeili_clip1"])
    assert [c.clip_id for c in only] == ["feifeili_clip1"] and len(only[0]) == MAX_FRAMES
    with pytest.raises(ManifestError, match="nope"):
        load_training_clips(str(data), None, fm, feat, None, only=["nope"])
    val = held_out_clips(str(data))
    assert val is not None and val.ids == ["feifeili_clip3"]
    rec = data_record(str(data), clips)
    assert rec == {"kind": "shards", "source": str(data.resolve()), "clips": {"Obama_clip1": 20, "feifeili_clip1": 20}}


@pytest.mark.slow  # ~2-3 min on 2 busy cores: 3 tiny trainings + 2 evaluations
def test_ablation_table6_from_shards_end_to_end(shards, tmp_path, monkeypatch, capsys):
    """Table 6 from shards, 2 steps per stage, the test clip's first 16 frames evaluated."""
    import harness.core.media as media
    import realtalk.train as train

    data, manifest, files = shards
    opened: list[Path] = []
    real_open = media._open
    monkeypatch.setattr(media, "_open", lambda p: (opened.append(Path(p).resolve()), real_open(p))[1])
    seen: list[tuple[str, list, object]] = []
    for name in ("train_a2e", "train_renderer"):
        def spy(cfg, clips, *a, _real=getattr(train, name), _name=name, **kw):
            seen.append((_name, list(clips), kw.get("val_clips")))
            return _real(cfg, clips, *a, **kw)
        monkeypatch.setattr(train, name, spy)
    out = tmp_path / "abl6"
    argv = ["ablation", "--table", "6", "--data", str(data), "--out", str(out), "--steps", "2",
            "--eval-max-frames", "16", "--metrics", "ssim,psnr,lmd", "--no-perceptual", "--no-progress"]
    assert main(argv) == 0
    # trained from the shards: every stage got memmapped shard clips, and no training clip's media was opened
    assert [s[0] for s in seen] == ["train_a2e", "train_renderer", "train_renderer"]
    for _, clips, val in seen:
        assert [c.clip_id for c in clips] == ["Obama_clip1", "feifeili_clip1"]
        assert all(isinstance(c.crops, np.memmap) and isinstance(c.mask, np.memmap) for c in clips)
        assert all(Path(c.crops.filename).is_relative_to(data.resolve()) for c in clips)
        assert val is not None and val.ids == ["feifeili_clip3"]  # held out: the shards' test clip
    train_media = files["Obama_clip1"] | files["feifeili_clip1"]
    assert not train_media & set(opened), sorted(train_media & set(opened))
    assert files["feifeili_clip3"] & set(opened)  # the spy works: evaluation decoded the test clip
    # the table: the paper's rows and columns, values from the runs
    t = json.loads((out / "table6.json").read_text())
    assert [r["label"] for r in t["rows"]] == ["Naive mask", "Learnable mask (Ours)"]
    assert t["headers"] == ["Variant"] + [h for h, _, _ in COLUMNS[6]] + ["n"]
    for r in t["rows"]:
        assert r["n_clips"] == 1 and not r["failed"]
        assert 0 < r["values"]["SSIM"] <= 1 and r["values"]["PSNR"] > 0 and r["values"]["M-LMD"] >= 0
        assert r["values"]["FID"] is None and r["values"]["LPIPS"] is None
        assert np.isfinite(r["validation"]["val_l1_masked_region"])
    assert {"fid", "lpips"} <= set(t["unavailable"])
    md = (out / "table6.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and all(len(line.split(" | ")) == len(t["headers"]) for line in rows)
    assert "fid: unavailable here" in md and f"shards {data}" in md
    import torch

    for key, mask in (("mask_naive", "naive"), ("full", "learnable")):
        ck = torch.load(out / key / "realtalk.pt", map_location="cpu", weights_only=False)
        assert ck["config"]["renderer"]["mask"] == mask
        assert ck["train_data"] == {"kind": "shards", "source": str(data.resolve()),
                                    "clips": {"Obama_clip1": MAX_FRAMES, "feifeili_clip1": MAX_FRAMES}}
    # rerun: resumes (nothing retrained), the same table
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads((out / "table6.json").read_text())["rows"] == t["rows"]
