"""`realtalk-bench ablation --table 5|6|7 --data SPLIT_OR_DATA_DIR --out DIR`: train and evaluate every variant
of one of the paper's ablation tables and write the table in the paper's layout (reports/ablation.py).

Per table (variants in realtalk/ablations.py): the stage the table does NOT vary is trained once (full
config) into OUT/shared/; each variant trains the varied stage into OUT/<variant>/ (Table 5: the A2E with
--no-shape / --no-history; Table 6: the renderer with --mask naive|learnable; Table 7: the renderer with
flow / deformable reference modules or 1/2/3 FIA blocks), the two are exported to OUT/<variant>/realtalk.pt
and the harness runner evaluates it (method realtalk, reconstruction, the split's test clips) into
OUT/<variant>/run/. Then OUT/table<N>.md / .html / .json. Everything resumes: rerun the same command.

--data is a split name (with --root, clips decoded and prepared in RAM: realtalk.data.load_split_data) or a
folder written by `realtalk-bench preprocess` (realtalk.shards; its index names the split evaluated). From
shards every stage trains on the memmapped TRAIN clips (no media decoded; the shards' TEST clips are each
stage's held-out validation under inference conditions, realtalk.validation), and each variant's
realtalk.pt records the training data ("train_data": shard folder, clip ids, frames). --device / --precision
train (and the method generates) on a GPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ablation", help="train + evaluate the variants of the paper's Table 5, 6 or 7")
    p.add_argument("--table", type=int, required=True, choices=[5, 6, 7])
    p.add_argument("--data", help="split name (with --root) or a `preprocess` shard folder (required unless --params)")
    p.add_argument("--root", default=None, help="data root (default $REALTALK_BENCH_DATA or ../shared/data)")
    p.add_argument("--out", help="output folder (rerun the same command to resume; required unless --params)")
    p.add_argument("--params", action="store_true",
                   help="only print each variant's parameter counts next to the paper's (no training)")
    p.add_argument("--config", default="small", choices=["paper", "small"])
    p.add_argument("--steps", type=int, default=200, help="training steps of each varied stage")
    p.add_argument("--shared-steps", type=int, default=None, help="steps of the shared stage (default --steps)")
    p.add_argument("--max-frames", type=int, default=None, help="training frames per clip (default all)")
    p.add_argument("--eval-max-frames", type=int, default=None, help="evaluate the first N frames of each test clip")
    p.add_argument("--clips", type=_csv, default=None, help="only these test clip ids")
    p.add_argument("--train-clips", type=_csv, default=None, help="only these train clip ids (split --data)")
    p.add_argument("--variants", type=_csv, default=None, help="only these variant keys (default: the table's)")
    p.add_argument("--metrics", type=_csv, default=None, help="metrics to run (default: the table's columns)")
    p.add_argument("--features", default="logmel", choices=["logmel", "hubert"])
    p.add_argument("--face-model", default=None, choices=["landmark68", "bfm"],
                   help="default landmark68 (--params: the preset's BFM dims unless given)")
    p.add_argument("--no-perceptual", action="store_true", help="renderer loss without the VGG term (faster)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds per training stage")
    p.add_argument("--device", default="cpu", help="training and generation device: cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="training autocast")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per training stage")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def add_variant_flags(p: argparse.ArgumentParser) -> None:
    """The single-switch ablation flags (`train` takes them): each sets one config field of the paper's tables."""
    g = p.add_argument_group("ablation switches (the paper's Tables 5-7)")
    g.add_argument("--no-shape", action="store_true", help="Table 5: A2E without the shape (alpha) token")
    g.add_argument("--no-history", action="store_true", help="Table 5: A2E without the N historical expressions")
    g.add_argument("--mask", choices=["learnable", "naive"], default=None,
                   help="Table 6: learnable 3D-prior mask (default) or the naive lower half")
    g.add_argument("--blocks", type=int, choices=[1, 2, 3], default=None,
                   help="Table 7: residual blocks per FIA module (default 2)")
    g.add_argument("--reference-module", choices=["attention", "flow", "deform"], default=None,
                   help="Table 7: FIA reference structure: cross-attention (default), flow warping, deformable conv")


def apply_variant_flags(cfg: Any, args: argparse.Namespace) -> Any:
    """cfg with the switches given on the command line (the rest of the config unchanged)."""
    import dataclasses

    a2e = {k: False for k, flag in (("use_shape", "no_shape"), ("use_history", "no_history"))
           if getattr(args, flag, False)}
    ren = {k: getattr(args, flag) for k, flag in (("mask", "mask"), ("fia_blocks", "blocks"),
                                                  ("reference_module", "reference_module"))
           if getattr(args, flag, None) is not None}
    return dataclasses.replace(cfg, a2e=dataclasses.replace(cfg.a2e, **a2e),
                               renderer=dataclasses.replace(cfg.renderer, **ren))


