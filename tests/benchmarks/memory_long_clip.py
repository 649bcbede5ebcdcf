"""Peak memory of `realtalk-bench run` on a 5-minute 1920x1080 25 fps clip (issue 15 item 5: under 4 GB).

Why a script and not a unit test: the clip takes minutes to build and the run minutes to score. It builds the
clip ONCE under a temp folder (video-retalking/face/2.mp4 upscaled to 1080 rows, centred on a 1920x1080 grey
canvas, looped to 5 minutes, its speech looped with it; H.264 + AAC through PyAV, streamed frame by frame so
building it needs no more memory than one frame), writes a one-clip manifest, then runs

    /usr/bin/time -v .venv/bin/realtalk-bench run --split M --root D --methods ground_truth,static_frame
        --settings reconstruction --metrics lmd,ssim --out OUT --no-progress

and prints "Maximum resident set size" (the peak RSS of the run process) with the exit code and wall time.
While it runs, the run process's VmRSS / VmHWM are sampled every --sample-s seconds into OUT.rss.log, so a
run stopped early still says how high it went and when.

    .venv/bin/python tests/benchmarks/memory_long_clip.py [--seconds 300] [--workdir /tmp/rtb-long-clip]
        [--limit-gb 16]   # address-space cap (RLIMIT_AS) so an unbounded decode fails instead of swapping the box
        [--methods ground_truth,static_frame,folder] [--metrics lmd,ssim] [--no-videos]
        # folder: a folder method whose output is the long clip blurred (a 1080p video that is not the ground
        # truth: its crops are a second 7500-crop array), built once next to the clip
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import threading
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
W, H, FPS, SR = 1920, 1080, 25, 16000
LIMIT_BYTES = 4.0e9  # issue 15 item 5: "under 4 GB" (decimal), the run's peak RSS


def build_clip(data_root: Path, out: Path, seconds: float, width: int = W, height: int = H, blur: float = 0.0
               ) -> Path:
    """The long clip, width x height (reused when it already exists with the same length); blur > 0: every
    frame Gaussian-blurred with that sigma (px), a stand-in for a method's output that is not the source."""
    import cv2

    from harness.core.media import read_audio, read_video

    if out.exists() and out.with_suffix(".done").exists() and out.with_suffix(".done").read_text() == str(seconds):
        return out
    src = data_root / "video-retalking/face/2.mp4"
    video = read_video(src, fps=FPS)
    audio = read_audio(src, sample_rate=SR, duration_s=len(video) / FPS)
    side = min(width, height)
    canvas = np.full((height, width, 3), 96, np.uint8)
    x0 = (width - side) // 2
    frames = []
    for fr in video.frames:
        img = canvas.copy()
        img[:side, x0:x0 + side] = cv2.resize(fr, (side, side), interpolation=cv2.INTER_AREA)
        frames.append(cv2.GaussianBlur(img, (0, 0), blur) if blur > 0 else img)
    n_total = int(round(seconds * FPS))
    spf = SR // FPS
    tmp = out.with_suffix(".tmp.mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), mode="w") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "23", "preset": "ultrafast"}
        as_ = c.add_stream("aac", rate=SR)
        as_.layout = "mono"
        vframes = [av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames]
        for i in range(n_total):
            k = i % len(frames)  # ping-pong would hide the loop seam; a plain loop is a cut, as in real edits
            vf = vframes[k]
            vf.pts = i
            vf.time_base = Fraction(1, FPS)
            for pkt in vs.encode(vf):
                c.mux(pkt)
            seg = audio[k * spf:(k + 1) * spf]
            seg = np.pad(seg, (0, spf - len(seg))).astype(np.float32)
            af = av.AudioFrame.from_ndarray(seg.reshape(1, -1), format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = SR, i * spf, Fraction(1, SR)
            for pkt in as_.encode(af):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
        for pkt in as_.encode(None):
            c.mux(pkt)
    os.replace(tmp, out)
    out.with_suffix(".done").write_text(str(seconds))
    return out


def write_manifest(path: Path, video_rel: str) -> Path:
    import yaml

    doc = {"name": path.stem, "description": "long clip for the memory benchmark",
           "selection_rule": "one synthetic long clip", "clips": [
               {"clip_id": path.stem, "identity": "face2", "video": video_rel}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB of a live process; (-1, -1) once it is gone."""
    try:
        txt = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1, -1
    vals = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", txt, re.M))
    return int(vals.get("VmRSS", -1)), int(vals.get("VmHWM", -1))


def _sample(time_pid: int, log: Path, every: float, stop: threading.Event) -> None:
    """Append 'elapsed_s rss_kB hwm_kB' of the run (the child of /usr/bin/time) every `every` seconds."""
    import time

    t0 = time.time()
    with open(log, "w") as f:
        while not stop.wait(every):
            try:
                kids = Path(f"/proc/{time_pid}/task/{time_pid}/children").read_text().split()
            except OSError:
                return
            if kids:
                rss, hwm = _rss_kb(int(kids[0]))
                f.write(f"{time.time() - t0:.0f} {rss} {hwm}\n")
                f.flush()


def measure(manifest: Path, data: Path, out: Path, limit_gb: float, extra: list[str], methods: str = "ground_truth,"
            "static_frame", metrics: str = "lmd,ssim", videos: bool = True, sample_s: float = 10.0
            ) -> tuple[int, int, str]:
    """(exit code, peak RSS in kB, last output lines) of one run under /usr/bin/time -v."""
    import resource

    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", str(ROOT / ".venv/bin/realtalk-bench"), "run", "--split", str(manifest),
           "--root", str(data), "--methods", methods, "--settings", "reconstruction",
           "--metrics", metrics, "--out", str(out), "--no-progress", "--n-boot", "100",
           *([] if videos else ["--no-videos"]), *extra]
    print("$", " ".join(cmd), flush=True)

    def cap() -> None:
        if limit_gb > 0:
            lim = int(limit_gb * 1024 ** 3)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    log = out.with_suffix(".rss.log")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=cap)
    stop = threading.Event()
    th = threading.Thread(target=_sample, args=(proc.pid, log, sample_s, stop), daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    stop.set()
    th.join()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", stderr)
    peak = int(m.group(1)) if m else -1
    tail = "\n".join(line for line in (stdout + stderr).splitlines() if not line.startswith("\t"))[-3000:]
    print(tail)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"exit {proc.returncode}; wall {wall.group(1) if wall else '?'}; CPU {usage.ru_utime + usage.ru_stime:.0f} s "
          f"(user {usage.ru_utime:.0f} + sys {usage.ru_stime:.0f}); peak RSS {peak * 1024} B = "
          f"{peak * 1024 / 1e9:.2f} GB = {peak / 1024 ** 2:.2f} GiB ({peak} kB; limit {LIMIT_BYTES:.1e} B: "
          f"{'under' if 0 < peak * 1024 < LIMIT_BYTES else 'NOT under'}); load {Path('/proc/loadavg').read_text().strip()}"
          f"; samples in {log}", flush=True)
    return proc.returncode, peak, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rtb-long-clip"))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data")
    ap.add_argument("--limit-gb", type=float, default=16.0, help="RLIMIT_AS for the run (0: none)")
    ap.add_argument("--size", default=f"{W}x{H}", help="WxH of the clip (default 1920x1080; 256x256 keeps the "
                    "same 7500 crops, the dominant memory, at a fraction of the decode time)")
    ap.add_argument("--methods", default="ground_truth,static_frame",
                    help="comma list for `run --methods`; 'folder' = a folder method holding the clip blurred")
    ap.add_argument("--metrics", default="lmd,ssim")
    ap.add_argument("--no-videos", action="store_true", help="run with --no-videos (default: videos written)")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--tag", default="", help="suffix of the run folder (several measurements side by side)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("run_args", nargs="*", help="extra `run` arguments (after --)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    w, h = (int(x) for x in a.size.lower().split("x"))
    tag = f"{int(a.seconds)}s" + ("_1080p" if (w, h) == (W, H) else f"_{w}x{h}")
    name = f"long_{tag}.mp4"
    clip = build_clip(a.data, a.workdir / "media" / name, a.seconds, w, h)
    print(f"clip: {clip} ({clip.stat().st_size / 1e6:.1f} MB)", flush=True)
    man_path = (a.workdir / f"long_{int(a.seconds)}s.yaml" if tag.endswith("1080p") else
                a.workdir / f"long_{tag}.yaml")
    methods = []
    for m in a.methods.split(","):
        if m == "folder":  # <dir>/reconstruction/<clip_id>.mp4, clip_id = the manifest's stem
            fdir = a.workdir / f"folder_blur_{tag}"
            build_clip(a.data, fdir / "reconstruction" / f"{man_path.stem}.mp4", a.seconds, w, h, blur=3.0)
            m = f"folder:blurred={fdir}"
        methods.append(m)
    if a.build_only:
        return 0
    man = write_manifest(man_path, f"media/{name}")
    code, peak, _ = measure(man, a.workdir, a.workdir / f"run_{tag}{a.tag}", a.limit_gb, a.run_args,
                            ",".join(methods), a.metrics, not a.no_videos, a.sample_s)
    return 0 if code == 0 and 0 < peak * 1024 < LIMIT_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
