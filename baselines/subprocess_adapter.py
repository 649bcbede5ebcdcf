"""Run a baseline that lives in its own repository and Python environment (old torch pins) as a command.

One YAML per method (baselines/configs/<name>.yaml) says where the repository and its python are (env vars
override), which upstream commit its argument parser was checked against (`upstream`), the command, the
inputs to prepare and where the output video lands. The adapter writes the inputs with the harness's own
media/face code (25 fps mp4, 16 kHz wav, face crops, landmark or box files), runs the command and
normalises the output to the harness contract: 25 fps by timestamps, exactly n_frames, the source
resolution (crop outputs are pasted back along the crop track).

Running: arguments go to the program as a list (never through a shell), so clip ids and paths with shell
characters arrive literally. Each clip gets its own working folder (cwd when the config says `{workdir}`),
because several repositories write fixed names into their cwd (PC-AVS `results/...`, StyleTalk
`silent.mp4`, IP_LAP `tempfile_of_*`). The command runs in its own process group; at the timeout the whole
group is killed. stdout/stderr are captured bounded (first 64 KiB + last 256 KiB each), so a chatty
command cannot fill memory; the error of a failed clip is one line of reason plus the stderr tail.

Failures that become a failed clip (SubprocessMethodError, never a hang or a crash): non-zero exit; timeout;
exit 0 but no output file; an output that cannot be decoded; an output of the wrong shape (aspect ratio
other than expected, panel layout not recognised); more than 10% of the frames missing (the rule of
precomputed outputs, baselines/precomputed.py). Fewer missing frames are padded by holding the last one,
extra frames are cut; both are recorded in the clip's method_notes.

Command placeholders: {python} {repo} {workdir} {out} {clip_id} {clip_slug} {setting} {n_frames} {fps}
{sample_rate} {n_source_frames} {audio_stem} {source_stem}, every entry of the config's `vars`, and every
prepared input by its name (its path; frames_dir inputs also give {<name>_count}). Input file names are
expanded with shell-safe stems (clip_id / audio_stem / source_stem slugged), the command with the raw ones.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import yaml

from harness.core.errors import BenchError, MediaError
from harness.core.methods import Method, MethodInput, register

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHOD_NAMES = ("talklip", "pcavs", "dinet", "iplap", "styletalk")
MAX_MISSING = 0.10  # same rule as baselines/precomputed.py: more than 10% of the frames missing fails a clip
LOG_HEAD_BYTES = 64 * 1024  # kept from the start of each stream
LOG_TAIL_BYTES = 256 * 1024  # kept from the end of each stream
ERROR_TAIL_LINES = 12  # stderr lines quoted in a failed clip's error
ERROR_TAIL_CHARS = 1500
_PLAIN = re.compile(r"^[A-Za-z0-9._+-]+$")  # a file-name component no shell or space-split reader mangles
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._+/-]+$")


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
        try:
            cfg = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise BenchError(f"subprocess method config is not valid YAML: {str(e).splitlines()[0]}", p) from None
    for key in ("name", "repo", "python", "command", "output"):
        if key not in cfg:
            raise BenchError(f"subprocess method config lacks '{key}'", None if isinstance(source, dict) else source)
    if not isinstance(cfg["command"], list):
        raise BenchError("subprocess method config: 'command' must be a list of arguments (no shell)",
                         None if isinstance(source, dict) else source)
    return cfg


def config_env_vars(cfg: dict[str, Any]) -> list[str]:
    """Every environment variable a config reads (repo, python, vars): what a remote worker must inherit."""
    names: list[str] = []
    for spec in [cfg.get("repo"), cfg.get("python"), *(cfg.get("vars") or {}).values()]:
        if isinstance(spec, dict) and spec.get("env"):
            names.append(str(spec["env"]))
    return names


def all_env_vars() -> list[str]:
    """The environment variables of every shipped baseline config (DINET_*, TALKLIP_*, ...)."""
    out: list[str] = []
    for name in METHOD_NAMES:
        out += [v for v in config_env_vars(load_config(CONFIG_DIR / f"{name}.yaml")) if v not in out]
    return out


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


def safe_name(text: str) -> str:
    """A file-name component safe for shells and space-split meta files: the text itself when it already
    is, else its plain characters plus a short hash of the original (distinct ids stay distinct)."""
    text = str(text)
    if _PLAIN.match(text) and text not in (".", ".."):
        return text
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")[:60] or "clip"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def git_commit(repo: Path) -> str | None:
    """The commit checked out in a repository, read from .git (no git binary needed): HEAD, a loose ref,
    packed-refs, or a worktree/submodule '.git' file pointing elsewhere. None when not a git checkout."""
    git = repo / ".git"
    try:
        if git.is_file():  # worktree / submodule: "gitdir: <path>"
            line = git.read_text().strip()
            if not line.startswith("gitdir:"):
                return None
            git = (repo / line[7:].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
        ref = head[5:]
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for base in (git, common):
            packed = base / "packed-refs"
            if packed.is_file():
                for ln in packed.read_text().splitlines():
                    parts = ln.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
    except OSError:
        return None
    return None


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
    """Outputs that tile several videos side by side (IP_LAP: sketch|result): keep panel index of count."""
    if not panel:
        return frames
    index, count = int(panel[0]), int(panel[1])
    W = frames.shape[2]
    w = W // count
    return frames[:, :, index * w:(index + 1) * w]


def panel_layout(width: int, height: int, spec: dict[str, Any], path: Path | None = None) -> tuple[int, int] | None:
    """(index, count) of the generated panel. `panel: [i, n]` is fixed; `panel_by_count: {n: i}` with
    `panel_width` (pixels, or "height" for square panels) detects n from the output's width, for repositories
    whose layout changed between commits (PC-AVS: 5 panels at 16adc8b, 3 or 4 at 23585e2)."""
    if spec.get("panel"):
        i, n = (int(v) for v in spec["panel"])
        return i, n
    by_count = spec.get("panel_by_count")
    if not by_count:
        return None
    pw = spec.get("panel_width", "height")
    pw = int(height) if pw == "height" else int(pw)
    known = {int(k): int(v) for k, v in by_count.items()}
    if pw <= 0 or width % pw != 0 or width // pw not in known:
        raise SubprocessMethodError(
            f"output is {width}x{height}: not a row of {pw}-px panels in a known layout "
            f"(knows {', '.join(f'{k} panels' for k in sorted(known))})", path)
    n = width // pw
    return known[n], n


def aspect_ok(w: int, h: int, expect_w: int, expect_h: int) -> bool:
    """Same aspect ratio up to one pixel of rounding on each side (codecs round sizes to even numbers):
    some w' in [w-1, w+1], h' in [h-1, h+1] with w'/h' = expect_w/expect_h."""
    r = expect_w / expect_h
    return abs(w - r * h) <= 1 + r


# ---------------------------------------------------------------------------------------------------------
# running a command with bounded capture
# ---------------------------------------------------------------------------------------------------------
class _BoundedCapture:
    """Drains a pipe in a thread, keeping its first `head` and last `tail` bytes and counting the rest:
    a command printing megabytes neither blocks on a full pipe nor fills memory."""

    def __init__(self, stream: IO[bytes], head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES):
        self.stream, self.head_max, self.tail_max = stream, head, tail
        self.head, self.tail, self.total = bytearray(), bytearray(), 0
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            while True:
                chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                if len(self.head) < self.head_max:
                    take = self.head_max - len(self.head)
                    self.head += chunk[:take]
                    chunk = chunk[take:]
                if chunk:
                    self.tail += chunk
                    if len(self.tail) > self.tail_max:
                        del self.tail[: len(self.tail) - self.tail_max]
        except (OSError, ValueError):  # pipe closed under us after a kill
            pass

    @property
    def omitted(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        mid = f"\n[... {self.omitted} bytes omitted ...]\n" if self.omitted > 0 else ""
        return self.head.decode(errors="replace") + mid + self.tail.decode(errors="replace")

    def last_lines(self, lines: int = ERROR_TAIL_LINES, chars: int = ERROR_TAIL_CHARS) -> str:
        body = (self.head + self.tail if self.omitted <= 0 else self.tail).decode(errors="replace")
        kept = [ln for ln in body.rstrip().splitlines() if ln.strip()][-lines:]
        out = "\n".join(kept)
        return out if len(out) <= chars else "..." + out[-chars:]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n} bytes"


def run_command(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float, logdir: Path
                ) -> tuple[int | None, _BoundedCapture, _BoundedCapture]:
    """Run cmd (a list: no shell) in its own session; (returncode or None on timeout, stdout, stderr).
    At the timeout, and whenever we leave early, the whole process group is killed."""
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "command.json").write_text(json.dumps({"argv": cmd, "cwd": str(cwd)}, indent=1))
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out, err = _BoundedCapture(proc.stdout), _BoundedCapture(proc.stderr)  # type: ignore[arg-type]
    rc: int | None = None
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
    for cap in (out, err):
        cap.thread.join(timeout=2.0)
    if rc is not None and (out.thread.is_alive() or err.thread.is_alive()):
        _kill_group(proc.pid)  # it exited but left children holding its pipes: they go too
        for cap in (out, err):
            cap.thread.join(timeout=2.0)
    for cap in (out, err):
        try:
            cap.stream.close()
        except OSError:
            pass
    (logdir / "stdout.txt").write_text(out.text())
    (logdir / "stderr.txt").write_text(err.text())
    return rc, out, err


class _Led:
    """An output's frames with `lead` copies of its first frame in front (a repository whose first output frame
    shows frame `lead` of the clip), decoded in chunks like the frames it wraps (fitted_chunks' input)."""

    def __init__(self, frames: Any, lead: int):
        self.frames, self.lead = frames, int(lead)
        self.shape = (len(frames) + self.lead, *frames.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Any:
        stop = len(self) if stop is None else min(int(stop), len(self))
        held = min(self.lead, stop) - start
        if held > 0:
            first = next(self.frames.chunks(1, 0, 1))
            for i in range(0, held, size):
                yield np.repeat(first, min(size, held - i), axis=0)
        if stop > self.lead:
            yield from self.frames.chunks(size, max(0, start - self.lead), stop - self.lead)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
        self.last_notes: dict[str, Any] = {}

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

    def _required_paths(self, vals: dict[str, Any]) -> list[Path]:
        repo = Path(vals["repo"])
        out = []
        for rel in self.config.get("requires") or []:
            p = Path(_expand(rel, vals))
            out.append(p if p.is_absolute() else repo / p)
        return out

    def _missing_executable(self, vals: dict[str, Any]) -> str | None:
        """The first program the repository calls itself (through os.system / a shell) not found here."""
        for spec in self.config.get("executables") or []:
            exe = _expand(str(spec), vals)
            found = shutil.which(exe) if os.sep not in exe else (exe if os.access(exe, os.X_OK) else None)
            if not found:
                return exe
        return None

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
        for p in self._required_paths(vals):
            if not p.exists():
                return False, f"{self.method_name}: required file missing: {p}"
        exe = self._missing_executable(vals)
        if exe:
            return False, (f"{self.method_name}: needs the program '{exe}' on PATH (the repository calls it "
                           f"itself; without it it writes no output); install it (e.g. apt-get install ffmpeg)")
        return True, ""

    def repo_commit(self) -> str | None:
        """The git commit of the repository checked out here (None when it is not a git checkout)."""
        return git_commit(self.repo())

    def fingerprint(self) -> str:
        """Config + repository commit + required files' sha256: a changed setup never reuses videos."""
        from harness.core import weights

        h = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode())
        vals = self._base_values()
        h.update(str(git_commit(Path(vals["repo"]))).encode())
        for p in self._required_paths(vals):
            if p.is_file():
                h.update(weights.file_sha256(p).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """Also what the run summary records: repo_path / repo_commit (checked out here) and upstream (the
        commit whose argument parser the config was checked against)."""
        return {"name": self.method_name, "kind": self.kind, "fingerprint": self.fingerprint(),
                "source": self.config.get("source"), "notes": self.config.get("notes"),
                "repo_path": str(self.repo()), "repo_commit": self.repo_commit(),
                "upstream": self.config.get("upstream")}

    # -- faces, computed once per generate() ------------------------------------------------------------
    def _crop_track(self, ctx: dict[str, Any], size: int):
        key = ("crop_track", size)
        if key not in ctx:
            from harness.core.faces.crop import make_crop_track

            ctx[key] = make_crop_track(self._face_track(ctx), ctx["src"].shape[1:3], size=size)
        return ctx[key]

    def _face_track(self, ctx: dict[str, Any]):
        if "face_track" not in ctx:
            from harness.core.faces.track import track_faces

            ctx["face_track"] = track_faces(ctx["src"], self.detector, name=ctx["inp"].source_video)
        return ctx["face_track"]

    def _frame_chunks(self, ctx: dict[str, Any], spec: dict[str, Any], start: int = 0, stop: int | None = None
                      ) -> Any:
        """Source frames [start, stop), full or face crops (region: crop, size: N), in chunks: the whole array
        for a source in memory, STREAM_CHUNK_BYTES pieces for one decoding in chunks (a long clip), so writing
        the inputs never holds the clip's full frames. `frame_in: [x0, y0, x1, y1]` says the
        repository reads only that square sub-box of the image it is given (PC-AVS load_img keeps rows
        0..192, columns 16..208 of its 224 input): the written crop is widened so that exactly the crop
        track's box lands in that sub-box, and the output, which shows the sub-box, pastes back on the box."""
        src = ctx["src"]
        stop = len(src) if stop is None else min(int(stop), len(src))
        chunks = src.chunks(None, start, stop) if hasattr(src, "chunks") else iter([src[start:stop]])
        if spec.get("region", "full") != "crop":
            yield from chunks
            return
        from dataclasses import replace

        from harness.core.faces.crop import crop_frames

        ct = self._input_crop_track(ctx, spec)
        pos = start
        for chunk in chunks:
            yield crop_frames(chunk, replace(ct, boxes=np.asarray(ct.boxes)[pos:pos + len(chunk)]))
            pos += len(chunk)

    def _input_crop_track(self, ctx: dict[str, Any], spec: dict[str, Any]) -> Any:
        """The crop track the input crops are cut along (widened for `frame_in`)."""
        from dataclasses import replace

        size = int(spec.get("size", 256))
        ct = self._crop_track(ctx, size)
        if spec.get("frame_in"):
            x0, y0, x1, y1 = (float(v) for v in spec["frame_in"])
            if abs((x1 - x0) - (y1 - y0)) > 1e-9 or x1 <= x0:
                raise BenchError(f"{self.method_name}: frame_in {spec['frame_in']} is not a square sub-box")
            b = np.asarray(ct.boxes, dtype=np.float64)
            side = b[:, 2] - b[:, 0]
            wide = np.round(side * size / (x1 - x0))
            nx1 = np.round(b[:, 0] - x0 * wide / size)
            ny1 = np.round(b[:, 1] - y0 * wide / size)
            ct = replace(ct, boxes=np.stack([nx1, ny1, nx1 + wide, ny1 + wide], axis=1))
        return ct

    # -- inputs -----------------------------------------------------------------------------------------
    def _prepare(self, ctx: dict[str, Any], values: dict[str, Any]) -> None:
        import cv2

        from harness.core.media import VideoWriter, audio_frames

        inp: MethodInput = ctx["inp"]
        indir = Path(values["workdir"]) / "inputs"
        indir.mkdir(parents=True, exist_ok=True)
        safe = dict(values, clip_id=values["clip_slug"], audio_stem=safe_name(values["audio_stem"]),
                    source_stem=safe_name(values["source_stem"]))
        audio = audio_frames(inp.audio, inp.n_frames, inp.fps, inp.sample_rate)
        for spec in self.config.get("inputs") or []:
            name, kind = spec["name"], spec["kind"]
            path = indir / _expand(spec.get("file", name), safe)
            if kind == "audio":
                sr = int(spec.get("sample_rate", 16000))
                a = audio
                if sr != inp.sample_rate:
                    import librosa

                    a = librosa.resample(audio, orig_sr=inp.sample_rate, target_sr=sr)
                write_wav(path, a, sr)
            elif kind == "video":
                fps = float(spec.get("fps", 25.0))
                if abs(fps - inp.fps) > 1e-6:
                    raise BenchError(f"{self.method_name}: input video fps {fps} differs from the harness fps {inp.fps}")
                with VideoWriter(path, len(ctx["src"]), fps=fps, audio=audio if spec.get("with_audio") else None,
                                 sample_rate=inp.sample_rate) as writer:  # write_video's file, chunk by chunk
                    for chunk in self._frame_chunks(ctx, spec):
                        writer.write(chunk)
            elif kind == "frames_dir":
                path.mkdir(parents=True, exist_ok=True)
                pattern = spec.get("pattern", "{:06d}.jpg")
                limit = spec.get("max_frames")
                count = 0
                for chunk in self._frame_chunks(ctx, spec, 0, int(limit) if limit else None):
                    for f in chunk:
                        cv2.imwrite(str(path / pattern.format(count + int(spec.get("start", 0)))), f[:, :, ::-1])
                        count += 1
                values[f"{name}_count"] = count
                safe[f"{name}_count"] = count
            elif kind == "image":
                i = int(spec.get("index", 0))
                frame = next(self._frame_chunks(ctx, spec, i, i + 1))[0]
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
            safe[name] = str(path)

    def _landmarks(self, ctx: dict[str, Any]) -> np.ndarray:
        """[T,68,2] full-frame landmarks on the tracked face box (nan rows where none)."""
        if "landmarks" not in ctx:
            from harness.core.faces.landmarks import get_landmarker

            lmk = get_landmarker(self.landmarker)
            boxes = self._face_track(ctx).boxes
            out = []
            for f, b in zip(ctx["src"], boxes):
                lm = lmk.landmarks(f, b)
                out.append(np.full((68, 2), np.nan, np.float32) if lm is None else np.asarray(lm, np.float32))
            ctx["landmarks"] = np.stack(out)
        return ctx["landmarks"]

    # -- running ----------------------------------------------------------------------------------------
    def _entry(self, cmd: list[str], cwd: Path) -> Path:
        """The entry script (first .py argument) for error messages, else the working folder."""
        for a in cmd[1:]:
            if a.endswith(".py"):
                p = Path(a)
                return p if p.is_absolute() else cwd / p
        return cwd

    def _fail(self, reason: str, path: Path | str | None, out: _BoundedCapture | None = None,
              err: _BoundedCapture | None = None) -> SubprocessMethodError:
        """One line of reason, then the stderr tail (stdout's when stderr is empty: PC-AVS prints caught
        exceptions' messages there)."""
        msg = f"{self.method_name}: {reason}"
        for label, cap in (("stderr", err), ("stdout", out)):
            if cap is None or cap.total == 0:
                continue
            tail = cap.last_lines()
            if tail:
                msg += f"\n  {label} (last lines of {_size(cap.total)}):\n    " + tail.replace("\n", "\n    ")
                break
        return SubprocessMethodError(msg, path)

    def _run(self, cmd: list[str], cwd: Path, env: dict[str, str], logdir: Path
             ) -> tuple[_BoundedCapture, _BoundedCapture]:
        rc, out, err = run_command(cmd, cwd, env, self.timeout_s, logdir)
        entry = self._entry(cmd, cwd)
        if rc is None:
            raise self._fail(f"timed out after {self.timeout_s:g}s (process group killed)", entry, out, err)
        if rc != 0:
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise self._fail(how, entry, out, err)
        return out, err

    def _find_output(self, values: dict[str, Any], out: _BoundedCapture | None = None,
                     err: _BoundedCapture | None = None) -> Path:
        pattern = _expand(self.config["output"]["glob"], values)
        # the placeholders' values are literal paths: a '[' or '*' in a folder name is no wildcard
        escaped = {k: glob.escape(v) if isinstance(v, str) else v for k, v in values.items()}
        hits = [Path(p) for p in glob.glob(_expand(self.config["output"]["glob"], escaped), recursive=True)
                if Path(p).is_file()]
        if not hits:
            raise self._fail(f"exited 0 but wrote no output matching {pattern}", values["out"], out, err)
        return max(hits, key=lambda p: p.stat().st_mtime)  # the newest, if a repo writes several

    # -- output -----------------------------------------------------------------------------------------
    def normalise(self, ctx: dict[str, Any], path: Path) -> np.ndarray:
        """The output video -> uint8 [n_frames, H, W, 3] at the source resolution and harness fps, or a
        SubprocessMethodError saying what is wrong with it. Records what was done in self.last_notes.
        normalise_chunks in one piece."""
        parts = list(self.normalise_chunks(ctx, path, max(1, int(ctx["inp"].n_frames))))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def normalise_chunks(self, ctx: dict[str, Any], path: Path, size: int) -> Any:
        """normalise() in chunks of at most `size` frames: the output is decoded chunk by chunk through the folder
        method's reader (baselines/precomputed.py _open_output: StreamedFrames, or a PNG folder's files), so a
        long clip's output is never read whole. Checks and notes (self.last_notes) come before the first chunk."""
        from dataclasses import replace

        from baselines.precomputed import _open_output
        from harness.core.faces.crop import paste_frames
        from harness.core.frame_chunks import ForwardFrames, fitted_chunks

        inp: MethodInput = ctx["inp"]
        spec = self.config["output"]
        n = int(inp.n_frames)
        lead = int(spec.get("lead_frames", 0))
        try:
            out = _open_output(path, inp.fps, max(n - lead, 0) + 1)
        except MediaError as e:
            raise SubprocessMethodError(f"{self.method_name}: output cannot be decoded: {e.problem}", path) from None
        except Exception as e:  # noqa: BLE001 - a broken file from a foreign tool: say which
            raise SubprocessMethodError(f"{self.method_name}: output cannot be decoded: {e}", path) from None
        if len(out) == 0:
            raise SubprocessMethodError(f"{self.method_name}: output has no frames", path)
        oh, ow = (int(v) for v in out.shape[1:3])
        notes: dict[str, Any] = {"output_file": path.name, "output_size": [ow, oh]}
        layout = panel_layout(ow, oh, spec, path)
        ph, pw = oh, ow
        if layout:
            pw = ow // layout[1]
            notes.update(panel=layout[0], panels=layout[1])
        src = ctx["src"]
        H, W = (int(v) for v in src.shape[1:3])
        crop = spec.get("region", "full") == "crop"
        ew, eh = (1, 1) if crop else (W, H)
        if not aspect_ok(pw, ph, ew, eh):
            want = "a square face crop" if crop else f"the source's {W}x{H} aspect ratio"
            raise SubprocessMethodError(f"{self.method_name}: output frames are {pw}x{ph}, expected {want}", path)
        if lead:  # the repository's first output frame shows frame `lead` of the clip: hold it before
            notes["lead_frames_held"] = lead
        have = len(out) + lead
        notes.update(frames_in_output=int(have), frames_expected=n, frames_padded=max(0, n - have),
                     frames_trimmed=max(0, have - n))
        if n - have > MAX_MISSING * n:
            raise SubprocessMethodError(
                f"{self.method_name}: output has {have} of {n} frames ({n - have} missing, more than "
                f"{MAX_MISSING:.0%})", path)
        self.last_notes = notes
        ct = self._crop_track(ctx, int(spec.get("size", 256))) if crop else None
        reader = ForwardFrames(src, size) if crop else None
        pos = 0
        try:
            for chunk in fitted_chunks(_Led(out, lead), n, size):
                chunk = select_panel(chunk, [layout[0], layout[1]]) if layout else chunk
                if ct is not None and reader is not None:  # pasted back along the crop track (source looped)
                    idx = np.arange(pos, pos + len(chunk)) % len(src)
                    crops = _resize(np.ascontiguousarray(chunk), (ct.size, ct.size))
                    done = paste_frames(reader.take(idx.tolist()), crops, replace(ct, boxes=np.asarray(ct.boxes)[idx]))
                else:
                    done = _resize(np.ascontiguousarray(chunk), (H, W))
                pos += len(chunk)
                yield np.ascontiguousarray(done)
        except MediaError as e:
            raise SubprocessMethodError(f"{self.method_name}: output cannot be decoded: {e.problem}", path) from None

    def _workdir(self, inp: MethodInput) -> tuple[Path, tempfile.TemporaryDirectory | None]:
        """This clip's own folder. Repositories that split a meta file on spaces or call ffmpeg through a
        shell (`plain_paths: true`) get a private temporary folder when the given one is not plain."""
        leaf = f"{safe_name(inp.setting)}-{safe_name(inp.clip_id)}"
        if inp.workdir is not None:
            wd = Path(inp.workdir) / safe_name(self.method_name) / leaf
            if not self.config.get("plain_paths") or _PLAIN_PATH.match(str(wd.absolute())):
                wd.mkdir(parents=True, exist_ok=True)
                return wd, None
        tmp = tempfile.TemporaryDirectory(prefix=f"rtb-{safe_name(self.method_name)}-")
        if self.config.get("plain_paths") and not _PLAIN_PATH.match(tmp.name):
            tmp.cleanup()
            raise SubprocessMethodError(
                f"{self.method_name} needs a working folder without spaces or shell characters (it splits its "
                f"meta file on spaces / calls ffmpeg through a shell); set TMPDIR to such a folder", tmp.name)
        wd = Path(tmp.name) / leaf
        wd.mkdir(parents=True)
        return wd, tmp

    def generate(self, inp: MethodInput) -> np.ndarray:
        parts = list(self.generate_chunks(inp, max(1, int(inp.n_frames))))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def generate_chunks(self, inp: MethodInput, size: int) -> Any:
        """The command run once, its output given `size` frames at a time (normalise_chunks): for a long clip
        whose source decodes in chunks (harness.evaluate), neither the inputs written (_frame_chunks) nor the
        output read holds the clip's full frames. Checks fail and the notes are set before the first chunk."""
        ok, why = self.availability()
        if not ok:
            raise SubprocessMethodError(why)
        self.last_notes = {}
        workdir, tmp = self._workdir(inp)
        try:
            values = self._base_values()
            out = workdir / "out"
            out.mkdir(parents=True, exist_ok=True)
            audio_stem = Path(inp.audio_path).stem if inp.audio_path else inp.clip_id
            values.update(workdir=str(workdir), out=str(out), clip_id=inp.clip_id, clip_slug=safe_name(inp.clip_id),
                          setting=inp.setting, n_frames=int(inp.n_frames), fps=inp.fps, sample_rate=inp.sample_rate,
                          n_source_frames=len(inp.source_frames), audio_stem=audio_stem,
                          source_stem=Path(inp.source_video).stem)
            repo = Path(values["repo"])
            for rel in self.config.get("workdir_links") or []:  # cwd-relative files the repository reads
                link = workdir / rel
                if not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(repo / rel, target_is_directory=(repo / rel).is_dir())
            src = inp.source_frames  # StreamedFrames stay streamed (a long clip); anything else as an array
            ctx: dict[str, Any] = {"inp": inp, "src": src if hasattr(src, "chunks") else np.asarray(src)}
            self._prepare(ctx, values)
            cmd = [_expand(c, values) for c in self.config["command"]]
            cwd = Path(_expand(self.config.get("cwd", "{repo}"), values))
            env = dict(os.environ)
            for k, v in (self.config.get("env") or {}).items():
                env[k] = _expand(v, values)
            so, se = self._run(cmd, cwd, env, workdir / "logs")
            chunks = self.normalise_chunks(ctx, self._find_output(values, so, se), size)
            first = next(chunks, None)  # the output checked, its notes set
            self.last_notes = dict(self.last_notes, repo_commit=git_commit(repo))
            if first is not None:
                yield first
                yield from chunks
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
