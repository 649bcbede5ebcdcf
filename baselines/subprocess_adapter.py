"""Run a baseline that lives in its own repository and Python environment (old torch pins) as a command.

One YAML per method (baselines/configs/<name>.yaml) says where the repository and its python are (env vars
override), the command template, the inputs to prepare, and where the output video lands. The adapter
writes the inputs with the harness's own media/face code (25 fps mp4, 16 kHz wav, face crops, landmark or
box files), runs the command with a timeout (stderr goes into the error on failure), and normalises the
output to the harness contract: 25 fps by timestamps, exactly n_frames (trim / hold the last frame), the
source resolution (crop outputs are pasted back along the crop track).

Command placeholders: {python} {repo} {workdir} {out} {clip_id} {setting} {n_frames} {fps}
{sample_rate} {n_source_frames} {audio_stem}, every entry of the config's `vars`, and every prepared
input by its name (its path; frames_dir inputs also give {<name>_count}).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from harness.errors import BenchError, MediaError
from harness.methods import Method, MethodInput, register

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHOD_NAMES = ("talklip", "pcavs", "dinet", "iplap", "styletalk")
_TAIL = 4000  # characters of stderr kept in an error


class SubprocessMethodError(BenchError):
    """A wrapped method's command failed, timed out, or left no usable output."""


# ---------------------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------------------
def load_config(source: str | os.PathLike | dict) -> dict[str, Any]:
    """A method config from a YAML path or an already-parsed dict (tests pass dicts)."""
    if isinstance(source, dict):
        cfg = dict(source)
    else:
        p = Path(source)
        if not p.is_file():
            raise BenchError("subprocess method config not found", p)
        cfg = yaml.safe_load(p.read_text()) or {}
    for key in ("name", "repo", "python", "command", "output"):
        if key not in cfg:
            raise BenchError(f"subprocess method config lacks '{key}'", None if isinstance(source, dict) else source)
    return cfg


def _expand(template: str, values: dict[str, Any]) -> str:
    """str.format over the known placeholders; an unknown one is a config error, not a KeyError traceback."""
    try:
        return str(template).format(**values)
    except KeyError as e:
        raise BenchError(f"unknown placeholder {{{e.args[0]}}} in {template!r}; known: {sorted(values)}") from None


def _resolve(spec: Any, values: dict[str, Any]) -> str:
    """A path setting: a string, or {env: VAR, default: template}; the env var wins when set."""
    if isinstance(spec, dict):
        env = spec.get("env")
        if env and os.environ.get(env):
            return os.path.expanduser(os.environ[env])
        spec = spec.get("default", "")
    return os.path.expanduser(_expand(str(spec), values))


# ---------------------------------------------------------------------------------------------------------
# input writers
# ---------------------------------------------------------------------------------------------------------
def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM mono wav (what scipy.io.wavfile / librosa / logfbank in the repos read)."""
    from scipy.io import wavfile

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    wavfile.write(str(path), int(sample_rate), (pcm * 32767.0).round().astype(np.int16))
    return path


def write_openface_csv(path: Path, landmarks: np.ndarray, fps: float) -> Path:
    """OpenFace 2.0 FeatureExtraction layout (frame, face_id, timestamp, confidence, success, x_0..x_67,
    y_0..y_67; frames numbered from 1), which DINet's load_landmark_openface reads by column position."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["frame", " face_id", " timestamp", " confidence", " success"]
    header += [f" x_{i}" for i in range(68)] + [f" y_{i}" for i in range(68)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for t, lm in enumerate(landmarks):
            ok = bool(np.all(np.isfinite(lm)))
            row = [t + 1, 0, round(t / fps, 3), 0.98 if ok else 0.0, int(ok)]
            row += [f"{v:.1f}" for v in lm[:, 0]] + [f"{v:.1f}" for v in lm[:, 1]]
            w.writerow(row)
    return path


def _resize(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    H, W = hw
    if frames.shape[1:3] == (H, W):
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] > H else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (W, H), interpolation=interp) for f in frames])


def fit_length(frames: np.ndarray, n: int) -> np.ndarray:
    """Exactly n frames: trim, or hold the last frame."""
    if len(frames) == 0:
        raise ValueError("no frames")
    if len(frames) >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


