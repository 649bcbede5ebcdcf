"""LSE-C / LSE-D: lip-sync confidence and distance from SyncNet v2, following joonson/syncnet_python.

The reference (SyncNetInstance.evaluate) on a 25 fps face track with 16 kHz mono int16 audio:
  video  each frame a 224x224 BGR colour image with raw 0..255 values; a sample is 5 consecutive frames
         ([3,5,224,224], a 3-D conv input; not grayscale, not 15 stacked channels).
  audio  python_speech_features.mfcc(int16 samples, 16000) with its defaults (13 cepstra, 25 ms window,
         10 ms step = 100 Hz, 4 steps per video frame); a sample is 20 steps ([1,13,20]) starting at 4*v.
  windows v = 0 .. min(T, floor(n_samples/640)) - 6  (the reference's `lastframe = min_length - 5` range).
  calc_pdist: for each window v, L2 distances (torch pairwise_distance, eps 1e-6) between video feature v and
         audio features v-15 .. v+15 (zero features past the ends); mean over windows -> 31 mean distances.
  LSE-D = min of the mean distances; LSE-C = median - min; AV offset = vshift - argmin (frames).
Crops: metrics/syncnet_crop.py cuts them with the reference crop_video geometry (crop_scale 0.4, 13-frame
median, pad 110, 224x224) from the ground truth's face-track boxes over the full-resolution generated frames
(ClipInput.generated_full / face_boxes; no fallback to the 256 harness crops: a clip without them is an error).
Where we differ, by necessity: the boxes are the harness's face track (dlib HOG by default), not S3FD, and the
crops skip the reference's XVID .avi + JPEG round trip. Audio arrives as float32 in [-1, 1]; it is rescaled
to int16 values (round(x*32768)) because the MFCC's c0 (log energy) depends on the scale the reference reads
from its int16 wav. LSE-offset (frames, signed, informational) is the reference's AV offset.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
import torch

from harness.core import weights
from harness.core.errors import MediaError, MetricUnavailable
from metrics.feature_cache import cached_features, generated_is_ground_truth
from metrics.frame_memo import register as register_memo
from metrics.passes import PASSES, content_key
from metrics.base import FRAMES_TOTAL, FRAMES_USED, ClipInput, ClipResult, Metric, Protocol, register
from metrics.syncnet_crop import CROP_SCALE, MEDIAN_KERNEL, PAD_VALUE, syncnet_crops
from metrics.syncnet_model import INFERENCE_IMPL, SyncNetV2, load_syncnet

VSHIFT = 15
FPS = 25.0
SAMPLE_RATE = 16000
SIZE = 224
WIN_FRAMES = 5
MFCC_PER_FRAME = 4
WIN_MFCC = 20


def frames_to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB [T,H,W,3] crops -> float32 [3, T, 224, 224] BGR, raw 0..255 (the reference's imtv without batch)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"SyncNet expects RGB frames [T,H,W,3], got {frames.shape}")
    out = np.empty((len(frames), SIZE, SIZE, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        f = np.ascontiguousarray(f[:, :, ::-1])
        out[i] = f if f.shape[:2] == (SIZE, SIZE) else cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(out.astype(np.float32)).permute(3, 0, 1, 2).contiguous()


def audio_to_int16_scale(audio: np.ndarray) -> np.ndarray:
    """float [-1,1] -> the int16 sample values the reference reads from its pcm_s16le wav (as float64)."""
    a = np.asarray(audio)
    if a.dtype.kind == "i":
        return a.astype(np.float64)
    return np.clip(np.round(a.astype(np.float64) * 32768.0), -32768, 32767)


def mfcc_input(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """[13, S] float32 MFCC at 100 Hz, exactly python_speech_features.mfcc(int16 audio, 16000) transposed."""
    import python_speech_features

    if sample_rate != SAMPLE_RATE:
        raise MediaError(f"SyncNet protocol needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
    feats = python_speech_features.mfcc(audio_to_int16_scale(audio), SAMPLE_RATE)
    return torch.from_numpy(np.ascontiguousarray(feats.T)).float()


def n_windows(n_frames: int, n_samples: int) -> int:
    """Number of 5-frame windows the reference evaluates (its `lastframe`)."""
    return min(n_frames, math.floor(n_samples / (SAMPLE_RATE / FPS))) - WIN_FRAMES


@torch.no_grad()
def video_features(net: SyncNetV2, video: torch.Tensor, n_win: int, batch_size: int,
                   device: str = "cpu") -> torch.Tensor:
    """Video embeddings [n_win, D] of 5-frame windows v = 0..n_win-1 (float32, on CPU)."""
    im_feat = []
    for s in range(0, n_win, batch_size):
        vs = range(s, min(n_win, s + batch_size))
        im_feat.append(net.forward_lip(torch.stack([video[:, v : v + WIN_FRAMES] for v in vs]).to(device)).cpu())
    return torch.cat(im_feat)


@torch.no_grad()
def audio_features(net: SyncNetV2, mfcc: torch.Tensor, n_win: int, batch_size: int,
                   device: str = "cpu") -> torch.Tensor:
    """Audio embeddings [n_win, D] of 20-step MFCC windows starting at 4v (float32, on CPU)."""
    cc_feat = []
    for s in range(0, n_win, batch_size):
        vs = range(s, min(n_win, s + batch_size))
        cc = torch.stack([mfcc[None, :, MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + WIN_MFCC] for v in vs]).to(device)
        cc_feat.append(net.forward_aud(cc).cpu())
    return torch.cat(cc_feat)


def embed_windows(net: SyncNetV2, video: torch.Tensor, mfcc: torch.Tensor, n_win: int, batch_size: int,
                  device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings [n_win, D] of windows v = 0..n_win-1 (float32, on CPU)."""
    return (video_features(net, video, n_win, batch_size, device),
            audio_features(net, mfcc, n_win, batch_size, device))


