"""`compare` as a regression gate, on synthetic run stores written through the real RunStore + finalize:
deltas, directions, paired CIs, tolerances, and one test per exit code path (0 pass, 1 regression,
2 input error, 3 not comparable: each case separately, and each --allow-* flag turning its 3 into 0)."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import test_runner_support as sup
from harness.cli import main
from harness.compare import Tolerance, compare_runs, paired_bootstrap_ci

BASE = {"m": {"c0": 2.0, "c1": 3.0, "c2": 2.5, "c3": 2.8}, "ref": {"c0": 1.0, "c1": 1.0, "c2": 1.0, "c3": 1.0}}


@pytest.fixture(autouse=True)
def _env_once(monkeypatch):
    """finalize records the machine environment (git, versions: seconds); computed once for the module."""
    import harness.core.environment as env

    if not hasattr(_env_once, "cached"):
        _env_once.cached = env.environment()
    monkeypatch.setattr(env, "environment", lambda: dict(_env_once.cached))


def run(tmp_path, name, values=BASE, **kw):
    sup.write_synthetic_run(tmp_path / name, json.loads(json.dumps(values)), **kw)
    return str(tmp_path / name)


def shifted(delta_m: float, clip: str | None = None) -> dict:
    v = json.loads(json.dumps(BASE))
    for c in v["m"]:
        if clip is None or c == clip:
            v["m"][c] += delta_m
    return v


def cli(a, b, *extra) -> int:
    return main(["compare", a, b, *extra])


def test_paired_bootstrap_seeded():
    a, b = np.array([1.0, 2, 3, 4]), np.array([1.5, 2.5, 3.2, 4.1])
    assert paired_bootstrap_ci(a, b) == paired_bootstrap_ci(a, b)
    lo, hi = paired_bootstrap_ci(a, b)
    assert 0 < lo <= np.mean(b - a) <= hi


def test_clean_pass_exit_0(tmp_path, capsys):
    a, b = run(tmp_path, "A"), run(tmp_path, "B")
    out = tmp_path / "cmp.json"
    assert cli(a, b, "--json", str(out)) == 0
    d = json.loads(out.read_text())
    assert d["exit_code"] == 0 and d["issues"] == [] and {r["direction"] for r in d["rows"]} == {"same"}
    assert {(r["method"], r["value_name"]) for r in d["rows"]} == {(m, v) for m in ("m", "ref")
                                                                    for v in ("ERR", "OFFSET", "POOL")}
    assert "PASS (exit 0)" in capsys.readouterr().out


def test_regression_exit_1_and_tolerances(tmp_path, capsys):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=shifted(0.15))
    cmp = compare_runs(a, b)
    rows = {(r.method, r.value_name): r for r in cmp.rows}
    err = rows[("m", "ERR")]
    assert err.direction == "worse" and err.delta == pytest.approx(0.15, abs=1e-12) and err.fails
    assert err.n_common == 4 and err.ci_low == pytest.approx(0.15, abs=1e-12) == err.ci_high  # same shift on every clip
    assert rows[("m", "POOL")].direction == "worse" and rows[("ref", "ERR")].direction == "same"
    assert cmp.exit_code == 1 and not cmp.issues
    assert cli(a, b) == 1
    assert "regression: reconstruction/m/ERR" in capsys.readouterr().out
    tol = tmp_path / "tol.yaml"
    tol.write_text("ERR: 0.2\nPOOL: 0.2\n")
    assert cli(a, b, "--tolerances", str(tol)) == 0
    tol.write_text("ERR: '5%'\nPOOL: 1\n")  # 5% of mean 2.575 = 0.129 < 0.15
    assert cli(a, b, "--tolerances", str(tol)) == 1
    tol.write_text("reconstruction/ERR: '10%'\nPOOL: 1\n")
    assert cli(a, b, "--tolerances", str(tol)) == 0
    better = run(tmp_path, "C", values=shifted(-0.15))
    assert cli(a, better) == 0
    assert Tolerance.parse("5%").allowed(2.0) == pytest.approx(0.1)


def test_informational_value_never_worse(tmp_path):
    a = run(tmp_path, "A")
    b = run(tmp_path, "B", offsets={"m": {c: 3.0 for c in BASE["m"]}})  # offset 1 -> 3 frames
    cmp = compare_runs(a, b)
    row = next(r for r in cmp.rows if r.method == "m" and r.value_name == "OFFSET")
    assert row.higher_is_better is None and row.direction == "changed" and row.delta == 2.0 and not row.fails
    assert cli(a, b) == 0  # no tolerance given for it: shown, never a regression
    tol = tmp_path / "tol.yaml"
    tol.write_text("OFFSET: 1\n")
    assert cli(a, b, "--tolerances", str(tol)) == 1
    tol.write_text("OFFSET: 2\n")
    assert cli(a, b, "--tolerances", str(tol)) == 0
    assert cli(a, b, "--default-tolerance", "0") == 0  # the default does not apply to informational values


def _issues(a, b, **kw) -> list[tuple[str, bool]]:
    return [(i.kind, i.allowed) for i in compare_runs(a, b, **kw).issues]


def test_missing_metric_exit_3_allow_missing_0(tmp_path):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", metrics=("t_err", "t_pool"))
    assert _issues(a, b) == [("missing", False)]
    assert cli(a, b) == 3
    assert cli(a, b, "--allow-missing") == 0


def test_missing_method_exit_3_allow_missing_0(tmp_path):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values={"m": BASE["m"]})
    assert _issues(a, b) == [("missing", False)]
    assert cli(a, b) == 3
    assert cli(a, b, "--allow-missing") == 0
    assert cli(a, b, "--methods", "m") == 0  # the method left out of the comparison is not missing


def test_missing_per_clip_value_exit_3(tmp_path):
    v = json.loads(json.dumps(BASE))
    v["m"]["c1"] = math.nan
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=v)
    kinds = _issues(a, b)
    assert kinds and set(kinds) == {("missing", False)}
    assert cli(a, b) == 3
    assert cli(a, b, "--allow-missing") == 0  # allowed; B's means leave c1 out: 2.433 < 2.575 (better)


def test_protocol_mismatch_exit_3_allow_protocol_change_0(tmp_path, capsys):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=shifted(5.0), variant="v2")  # worse, other protocol
    cmp = compare_runs(a, b)
    assert [(i.kind, i.allowed) for i in cmp.issues] == [("protocol", False)]
    assert "variant" in cmp.issues[0].text and "'v2'" in cmp.issues[0].text
    assert all(r.metric != "t_err" for r in cmp.rows)  # never compared across protocols
    assert cli(a, b) == 3
    assert cli(a, b, "--strict-protocols") == 3  # deprecated no-op
    out = capsys.readouterr().out
    assert "NOT COMPARABLE (exit 3)" in out and "not comparable (protocol): metric t_err" in out
    assert cli(a, b, "--allow-protocol-change", "--tolerances", str(_tol(tmp_path, "POOL: 10\n"))) == 0


def _tol(tmp_path, text: str):
    p = tmp_path / "tol.yaml"
    p.write_text(text)
    return p


def test_different_clip_set_exit_3(tmp_path):
    extra = json.loads(json.dumps(BASE))
    for m in extra:
        extra[m]["c4"] = 2.0
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=extra)
    kinds = {k for k, _ in _issues(a, b)}
    assert {"config", "clip_set"} <= kinds
    assert cli(a, b) == 3
    assert cli(a, b, "--allow-failures", "--allow-missing") == 3  # a different selection is not explained by failures


def test_different_max_frames_exit_3(tmp_path):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", max_frames=40)
    assert _issues(a, b) == [("config", False)]
    assert cli(a, b) == 3


def _failing(clip: str = "c2") -> dict:
    v = json.loads(json.dumps(BASE))
    v["ref"][clip] = sup.FAIL
    return v


def test_failed_clips_in_a_exit_3(tmp_path):
    a, b = run(tmp_path, "A", values=_failing()), run(tmp_path, "B")
    kinds = _issues(a, b)
    assert ("failures", False) in kinds and ("clip_set", False) in kinds
    assert cli(a, b) == 3


def test_failed_clips_in_b_exit_3_allow_failures_0(tmp_path):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=_failing())
    assert cli(a, b) == 3
    cmp = compare_runs(a, b, allow_failures=True)
    assert {(i.kind, i.allowed) for i in cmp.issues} == {("clip_set", True), ("failures", True), ("missing", False)}
    err = next(r for r in cmp.rows if r.method == "m" and r.value_name == "ERR")
    # compared on the 3 clips both runs finished, not on A's 4 vs B's 3
    assert err.a == pytest.approx(np.mean([2.0, 3.0, 2.8]), abs=1e-12) and err.n_common == 3 and err.direction == "same"
    pool = next(r for r in cmp.rows if r.method == "m" and r.value_name == "POOL")
    assert pool.direction == "n/a" and not pool.fails  # split-level over different clip sets: not compared
    assert cli(a, b, "--allow-failures") == 3  # ... so it is a missing value
    assert cli(a, b, "--allow-failures", "--allow-missing") == 0
    same = run(tmp_path, "C", values=_failing())  # both runs failed the same clip: same clip set
    assert cli(same, b) == 3 and cli(same, b, "--allow-failures") == 0


def test_input_errors_exit_2(tmp_path):
    a = run(tmp_path, "A")
    assert cli(str(tmp_path / "nope"), a) == 2
    assert cli(str(tmp_path), a) == 2  # a folder without summary.json
    broken = tmp_path / "broken"
    shutil.copytree(a, broken)
    (broken / "summary.json").write_text("{not json")
    assert cli(a, str(broken)) == 2
    assert cli(a, a, "--tolerances", str(_tol(tmp_path, "ERR: lots\n"))) == 2
    assert cli(a, a, "--tolerances", str(tmp_path / "missing.yaml")) == 2
    assert cli(a, a, "--default-tolerance", "x%") == 2


# --- --format markdown / json (the pull-request comment and the machine-readable document) -----------------
def md_table(text: str) -> list[dict[str, str]]:
    """The rows of the (single) markdown table, as header -> cell (pipes escaped as \\| kept as |)."""
    import re

    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    split = lambda ln: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]]  # noqa: E731
    header = split(lines[0])
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) <= {""}, "second line is the rule"
    return [dict(zip(header, split(ln), strict=True)) for ln in lines[2:]]


def md_sig(x: float) -> float:
    """Half a unit in the 6th significant digit: the markdown's %.6g rounding, nothing else."""
    return 0.5 * 10 ** (math.floor(math.log10(abs(x))) - 5) if x else 0.0


