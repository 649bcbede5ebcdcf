"""Plugins from outside the package: an installed package registering through entry points (a real
*.dist-info with entry_points.txt on sys.path, found by importlib.metadata), `--plugin FILE.py` and a module
in the current directory; run end to end on a real clip, listed by `methods list` / `metrics list`, shown as
report columns with their directions; a broken plugin is one line on stderr and exit 1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness.core.methods as methods_mod
import metrics.base as metrics_mod
from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLIP = "feifeili_clip3"  # a demo-split test clip (styletalk), 12 frames below

METHOD_SRC = '''
"""Demo plugin methods (a package of someone else's)."""
import numpy as np

from harness.core.methods import Method


class BlurMethod(Method):
    """Each source frame averaged with the previous one."""

    name = "plugin_blur"

    def fingerprint(self) -> str:
        return "plugin_blur-1"

    def generate(self, inp):
        idx = np.minimum(np.arange(inp.n_frames), len(inp.source_frames) - 1)
        f = inp.source_frames[idx].astype(np.uint16)
        prev = np.concatenate([f[:1], f[:-1]])
        return ((f + prev) // 2).astype(np.uint8)


class NeedsWeights(Method):
    """A plugin method whose model file is absent here."""

    name = "plugin_needs_weights"

    def fingerprint(self) -> str:
        return "plugin_needs_weights-1"

    def availability(self):
        return False, "/nonexistent/plugin_model.pth not found"

    def generate(self, inp):
        raise NotImplementedError
'''

METRIC_SRC = '''
"""Demo plugin metric: mean absolute pixel error (numpy), and the signed brightness difference (informational)."""
import numpy as np

from metrics.base import FRAMES_TOTAL, FRAMES_USED, ClipResult, Metric, Protocol, register


@register
class MeanAbsError(Metric):
    """Mean |generated - ground truth| over the crops' pixels, per frame then over frames."""

    name = "plugin_mae"
    outputs = ("MAE", "BRIGHT-DIFF")
    higher_is_better = {"MAE": False, "BRIGHT-DIFF": None}
    needs = frozenset({"generated", "ground_truth"})

    def protocol(self):
        return Protocol("plugin_mae", "numpy", None, "ground truth crop track", 256, 25.0)

    def compute_clip(self, clip):
        g, t = clip.generated.astype(np.float64), clip.ground_truth.astype(np.float64)
        per = np.abs(g - t).mean(axis=(1, 2, 3))
        return ClipResult({"MAE": float(per.mean()), "BRIGHT-DIFF": float(g.mean() - t.mean())}, {"MAE": per},
                          {FRAMES_USED: len(per), FRAMES_TOTAL: len(per)})
'''

FILE_PLUGIN_SRC = '''
"""A single-file plugin: one metric and one method with a latency stage."""
import numpy as np
import torch

from harness.core.latency import LatencyStage
from harness.core.methods import Method, register as register_method
from metrics.base import ClipResult, Metric, Protocol, register


@register
class PeakError(Metric):
    """Largest absolute pixel difference between generated and ground-truth crops."""

    name = "file_peak"
    outputs = ("PEAK-ERR",)
    higher_is_better = {"PEAK-ERR": False}
    needs = frozenset({"generated", "ground_truth"})

    def protocol(self):
        return Protocol("file_peak", "numpy", None, "ground truth crop track", 256, 25.0)

    def compute_clip(self, clip):
        d = np.abs(clip.generated.astype(np.int16) - clip.ground_truth.astype(np.int16))
        return ClipResult({"PEAK-ERR": float(d.max())})


@register_method
class FileConv(Method):
    """A one-conv method, here for `latency --plugin`."""

    name = "file_conv"

    def __init__(self):
        self.net = torch.nn.Conv2d(3, 3, 3, padding=1)

    def fingerprint(self):
        return "file_conv-1"

    def generate(self, inp):
        return inp.source_frames[: inp.n_frames]

    def latency_stages(self, *, device="cpu", batch=1, dtype="fp32", compile=False, cuda_graphs=False):
        return [LatencyStage("conv", lambda: torch.randn(batch, 3, 16, 16), self.net, batch, module=self.net)]
'''

PLUGIN_NAMES = {"methods": ["plugin_blur", "plugin_needs_weights", "file_conv", "cwd_method"],
                "metrics": ["plugin_mae", "file_peak"]}


def _write_package(site: Path, entry_points: str, name: str = "rtb-demo-plugin") -> None:
    """An installed distribution as pip leaves it: the package and its NAME-VERSION.dist-info."""
    pkg = site / "rtb_demo_plugin"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "method.py").write_text(METHOD_SRC)
    (pkg / "metric.py").write_text(METRIC_SRC)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


ENTRY_POINTS = """\
    [realtalk_bench.methods]
    plugin_blur = rtb_demo_plugin.method:BlurMethod
    plugin_needs_weights = rtb_demo_plugin.method:NeedsWeights

    [realtalk_bench.metrics]
    plugin_mae = rtb_demo_plugin.metric
    """


@pytest.fixture()
def clean_registries(monkeypatch: pytest.MonkeyPatch):
    """Entry points are read once per process: let this test read them again, and leave no plugin behind."""
    methods_mod.load_all()
    metrics_mod.load_all()
    monkeypatch.setattr(methods_mod, "_entry_points_loaded", False)
    monkeypatch.setattr(metrics_mod, "_entry_points_loaded", False)
    before = set(sys.modules)
    yield
    for reg, origins, names in ((methods_mod.REGISTRY, methods_mod.ORIGINS, PLUGIN_NAMES["methods"]),
                                (metrics_mod.REGISTRY, metrics_mod.ORIGINS, PLUGIN_NAMES["metrics"])):
        for n in names:
            reg.pop(n, None)
            origins.pop(n, None)
    for mod in set(sys.modules) - before:
        if mod.startswith(("rtb_demo_plugin", "my_file_plugin", "cwd_plugin", "broken_plugin")):
            del sys.modules[mod]


@pytest.fixture()
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registries) -> Path:
    site = tmp_path / "site-packages"
    _write_package(site, ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_entry_point_and_file_plugins_run_end_to_end(installed: Path, tmp_path: Path, data_root: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """A pip-installed method and metric (entry points) and a --plugin .py file metric, on a real clip: the
    values land in the summary with their directions and show as report columns with the right arrows."""
    from reports.export import to_markdown
    from reports.load import load_run
    from reports.tables import paper_table

    plugin_file = tmp_path / "my_file_plugin.py"
    plugin_file.write_text(FILE_PLUGIN_SRC)
    out = tmp_path / "run"
    rc = main(["run", "--split", "demo", "--root", str(data_root), "--clips", CLIP, "--max-frames", "12",
               "--methods", "ground_truth,plugin_blur", "--settings", "reconstruction",
               "--metrics", "plugin_mae,file_peak,ssim", "--plugin", str(plugin_file), "--out", str(out),
               "--no-videos", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    rec = summary["results"]["reconstruction"]
    # ground truth against itself: exactly zero; the averaged frames differ from it
    assert rec["ground_truth"]["MAE"]["mean"] == 0.0 and rec["ground_truth"]["PEAK-ERR"]["mean"] == 0.0
    assert rec["plugin_blur"]["MAE"]["mean"] > 0.0 and rec["plugin_blur"]["PEAK-ERR"]["mean"] > 0.0
    assert rec["plugin_blur"]["MAE"]["higher_is_better"] is False
    assert rec["plugin_blur"]["BRIGHT-DIFF"]["higher_is_better"] is None
    assert rec["plugin_blur"]["MAE"]["frames_used"] == rec["plugin_blur"]["MAE"]["frames_total"] == 12
    eps = {e["name"]: e for e in summary["plugins"]["entry_points"]}
    assert eps["plugin_mae"]["package"] == "rtb-demo-plugin 0.1" and "plugin_blur" in eps
    assert summary["plugins"]["modules"] == [str(plugin_file)]

    table = paper_table([load_run(out)])
    heads = [(c[0], c[1]) for c in table.columns]
    for col in ("MAE", "BRIGHT-DIFF", "PEAK-ERR"):
        assert ("Reconstruction", col) in heads
    # the extra columns join the Reconstruction group, before Cross Audio
    assert max(heads.index(("Reconstruction", c)) for c in ("MAE", "PEAK-ERR")) < heads.index(("Cross Audio", "FID"))
    md = to_markdown(table)
    assert "Rec MAE↓" in md and "Rec PEAK-ERR↓" in md and "Rec BRIGHT-DIFF |" in md
    assert "BRIGHT-DIFF" in next(line for line in table.legend() if "informational" in line)


def test_list_commands_show_plugins(installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    """`methods list` / `metrics list --json`: entry-point, file and current-directory plugins with origin,
    values, directions, needs and availability (with the reason when unavailable)."""
    plugin_file = tmp_path / "my_file_plugin.py"
    plugin_file.write_text(FILE_PLUGIN_SRC)
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "cwd_plugin.py").write_text(textwrap.dedent('''
        from harness.core.methods import Method, register

        @register
        class CwdMethod(Method):
            name = "cwd_method"
            def fingerprint(self):
                return "cwd-1"
            def generate(self, inp):
                return inp.source_frames[: inp.n_frames]
        '''))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(cwd))])  # as under the console script

    assert main(["methods", "list", "--json", "--plugin", str(plugin_file), "--plugin", "cwd_plugin"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["plugin_blur"]["available"] is True and rows["plugin_blur"]["origin"].startswith("entry point plugin_blur")
    assert rows["plugin_needs_weights"]["available"] is False
    assert rows["plugin_needs_weights"]["reason"] == "/nonexistent/plugin_model.pth not found"
    assert rows["file_conv"]["origin"] == f"--plugin {plugin_file}" and rows["cwd_method"]["origin"] == "--plugin cwd_plugin"
    assert rows["ground_truth"]["origin"] == "built-in" and rows["precomputed"]["available"] is None

    assert main(["metrics", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    mae = rows["plugin_mae"]
    assert mae["values"] == {"MAE": "lower", "BRIGHT-DIFF": "informational"}
    assert mae["needs"] == ["generated", "ground_truth"] and mae["settings"] == ["reconstruction"]
    assert mae["available"] is True and mae["origin"] == "entry point plugin_mae (rtb-demo-plugin 0.1)"
    assert rows["file_peak"]["values"] == {"PEAK-ERR": "lower"}
    assert rows["syncnet"]["values"]["LSE-offset"] == "informational"
    assert all(r["reason"] for r in rows.values() if not r["available"])  # unavailable always says why

    assert main(["metrics", "list"]) == 0  # the rich table
    text = capsys.readouterr().out
    assert "plugin_mae" in text and "MAE ↓ lower" in text and "BRIGHT-DIFF informational" in text


def test_file_plugin_in_metrics_and_latency(clean_registries, tmp_path: Path, data_root: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """--plugin FILE.py on `metrics` (a plugin metric on a real clip pair) and `latency` (a plugin method)."""
    plugin_file = tmp_path / "my_file_plugin.py"
    plugin_file.write_text(FILE_PLUGIN_SRC)
    clip = str(data_root / "styletalk" / "video" / f"{CLIP}.mp4")
    assert main(["metrics", "--gen", clip, "--gt", clip, "--metrics", "file_peak", "--max-frames", "12",
                 "--plugin", str(plugin_file)]) == 0
    out = capsys.readouterr().out
    assert "PEAK-ERR" in out and "0.0000" in out  # a clip against itself
    assert main(["latency", "--method", "file_conv", "--iterations", "2", "--warmup", "1",
                 "--plugin", str(plugin_file)]) == 0
    assert "file_conv" in capsys.readouterr().out


def _one_line_error(err: str, *needles: str) -> None:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_broken_entry_point_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registries,
                                        capsys: pytest.CaptureFixture) -> None:
    site = tmp_path / "site-packages"
    _write_package(site, """\
        [realtalk_bench.metrics]
        plugin_gone = rtb_demo_plugin.missing_module
        """, name="rtb-broken-plugin")
    monkeypatch.syspath_prepend(str(site))
    assert main(["metrics", "list"]) == 1
    _one_line_error(capsys.readouterr().err, "entry point plugin_gone = rtb_demo_plugin.missing_module",
                    "rtb-broken-plugin 0.1", "ModuleNotFoundError")


def test_plugin_reusing_a_builtin_name_is_one_line(tmp_path: Path, clean_registries,
                                                   capsys: pytest.CaptureFixture) -> None:
    dup = tmp_path / "broken_plugin.py"
    dup.write_text(METRIC_SRC.replace('name = "plugin_mae"', 'name = "ssim"'))
    assert main(["metrics", "list", "--plugin", str(dup)]) == 1
    _one_line_error(capsys.readouterr().err, str(dup), "'ssim' registered twice", "built-in")


BROKEN = {  # kind -> (--plugin value, file to write as broken_plugin.py or None, needles of the one line)
    "syntax": ("broken_plugin.py", "def oops(:\n", ["broken_plugin.py", "SyntaxError"]),
    "missing-file": ("nope.py", None, ["nope.py", "plugin file not found"]),
    "missing-module": ("no_such_plugin_mod", None, ["'no_such_plugin_mod'", "no module named"]),
    "raises": ("broken_plugin", "import numpy\nraise RuntimeError('plugin setup failed')\n",
               ["plugin 'broken_plugin'", "RuntimeError: plugin setup failed"]),
    # loaded before any metric module was imported: still the plugin is the one refused
    "duplicate": ("broken_plugin.py", METRIC_SRC.replace('name = "plugin_mae"', 'name = "ssim"'),
                  ["broken_plugin.py", "'ssim' registered twice (built-in and --plugin"]),
}


@pytest.mark.parametrize("kind", ["missing-file", "missing-module", "raises"])
def test_broken_plugin_is_one_line(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registries,
                                   capsys: pytest.CaptureFixture) -> None:
    spec, src, needles = BROKEN[kind]
    if src is not None:
        (tmp_path / "broken_plugin.py").write_text(src)
    monkeypatch.chdir(tmp_path)
    assert main(["methods", "list", "--plugin", spec]) == 1
    _one_line_error(capsys.readouterr().err, *needles)


@pytest.mark.parametrize("kind", ["syntax", "duplicate"])
def test_broken_plugin_in_a_fresh_process(kind: str, tmp_path: Path) -> None:
    """The command line as installed: exit 1, one line naming the plugin and the problem, no traceback."""
    spec, src, needles = BROKEN[kind]
    (tmp_path / "broken_plugin.py").write_text(src)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
                        "methods", "list", "--plugin", spec], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1, p.stderr
    _one_line_error(p.stderr, str(tmp_path / "broken_plugin.py"), *needles)


def test_pip_installed_package_registers(tmp_path: Path) -> None:
    """The README's pyproject, built and installed by pip into a target folder: a fresh process finds the
    method (a module entry point) and the metric (a class entry point) with no --plugin."""
    pytest.importorskip("setuptools")
    src = tmp_path / "pkg" / "src" / "rtb_demo_plugin"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "method.py").write_text(METHOD_SRC.replace("class BlurMethod", "@register\nclass BlurMethod")
                                   .replace("from harness.core.methods import Method", "from harness.core.methods import Method, register"))
    (src / "metric.py").write_text(METRIC_SRC)
    (tmp_path / "pkg" / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "rtb-demo-plugin"
        version = "0.2.0"

        [project.entry-points."realtalk_bench.methods"]
        plugin_blur = "rtb_demo_plugin.method"

        [project.entry-points."realtalk_bench.metrics"]
        plugin_mae = "rtb_demo_plugin.metric:MeanAbsError"
        """))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                          "--quiet", "--target", str(target), str(tmp_path / "pkg")],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(target)])}
    rows = {}
    for what in ("methods", "metrics"):
        p = subprocess.run([sys.executable, "-m", "harness.cli", what, "list", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        rows.update({r["name"]: r for r in json.loads(p.stdout)})
    assert rows["plugin_blur"]["origin"] == "entry point plugin_blur (rtb-demo-plugin 0.2.0)"
    assert rows["plugin_mae"]["origin"] == "entry point plugin_mae (rtb-demo-plugin 0.2.0)"
    assert rows["plugin_mae"]["values"] == {"MAE": "lower", "BRIGHT-DIFF": "informational"}
    assert "plugin_needs_weights" not in rows  # not listed as an entry point, not decorated: not registered


def test_module_at_folder_takes_the_folders_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   clean_registries, capsys: pytest.CaptureFixture) -> None:
    """`--plugin pkg.mod@DIR` (what a run file's module names beside the file become) imports the package from DIR
    even when the current directory holds another package of that name; a wrong DIR is one line."""
    import uuid

    from harness.plugins import absolute_spec, is_file_spec, load_plugin, split_module_at

    pkg = f"rtb_at_{uuid.uuid4().hex[:8]}"
    for where, tag in ((tmp_path / "exp", "exp"), (tmp_path / "cwd", "cwd")):
        (where / pkg).mkdir(parents=True)
        (where / pkg / "__init__.py").write_text(f"WHERE = {tag!r}\n")
        (where / pkg / "mod.py").write_text("from . import WHERE\n")
    monkeypatch.chdir(tmp_path / "cwd")
    spec = f"{pkg}.mod@../exp"
    assert split_module_at(spec) == (f"{pkg}.mod", "../exp") and not is_file_spec(spec)
    assert is_file_spec("/home/a@b/plug.py") and split_module_at("/home/a@b/plug.py") is None
    assert absolute_spec(spec) == f"{pkg}.mod@{tmp_path / 'exp'}"
    try:
        mod = load_plugin(spec)
        assert mod.WHERE == "exp" and Path(mod.__file__).parent == tmp_path / "exp" / pkg
        assert load_plugin(spec) is mod  # again: a no-op
    finally:
        for k in [k for k in sys.modules if k == pkg or k.startswith(pkg + ".")]:
            del sys.modules[k]
    assert main(["methods", "list", "--plugin", f"{pkg}.mod@{tmp_path / 'nowhere'}"]) == 1
    _one_line_error(capsys.readouterr().err, f"plugin '{pkg}.mod': folder not found", str(tmp_path / "nowhere"))
    assert main(["methods", "list", "--plugin", f"{pkg}_x.mod@{tmp_path / 'exp'}"]) == 1
    _one_line_error(capsys.readouterr().err, f"no module or package '{pkg}_x' in this folder")


def test_a_plugin_that_raises_leaves_no_half_module(tmp_path: Path, clean_registries,
                                                    capsys: pytest.CaptureFixture) -> None:
    """Both loaders (a .py file, MODULE@DIR) take a module that raised out of sys.modules again: the one-line error
    names it, and the same --plugin, once fixed, imports afresh instead of handing back the half-run module."""
    import uuid

    from harness.plugins import load_plugin

    name = f"rtb_raises_{uuid.uuid4().hex[:8]}"
    file_plugin = tmp_path / f"{name}_file.py"
    (tmp_path / name).mkdir()
    init = tmp_path / name / "__init__.py"
    broken = "STATE = 'half'\nraise RuntimeError('not yet')\n"
    for spec, src in ((str(file_plugin), file_plugin), (f"{name}@{tmp_path}", init)):
        src.write_text(broken)
        assert main(["methods", "list", "--plugin", spec]) == 1
        _one_line_error(capsys.readouterr().err, "failed to import", "RuntimeError: not yet")
        assert not [k for k in sys.modules if k.startswith(name)], spec
        src.write_text("STATE = 'whole'\n")
        try:
            assert load_plugin(spec).STATE == "whole"
        finally:
            for k in [k for k in sys.modules if k.startswith(name)]:
                del sys.modules[k]


def test_ray_ships_a_module_at_folder(tmp_path: Path) -> None:
    """A MODULE@DIR plugin goes to Ray workers as its top-level package from DIR, imported there by name."""
    from harness.executors import plugin_shipment

    (tmp_path / "labpkg").mkdir()
    (tmp_path / "labpkg/__init__.py").write_text("")
    (tmp_path / "single.py").write_text("")
    paths, remote = plugin_shipment([f"labpkg.methods@{tmp_path}", f"single@{tmp_path}"])
    assert paths == [str(tmp_path / "labpkg"), str(tmp_path / "single.py")]
    assert remote == ["labpkg.methods", "single"]