def select_panel(frames: np.ndarray, panel: list[int] | tuple[int, int] | None) -> np.ndarray:
    """Outputs that tile several videos side by side (IP_LAP: sketch|result; PC-AVS: 4 panels): keep one."""
    if not panel:
        return frames
    index, count = int(panel[0]), int(panel[1])
    W = frames.shape[2]
    w = W // count
    return frames[:, :, index * w:(index + 1) * w]


# ---------------------------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------------------------
class SubprocessMethod(Method):
    """A method run as a command in its own environment, described by a YAML config."""

    name: ClassVar[str] = "subprocess"
    kind: ClassVar[str] = "subprocess"
    config_path: ClassVar[Path | None] = None

    def __init__(self, config: str | os.PathLike | dict | None = None, timeout_s: float | None = None,
                 detector: str = "dlib_hog", landmarker: str = "dlib", keep_workdir: bool = False, **_: Any):
        self.config = load_config(config if config is not None else self.config_path)
        self.method_name = str(self.config["name"])
        self.timeout_s = float(timeout_s if timeout_s is not None else self.config.get("timeout_s", 3600))
        self.detector = detector
        self.landmarker = landmarker
        self.keep_workdir = keep_workdir

    # -- where things are -------------------------------------------------------------------------------
    def _base_values(self) -> dict[str, Any]:
        vals: dict[str, Any] = {}
        vals["repo"] = _resolve(self.config["repo"], vals)
        vals["python"] = _resolve(self.config["python"], vals)
        for k, spec in (self.config.get("vars") or {}).items():
            vals[k] = _resolve(spec, vals)
        return vals

    def repo(self) -> Path:
        return Path(self._base_values()["repo"])

    def python(self) -> Path:
        return Path(self._base_values()["python"])

    def availability(self) -> tuple[bool, str]:
        vals = self._base_values()
        repo, py = Path(vals["repo"]), Path(vals["python"])
        env_r = self.config["repo"].get("env") if isinstance(self.config["repo"], dict) else None
        env_p = self.config["python"].get("env") if isinstance(self.config["python"], dict) else None
        if not repo.is_dir():
            return False, (f"{self.method_name}: repository not found at {repo}"
                           + (f" (set {env_r})" if env_r else "") + f"; clone {self.config.get('source', 'it')}")
        if not (py.is_file() and os.access(py, os.X_OK)):
            return False, (f"{self.method_name}: python executable not found at {py}"
                           + (f" (set {env_p} to its environment's python)" if env_p else ""))
        for rel in self.config.get("requires") or []:
            p = Path(_expand(rel, vals))
            p = p if p.is_absolute() else repo / p
            if not p.exists():
                return False, f"{self.method_name}: required file missing: {p}"
        return True, ""

    def fingerprint(self) -> str:
        """Config + repository commit + required files' sizes/mtimes: a changed setup never reuses videos."""
        from harness import weights

        h = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode())
        vals = self._base_values()
        repo = Path(vals["repo"])
        head = repo / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            h.update(ref.encode())
            if ref.startswith("ref: ") and (repo / ".git" / ref[5:]).is_file():
                h.update((repo / ".git" / ref[5:]).read_bytes())
        for rel in self.config.get("requires") or []:
            p = Path(_expand(rel, vals))
            p = p if p.is_absolute() else repo / p
            if p.is_file():
                h.update(weights.file_sha256(p).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.method_name, "kind": self.kind, "fingerprint": self.fingerprint(),
                "source": self.config.get("source"), "notes": self.config.get("notes")}

    # -- faces, computed once per generate() ------------------------------------------------------------
    def _crop_track(self, ctx: dict[str, Any], size: int):
        key = ("crop_track", size)
        if key not in ctx:
            from harness.faces.crop import make_crop_track

            ctx[key] = make_crop_track(self._face_track(ctx), ctx["src"].shape[1:3], size=size)
        return ctx[key]

    def _face_track(self, ctx: dict[str, Any]):
        if "face_track" not in ctx:
            from harness.faces.track import track_faces

            ctx["face_track"] = track_faces(ctx["src"], self.detector, name=ctx["inp"].source_video)
        return ctx["face_track"]

    def _frames_for(self, ctx: dict[str, Any], spec: dict[str, Any]) -> np.ndarray:
        """Source frames, full or face crops (region: crop, size: N)."""
        src = ctx["src"]
        if spec.get("region", "full") == "crop":
            from harness.faces.crop import crop_frames

            return crop_frames(src, self._crop_track(ctx, int(spec.get("size", 256))))
        return src

    # -- inputs -----------------------------------------------------------------------------------------
    def _prepare(self, ctx: dict[str, Any], values: dict[str, Any]) -> None:
        import cv2

        from harness.media import audio_frames, write_video

        inp: MethodInput = ctx["inp"]
        indir = Path(values["workdir"]) / "inputs"
        indir.mkdir(parents=True, exist_ok=True)
        audio = audio_frames(inp.audio, inp.n_frames, inp.fps, inp.sample_rate)
        for spec in self.config.get("inputs") or []:
            name, kind = spec["name"], spec["kind"]
            fname = _expand(spec.get("file", name), values)
            path = indir / fname
            if kind == "audio":
                sr = int(spec.get("sample_rate", 16000))
                a = audio
                if sr != inp.sample_rate:
                    import librosa

                    a = librosa.resample(audio, orig_sr=inp.sample_rate, target_sr=sr)
                write_wav(path, a, sr)
            elif kind == "video":
                frames = self._frames_for(ctx, spec)
                fps = float(spec.get("fps", 25.0))
                if abs(fps - inp.fps) > 1e-6:
                    raise BenchError(f"{self.method_name}: input video fps {fps} differs from the harness fps {inp.fps}")
                write_video(path, frames, fps=fps, audio=audio if spec.get("with_audio") else None,
                            sample_rate=inp.sample_rate)
            elif kind == "frames_dir":
                frames = self._frames_for(ctx, spec)
                path.mkdir(parents=True, exist_ok=True)
                pattern = spec.get("pattern", "{:06d}.jpg")
                limit = spec.get("max_frames")
                use = frames[: int(limit)] if limit else frames
                for i, f in enumerate(use):
                    cv2.imwrite(str(path / pattern.format(i + int(spec.get("start", 0)))), f[:, :, ::-1])
                values[f"{name}_count"] = len(use)
            elif kind == "image":
                frame = self._frames_for(ctx, spec)[int(spec.get("index", 0))]
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), frame[:, :, ::-1])
            elif kind == "landmarks":
                lms = self._landmarks(ctx)
                if spec.get("format", "openface_csv") == "openface_csv":
                    write_openface_csv(path, lms, inp.fps)
                else:
                    np.save(path, lms.astype(np.float32))
            elif kind == "boxes":
                boxes = np.round(self._face_track(ctx).boxes).astype(np.int64)
                np.save(path, boxes)
            elif kind == "text":
                path.write_text(_expand(spec["content"], values))
            elif kind == "external":
                path = Path(_expand(spec["path"], values))
                if not path.exists():
                    raise SubprocessMethodError(
                        f"{self.method_name} needs {name} ({spec.get('what', 'a precomputed file')}) at {path}, "
                        f"which is not there; {spec.get('how', '')}".strip().rstrip(";"), path)
            else:
                raise BenchError(f"{self.method_name}: unknown input kind {kind!r} for {name}")
            values[name] = str(path)

    def _landmarks(self, ctx: dict[str, Any]) -> np.ndarray:
        """[T,68,2] full-frame landmarks on the tracked face box (nan rows where none)."""
        if "landmarks" not in ctx:
            from harness.faces.landmarks import get_landmarker

            lmk = get_landmarker(self.landmarker)
            boxes = self._face_track(ctx).boxes
            out = []
            for f, b in zip(ctx["src"], boxes):
                lm = lmk.landmarks(f, b)
                out.append(np.full((68, 2), np.nan, np.float32) if lm is None else np.asarray(lm, np.float32))
            ctx["landmarks"] = np.stack(out)
        return ctx["landmarks"]

    # -- running ----------------------------------------------------------------------------------------
    def _run(self, cmd: list[str], cwd: Path, env: dict[str, str], logdir: Path) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the command and anything it started
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            (logdir / "stdout.txt").write_bytes(out or b"")
            (logdir / "stderr.txt").write_bytes(err or b"")
            raise SubprocessMethodError(
                f"{self.method_name} timed out after {self.timeout_s:g}s: {' '.join(cmd)}\n"
                f"stderr (tail):\n{(err or b'').decode(errors='replace')[-_TAIL:]}", cwd) from None
        (logdir / "stdout.txt").write_bytes(out or b"")
        (logdir / "stderr.txt").write_bytes(err or b"")
        if proc.returncode != 0:
            raise SubprocessMethodError(
                f"{self.method_name} exited with status {proc.returncode}: {' '.join(cmd)}\n"
                f"stderr (tail):\n{(err or b'').decode(errors='replace')[-_TAIL:]}", cwd)

    def _find_output(self, values: dict[str, Any]) -> Path:
        import glob

        pattern = _expand(self.config["output"]["glob"], values)
        hits = [Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
        if not hits:
            raise SubprocessMethodError(f"{self.method_name} finished but wrote no output matching {pattern}",
                                        values["out"])
        return max(hits, key=lambda p: p.stat().st_mtime)  # the newest, if a repo writes several

    # -- output -----------------------------------------------------------------------------------------
    def normalise(self, ctx: dict[str, Any], path: Path) -> np.ndarray:
        """The output video -> uint8 [n_frames, H, W, 3] at the source resolution and harness fps."""
        from harness.media import read_video

        inp: MethodInput = ctx["inp"]
        spec = self.config["output"]
        try:
            frames = read_video(path, fps=inp.fps).frames
        except MediaError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken file from a foreign tool: say which
            raise SubprocessMethodError(f"{self.method_name} output cannot be decoded: {e}", path) from None
        if len(frames) == 0:
            raise SubprocessMethodError(f"{self.method_name} output has no frames", path)
        frames = fit_length(select_panel(frames, spec.get("panel")), int(inp.n_frames))
        src = ctx["src"]
        H, W = src.shape[1:3]
        if spec.get("region", "full") == "crop":
            from dataclasses import replace

            from harness.faces.crop import paste_frames

            ct = self._crop_track(ctx, int(spec.get("size", 256)))
            idx = np.arange(int(inp.n_frames)) % len(src)
            crops = _resize(np.ascontiguousarray(frames), (ct.size, ct.size))
            return paste_frames(src[idx], crops, replace(ct, boxes=np.asarray(ct.boxes)[idx]))
        return np.ascontiguousarray(_resize(np.ascontiguousarray(frames), (H, W)))

    def generate(self, inp: MethodInput) -> np.ndarray:
        ok, why = self.availability()
        if not ok:
            raise SubprocessMethodError(why)
        tmp = None
        if inp.workdir is not None:
            workdir = Path(inp.workdir) / self.method_name / f"{inp.setting}-{inp.clip_id}"
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.TemporaryDirectory(prefix=f"rtb-{self.method_name}-")
            workdir = Path(tmp.name)
        try:
            values = self._base_values()
            out = workdir / "out"
            out.mkdir(parents=True, exist_ok=True)
            audio_stem = Path(inp.audio_path).stem if inp.audio_path else inp.clip_id
            values.update(workdir=str(workdir), out=str(out), clip_id=inp.clip_id, setting=inp.setting,
                          n_frames=int(inp.n_frames), fps=inp.fps, sample_rate=inp.sample_rate,
                          n_source_frames=len(inp.source_frames), audio_stem=audio_stem,
                          source_stem=Path(inp.source_video).stem)
            ctx: dict[str, Any] = {"inp": inp, "src": np.asarray(inp.source_frames)}
            self._prepare(ctx, values)
            cmd = [_expand(c, values) for c in self.config["command"]]
            cwd = Path(_expand(self.config.get("cwd", "{repo}"), values))
            env = dict(os.environ)
            for k, v in (self.config.get("env") or {}).items():
                env[k] = _expand(v, values)
            self._run(cmd, cwd, env, workdir / "logs")
            return self.normalise(ctx, self._find_output(values))
        finally:
            if tmp is not None and not self.keep_workdir:
                tmp.cleanup()


def _register_all() -> None:
    """One registered Method per config: talklip, pcavs, dinet, iplap, styletalk."""
    for name in METHOD_NAMES:
        cls = type(f"{name.capitalize()}Method", (SubprocessMethod,),
                   {"name": name, "config_path": CONFIG_DIR / f"{name}.yaml",
                    "__doc__": f"{name} run in its own environment (config: baselines/configs/{name}.yaml)."})
        register(cls)


_register_all()
