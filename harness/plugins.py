"""Plugins: methods and metrics that live outside this package.

Two ways in, the ecosystem's usual ones:
- entry points: a pip-installed package lists its modules or classes under the groups
  `realtalk_bench.methods` / `realtalk_bench.metrics` (pyproject `[project.entry-points."realtalk_bench.methods"]`);
  the registries load them once, lazily, on first use (harness.core.methods.load_all, metrics.base.load_all).
- `--plugin MODULE_OR_FILE.py` on every command that takes methods or metrics: a module name (importable from
  sys.path or the current directory), `MODULE@DIR` (the module, or package, found in DIR: what a run config
  file's module names become when they sit beside the file) or a path to a .py file; importing it runs its
  @register decorators.

A plugin that fails to load is a one-line PluginError naming the plugin and the exception, never a traceback.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from harness.core.plugin_sources import LOADED, PluginError, _first_line, _origin

METHODS_GROUP = "realtalk_bench.methods"
METRICS_GROUP = "realtalk_bench.metrics"


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """The one --plugin option every command taking methods or metrics shares."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE.py",
                        help="import a module (from sys.path or the current directory) or a .py file that registers "
                             "methods/metrics (repeatable); installed packages register through entry points")


def split_module_at(spec: str) -> tuple[str, str] | None:
    """'pkg.mod@DIR' -> ('pkg.mod', 'DIR'); None for any other spec (a file path may contain '@' too)."""
    name, sep, folder = spec.partition("@")
    if sep and folder and all(part.isidentifier() for part in name.split(".")):
        return name, folder
    return None


def is_file_spec(spec: str) -> bool:
    return split_module_at(spec) is None and (spec.endswith(".py") or os.sep in spec or "/" in spec)


def _module_name_for(path: Path) -> str:
    """The file's stem when free (so `--plugin x.py` and `--plugin x` are one module); a name derived from the
    path when the stem is taken by another module (a plugin file called metrics.py must not replace ours)."""
    stem = path.stem
    existing = sys.modules.get(stem)
    if stem.isidentifier() and (existing is None or _same_file(existing, path)):
        return stem
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    safe = "".join(ch if ch.isalnum() else "_" for ch in stem)
    return f"realtalk_bench_plugin_{safe}_{digest}"


def _same_file(mod: ModuleType, path: Path) -> bool:
    f = getattr(mod, "__file__", None)
    try:
        return f is not None and Path(f).resolve() == path
    except OSError:
        return False


def _load_file(spec: str) -> ModuleType:
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise PluginError("plugin file not found", path)
    if path.suffix != ".py":
        raise PluginError("plugin file is not a .py file", path)
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise PluginError("cannot be imported as a Python module", path)
    return _exec_new_module(name, mspec, "plugin failed to import", path)


def _exec_new_module(name: str, mspec: importlib.machinery.ModuleSpec, failure: str, path: Path) -> ModuleType:
    """Create the module of `mspec`, enter it in sys.modules under `name` and run it; a module that raises is
    taken out again (a later --plugin of the same name must not find half a module) and becomes one PluginError
    line, `failure: <the exception's first line>`, naming `path`. Ctrl-C stays Ctrl-C."""
    mod = importlib.util.module_from_spec(mspec)
    sys.modules[name] = mod  # before exec: dataclasses and pickling look the module up by name
    try:
        if mspec.loader is not None:
            mspec.loader.exec_module(mod)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(f"{failure}: {_first_line(exc)}", path) from None
    return mod


def _import(spec: str, where: str) -> ModuleType:
    """importlib.import_module with the one-line errors; `where` says where the module was looked for."""
    importlib.invalidate_caches()  # a module written after start-up (tests, notebooks) must be found
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise PluginError(f"plugin {spec!r}: no module named {exc.name!r} (looked {where}); "
                              "give an importable module name or a path to a .py file") from None
        raise PluginError(f"plugin {spec!r} failed to import: {_first_line(exc)}") from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(f"plugin {spec!r} failed to import: {_first_line(exc)}") from None


def _load_module(spec: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # the console script does not put the working directory on the path
        sys.path.append(cwd)
    return _import(spec, f"on sys.path and in {cwd}")


def _inside(mod: ModuleType, folder: Path) -> bool:
    paths = [getattr(mod, "__file__", None), *list(getattr(mod, "__path__", []) or [])]
    return any(p and Path(p).resolve().is_relative_to(folder) for p in paths)


def _load_module_at(name: str, folder_spec: str) -> ModuleType:
    """`name@DIR`: the top-level module/package of name taken from DIR itself (not whatever sys.path or the
    current directory would find first), its submodules through its own __path__. sys.path is left alone."""
    folder = Path(folder_spec).expanduser().resolve()
    if not folder.is_dir():
        raise PluginError(f"plugin {name!r}: folder not found", folder)
    top = name.split(".")[0]
    mod = sys.modules.get(top)
    if mod is None:
        mspec = importlib.machinery.PathFinder.find_spec(top, [str(folder)])
        if mspec is None:
            raise PluginError(f"plugin {name!r}: no module or package {top!r} in this folder", folder)
        mod = _exec_new_module(top, mspec, f"plugin {name!r} failed to import", folder)
    elif not _inside(mod, folder):
        where = getattr(mod, "__file__", None) or list(getattr(mod, "__path__", []) or [])
        raise PluginError(f"plugin {name!r}: a module {top!r} is already imported from {where}, not from this "
                          "folder; rename the plugin or give its .py path", folder)
    return mod if name == top else _import(name, f"in {folder}")


def load_plugin(spec: str) -> ModuleType:
    """Import one --plugin value (module name or .py path); importing again is a no-op."""
    spec = spec.strip()
    if not spec:
        raise PluginError("empty --plugin value")
    _load_registries()
    with _origin(f"--plugin {spec}"):
        at = split_module_at(spec)
        if at is not None:
            return _load_module_at(*at)
        return _load_file(spec) if is_file_spec(spec) else _load_module(spec)


def _load_registries() -> None:
    """Built-ins (and installed entry points) first, so a plugin reusing one of their names is the one refused."""
    from harness.core.methods import load_all as load_methods
    from metrics.base import load_all as load_metrics

    load_methods()
    load_metrics()


def load_plugins(specs: Iterable[str] | None) -> None:
    """Import every --plugin value in order (the registries then know their methods/metrics)."""
    for spec in specs or []:
        load_plugin(spec)


def absolute_spec(spec: str) -> str:
    """A file plugin as an absolute path, MODULE@DIR with DIR absolute; a module name unchanged."""
    at = split_module_at(spec)
    if at is not None:
        return f"{at[0]}@{Path(at[1]).expanduser().resolve()}"
    return str(Path(spec).expanduser().resolve()) if is_file_spec(spec) else spec


def absolute_specs(specs: Iterable[str] | None) -> list[str]:
    """File plugins as absolute paths (for workers that may start elsewhere); module names unchanged."""
    return [absolute_spec(s) for s in specs or []]


def plugins_info(specs: Iterable[str] | None) -> dict[str, Any]:
    """What a run records: the --plugin values and the entry points loaded (with their package versions)."""
    return {"modules": list(specs or []), "entry_points": [dict(e) for e in LOADED]}