# one loaded network per (weights file, device) per process: many generated videos, one load
_NETS: dict[tuple[str, int, int, str], SyncNetV2] = register_memo({})  # frame_memo.clear_all() forgets it


def shared_net(path: "str | os.PathLike[str]", device: str = "cpu") -> SyncNetV2:
    """load_syncnet, once per process per (file identity, device)."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns, str(device))
    if key not in _NETS:
        _NETS[key] = load_syncnet(path, device=device)
        PASSES.load("syncnet")
    return _NETS[key]


def offset_distances(im_feat: torch.Tensor, cc_feat: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """[n_win, 2*vshift+1]: column j = distance of video window v to audio window v + j - vshift (zero-padded),
    the reference calc_pdist's values, vectorised."""
    win = 2 * vshift + 1
    padded = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, win, 1).permute(0, 2, 1)  # [n_win, win, D]
    return torch.nn.functional.pairwise_distance(im_feat[:, None, :].expand_as(shifted), shifted)


def lse_from_distances(dists: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int | np.ndarray]:
    """LSE-D (min mean distance), LSE-C (median - min), offset (vshift - argmin) and the per-offset means."""
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    return {
        "LSE-D": float(minval),
        "LSE-C": float(torch.median(mdist) - minval),
        "offset": int(vshift - int(minidx)),
        "mean_dists": mdist.numpy(),
        "dist_at_best": dists[:, int(minidx)].numpy(),
    }


