"""`run --config run.yaml`: one file describes a run.

Keys are the `run` flags' names (`max_frames` or `max-frames`); lists may be YAML lists or comma strings;
`method_args` / `metric_args` are nested mappings ({lmd: {protocol: eat}}) or the flags' METHOD.KEY=VALUE
strings. A flag given on the command line wins over the file (for method_args / metric_args per key).
Relative paths in the file are taken from the file's folder, so a run file works from any current directory:
root, out, a split given as a .yaml manifest path, .py plugin files, the DIR of `folder:NAME=DIR` methods, a
plugin module name whose module or package sits beside the file (`mine` -> DIR/mine.py, `lab.methods` ->
`lab.methods@DIR`, see harness.plugins), and the method_args / metric_args values that are paths: a parameter
the constructor types as a path (`str | Path`, os.PathLike), or a value with a '/' or a file suffix that exists
beside the file. Absolute paths, split names, other module names and other values are kept as written.
Paths typed as flags stay relative to the current directory, as always on the command line.
"""
from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Callable

from harness.core.errors import BenchError

REQUIRED = ("split", "methods", "out")


def _names(v: Any) -> list[str]:
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int)) for x in v):
        return [str(x) for x in v]
    raise TypeError("expected a list of names (or a comma-separated string)")


def _metrics(v: Any) -> list[str] | str:
    return "all" if v == "all" else _names(v)


def _str(v: Any) -> str:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise TypeError("expected a string")


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("expected an integer")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("expected a number")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("expected true or false")
    return v


def _face_detector(v: Any) -> str:
    from harness.core.faces.tracking import CHOICES

    if v not in CHOICES:
        raise TypeError(f"expected one of {', '.join(CHOICES)}")
    return str(v)


def _nested(v: Any) -> dict[str, dict[str, Any]]:
    """{name: {key: value}} or ['name.key=value', ...] (the flag form)."""
    if isinstance(v, (list, tuple)):
        from harness.runner import parse_method_args

        return parse_method_args([str(x) for x in v])
    if isinstance(v, dict) and all(isinstance(d, dict) for d in v.values()):
        return {str(k): {str(kk): vv for kk, vv in d.items()} for k, d in v.items()}
    raise TypeError("expected a mapping NAME: {KEY: VALUE} (or a list of NAME.KEY=VALUE)")


# key (the flag's dest) -> converter of a YAML value. Keep in step with harness/commands/run.py's flags.
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "split": _str, "root": _str, "methods": _names, "settings": _names, "metrics": _metrics, "out": _str,
    "clips": _names, "role": _str, "max_frames": _int, "shard": _str, "executor": _str, "workers": _int,
    "address": _str, "num_cpus": _float, "num_gpus": _float, "device": _str, "method_args": _nested,
    "metric_args": _nested, "seed": _int, "n_boot": _int, "batch_size": _int, "plugins": _names,
    "no_videos": _bool, "retry_failed": _bool, "allow_failures": _bool, "no_progress": _bool, "prefetch": _int,
    "face_detector": _face_detector,
}
ALIASES = {"plugin": "plugins", "method_arg": "method_args", "metric_arg": "metric_args"}


def _from(base: Path, value: str) -> str:
    """value relative to base ('~' expanded); absolute values unchanged."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def _method_item(base: Path, item: str) -> str:
    from harness.runner import FOLDER_PREFIX

    if not item.startswith(FOLDER_PREFIX) or "=" not in item:
        return item
    name, _, folder = item[len(FOLDER_PREFIX):].partition("=")
    return f"{FOLDER_PREFIX}{name}={_from(base, folder)}" if name and folder else item


def _plugin_item(base: Path, spec: str) -> str:
    """A plugin of the file: a .py path from base; a module name found beside the file bound to base."""
    from harness.plugins import is_file_spec, split_module_at

    if is_file_spec(spec):
        return _from(base, spec)
    at = split_module_at(spec)
    if at is not None:
        return f"{at[0]}@{_from(base, at[1])}"
    parts = spec.split(".")
    if not all(x.isidentifier() for x in parts):
        return spec
    if len(parts) == 1 and (base / f"{spec}.py").is_file():
        return str(base / f"{spec}.py")
    if (base / parts[0] / "__init__.py").is_file() or (len(parts) > 1 and (base / parts[0]).is_dir()):
        return f"{spec}@{base}"
    return spec  # not beside the file: sys.path / the current directory, as on the command line


def resolve_paths(opts: dict[str, Any], base: Path) -> dict[str, Any]:
    """The file's relative paths taken from base (the run file's folder); see the module docstring."""
    out = dict(opts)
    for key in ("root", "out"):
        if key in out:
            out[key] = _from(base, out[key])
    if "split" in out and Path(out["split"]).suffix in (".yaml", ".yml"):
        out["split"] = _from(base, out["split"])
    if "plugins" in out:
        out["plugins"] = [_plugin_item(base, s) for s in out["plugins"]]
    if "methods" in out:
        out["methods"] = [_method_item(base, m) for m in out["methods"]]
    return out


def _path_params(factory: Any) -> set[str]:
    """Constructor parameters annotated as paths (Path or os.PathLike anywhere in the annotation)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n, p in params.items() if "Path" in str(p.annotation)}


