"""Plugin discovery: built-ins, installed packages (entry points) and files named in a spec.

Built-ins register through the same hooks as any user plugin (as pytest and datasette ship their
defaults). :func:`get_plugin_manager` returns a fresh manager every call, so tests and sensitivity
reruns never share global state.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import SpecError, suggest

DEFAULT_PLUGINS = (
    "endpointkit.plugins.sources",
    "endpointkit.plugins.typed_sources",
    "endpointkit.plugins.renderers",
    "endpointkit.plugins.office",
    "endpointkit.plugins.criteria",
    "endpointkit.plugins.characteristics",
    "endpointkit.plugins.arr_change",
    "endpointkit.plugins.relapse_free",
    "endpointkit.plugins.edss_progression",
    "endpointkit.plugins.disability_events",
    "endpointkit.plugins.titer_reduction",
    "endpointkit.plugins.discontinuation",
    "endpointkit.plugins.safety",
)

KINDS = {
    "endpoints": "register_endpoints",
    "sources": "register_sources",
    "criteria": "register_criteria",
    "renderers": "register_renderers",
}


class PluginError(SpecError):
    """A plugin could not be loaded or registers something invalid."""


@dataclass
class Registry:
    """Registered things of one kind, by name, each stamped with its provider."""

    kind: str
    items: dict[str, Any] = field(default_factory=dict)

    def add(self, item: Any, provider: str) -> None:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError("plugins", f"{provider} registers a {self.kind[:-1]} without a 'name'")
        if name in self.items:
            other = self.items[name].provider
            raise PluginError(
                "plugins", f"{self.kind[:-1]} '{name}' is registered twice: by {other} and by {provider}"
            )
        item.provider = provider
        self.items[name] = item

    def get(self, name: str, path: str) -> Any:
        if name not in self.items:
            raise SpecError(
                path,
                f"unknown {self.kind[:-1]} '{name}'{suggest(name, self.items)}; "
                f"registered: {', '.join(sorted(self.items))}",
            )
        return self.items[name]

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def __iter__(self):
        return iter(self.items.values())


@dataclass
class Plugins:
    """The loaded plugin manager and its registries."""

    pm: pluggy.PluginManager
    endpoints: Registry
    sources: Registry
    criteria: Registry
    renderers: Registry

    def versions(self) -> dict[str, str]:
        """Provider -> version (distribution version for entry points, file hash for files)."""
        out = {}
        for name, _plugin in self.pm.list_name_plugin():
            if name.startswith("file:"):
                out[name] = "sha256:" + _file_sha(Path(name[5:]))[:12]
            elif name.startswith("endpointkit.plugins."):
                from . import __version__

                out[name] = __version__
        for plugin, dist in self.pm.list_plugin_distinfo():
            out[self.pm.get_name(plugin)] = f"{dist.project_name} {dist.version}"
        return out


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_plugin_file(path: Path, index: int) -> Any:
    """Import a user's plugin file under a unique module name (registered before exec)."""
    key = "endpointkit_userplugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
    if key in sys.modules:
        return sys.modules[key]
    if not path.is_file():
        raise SpecError(f"plugins[{index}]", f"plugin file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(key, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"plugins[{index}]", f"not an importable Python file: {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[key] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: report, don't crash
        del sys.modules[key]
        raise SpecError(f"plugins[{index}]", f"error while loading {path}: {type(exc).__name__}: {exc}") from exc
    return module


def _skip_hint(name: str) -> str:
    if name.startswith(("file:", "endpointkit.plugins.")):
        return ""
    return f"; fix or uninstall it, or skip it with ENDPOINTKIT_BLOCK_PLUGINS={name}"


def _broken_entry_point(pm: pluggy.PluginManager, error: Exception) -> PluginError:
    """Which installed entry-point plugin failed to load (pluggy stops at the first without naming it)."""
    for dist in importlib.metadata.distributions():
        for entry in dist.entry_points:
            if entry.group != hookspecs.NAME or pm.is_blocked(entry.name):
                continue
            try:
                entry.load()
            except Exception as exc:
                package = dist.metadata["Name"] or "?"
                return PluginError("plugins", f"the installed plugin '{entry.name}' (entry point {entry.value} of the "
                                   f"package {package}) failed to load: {type(exc).__name__}: {exc}" + _skip_hint(entry.name))
    return PluginError("plugins", f"an installed plugin failed to load: {type(error).__name__}: {error}; "
                       "skip plugins by name with ENDPOINTKIT_BLOCK_PLUGINS=name1,name2")


def get_plugin_manager(*, entrypoints: bool = True, files: tuple[Path, ...] = ()) -> Plugins:
    """A fresh manager with the built-ins, installed plugins and the spec's plugin files."""
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if entrypoints and os.environ.get("ENDPOINTKIT_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() in ("", "0", "false", "no", "off"):
        for blocked in filter(None, os.environ.get("ENDPOINTKIT_BLOCK_PLUGINS", "").split(",")):
            pm.set_blocked(blocked.strip())
        try:
            pm.load_setuptools_entrypoints(hookspecs.NAME)
        except Exception as exc:  # an installed package's plugin: name it and say how to skip it
            raise _broken_entry_point(pm, exc) from None
    for index, path in enumerate(files):
        module = load_plugin_file(path, index)
        name = f"file:{path}"
        if pm.get_plugin(name) is None:
            try:
                pm.register(module, name=name)
            except pluggy.PluginValidationError as exc:
                raise SpecError(f"plugins[{index}]", f"{path}: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError("plugins", f"a plugin implements an unknown hook: {exc}") from exc
    registries = {kind: Registry(kind) for kind in KINDS}
    for kind, hook_name in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order, built-ins first
            provider = impl.plugin_name
            try:
                items = list(impl.function() or ())
            except Exception as exc:
                raise PluginError("plugins", f"the plugin '{provider}' failed in {hook_name}(): {type(exc).__name__}: {exc}"
                                  + _skip_hint(provider)) from None
            for item in items:
                registries[kind].add(item, provider)
    return Plugins(pm=pm, **registries)