def test_markdown_shows_a_regression(tmp_path, capsys):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=shifted(0.15, clip="c1"))
    capsys.readouterr()
    assert cli(a, b, "--format", "markdown") == 1
    text = capsys.readouterr().out
    head = text.splitlines()[0]
    assert "REGRESSION (exit 1)" in head and "Exit codes: 0 pass · 1 regression · 2 input error · 3 not comparable" in text
    rows = {(r["method"], r["value"]): r for r in md_table(text)}
    assert set(rows) == {(m, v) for m in ("m", "ref") for v in ("ERR", "OFFSET", "POOL")}
    err = rows[("m", "ERR")]
    base, new = np.mean(list(BASE["m"].values())), np.mean(list(BASE["m"].values())) + 0.15 / 4
    assert float(err["base (A)"]) == pytest.approx(base, abs=md_sig(base))
    assert float(err["new (B)"]) == pytest.approx(new, abs=md_sig(new))
    assert err["delta"].startswith("+") and float(err["delta"]) == pytest.approx(0.0375, abs=md_sig(0.0375))
    lo, hi = (float(x) for x in err["95% CI (paired)"].strip("[]").split(","))
    exact_lo, exact_hi = paired_bootstrap_ci(np.array(list(BASE["m"].values())),
                                             np.array(list(shifted(0.15, clip="c1")["m"].values())))
    assert lo == pytest.approx(exact_lo, abs=md_sig(exact_lo) + 1e-15) and hi == pytest.approx(exact_hi, abs=md_sig(exact_hi))
    assert err["clips"] == "4" and err["tolerance"] == "0" and err["verdict"] == "**REGRESSION**"
    assert err["setting"] == "reconstruction" and err["metric"] == "t_err"
    assert rows[("ref", "ERR")]["verdict"] == "same" and rows[("ref", "ERR")]["delta"] == "+0"
    assert rows[("m", "OFFSET")]["tolerance"] == "—"  # informational, not gated
    regs = text.split("**Regressions (exit 1):**")[1].strip().splitlines()
    assert regs[0].startswith("- reconstruction/m/ERR: 2.575 → 2.6125") and len(regs) == 2  # ERR and POOL
    assert "Not comparable" not in text
    tol = _tol(tmp_path, "ERR: 0.05\nPOOL: 0.05\n")
    assert cli(a, b, "--format", "markdown", "--tolerances", str(tol)) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("### ✅") and "PASS (exit 0)" in text
    assert {r["value"]: r["verdict"] for r in md_table(text) if r["method"] == "m" and r["value"] != "OFFSET"} == \
        {"ERR": "worse, within tolerance", "POOL": "worse, within tolerance (split-level value: no per-clip CI)"}


