"""CSIM: identity preservation as the cosine similarity of face-recognition embeddings.

Per frame: cos(emb(generated[t]), emb(identity)), where `identity` is ClipInput.identity — by harness
default the FIRST GROUND-TRUTH FRAME of the clip (falls back to ground_truth[0] when identity is unset).
Clip value = mean over the frames where a face is detected. A frame without a detected face gets NO value
(NaN per frame, counted in extra: frames_used / frames_total / frames_no_face_detected / no_face_frames):
embedding a whole crop with no face in it (blank, noise) still yields a similarity of ~0.8 with dlib,
which would reward a method for losing the face. An identity reference without a face -> MediaError; a
clip where no generated frame has a face -> NoFaceError (the runner records the failure). Backends (pinned in the protocol; values of different backends never compare):
  dlib    offline default. dlib HOG detector on the 256 crop (no upsampling, largest face), 5-point shape predictor, dlib.get_face_chip(150, padding 0.25),
          dlib face-recognition ResNet v1 (128-d).
  arcface insightface buffalo_l recognition model (w600k_r50.onnx, 512-d), loaded from the local pack only.
          Alignment: 5 points from the dlib 68-point landmarks (eye centres, nose tip 30, mouth corners 48/54)
          on the same HOG box, then insightface face_align.norm_crop to 112 (ArcFace template). The pack's
          SCRFD detector is not used, so the alignment is reproducible with the bundled dlib models.
  auto    arcface when the buffalo_l pack is present, else dlib (the protocol records which one ran).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.core import weights
from harness.core.errors import MediaError, MetricUnavailable, NoFaceError
from metrics.base import FRAMES_TOTAL, FRAMES_USED, ClipInput, ClipResult, Metric, Protocol, register
from metrics.feature_cache import cached_features, generated_is_ground_truth
from metrics.frame_memo import FrameMemo, register as register_memo
from metrics.passes import PASSES

ARCFACE_FILE = "w600k_r50.onnx"


def _largest_box(detector: Any, img: np.ndarray) -> Any | None:
    """HOG detection on the crop: the largest face, or None when there is none (the frame gets no value)."""
    dets = list(detector(img, 0))
    return max(dets, key=lambda r: r.width() * r.height()) if dets else None


# identical frames (ground truth vs its own reference, static frames) are embedded once per process
_EMBED_MEMO = FrameMemo(network="identity")
# one loaded embedder per (backend, device) per process: scoring many generated videos loads the models once
_EMBEDDERS: dict[tuple[str, str], Any] = register_memo({})  # frame_memo.clear_all() forgets it


class _DlibEmbedder:
    name = "dlib"
    dim = 128

    def __init__(self) -> None:
        import dlib

        self.rec_path = weights.require("dlib_face_recognition")
        self.sp_path = weights.require("dlib_landmarks5")
        self.detector = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(str(self.sp_path))
        self.rec = dlib.face_recognition_model_v1(str(self.rec_path))

    def sha256(self) -> str:
        return weights.file_sha256(self.rec_path)

    def embed(self, frames: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        import dlib

        chips, found = [], []
        for img in frames:
            img = np.ascontiguousarray(img)
            box = _largest_box(self.detector, img)
            found.append(box is not None)
            if box is not None:
                chips.append(dlib.get_face_chip(img, self.sp(img, box), size=150, padding=0.25))
        out = []
        for i in range(0, len(chips), batch_size):
            out.extend(np.asarray(v, dtype=np.float64) for v in self.rec.compute_face_descriptor(chips[i : i + batch_size]))
        return _scatter(out, found, self.dim), np.asarray(found)


class _ArcFaceEmbedder:
    name = "arcface"
    dim = 512

    def __init__(self, device: str = "cpu") -> None:
        import dlib
        import onnxruntime
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        pack = weights.require("insightface_buffalo_l")
        self.model_path = Path(pack) / ARCFACE_FILE
        if not self.model_path.is_file():
            raise MetricUnavailable(f"buffalo_l pack has no {ARCFACE_FILE}", self.model_path)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(str(self.model_path), providers=providers)
        self.model = ArcFaceONNX(model_file=str(self.model_path), session=session)
        self.detector = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(str(weights.require("dlib_landmarks68")))

    def sha256(self) -> str:
        return weights.file_sha256(self.model_path)

    def five_points(self, img: np.ndarray) -> np.ndarray | None:
        box = _largest_box(self.detector, img)
        if box is None:
            return None
        s = self.sp(img, box)
        p = np.array([[s.part(i).x, s.part(i).y] for i in range(68)], dtype=np.float32)
        return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])

    def embed(self, frames: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        from insightface.utils import face_align

        aligned, found = [], []
        for img in frames:
            img = np.ascontiguousarray(img)
            kps = self.five_points(img)
            found.append(kps is not None)
            if kps is not None:
                bgr = np.ascontiguousarray(img[:, :, ::-1])  # insightface works on BGR (cv2) images
                aligned.append(face_align.norm_crop(bgr, landmark=kps, image_size=self.model.input_size[0]))
        out: list[np.ndarray] = []
        for i in range(0, len(aligned), batch_size):
            out.extend(np.asarray(self.model.get_feat(aligned[i : i + batch_size]), dtype=np.float64))
        return _scatter(out, found, self.dim), np.asarray(found)


def _scatter(rows: list[np.ndarray], found: list[bool], dim: int) -> np.ndarray:
    """[T, dim] embeddings: the computed rows where a face was found, NaN rows elsewhere."""
    emb = np.full((len(found), dim), np.nan)
    if rows:
        emb[np.asarray(found, bool)] = np.stack(rows)
    return emb


def _resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "arcface" if weights.available("insightface_buffalo_l") else "dlib"
    if backend not in ("dlib", "arcface"):
        raise ValueError(f"unknown CSIM backend {backend!r}: 'auto', 'dlib' or 'arcface'")
    return backend


@register
class CSIM(Metric):
    """Mean cosine similarity between each generated frame's identity embedding and the identity reference."""

    name = "csim"
    outputs = ("CSIM",)
    higher_is_better = {"CSIM": True}
    needs = frozenset({"generated", "identity"})

    def __init__(self, batch_size: int = 32, device: str = "cpu", backend: str = "auto") -> None:
        super().__init__(batch_size=batch_size, device=device)
        self.backend = _resolve_backend(backend)
        self._embedder: _DlibEmbedder | _ArcFaceEmbedder | None = None

    def config(self) -> dict[str, Any]:
        return {"backend": self.backend}  # 'auto' resolved once per run

    def availability(self) -> tuple[bool, str]:
        keys = ("dlib_face_recognition", "dlib_landmarks5") if self.backend == "dlib" else (
            "insightface_buffalo_l", "dlib_landmarks68")
        for key in keys:
            state, path, _ = weights.check(key)
            if state != "found":
                return False, f"{key}: {state} at {path}"
        if self.backend == "arcface":
            try:
                import insightface.model_zoo.arcface_onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError as e:
                return False, f"arcface backend needs insightface + onnxruntime ({e})"
        return True, ""

    def embedder(self) -> _DlibEmbedder | _ArcFaceEmbedder:
        if self._embedder is None:
            ok, why = self.availability()
            if not ok:
                raise MetricUnavailable(f"CSIM ({self.backend}) unavailable: {why}")
            key = (self.backend, str(self.device))
            if key not in _EMBEDDERS:
                _EMBEDDERS[key] = _DlibEmbedder() if self.backend == "dlib" else _ArcFaceEmbedder(self.device)
                PASSES.load("identity")
            self._embedder = _EMBEDDERS[key]
        return self._embedder

    def protocol(self) -> Protocol:
        ok, _ = self.availability()
        sha = self.embedder().sha256() if ok else None
        align = ("dlib HOG (upsample 0, largest) + 5-pt predictor, get_face_chip 150 pad 0.25"
                 if self.backend == "dlib" else
                 "dlib HOG (upsample 0, largest) + dlib 68-pt -> 5 pts, insightface norm_crop 112")
        return Protocol(
            metric=self.name, backend=self.backend, weights_sha256=sha,
            crop="harness 256x256 face crop (ground-truth crop track)", resolution=150 if self.backend == "dlib" else 112,
            fps=25.0,
            settings={"alignment": align, "similarity": "cosine",
                      "weights_state": weights.state_label("dlib_face_recognition" if self.backend == "dlib"
                                                           else "insightface_buffalo_l"),
                      "no_face": "frame without a detected face gets no value (NaN, counted); reference without "
                                 "a face -> error; no generated face in the clip -> NoFaceError",
                      "reduce": "mean over frames with a detected face",
                      "identity_reference": "ClipInput.identity (harness default: first ground-truth frame of the clip)"},
        )

    def embed(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L2-normalised embeddings [T, D] (NaN rows where no face) and whether a face was detected [T]."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise MediaError(f"CSIM expects uint8 RGB frames [T,H,W,3], got {frames.dtype} {frames.shape}")
        embedder = self.embedder()

        def compute(unique: np.ndarray) -> list[tuple[np.ndarray, bool]]:
            e, f = embedder.embed(unique, self.batch_size)
            return list(zip(e, f))

        rows = _EMBED_MEMO.map((self.backend, embedder.sha256()), frames, compute)
        emb = np.stack([r[0] for r in rows])
        found = np.array([bool(r[1]) for r in rows])
        return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12), found

    def reference_embedding(self, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """embed(ref[None]) through the on-disk feature cache (metrics/feature_cache.py): the identity reference
        is a ground-truth frame, embedded once ever for this protocol, weights and device type."""
        return self._cached_embed(ref[None], ref)

    def _cached_embed(self, frames: np.ndarray, content: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """embed(frames) through the "gtidentity" kind, keyed by `content` (the reference frame, or the frames)."""
        proto = self.protocol()
        fp = {"protocol": proto.fingerprint(), "weights": proto.weights_sha256, "backend": self.backend,
              "device": str(self.device).split(":")[0]}

        def compute() -> dict[str, np.ndarray]:
            emb, found = self.embed(frames)
            return {"embedding": emb, "found": found}

        hit = cached_features("gtidentity", content, fp, compute)
        assert hit is not None
        return hit["embedding"], hit["found"].astype(bool)

    def generated_embeddings(self, clip: ClipInput) -> tuple[np.ndarray, np.ndarray]:
        """embed(clip.generated); when those are the ground truth's own crops, through the feature cache."""
        if generated_is_ground_truth(clip):
            gen = np.asarray(clip.generated)
            return self._cached_embed(gen, gen)
        return self.embed(clip.generated)

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        ref = clip.identity
        if ref is None:
            if clip.ground_truth is None:
                raise MediaError(f"{clip.clip_id}: CSIM needs an identity reference (or ground truth)")
            ref = clip.ground_truth[0]
        ref_emb, ref_found = self.reference_embedding(np.asarray(ref))
        if not ref_found[0]:
            raise MediaError(f"clip {clip.clip_id}: no face detected in the CSIM identity reference frame")
        emb, found = self.generated_embeddings(clip)
        if not found.any():
            raise NoFaceError(f"clip {clip.clip_id}: no face detected in any of the {len(found)} generated frames")
        sims = emb @ ref_emb[0]  # NaN where no face
        return ClipResult(
            values={"CSIM": float(sims[found].mean())},
            per_frame={"CSIM": sims.astype(np.float32)},
            extra={FRAMES_USED: int(found.sum()), FRAMES_TOTAL: len(found),
                   "frames_no_face_detected": int((~found).sum()), "no_face_frames": np.flatnonzero(~found).tolist(),
                   "identity_face_detected": True},
        )
