"""Face models (landmark default + BFM/Deep3DFaceRecon loaders) and coefficient fitting on real clips."""
from __future__ import annotations

import json

import numpy as np
import torch
from scipy.io import savemat

from realtalk.face_model import FaceModel
from realtalk.face_models import load_default_face_model


def test_default_model_shapes_and_gradients() -> None:
    m = load_default_face_model()
    assert isinstance(m, FaceModel) and m.n_vertices == 68 and m.n_pose == 6
    assert m.n_id >= 1 and m.n_exp >= 8
    assert m.metadata["split"] == "demo" and m.metadata["role"] == "train" and "Obama_clip3" not in m.metadata["clips"]
    alpha = torch.zeros(1, m.n_id)
    beta = torch.zeros(4, m.n_exp, requires_grad=True)
    rho = torch.tensor([[0.0, 0.0, 0.0, 128.0, 128.0, float(np.log(60.0))]] * 4)
    pts = m.project(m.transform(m.vertices(alpha, beta), rho), 256)
    assert pts.shape == (4, 68, 2)
    assert torch.allclose(pts.mean(1), torch.tensor([128.0, 128.0]).expand(4, 2), atol=1.0)
    pts[:, m.mouth_idx].sum().backward()
    assert beta.grad is not None and beta.grad.abs().sum() > 0
    # + beta0 opens the mouth: inner lips 62 (upper) / 66 (lower) move apart
    b = torch.zeros(1, m.n_exp)
    b[0, 0] = 2.0
    v0, v1 = m.vertices(alpha, torch.zeros(1, m.n_exp)), m.vertices(alpha, b)
    assert (v1[0, 66, 1] - v1[0, 62, 1]) > (v0[0, 66, 1] - v0[0, 62, 1])
    assert m.project(m.transform(m.vertices(alpha, beta), rho), 512).sub(2 * pts).abs().max() < 1e-3
    assert set(m.mouth_interior_idx.tolist()) <= set(m.mouth_idx.tolist())
    assert not set(m.contour_idx.tolist()) & (set(range(17, 31)) | set(range(36, 48)))