def test_markdown_lists_missing_failed_and_protocol_issues(tmp_path, capsys):
    a = run(tmp_path, "A")
    b = run(tmp_path, "B", values=_failing(), variant="v2")
    capsys.readouterr()
    assert cli(a, b, "--format", "markdown") == 3
    text = capsys.readouterr().out
    assert "NOT COMPARABLE (exit 3)" in text.splitlines()[0]
    block = text.split("**Not comparable (exit 3):**")[1].split("\n\n")[0].strip().splitlines()
    kinds = {ln.split(":", 1)[0] for ln in block}
    assert {"- protocol", "- failures", "- clip_set"} <= kinds
    assert any("ref/reconstruction/c2" in ln and "synthetic failure" in ln for ln in block)
    assert all(r["metric"] != "t_err" for r in md_table(text))  # never compared across protocols
    assert cli(a, b, "--format", "markdown", "--allow-protocol-change", "--allow-failures", "--allow-missing") == 0
    text = capsys.readouterr().out
    allowed = text.split("**Allowed by an --allow-* flag (reported only):**")[1].strip().splitlines()
    assert {ln.split(":", 1)[0] for ln in allowed} >= {"- protocol", "- failures", "- clip_set"}
    c = run(tmp_path, "C", metrics=("t_err", "t_pool"))
    assert cli(a, c, "--format", "markdown") == 3
    assert "- missing: metric t_offset: only in A" in capsys.readouterr().out


def test_json_format_and_output_file(tmp_path, capsys):
    a, b = run(tmp_path, "A"), run(tmp_path, "B", values=shifted(0.15))
    capsys.readouterr()
    assert cli(a, b, "--format", "json", "--json", str(tmp_path / "side.json")) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads((tmp_path / "side.json").read_text())
    assert doc["schema_version"] == 1 and doc["exit_code"] == 1 and doc["n_boot"] == 1000 and doc["seed"] == 0
    assert set(doc["rows"][0]) == {"setting", "method", "metric", "value_name", "a", "b", "delta", "direction",
                                   "ci_low", "ci_high", "n_common", "higher_is_better", "tolerance", "fails", "note"}
    out = tmp_path / "comment.md"
    assert cli(a, b, "--format", "markdown", "--output", str(out)) == 1
    assert "written to" in capsys.readouterr().out
    assert md_table(out.read_text())[0]["setting"] == "reconstruction"