@register
class SyncNetLSE(Metric):
    """LSE-C (higher better) and LSE-D (lower better) of the generated frames against the driving audio."""

    name = "syncnet"
    outputs = ("LSE-C", "LSE-D", "LSE-offset")
    higher_is_better = {"LSE-C": True, "LSE-D": False, "LSE-offset": None}
    needs = frozenset({"generated", "audio", "full_frames"})

    def __init__(self, batch_size: int = 20, device: str = "cpu") -> None:
        super().__init__(batch_size=batch_size, device=device)
        self._net: SyncNetV2 | None = None

    def availability(self) -> tuple[bool, str]:
        state, path, _ = weights.check("syncnet_v2")
        if state in ("found", "unverified"):
            return True, ""
        return False, (f"syncnet_v2.model {state} at {path} (put the official file there; "
                       f"{weights.REGISTRY['syncnet_v2'].fetch_command()})")

    def net(self) -> SyncNetV2:
        if self._net is None:
            ok, why = self.availability()
            if not ok:
                raise MetricUnavailable(f"SyncNet unavailable: {why}", weights.check("syncnet_v2")[1])
            self._net = shared_net(weights.require("syncnet_v2"), device=self.device)
        return self._net

    def protocol(self) -> Protocol:
        state, _, sha = weights.check("syncnet_v2")
        return Protocol(
            metric=self.name, backend="syncnet_v2 (joonson/syncnet_python evaluate(), own port)",
            weights_sha256=sha if state in ("found", "unverified") else None,
            crop=(f"syncnet_python crop_video: ground-truth face-track boxes, medfilt({MEDIAN_KERNEL}) of s/x/y, "
                  f"crop_scale {CROP_SCALE}, pad {PAD_VALUE}, full-resolution generated frames -> 224x224 "
                  "cv2 INTER_LINEAR, no codec round trip; BGR 0..255"),
            resolution=SIZE, fps=FPS,
            settings={"weights_state": weights.state_label("syncnet_v2"), "vshift": VSHIFT, "video_window": WIN_FRAMES,
                      "mfcc_window": WIN_MFCC,
                      "mfcc": "python_speech_features.mfcc(round(x*32768), 16000) defaults: 13 cep, 25/10 ms",
                      "windows": "min(T, floor(n/640)) - 5", "LSE-D": "min_k mean_v d(v,k)",
                      "LSE-C": "median_k - min_k of mean_v d(v,k)", "LSE-offset": "vshift - argmin_k (frames)"},
        )

    def evaluate(self, frames: np.ndarray, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                 clip_id: str = "", ground_truth: bool = False) -> dict[str, float | int | np.ndarray]:
        """The reference evaluate() on in-memory frames/audio; also returns the per-offset distances.
        ground_truth: the frames are the ground truth's own crops, so their embeddings go through the cache."""
        video = frames_to_input(frames)
        if sample_rate != SAMPLE_RATE:
            raise MediaError(f"SyncNet protocol needs {SAMPLE_RATE} Hz audio, got {sample_rate}")
        n_win = n_windows(video.shape[1], len(audio))
        if n_win < 1:
            raise MediaError(f"{clip_id}: SyncNet needs at least {WIN_FRAMES + 1} frames of video and audio, "
                             f"got {video.shape[1]} frames / {len(audio)} samples")
        net = self.net()
        im_feat = self.video_window_features(net, np.asarray(frames), video, n_win, ground_truth)
        cc_feat = self.driving_audio_features(net, audio, n_win)
        dists = offset_distances(im_feat, cc_feat)
        out = lse_from_distances(dists)
        out["dists"] = dists.numpy()
        out["n_windows"] = n_win
        return out

    def _fingerprint(self, n_win: int) -> dict[str, object]:
        proto = self.protocol()
        return {"protocol": proto.fingerprint(), "weights": proto.weights_sha256, "n_windows": n_win,
                "device": str(self.device).split(":")[0], "impl": INFERENCE_IMPL}  # fp32 rounding differs by impl

    def video_window_features(self, net: SyncNetV2, frames: np.ndarray, video: torch.Tensor, n_win: int,
                              ground_truth: bool) -> torch.Tensor:
        """Video embeddings of the crops; the ground truth's own crops (scored as a method) through the on-disk
        feature cache, keyed by the 224 crops' content (generated crops are never stored: new every time)."""
        def compute() -> dict[str, np.ndarray]:
            feats = video_features(net, video, n_win, self.batch_size, self.device)
            PASSES.record("syncnet_video", [content_key(frames)], n=n_win)
            return {"features": feats.numpy()}

        if not ground_truth:
            return torch.from_numpy(compute()["features"])
        hit = cached_features("gtsyncvideo", frames, self._fingerprint(n_win), compute)
        assert hit is not None
        return torch.from_numpy(hit["features"])

    def driving_audio_features(self, net: SyncNetV2, audio: np.ndarray, n_win: int) -> torch.Tensor:
        """Audio embeddings of the driving audio through the on-disk feature cache (metrics/feature_cache.py):
        keyed by the audio samples' content, the protocol, the weights and the window count."""
        fp = self._fingerprint(n_win)

        def compute() -> dict[str, np.ndarray]:
            PASSES.record("syncnet_audio", [content_key(np.asarray(audio))], n=n_win)
            mfcc = mfcc_input(audio, SAMPLE_RATE)
            return {"features": audio_features(net, mfcc, n_win, self.batch_size, self.device).numpy()}

        hit = cached_features("gtsyncaudio", np.asarray(audio), fp, compute)
        assert hit is not None
        return torch.from_numpy(hit["features"])

    def compute_clip(self, clip: ClipInput) -> ClipResult:
        if clip.audio is None:
            raise MediaError(f"{clip.clip_id}: SyncNet needs the driving audio")
        if abs(clip.fps - FPS) > 1e-6:
            raise MediaError(f"{clip.clip_id}: SyncNet protocol needs {FPS:g} fps frames, got {clip.fps:g}")
        if clip.generated_full is None or clip.face_boxes is None:
            raise MediaError(f"{clip.clip_id}: SyncNet needs the full-resolution generated frames and the ground "
                             "truth's face boxes (ClipInput.generated_full / face_boxes)")
        self.net()  # unavailable weights fail before any cropping work
        crops = syncnet_crops(clip.generated_full, clip.face_boxes)
        r = self.evaluate(crops, clip.audio, clip.sample_rate, clip.clip_id, generated_is_ground_truth(clip))
        return ClipResult(
            values={"LSE-C": r["LSE-C"], "LSE-D": r["LSE-D"], "LSE-offset": float(r["offset"])},
            per_frame={"dist_at_best_offset": np.asarray(r["dist_at_best"], dtype=np.float32)},
            extra={"offset": r["offset"], "n_windows": r["n_windows"],
                   FRAMES_USED: int(r["n_windows"]) + WIN_FRAMES - 1, FRAMES_TOTAL: len(crops),
                   "mean_dist_per_offset": [float(x) for x in r["mean_dists"]],
                   "offsets": list(range(VSHIFT, -VSHIFT - 1, -1))},
        )
