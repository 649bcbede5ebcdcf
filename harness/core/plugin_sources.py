"""Where registered methods and metrics come from: entry points of installed packages and the plugin being
loaded now. The registries (harness/core/methods.py, metrics/base.py) use this module; it imports neither of
them, so the imports run one way (registries -> plugin_sources; harness/plugins.py -> both).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

from harness.core.errors import BenchError


class PluginError(BenchError):
    """A plugin (entry point, module or .py file) could not be loaded or registered."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# where a registered class came from (for `methods list` / `metrics list`) ----------------------------------
OWN_PACKAGES = frozenset({"harness", "metrics", "realtalk", "baselines"})
_CURRENT: list[str] = []  # the plugin being loaded now (innermost last)


class _origin:
    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> None:
        _CURRENT.append(self.label)

    def __exit__(self, *exc: object) -> None:
        _CURRENT.pop()


def origin_of(cls: type) -> str:
    """'built-in' for this package's classes, else the plugin being loaded ('--plugin X' / 'entry point ...'),
    else the defining module (a class registered by code that imported it directly)."""
    module = next((c.__module__ for c in cls.__mro__ if c.__module__ != "abc"), cls.__module__)  # type() classes
    if module.split(".")[0] in OWN_PACKAGES:
        return "built-in"
    return _CURRENT[-1] if _CURRENT else f"module {module}"


# entry points -------------------------------------------------------------------------------------------
LOADED: list[dict[str, str]] = []  # what load_entry_points loaded: group, name, value, package ("name version")


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    seen, out = set(), []
    for ep in entry_points(group=group):  # the same distribution on sys.path twice lists its entry points twice
        if (ep.name, ep.value) not in seen:
            seen.add((ep.name, ep.value))
            out.append(ep)
    return out


def load_entry_points(group: str, registry: dict[str, Any], register: Callable[[Any], Any], base: type) -> None:
    """Load every entry point of `group`. An entry point names a module (its import registers) or an object:
    a `base` subclass (registered unless its decorator did already) or a no-argument function that registers."""
    for ep in _entry_points(group):
        dist = getattr(ep, "dist", None)
        package = f"{dist.metadata['Name']} {dist.version}" if dist is not None else ""
        try:
            with _origin(f"entry point {ep.name}" + (f" ({package})" if package else "")):
                _load_entry_point(ep, registry, register, base)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            pkg = f", package {package}" if package else ""
            raise PluginError(f"entry point {ep.name} = {ep.value} (group {group}{pkg}) failed to load: "
                              f"{_first_line(exc)}") from None
        info = {"group": group, "name": ep.name, "value": ep.value, "package": package}
        if info not in LOADED:
            LOADED.append(info)


def _load_entry_point(ep: Any, registry: dict[str, Any], register: Callable[[Any], Any], base: type) -> None:
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, base):
        if registry.get(getattr(obj, "name", None)) is not obj:
            register(obj)
    elif isinstance(obj, ModuleType):
        pass  # importing it ran its @register decorators
    elif callable(obj):
        obj()
    else:
        raise TypeError(f"expected a module, a {base.__name__} subclass or a function, got {type(obj).__name__}")
