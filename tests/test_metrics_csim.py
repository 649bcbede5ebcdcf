"""CSIM on real clips: self-similarity, same speaker vs different speakers, batch independence, backends.

Measured with the dlib backend on the first 25 frames (25 fps) of styletalk Obama_clip1 (this machine):
identical frame 1.0000; within-clip vs the clip's first frame 0.99; vs Obama_clip2's first frame ~0.96
(min 0.948); vs andrew_clip_1 ~0.84 (max 0.852); vs feifeili_clip1 ~0.80. dlib descriptors are not
zero-centred, so unrelated faces still score ~0.8: only differences between CSIM values mean anything.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.core import weights
from metrics.base import ClipInput, get_metric

N = 25


def _frames(data_root: Path, name: str, n: int = N, start: int = 0) -> np.ndarray:
    from harness.core.media import read_video

    frames = read_video(data_root / "styletalk" / "video" / f"{name}.mp4", fps=25.0, start=start, max_frames=n).frames
    assert frames.shape == (n, 256, 256, 3)
    return frames


@pytest.fixture(scope="module")
def dlib_csim():
    m = get_metric("csim", backend="dlib", batch_size=8)
    ok, why = m.availability()
    assert ok, why
    return m


def test_identical_and_within_clip(data_root: Path, dlib_csim) -> None:
    gt = _frames(data_root, "Obama_clip1")
    r = dlib_csim.compute_clip(ClipInput("obama1", generated=gt, ground_truth=gt, identity=gt[0]))
    print(f"CSIM(dlib) Obama_clip1 vs its first frame: frame0 {r.per_frame['CSIM'][0]:.5f}, "
          f"mean {r.values['CSIM']:.4f}, min {r.per_frame['CSIM'].min():.4f}")
    assert r.per_frame["CSIM"][0] > 0.999
    assert r.values["CSIM"] > 0.97
    assert r.extra["frames_no_face_detected"] == 0 and r.extra["identity_face_detected"]
    assert (r.extra["frames_used"], r.extra["frames_total"]) == (N, N) and np.isfinite(r.per_frame["CSIM"]).all()
    # identity unset -> first ground-truth frame (the documented default)
    r2 = dlib_csim.compute_clip(ClipInput("obama1", generated=gt[:3], ground_truth=gt))
    np.testing.assert_allclose(r2.per_frame["CSIM"], r.per_frame["CSIM"][:3], atol=1e-9)


def test_same_speaker_beats_other_speakers(data_root: Path, dlib_csim) -> None:
    gen = _frames(data_root, "Obama_clip1")
    refs = {name: _frames(data_root, name, n=1)[0] for name in ("Obama_clip2", "andrew_clip_1", "feifeili_clip1")}
    res = {k: dlib_csim.compute_clip(ClipInput("obama1", generated=gen, identity=v)) for k, v in refs.items()}
    for k, v in res.items():
        print(f"CSIM(dlib) Obama_clip1 frames vs {k} reference: mean {v.values['CSIM']:.4f} "
              f"[{v.per_frame['CSIM'].min():.4f}, {v.per_frame['CSIM'].max():.4f}]")
    same = res["Obama_clip2"]
    for other in ("andrew_clip_1", "feifeili_clip1"):
        # measured margin of means ~0.12 (andrew) / ~0.16 (feifeili); assert half of the smaller one
        assert same.values["CSIM"] - res[other].values["CSIM"] > 0.06
        assert same.per_frame["CSIM"].min() > res[other].per_frame["CSIM"].max()


def test_batch_size_independent(data_root: Path) -> None:
    gen = _frames(data_root, "andrew_clip_1", n=9, start=40)
    ident = _frames(data_root, "andrew_clip_2", n=1)[0]
    clip = ClipInput("andrew", generated=gen, identity=ident)
    from metrics.csim import _EMBED_MEMO

    _EMBED_MEMO.clear()
    a = get_metric("csim", backend="dlib", batch_size=1).compute_clip(clip)
    _EMBED_MEMO.clear()  # recompute at the other batch size instead of reading the memo
    b = get_metric("csim", backend="dlib", batch_size=4).compute_clip(clip)
    np.testing.assert_allclose(a.per_frame["CSIM"], b.per_frame["CSIM"], atol=1e-6)


def test_no_face_frames_get_no_value(data_root: Path, dlib_csim) -> None:
    """Blank, noise and heavily blurred frames: no value (NaN, counted) or, when HOG still finds the blurred
    face, a similarity below every real frame of the same clip. Before: the whole crop was embedded and
    grey / noise scored 0.86 / 0.80, the same range as a different person."""
    import cv2

    gt = _frames(data_root, "Obama_clip1")
    grey = np.full_like(gt[0], 128)
    noise = np.random.default_rng(0).integers(0, 256, size=gt[0].shape, dtype=np.uint8)
    blur = cv2.GaussianBlur(gt[10], (0, 0), 8)
    gen = np.stack([gt[10], grey, noise, blur, gt[20]])
    r = dlib_csim.compute_clip(ClipInput("obama1", generated=gen, identity=gt[0]))
    per = r.per_frame["CSIM"]
    same = dlib_csim.compute_clip(ClipInput("obama1", generated=gt, identity=gt[0])).per_frame["CSIM"]
    print(f"CSIM(dlib) real {per[0]:.4f}, grey {per[1]}, noise {per[2]}, blur(sigma 8) {per[3]:.4f}; "
          f"same-clip min {same.min():.4f}")
    assert np.isnan(per[1]) and np.isnan(per[2])
    assert np.isnan(per[3]) or per[3] < same.min()
    assert per[0] == pytest.approx(same[10], abs=1e-6) and per[4] == pytest.approx(same[20], abs=1e-6)
    finite = np.isfinite(per)
    assert r.values["CSIM"] == pytest.approx(float(per[finite].astype(np.float64).mean()), rel=1e-6)
    assert r.extra["frames_total"] == 5 and r.extra["frames_used"] == int(finite.sum())
    assert r.extra["frames_no_face_detected"] == 5 - int(finite.sum())
    assert {1, 2} <= set(r.extra["no_face_frames"]) and 0 not in r.extra["no_face_frames"]


def test_no_face_reference_or_clip_is_an_error(data_root: Path, dlib_csim) -> None:
    from harness.core.errors import MediaError, NoFaceError

    gt = _frames(data_root, "Obama_clip1", n=2)
    flat = np.full((2, 256, 256, 3), 128, np.uint8)
    with pytest.raises(MediaError, match="identity reference"):
        dlib_csim.compute_clip(ClipInput("flat_ref", generated=gt, identity=flat[0]))
    with pytest.raises(NoFaceError, match="no face detected in any of the 2 generated frames"):
        dlib_csim.compute_clip(ClipInput("flat_gen", generated=flat, identity=gt[0]))


def test_config_resolves_backend() -> None:
    m = get_metric("csim")
    assert m.config() == {"backend": m.backend} and m.backend in ("dlib", "arcface")
    assert get_metric("csim", **m.config()).protocol() == m.protocol()


def test_protocol_pins_backend_and_weights(dlib_csim) -> None:
    p = dlib_csim.protocol()
    assert p.backend == "dlib" and p.weights_sha256 == weights.file_sha256(weights.require("dlib_face_recognition"))
    assert "first ground-truth frame" in p.settings["identity_reference"]


def _tiny_arcface_onnx(path: Path) -> None:
    """A random network with the buffalo_l recognition signature: input [N,3,112,112] float, one [N,512] output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.05, (4, 3, 16, 16)).astype(np.float32), "conv_w")
    fc = numpy_helper.from_array(rng.normal(0, 0.05, (4 * 7 * 7, 512)).astype(np.float32), "fc_w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input.1", "conv_w"], ["c"], name="Conv_0", strides=[16, 16]),
         helper.make_node("Flatten", ["c"], ["f"], name="Flatten_1"),
         helper.make_node("MatMul", ["f", "fc_w"], ["683"], name="MatMul_2")],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
        initializer=[w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def test_arcface_backend_loads_local_pack(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The insightface path (ArcFaceONNX from the local file, norm_crop alignment, batching) with a random
    ONNX of the same signature standing in for w600k_r50.onnx; values are meaningless, the plumbing is real."""
    pytest.importorskip("insightface")
    pytest.importorskip("onnxruntime")
    import dataclasses

    pack = tmp_path / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    monkeypatch.setitem(weights.REGISTRY, "insightface_buffalo_l",
                        dataclasses.replace(weights.REGISTRY["insightface_buffalo_l"], locate=lambda: pack))
    m = get_metric("csim", backend="arcface", batch_size=2)
    with pytest.raises(Exception, match="w600k_r50.onnx"):
        m.compute_clip(ClipInput("x", generated=np.zeros((1, 256, 256, 3), np.uint8), identity=np.zeros((256, 256, 3), np.uint8)))
    _tiny_arcface_onnx(pack / "w600k_r50.onnx")
    assert get_metric("csim").backend == "arcface"  # auto picks arcface once the pack is present
    gen = _frames(data_root, "Obama_clip1", n=5)
    m = get_metric("csim", backend="arcface", batch_size=2)
    r = m.compute_clip(ClipInput("obama1", generated=gen, identity=gen[0]))
    r3 = get_metric("csim", backend="arcface", batch_size=3).compute_clip(ClipInput("obama1", generated=gen, identity=gen[0]))
    assert r.per_frame["CSIM"][0] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(r.per_frame["CSIM"], r3.per_frame["CSIM"], atol=1e-6)
    assert m.embedder().model.input_size == (112, 112) and m.embedder().model.input_mean == 127.5
    p = m.protocol()
    assert p.backend == "arcface" and p.weights_sha256 == weights.file_sha256(pack / "w600k_r50.onnx")


def test_arcface_unavailable_without_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    missing = tmp_path / "nope" / "buffalo_l"
    monkeypatch.setitem(weights.REGISTRY, "insightface_buffalo_l",
                        dataclasses.replace(weights.REGISTRY["insightface_buffalo_l"], locate=lambda: missing))
    assert get_metric("csim").backend == "dlib"
    ok, why = get_metric("csim", backend="arcface").availability()
    assert not ok and str(missing) in why