def test_beta0_tracks_mouth_opening_on_held_out_clip(data_root) -> None:
    """Obama_clip3 is a demo TEST clip (never in the model). 4 s at 25 fps."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_video
    from realtalk.coefficients import clip_coefficients

    m = load_default_face_model()
    video = read_video(data_root / "styletalk/video/Obama_clip3.mp4", fps=25.0, max_frames=100)
    faces = clip_faces(video)
    c = clip_coefficients(faces, m, video_path=video.path, frame_range=(0, 100))
    assert c.beta.shape == (100, m.n_exp) and c.rho.shape == (100, 6) and c.alpha.shape == (m.n_id,)
    lm = faces.landmarks
    opening = np.linalg.norm(lm[:, 66] - lm[:, 62], axis=-1)
    r = float(np.corrcoef(c.beta[:, 0], opening)[0, 1])
    print(f"Pearson r(beta0, inner-lip distance 62-66) = {r:.3f}")
    assert abs(r) > 0.8
    fit = m.landmarks2d(torch.from_numpy(c.alpha), torch.from_numpy(c.beta), torch.from_numpy(c.rho)).numpy()
    err = np.linalg.norm(fit - lm, axis=-1).mean()
    assert err < 2.5, f"mean landmark fit error {err:.2f} px"
    # cached: same object back without refitting
    again = clip_coefficients(faces, m, video_path=video.path, frame_range=(0, 100))
    np.testing.assert_array_equal(again.beta, c.beta)


def test_missing_frames_are_interpolated() -> None:
    from realtalk.coefficients import fit_landmarks

    m = load_default_face_model()
    rng = np.random.default_rng(0)
    beta = np.zeros((12, m.n_exp), np.float32)
    beta[:, 0] = np.linspace(-1, 1, 12)
    rho = np.tile(np.array([0.05, -0.1, 0.02, 128, 120, np.log(55.0)], np.float32), (12, 1))
    alpha = rng.normal(size=m.n_id).astype(np.float32) * 0.5
    lm = m.landmarks2d(torch.from_numpy(alpha), torch.from_numpy(beta), torch.from_numpy(rho)).numpy()
    lm[5] = np.nan
    c = fit_landmarks(lm, m, smooth=1)
    assert not c.found[5] and c.found.sum() == 11
    # exact recovery up to the ridge's slight shrinkage and id/exp overlap in the per-clip alpha
    np.testing.assert_allclose(c.beta[:, 0], beta[:, 0], atol=0.1)
    assert np.corrcoef(c.beta[:, 0], beta[:, 0])[0, 1] > 0.999
    np.testing.assert_allclose(c.rho[:, :3], rho[:, :3], atol=0.01)


def test_build_command_writes_model(data_root, tmp_path) -> None:
    from harness.cli import main

    out = tmp_path / "lfm.npz"
    assert main(["face-model", "build", "--split", "demo", "--root", str(data_root), "--out", str(out),
                 "--max-frames", "25"]) == 0
    from realtalk.landmark_face_model import LandmarkFaceModel

    m = LandmarkFaceModel.load(out)
    assert m.n_exp == 12 and m.metadata["n_clips"] == 8 and m.metadata["max_frames_per_clip"] == 25
    assert json.dumps(m.metadata)


def _random_bfm(path, n: int = 600, seed: int = 0):
    """A BFM_model_front.mat with the official keys and shapes, random values, n vertices."""
    rng = np.random.default_rng(seed)
    # a face-like point cloud: an ellipsoid cap in front of the origin (units: BFM decimetres)
    u, v = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    mean = np.stack([0.8 * u, v, 0.5 * np.sqrt(np.clip(2 - u ** 2 - v ** 2, 0, None))], 1)
    kp = np.array([np.argmin(((mean[:, :2] - p) ** 2).sum(1)) for p in rng.uniform(-0.8, 0.8, (68, 2))]) + 1
    # lips on a ring so the mouth regions are not empty
    for j, k in enumerate(range(48, 68)):
        ang = 2 * np.pi * j / 20
        kp[k] = np.argmin(((mean[:, :2] - [0.3 * np.cos(ang), 0.5 + 0.15 * np.sin(ang)]) ** 2).sum(1)) + 1
    savemat(path, {
        "meanshape": mean.reshape(-1, 1).astype(np.float32), "idBase": rng.normal(0, 1e-3, (3 * n, 80)).astype(np.float32),
        "exBase": rng.normal(0, 1e-3, (3 * n, 64)).astype(np.float32), "meantex": rng.uniform(0, 255, (3 * n, 1)),
        "texBase": rng.normal(size=(3 * n, 80)), "point_buf": rng.integers(1, 100, (n, 8)),
        "tri": rng.integers(1, n + 1, (2 * n, 3)), "keypoints": kp.reshape(68, 1).astype(np.float64),
        "frontmask2_idx": np.arange(1, n + 1).reshape(-1, 1), "tri_mask2": rng.integers(1, n + 1, (n, 3)),
        "skinmask": np.ones((1, n)),
    })


def test_bfm_loader_and_camera(tmp_path, monkeypatch) -> None:
    from realtalk.bfm import BFMFaceModel
    from realtalk.face_models import get_face_model

    (tmp_path / "bfm").mkdir()
    _random_bfm(tmp_path / "bfm" / "BFM_model_front.mat")
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path))
    m = get_face_model("bfm")
    assert isinstance(m, BFMFaceModel) and (m.n_id, m.n_exp, m.n_pose, m.n_vertices) == (80, 64, 6, 600)
    alpha, beta = torch.zeros(2, 80), torch.zeros(2, 64, requires_grad=True)
    rho = torch.zeros(2, 6)
    verts = m.vertices(alpha, beta)
    assert verts.shape == (2, 600, 3)
    pts = m.project(m.transform(verts, rho), 256)
    assert pts.shape == (2, 600, 2) and torch.isfinite(pts).all()
    # a point at the origin sits at the image centre; +y (BFM up) goes to smaller rows
    origin = m.project(m.transform(torch.zeros(1, 2, 3) + torch.tensor([[[0.0, 0, 0], [0, 1, 0]]]),
                                   torch.zeros(1, 6)), 256)
    assert torch.allclose(origin[0, 0], torch.tensor([127.5, 127.5]), atol=0.6) and origin[0, 1, 1] < origin[0, 0, 1]
    pts[:, m.mouth_idx].sum().backward()
    assert beta.grad.abs().sum() > 0
    assert len(m.mouth_idx) > 0 and len(m.mouth_interior_idx) > 0 and len(m.contour_idx) == 18


def test_d3dfr_official_checkpoint_format(tmp_path, monkeypatch) -> None:
    from realtalk.d3dfr import ReconNet, load_regressor

    net = ReconNet()
    for layer in net.final_layers:  # official init is zeros; randomise so the output is not trivially 0
        torch.nn.init.normal_(layer.weight, std=0.01)
    sd = net.state_dict()
    assert "backbone.layer4.2.bn3.running_var" in sd and "final_layers.6.bias" in sd
    assert not any(k.startswith("backbone.fc") for k in sd)
    assert [sd[f"final_layers.{i}.weight"].shape[0] for i in range(7)] == [80, 64, 80, 3, 27, 2, 1]
    (tmp_path / "d3dfr").mkdir()
    torch.save({"net_recon": sd, "epoch": 20}, tmp_path / "d3dfr" / "epoch_20.pth")
    monkeypatch.setenv("REALTALK_BENCH_WEIGHTS", str(tmp_path))
    reg = load_regressor()
    crops = np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    out = reg.predict(crops)
    assert {k: v.shape for k, v in out.items()} == {"id": (2, 80), "exp": (2, 64), "tex": (2, 80), "angle": (2, 3),
                                                     "gamma": (2, 27), "trans": (2, 3)}
    assert sum(v.shape[1] for v in out.values()) == 257 and np.abs(out["id"]).sum() > 0