def _factory(kind: str, name: str, plugins: list[str]) -> Any:
    """The registered class of a method / metric name (None when unknown: the run itself reports that).
    The plugins are imported only when the name is not built in."""
    from harness.core.plugin_sources import PluginError

    if kind == "method":
        from harness.core.methods import REGISTRY, load_all
    else:
        from metrics.base import REGISTRY, load_all
    try:
        load_all()
        if name not in REGISTRY and plugins:
            from harness.plugins import load_plugins

            load_plugins(plugins)
    except PluginError:
        return None  # the run reports the broken plugin in its own words
    return REGISTRY.get(name)


def _looks_like_file(base: Path, value: str) -> bool:
    p = Path(value).expanduser()
    return ("/" in value or p.suffix != "") and (base / p).exists()


def resolve_arg_paths(opts: dict[str, Any], base: Path, plugins: list[str] | None = None) -> dict[str, Any]:
    """method_args / metric_args values that are paths (see the module docstring) taken from base. plugins:
    the run's plugin specs (the file's and the command line's), for a plugin method's constructor."""
    from harness.runner import FOLDER_PREFIX

    out = dict(opts)
    plugins = list(plugins or [])
    registry_name = {m[len(FOLDER_PREFIX):].partition("=")[0]: "precomputed"
                     for m in out.get("methods") or [] if m.startswith(FOLDER_PREFIX)}
    for key, kind in (("method_args", "method"), ("metric_args", "metric")):
        if not out.get(key):
            continue
        resolved: dict[str, dict[str, Any]] = {}
        for name, kw in out[key].items():
            typed = _path_params(_factory(kind, registry_name.get(name, name) if kind == "method" else name, plugins))
            resolved[name] = {k: _from(base, v) if isinstance(v, str) and v and not Path(v).expanduser().is_absolute()
                              and (k in typed or _looks_like_file(base, v)) else v for k, v in kw.items()}
        out[key] = resolved
    return out


def load_run_file(path: str | Path, cli_plugins: list[str] | None = None) -> dict[str, Any]:
    """The options of a run file, converted and checked, relative paths from its folder; a bad file or key is a
    one-line BenchError. cli_plugins: --plugin values (a plugin method's path parameters are looked up)."""
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise BenchError(f"cannot read run config: {exc.strerror or exc}", p) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BenchError(f"not valid YAML{where}", p) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BenchError("a run config must be a mapping of run options (split:, methods:, out:, ...)", p)
    out: dict[str, Any] = {}
    for raw, value in doc.items():
        key = ALIASES.get(str(raw).replace("-", "_"), str(raw).replace("-", "_"))
        if key not in OPTIONS:
            near = difflib.get_close_matches(key, list(OPTIONS), n=1)
            raise BenchError(f"unknown key {raw!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                             + f"; known: {', '.join(OPTIONS)}", p)
        if key in out:
            raise BenchError(f"key {raw!r} given twice (as {key} and an alias)", p)
        if value is None:
            continue  # `key:` with nothing = the default
        try:
            out[key] = OPTIONS[key](value)
        except (TypeError, BenchError) as exc:
            raise BenchError(f"key {raw!r}: {exc}", p) from None
    base = p.expanduser().resolve().parent
    out = resolve_paths(out, base)
    return resolve_arg_paths(out, base, [*out.get("plugins", []), *(cli_plugins or [])])


def merge_options(from_file: dict[str, Any], from_cli: dict[str, Any]) -> dict[str, Any]:
    """CLI over file; method_args / metric_args merge per NAME.KEY so one flag overrides one key."""
    merged = dict(from_file)
    for k, v in from_cli.items():
        if v is None:
            continue
        if k in ("method_args", "metric_args"):
            base = {n: dict(d) for n, d in (merged.get(k) or {}).items()}
            for n, d in v.items():
                base.setdefault(n, {}).update(d)
            merged[k] = base
        else:
            merged[k] = v
    return merged


def config_from_options(opts: dict[str, Any], source: str = "the command line"):
    """RunConfig from merged options; a missing required option names where it can be given."""
    from harness.runner import RunConfig

    missing = [k for k in REQUIRED if not opts.get(k)]
    if missing:
        raise BenchError(f"missing {', '.join(missing)}: give --{missing[0].replace('_', '-')} or "
                         f"'{missing[0]}:' in a --config file ({source})")
    kw = {k: v for k, v in opts.items() if k not in ("no_videos", "allow_failures", "no_progress", "prefetch")}
    if "no_videos" in opts:
        kw["write_videos"] = not opts["no_videos"]
    return RunConfig(**kw)
