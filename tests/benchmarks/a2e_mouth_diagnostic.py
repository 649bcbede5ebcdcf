"""Fast diagnostic of the demo model's lip motion at the A2E stage (issue 14 item 5): no renderer, no dlib
on generated frames (seconds to a minute on 2 cores).

Per held-out test clip of a split (reconstruction, frames [0, 100) exactly as harness.demo_figures loads
them), with the checkpoint's A2E run through the inference path (realtalk.inference.RealTalkPipeline:
overlapping windows, random history, crossfade):
- pred~fit:  Pearson r of the PREDICTED expression's mouth opening vs the FITTED expression's (both as
             face-model landmarks with the frame's fitted pose: inner-lip gap of iBUG pairs 61-67, 62-66,
             63-65, harness.demo_figures.mouth_opening);
- pred~dlib: predicted opening vs dlib's opening on the ground-truth crops (what the figure compares to);
- fit~dlib:  fitted vs dlib: the ceiling the face-model fit itself puts on the figure;
- lag:       the lag in -5..+5 frames (positive = prediction late) maximising r(pred, fit), and that r;
- oracle (--oracle, slower: renderer + dlib on 100 frames per clip): the FITTED expressions through the
             warp prior and renderer, dlib on the rendered crops vs dlib on the ground truth (the renderer's
             ceiling on the figure);
- bounds (--bounds): linear read-outs trained on the train clips (linear_bounds): from the log-mel tokens,
             from PocketSphinx's phones ("phones" tokens, alone and with log-mel; when pocketsphinx is
             installed) and from styletalk's forced phoneme labels (what perfect phonetics gives a linear model).

    .venv/bin/python tests/benchmarks/a2e_mouth_diagnostic.py --checkpoint realtalk/assets/realtalk-demo-small.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.demo_figures import mouth_opening, pearson  # noqa: E402

LAGS = range(-5, 6)


def lagged_r(pred: np.ndarray, ref: np.ndarray, lag: int) -> float:
    """r of pred[t + lag] vs ref[t] (lag > 0: the prediction shows frame t's mouth lag frames late)."""
    if lag >= 0:
        return pearson(pred[lag:], ref[:len(ref) - lag])
    return pearson(pred[:lag], ref[-lag:])


def face_opening(fm: Any, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor) -> np.ndarray:
    """[T] inner-lip gap (px at 256) of the face model's landmarks for (alpha, beta [T], rho [T])."""
    with torch.no_grad():
        lm = fm.landmarks2d(alpha.expand(len(beta), -1), beta, rho, 256)
    return mouth_opening(lm.cpu().numpy())


def load_test_clips(split: str, root: str | None, lmd: Any) -> list[dict[str, Any]]:
    """GT media, face track and dlib's GT mouth opening (the LMD metric's landmarks on the GT crops, as
    harness.demo_figures.clip_figures takes them) of each test clip, loaded as demo_figures loads them."""
    from harness.core.faces.clip import clip_faces
    from harness.core.splits import load_clip_media, load_split

    gt_lm = getattr(lmd, "gt_landmarks", None) or lmd._gt_landmarks  # (renamed while this was written)
    out = []
    for e in [c for c in load_split(split).clips if c.role == "test"]:
        video, audio = load_clip_media(e, root)
        faces = clip_faces(video)
        n = min(len(video.frames), len(audio) // 640)
        out.append({"id": e.clip_id, "video": video, "faces": faces, "audio": audio[: n * 640].astype(np.float32),
                    "n": n, "dlib_open": mouth_opening(gt_lm(np.asarray(faces.crops)[:n]))})
    return out


def diagnose(pipe: Any, clips: list[dict[str, Any]], oracle: bool = False, lmd: Any = None
             ) -> dict[str, dict[str, float]]:
    """{clip_id: figures} for a RealTalkPipeline (only its A2E is used unless oracle)."""
    res = {}
    for c in clips:
        v, n = c["video"], c["n"]
        src = pipe.prepare(v.frames, v.fps, v.path, faces=c["faces"])
        tokens = pipe.audio_tokens(c["audio"], n)
        with torch.no_grad():
            pred = pipe.expressions(src, tokens, n).float()
        fit = src.beta[:n]
        rho = src.rho[:n]
        po, fo, do = (face_opening(pipe.fm, src.alpha, pred, rho), face_opening(pipe.fm, src.alpha, fit, rho),
                      c["dlib_open"])
        lag_r = {k: lagged_r(po, fo, k) for k in LAGS}
        best = max(lag_r, key=lambda k: -np.inf if not np.isfinite(lag_r[k]) else lag_r[k])
        row = {"pred~fit": pearson(po, fo), "pred~dlib": pearson(po, do), "fit~dlib": pearson(fo, do),
               "best_lag": best, "r_at_best_lag": lag_r[best],
               "pred_std_px": float(np.std(po)), "fit_std_px": float(np.std(fo))}
        if oracle:
            from realtalk.inference import to_uint8

            gen = []
            for lo in range(0, n, 8):
                idx = list(range(lo, min(n, lo + 8)))
                i_hat, _ = pipe.render(src, idx, fit[idx])
                gen.append(to_uint8(i_hat))
            # dlib on the rendered crops (the pasted frame's crop differs only by the feathered paste edge)
            g = lmd.landmarks(np.concatenate(gen))
            row["oracle~dlib"] = pearson(mouth_opening(g), do)
        res[c["id"]] = row
    return res


def _context(x: np.ndarray, k: int) -> np.ndarray:
    """[T, D] -> [T, (2k+1) D]: each frame with its k neighbours on both sides (edge padded)."""
    pad = np.pad(x, ((k, k), (0, 0)), mode="edge")
    return np.concatenate([pad[i:i + len(x)] for i in range(2 * k + 1)], 1)


def _ridge(xs: list[np.ndarray], ys: list[np.ndarray], lam: float) -> Any:
    """Ridge regression of per-clip z-scored targets on standardised inputs; returns predict(x)."""
    x, y = np.concatenate(xs), np.concatenate([(v - v.mean()) / v.std() for v in ys])
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn = (x - mu) / sd
    w = np.linalg.solve(xn.T @ xn + lam * np.eye(xn.shape[1]), xn.T @ y)
    return lambda z: ((z - mu) / sd) @ w


def phonemes_25fps(root: Path, clip_id: str, n: int) -> np.ndarray | None:
    """styletalk's per-video-frame phoneme labels (30 fps, forced from the speech) at 25 fps, or None."""
    import json

    p = root / "styletalk" / "phoneme" / f"{clip_id}_seq.json"
    if not p.exists():
        return None
    s = np.asarray(json.loads(p.read_text())).reshape(-1)
    return s[np.minimum((np.arange(n) / 25.0 * 30.0).astype(np.int64), len(s) - 1)]


def linear_bounds(fm: Any, split: str, root: str | None, clips: list[dict[str, Any]], pipe: Any) -> dict[str, dict]:
    """What a LINEAR read-out reaches on the test clips, trained on the split's train clips (fitted mouth
    opening, z-scored per clip): from the log-mel tokens (+-8 frames of context, ridge 1e4) and from the
    styletalk clips' forced phoneme labels (one-hot, +-4 frames, ridge 100; styletalk clips only: a bound on
    what perfect phonetics gives a context-window model, not an audio model)."""
    from harness.core.paths import data_root
    from realtalk.data import load_split_data

    from realtalk.audio_features import get_featurizer

    base = data_root(root)
    logmel = get_featurizer("logmel")
    train = load_split_data(split, root, fm, logmel, role="train", max_frames=750, log=lambda *a: None)
    t_open = [face_opening(fm, torch.from_numpy(np.asarray(c.alpha))[None], torch.from_numpy(np.asarray(c.beta)),
                           torch.from_numpy(np.asarray(c.rho))) for c in train]
    mel = lambda a, n: _context(np.asarray(a)[:2 * n].reshape(n, -1), 8)  # noqa: E731
    f_mel = _ridge([mel(c.audio, len(c)) for c in train], t_open, 1e4)
    phones = None
    try:
        phones = get_featurizer("phones")
    except ImportError:  # pocketsphinx not installed: those rows are nan
        pass
    if phones is not None:  # +-2 frames, ridge 1e3 (alone); +-4 frames, ridge 1e4 with log-mel (feasibility grid)
        t_ph = [c.audio for c in load_split_data(split, root, fm, phones, role="train", max_frames=750,
                                                 log=lambda *a: None)]
        ph2 = lambda a, n: _context(np.asarray(a)[:2 * n].reshape(n, -1), 2)  # noqa: E731
        both = lambda a, m, n: _context(np.concatenate([np.asarray(a)[:2 * n].reshape(n, -1),  # noqa: E731
                                                        np.asarray(m)[:2 * n].reshape(n, -1)], 1), 4)
        f_ph2 = _ridge([ph2(a, len(c)) for a, c in zip(t_ph, train)], t_open, 1e3)
        f_both = _ridge([both(a, c.audio, len(c)) for a, c in zip(t_ph, train)], t_open, 1e4)
    ph = [(phonemes_25fps(base, c.clip_id, len(c)), o) for c, o in zip(train, t_open)]
    ph = [(p, o) for p, o in ph if p is not None]
    onehot = lambda p: _context(np.eye(41)[p], 4)  # noqa: E731  (41 = len(styletalk/phindex.json))
    f_ph = _ridge([onehot(p) for p, _ in ph], [o for _, o in ph], 100.0) if ph else None
    out = {}
    for c in clips:
        v, n = c["video"], c["n"]
        src = pipe.prepare(v.frames, v.fps, v.path, faces=c["faces"])
        fo = face_opening(fm, src.alpha, src.beta[:n], src.rho[:n])
        tok = np.asarray(logmel.features(c["audio"]), np.float32)
        row = {"logmel_linear~fit": pearson(f_mel(mel(tok, n)), fo)}
        if phones is not None:
            pt = np.asarray(phones.features(c["audio"]), np.float32)
            row["phones_linear~fit"] = pearson(f_ph2(ph2(pt, n)), fo)
            row["phones+mel_lin~fit"] = pearson(f_both(both(pt, tok, n)), fo)
        p = phonemes_25fps(base, c["id"], n)
        row["phoneme_linear~fit"] = pearson(f_ph(onehot(p)), fo) if (p is not None and f_ph is not None) \
            else float("nan")
        out[c["id"]] = row
    return out


def format_rows(res: dict[str, dict[str, float]]) -> list[str]:
    keys = list(next(iter(res.values())))
    lines = ["clip            " + " ".join(f"{k:>13s}" for k in keys)]
    for cid, row in res.items():
        lines.append(f"{cid:15s} " + " ".join(f"{row[k]:13.3f}" if isinstance(row[k], float) else f"{row[k]:13d}"
                                              for k in keys))
    means = {k: float(np.nanmean([r[k] for r in res.values()])) for k in keys}
    lines.append(f"{'mean':15s} " + " ".join(f"{means[k]:13.3f}" for k in keys))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="realtalk/assets/realtalk-demo-small.pt")
    p.add_argument("--split", default="demo")
    p.add_argument("--root", default=None)
    p.add_argument("--oracle", action="store_true", help="also render the fitted expressions and run dlib")
    p.add_argument("--bounds", action="store_true", help="also the linear log-mel / phoneme-label read-outs")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from realtalk.inference import RealTalkPipeline

    pipe = RealTalkPipeline.from_checkpoint(a.checkpoint, "cpu")
    from metrics.lmd import LMD

    lmd = LMD()
    clips = load_test_clips(a.split, a.root, lmd)
    print("\n".join(format_rows(diagnose(pipe, clips, a.oracle, lmd))))
    if a.bounds:
        print("\n".join(format_rows(linear_bounds(pipe.fm, a.split, a.root, clips, pipe))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
