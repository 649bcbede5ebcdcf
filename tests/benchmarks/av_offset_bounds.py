"""Per-clip audio/video offsets of the demo split (leave-one-clip-out ridge on the train clips) and the linear
bounds (a) unaligned train clips, (b) train clips shifted by their offsets, unshifted test clips, (c) oracle
(test clips shifted too) on the 5 held-out clips (README "The RealTalk demo checkpoint"; issue 14 item 5).

    .venv/bin/python tests/benchmarks/av_offset_bounds.py [logmel|phones+logmel] [context frames] [ridge] [passes]
"""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[2])); sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np, torch
torch.set_num_threads(1)
from a2e_mouth_diagnostic import load_test_clips, face_opening
import av_offset as av
from realtalk.inference import RealTalkPipeline
from realtalk.data import load_split_data
from realtalk.audio_features import get_featurizer

FEAT = sys.argv[1] if len(sys.argv) > 1 else "logmel"
K = int(sys.argv[2]) if len(sys.argv) > 2 else 8
LAM = float(sys.argv[3]) if len(sys.argv) > 3 else 1e4
ITERS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
t0 = time.time()
pipe = RealTalkPipeline.from_checkpoint(str(Path(__file__).resolve().parents[2] / "realtalk/assets/realtalk-demo-small.pt"), "cpu")
fm = pipe.fm
feat = get_featurizer(FEAT)
train = load_split_data("demo", None, fm, feat, role="train", max_frames=750, log=lambda *a: None)
class FakeLMD:  # no dlib needed: only fitted openings are used
    def gt_landmarks(self, crops): return np.zeros((len(crops), 68, 2))
tests = load_test_clips("demo", None, FakeLMD())
tr_f = [av.per_frame(c.audio, len(c)) for c in train]
tr_o = [av.fitted_opening(fm, c.alpha, c.beta, c.rho) for c in train]
te_f, te_o = [], []
for c in tests:
    v, n = c["video"], c["n"]
    src = pipe.prepare(v.frames, v.fps, v.path, faces=c["faces"])
    te_o.append(face_opening(fm, src.alpha, src.beta[:n], src.rho[:n]))
    tok = np.asarray(feat.features(c["audio"]), np.float32)
    te_f.append(av.per_frame(tok[:2 * n], n))
print(f"loaded in {time.time()-t0:.0f}s; feat {FEAT} dim/frame {tr_f[0].shape[1]} k={K} lam={LAM} iters={ITERS}")
# LOO offsets on train clips
rows = av.estimate_offsets(tr_f, tr_o, k=K, lam=LAM, iterations=ITERS)
lags = [r["lag"] for r in rows]
# test clips: ridge on all (aligned, per ITERS) train clips
def fit(shifts):
    return av.fit_ridge([av.context(av.shift_frames(f, s), K) for f, s in zip(tr_f, shifts)], tr_o, LAM)
f_a = fit([0] * len(train))
f_b = fit(lags if ITERS >= 1 else [0]*len(train))
# test lags estimated with the model trained on the aligned train clips (same reference as the train lags)
te_rows = []
for f, o in zip(te_f, te_o):
    te_rows.append(dict(zip(("lag", "r0", "r_best"), av.best_lag(f_b(av.context(f, K)), o))))
print(f"{'clip':22s} {'role':5s} {'lag':>4s} {'r@0':>7s} {'r@best':>7s}")
for c, r in zip(train, rows):
    print(f"{c.clip_id:22s} train {r['lag']:4d} {r['r0']:7.3f} {r['r_best']:7.3f}")
for c, r in zip(tests, te_rows):
    print(f"{c['id']:22s} test  {r['lag']:4d} {r['r0']:7.3f} {r['r_best']:7.3f}")
res = {"a": [], "b": [], "c": [], "b_centered": []}
med = int(np.round(np.median(lags)))
f_bc = fit([l - med for l in lags])
for f, o, r in zip(te_f, te_o, te_rows):
    ctx = av.context(f, K)
    res["a"].append(av.pearson(f_a(ctx), o))
    res["b"].append(av.pearson(f_b(ctx), o))
    res["b_centered"].append(av.pearson(f_bc(ctx), o))
    res["c"].append(av.pearson(f_b(av.context(av.shift_frames(f, r["lag"]), K)), o))
print("bounds on test clips frames [0,100):", " ".join(c["id"] for c in tests))
for k, v in res.items():
    print(f"  ({k}) " + " ".join(f"{x:7.3f}" for x in v) + f"   mean {np.mean(v):.3f}")
print(f"median train lag {med}; total {time.time()-t0:.0f}s")