def _trim(c: Any, n: int, tpf: int) -> Any:
    """A shard clip cut to its first n frames (views of the memmaps, nothing read)."""
    from dataclasses import replace

    kw = {k: getattr(c, k)[:n] for k in ("crops", "beta", "rho", "mask", "teeth") if getattr(c, k, None) is not None}
    return replace(c, audio=c.audio[:tpf * n], **kw)


def _only(ids: list[str], only: list[str] | None, where: str) -> list[str]:
    from harness.core.errors import ManifestError

    if not only:
        return ids
    missing = sorted(set(only) - set(ids))
    if missing:
        raise ManifestError(f"--train-clips {','.join(missing)}: not train clips of {where}")
    return [i for i in ids if i in only]


def load_training_clips(data: str, root: str | None, fm: Any, feat: Any, max_frames: int | None,
                        only: list[str] | None = None) -> tuple[str, list[Any]]:
    """(split evaluated, train ClipData) from a split name or a preprocessed shard folder (memmapped clips)."""
    from harness.core.errors import ManifestError

    path = Path(data)
    if path.is_dir():
        from realtalk.shards import ShardStore

        store = ShardStore(path, role="train")
        store.check(fm, feat.name, int(feat.tokens_per_frame))
        split = store.index.get("split")
        if not split:
            raise ManifestError("index.json names no split (needed for the test clips)", path / "index.json")
        keep = set(_only(store.ids, only, f"the shards {path}"))
        clips = [store[i] for i in range(len(store)) if store.ids[i] in keep]
        if max_frames is not None:
            clips = [_trim(c, max_frames, int(feat.tokens_per_frame)) for c in clips]
    else:
        from harness.core.splits import list_splits
        if data not in list_splits() and not path.suffix:
            raise ManifestError(f"--data {data!r} is neither a shard folder nor a known split "
                                f"({', '.join(list_splits())})")
        from realtalk.data import iter_split_data, split_entries

        split = data
        entries = split_entries(split, "train")
        keep = set(_only([e.clip_id for e in entries], only, f"split {split!r}"))
        entries = [e for e in entries if e.clip_id in keep]
        clips = [cd for _, cd in iter_split_data(entries, root, fm, feat, max_frames=max_frames)]
    if not clips:
        raise ManifestError("no training clips", path if path.is_dir() else None)
    return split, clips


def held_out_clips(data: str) -> Any:
    """The shards' TEST clips (validation under inference conditions), None for a split name or none there."""
    path = Path(data)
    if not path.is_dir():
        return None
    from realtalk.shards import ShardStore

    val = ShardStore(path, role="test")
    return val if len(val) else None


def data_record(data: str, clips: list[Any]) -> dict[str, Any]:
    """What a variant was trained on (kept in its realtalk.pt): shard folder or split, clip ids and frames."""
    path = Path(data)
    return {"kind": "shards" if path.is_dir() else "split", "source": str(path.resolve()) if path.is_dir() else data,
            "clips": {c.clip_id: len(c) for c in clips}}


def print_parameter_counts(cfg: Any, table: int, variants: list[Any]) -> None:
    """Renderer / A2E parameters per variant (meta device), the paper's renderer count beside them."""
    from realtalk.ablations import count_a2e, count_renderer, variant_config

    print(f"table {table}, config {cfg.name} (face model dims {cfg.renderer.n_id}/{cfg.renderer.n_exp}/"
          f"{cfg.renderer.n_pose}): parameters, ours vs the paper")
    print(f"{'variant':<24}{'renderer':>12}{'paper':>10}{'A2E':>10}")
    for v in variants:
        c = variant_config(cfg, v)
        paper = f"{v.paper_params_m:.2f}M" if v.paper_params_m is not None else "-"
        print(f"{v.label:<24}{count_renderer(c) / 1e6:>11.2f}M{paper:>10}{count_a2e(c) / 1e6:>9.2f}M")


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from harness.core.errors import BenchError
    from harness.core.fsutil import atomic_write_json, atomic_write_text
    from harness.runner import RunConfig, run_benchmark
    from realtalk.ablations import TITLES, count_renderer, get_table, variant_config
    from realtalk.audio_features import get_featurizer
    from realtalk.config import get_config
    from realtalk.face_models import get_face_model
    from realtalk.train import export_combined, train_a2e, train_renderer
    from realtalk.train_config import TrainSettings
    from reports.ablation import AblationTable, metrics_for, row_from_summary, to_json, to_markdown, to_page

    variants = get_table(args.table)
    if args.variants:
        known = {v.key for v in variants}
        bad = sorted(set(args.variants) - known)
        if bad:
            raise BenchError(f"--variants {','.join(bad)}: not in table {args.table} ({', '.join(sorted(known))})")
        variants = [v for v in variants if v.key in args.variants]
    if args.params:  # the preset's own dims (BFM 80/64/6, the paper's) unless the face model is given and present
        base = get_config(args.config)
        if args.face_model:
            fm = get_face_model(args.face_model)
            base = base.with_face_model(fm.n_id, fm.n_exp, fm.n_pose)
        print_parameter_counts(base, args.table, variants)
        return 0
    fm = get_face_model(args.face_model or "landmark68")
    feat = get_featurizer(args.features)
    base = get_config(args.config).with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    if not args.data or not args.out:
        raise BenchError("ablation needs --data and --out (or --params to print parameter counts only)")
    say = (lambda m: None) if args.no_progress else print
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BenchError(f"--device {args.device}: no CUDA device here (torch {torch.__version__})")
    settings = lambda: TrainSettings(device=args.device, precision=args.precision, workers=args.workers)  # noqa: E731
    split, clips = load_training_clips(args.data, args.root, fm, feat, args.max_frames, args.train_clips)
    val = held_out_clips(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "realtalk-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["ablation"] else None
    kw = dict(time_budget=args.time_budget, resume=True, progress=not args.no_progress, log=say, command=command,
              val_clips=val)
    shared_steps = args.shared_steps if args.shared_steps is not None else args.steps
    varied = variants[0].stage
    shared_dir = out / "shared"
    if varied == "a2e":  # Table 5: one renderer for every A2E variant
        train_renderer(base, clips, fm, shared_dir, shared_steps, perceptual=not args.no_perceptual,
                       settings=settings(), **kw)
    else:  # Tables 6, 7: one A2E for every renderer variant
        train_a2e(base, clips, fm, shared_dir, shared_steps, featurizer_name=feat.name, settings=settings(), **kw)
    metrics = args.metrics or metrics_for(args.table)
    rows: list[Any] = []
    unavailable = {m: "not run (--metrics)" for m in metrics_for(args.table) if m not in metrics}
    for v in variants:
        cfg = variant_config(base, v)
        vdir = out / v.key
        if varied == "a2e":
            trained = train_a2e(cfg, clips, fm, vdir, args.steps, featurizer_name=feat.name, settings=settings(),
                                **kw)
            a2e_ck, ren_ck = vdir / "a2e.pt", shared_dir / "renderer.pt"
        else:
            trained = train_renderer(cfg, clips, fm, vdir, args.steps, perceptual=not args.no_perceptual,
                                     settings=settings(), **kw)
            a2e_ck, ren_ck = shared_dir / "a2e.pt", vdir / "renderer.pt"
        ckpt = export_combined(a2e_ck, ren_ck, vdir / "realtalk.pt", extra={"ablation": {
            "table": args.table, "variant": v.key, "command": command}, "train_data": data_record(args.data, clips)})
        method_args: dict[str, Any] = {"checkpoint": str(ckpt)}
        if args.device != "cpu":
            method_args["device"] = args.device
        run_cfg = RunConfig(split=split, out=str(vdir / "run"), methods=["realtalk"], root=args.root,
                            settings=["reconstruction"], metrics=metrics, clips=args.clips,
                            max_frames=args.eval_max_frames, write_videos=False, device=args.device,
                            method_args={"realtalk": method_args})
        say(f"ablation table {args.table}: evaluating {v.key} ({v.label})")
        summary = run_benchmark(run_cfg, progress=not args.no_progress)
        unavailable.update(summary.get("unavailable", {}))
        row = row_from_summary(v.key, v.label, v.full, summary)
        row.params, row.run_dir = count_renderer(cfg), str(vdir / "run")
        row.validation = {k: v for k, v in (trained.get("validation") or {}).items() if k != "step"} or None
        row.paper_params = None if v.paper_params_m is None else int(round(v.paper_params_m * 1e6))
        rows.append(row)
    notes = [f"config {args.config}, {args.steps} steps per varied stage ({shared_steps} shared), "
             f"data {args.data}, evaluated on split {split!r} test clips (reconstruction)"
             + (f", first {args.eval_max_frames} frames" if args.eval_max_frames else ""),
             f"trained on {len(clips)} clip(s) ({sum(len(c) for c in clips)} frames) from "
             + (f"shards {args.data}" if Path(args.data).is_dir() else f"split {args.data} (decoded in RAM)")
             + ("; held-out validation: the shards' test clips" if val is not None else ""),
             "Params: renderer parameters of this config; the paper's are for its 256px model (Table 7)."]
    table = AblationTable(args.table, TITLES[args.table], rows, unavailable, notes)
    md = to_markdown(table)
    atomic_write_text(out / f"table{args.table}.md", md)
    atomic_write_text(out / f"table{args.table}.html", to_page(table))
    atomic_write_json(out / f"table{args.table}.json", to_json(table))
    print(md)
    print(f"wrote {out / f'table{args.table}.md'} (+ .html, .json)")
    failed = [r for r in rows if r.failed or not r.n_clips]
    return 1 if failed else 0
