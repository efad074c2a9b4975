"""Plugin discovery and component creation (a pluggy ``PluginManager`` and a name table).

Plugins are found through the ``augplug`` entry-point group, the built-ins included,
and loaded lazily on the first call that needs them. Each plugin is imported and
asked to register inside its own ``try``: one that fails is recorded with its error
and skipped, and its partial registrations are dropped, so the others keep working.

Environment:

* ``AUGPLUG_DISABLE_PLUGIN_AUTOLOAD=1`` - load only the built-in plugins (those from
  the ``augplug`` distribution itself).
* ``AUGPLUG_PLUGINS=name,name`` - allow-list of external plugins (entry-point or
  distribution names); built-ins always load. Unset means every installed plugin loads.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from augplug import hookspecs

__all__ = [
    "KINDS",
    "ComponentInfo",
    "ComponentNotFoundError",
    "DuplicateComponentError",
    "PluginInfo",
    "Registry",
    "available",
    "create",
    "describe",
    "get_registry",
    "isolated",
    "normalise_kind",
    "plugins",
    "register_plugin",
    "reset",
]

KINDS: tuple[str, ...] = ("views", "features", "objective", "dataset")
#: The other spelling (singular or plural) of each kind, accepted wherever a kind is named.
KIND_ALIASES = {
    "view": "views",
    "feature": "features",
    "objectives": "objective",
    "datasets": "dataset",
}
ENTRY_POINT_GROUP = "augplug"
BUILTIN_DISTRIBUTION = "augplug"


class ComponentNotFoundError(LookupError):
    """No component of that kind and name is registered."""


class DuplicateComponentError(LookupError):
    """Two plugins registered the same kind and name."""


@dataclass
class _Entry:
    kind: str
    name: str
    factory: Callable[..., Any] | str
    plugin: str
    requires: tuple[str, ...] = ()
    hint: str | None = None

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m.split(".")[0]) is None]

    def resolve(self) -> Callable[..., Any]:
        if isinstance(self.factory, str):
            module_name, _, attr = self.factory.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self.factory = obj
        return self.factory

    def unavailable_reason(self) -> str | None:
        missing = self.missing()
        if not missing:
            return None
        reason = f"needs {', '.join(missing)}"
        return f"{reason} ({self.hint})" if self.hint else reason


@dataclass
class PluginInfo:
    """One discovered plugin: where it came from, what it registered, and whether it loaded."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    status: str  # "ok", "failed" or "disabled"
    error: str | None = None
    components: dict[str, list[str]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # "kind/name" -> reason


@dataclass
class ComponentInfo:
    """What :func:`describe` returns: enough to use a component without reading its source."""

    kind: str
    name: str
    plugin: str
    distribution: str | None
    version: str | None
    signature: str
    defaults: dict[str, Any]
    doc: str
    unavailable: str | None

    def __str__(self) -> str:
        origin = self.plugin + (f" ({self.distribution} {self.version})" if self.distribution else "")
        lines = [f"{self.kind}/{self.name}{self.signature}", f"  plugin: {origin}"]
        if self.unavailable:
            lines.append(f"  unavailable: {self.unavailable}")
        if self.doc:
            lines += ["", *("  " + line if line else "" for line in self.doc.splitlines())]
        return "\n".join(lines)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


class Registry:
    """A plugin manager plus the table of registered components."""

    def __init__(self, *, autoload: bool = True):
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, _Entry]] = {kind: {} for kind in KINDS}
        self._conflicts: dict[tuple[str, str], list[str]] = {}
        self._plugins: dict[str, PluginInfo] = {}
        self._autoload = autoload
        self._loaded = False
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- loading
    def ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded or not self._autoload:
                return
            self._loaded = True
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        builtin_only = _truthy(os.environ.get("AUGPLUG_DISABLE_PLUGIN_AUTOLOAD"))
        allow_raw = os.environ.get("AUGPLUG_PLUGINS")
        allow = None if allow_raw is None else {a.strip() for a in allow_raw.split(",") if a.strip()}
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        # Built-ins first, so a third-party plugin that reuses a built-in name is the one reported.
        eps.sort(key=lambda ep: _distribution_name(ep) != BUILTIN_DISTRIBUTION)
        for ep in eps:
            dist = _distribution_name(ep)
            version = ep.dist.version if ep.dist is not None else None
            builtin = dist == BUILTIN_DISTRIBUTION
            info = PluginInfo(ep.name, dist, version, builtin, "ok")
            if not builtin and builtin_only:
                info.status, info.error = "disabled", "AUGPLUG_DISABLE_PLUGIN_AUTOLOAD is set"
            elif not builtin and allow is not None and not ({ep.name, dist} & allow):
                info.status, info.error = "disabled", "not named in AUGPLUG_PLUGINS"
            if info.status == "disabled":
                self._plugins[ep.name] = info
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                info.status, info.error = "failed", f"import failed: {type(exc).__name__}: {exc}"
                self._plugins[ep.name] = info
                continue
            self._register(plugin, info)

    def register_plugin(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object/module in this process (no packaging needed).

        Returns its :class:`PluginInfo`; a plugin whose hooks raise is recorded as
        failed, exactly as for entry-point plugins.
        """
        with self._lock:
            self.ensure_loaded()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if name in self._plugins:
                raise ValueError(f"name: a plugin named {name!r} is already registered")
            info = PluginInfo(name, distribution, version, False, "ok")
            self._register(plugin, info)
            return info

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and every component it registered."""
        with self._lock:
            if name not in self._plugins:
                raise ValueError(f"name: no plugin named {name!r}; have {sorted(self._plugins)}")
            del self._plugins[name]
            if self.manager.get_plugin(name) is not None:
                self.manager.unregister(name=name)
            for table in self._entries.values():
                for key in [k for k, e in table.items() if e.plugin == name]:
                    del table[key]
            for key, owners in list(self._conflicts.items()):
                if name in owners:
                    del self._conflicts[key]

    def _register(self, plugin: object, info: PluginInfo) -> None:
        staged: list[_Entry] = []

        def make_register(kind: str):
            def register(
                name: str,
                factory: Callable[..., Any] | str,
                *,
                requires: Iterable[str] = (),
                hint: str | None = None,
            ) -> None:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"register: name must be a non-empty string, got {name!r}")
                if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
                    raise TypeError(
                        f"register({name!r}): factory must be callable or a 'module:attribute' string, "
                        f"got {factory!r}"
                    )
                staged.append(_Entry(kind, name, factory, info.name, tuple(requires), hint))

            return register

        try:
            self.manager.register(plugin, name=info.name)
        except Exception as exc:
            info.status, info.error = "failed", f"register failed: {type(exc).__name__}: {exc}"
            self._plugins[info.name] = info
            return
        unknown = self._unknown_hooks(plugin)
        if unknown:  # a misspelt hook would otherwise load as "ok" and register nothing
            self.manager.unregister(name=info.name)
            info.status, info.error = "failed", "; ".join(unknown)
            self._plugins[info.name] = info
            return
        try:
            for kind in KINDS:
                caller = getattr(self.manager.hook, f"augplug_register_{kind}")
                for impl in caller.get_hookimpls():
                    if impl.plugin_name == info.name:
                        impl.function(register=make_register(kind))
        except Exception as exc:  # drop the half-registered plugin, keep the others
            self.manager.unregister(name=info.name)
            info.status, info.error = "failed", f"registration failed: {type(exc).__name__}: {exc}"
            self._plugins[info.name] = info
            return
        for entry in staged:
            table = self._entries[entry.kind]
            previous = table.get(entry.name)
            if previous is not None:
                owners = self._conflicts.setdefault((entry.kind, entry.name), [previous.plugin])
                owners.append(entry.plugin)
                message = (
                    f"{entry.kind} {entry.name!r} is registered by both plugin {previous.plugin!r} "
                    f"and plugin {entry.plugin!r}"
                )
                info.error = message if info.error is None else f"{info.error}; {message}"
                continue
            table[entry.name] = entry
            info.components.setdefault(entry.kind, []).append(entry.name)
            reason = entry.unavailable_reason()
            if reason:
                info.unavailable[f"{entry.kind}/{entry.name}"] = reason
        self._plugins[info.name] = info

    def _unknown_hooks(self, plugin: object) -> list[str]:
        """One message per hook ``plugin`` implements that no hookspec declares.

        pluggy accepts an implementation of an undeclared hook at registration (the spec
        could arrive later) and only :meth:`pluggy.PluginManager.check_pending` reports it;
        every augplug hook is declared up front, so here an undeclared one is a typo.
        """
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError:
            pass
        else:
            return []
        known = [name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")]
        messages = []
        for caller in self.manager.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known hooks: {', '.join(known)}"
            messages.append(f"unknown hook {caller.name!r}{hint}")
        return messages

    # ------------------------------------------------------------------ lookup
    def _entry(self, kind: str, name: str) -> _Entry:
        self.ensure_loaded()
        kind = normalise_kind(kind)
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
        owners = self._conflicts.get((kind, name))
        if owners:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered by more than one plugin: {', '.join(map(repr, owners))}; "
                "uninstall or disable one of them (AUGPLUG_PLUGINS allow-list)"
            )
        table = self._entries[kind]
        if name not in table:
            close = difflib.get_close_matches(str(name), list(table), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ComponentNotFoundError(
                f"name: no {kind} named {name!r}{hint} Available {kind}: {sorted(table) or 'none'}"
            )
        return table[name]

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        """Build the component ``kind``/``name`` with keyword arguments checked against its signature."""
        entry = self._entry(kind, name)
        reason = entry.unavailable_reason()
        if reason:
            raise ImportError(f"{kind} {name!r} is unavailable: it {reason}")
        factory = entry.resolve()
        _check_kwargs(f"{kind} {name!r}", factory, kwargs)
        return factory(**kwargs)

    def describe(self, kind: str, name: str) -> ComponentInfo:
        kind = normalise_kind(kind)
        entry = self._entry(kind, name)
        plugin = self._plugins.get(entry.plugin)
        reason = entry.unavailable_reason()
        if reason:
            signature, defaults, doc = "(...)", {}, ""
        else:
            factory = entry.resolve()
            sig = _signature(factory)
            signature = str(sig) if sig is not None else "(...)"
            defaults = {
                p.name: p.default
                for p in (sig.parameters.values() if sig is not None else ())
                if p.default is not inspect.Parameter.empty
            }
            doc = inspect.getdoc(factory) or ""
        return ComponentInfo(
            kind,
            name,
            entry.plugin,
            plugin.distribution if plugin else None,
            plugin.version if plugin else None,
            signature,
            defaults,
            doc,
            reason,
        )

    def available(self, kind: str | None = None) -> dict[str, list[str]] | list[str]:
        self.ensure_loaded()
        if kind is not None:
            kind = normalise_kind(kind)
            if kind not in KINDS:
                raise ValueError(f"kind: expected one of {list(KINDS)} or None, got {kind!r}")
            return sorted(
                n
                for n, e in self._entries[kind].items()
                if (kind, n) not in self._conflicts and not e.unavailable_reason()
            )
        return {k: self.available(k) for k in KINDS}

    def plugins(self) -> list[PluginInfo]:
        self.ensure_loaded()
        return sorted(self._plugins.values(), key=lambda p: (not p.builtin, p.name))


def normalise_kind(kind: str) -> str:
    """The registry's name of ``kind``: ``"objectives"`` -> ``"objective"``, ``"view"`` -> ``"views"``."""
    return KIND_ALIASES.get(kind, kind) if isinstance(kind, str) else kind


def _distribution_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        # Resolve string annotations (``from __future__ import annotations``) for display.
        return inspect.signature(factory, eval_str=True)
    except Exception:
        pass
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _check_kwargs(what: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    sig = _signature(factory)
    if sig is None:
        return
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"{what}: unknown argument {key!r}{hint}; accepted arguments: {', '.join(accepted) or 'none'}"
            )
    missing = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in kwargs
    ]
    if missing:
        raise TypeError(f"{what}: missing required argument(s): {', '.join(missing)}")


_registry = Registry()


def get_registry() -> Registry:
    """The process-wide registry used by :func:`create` and friends."""
    return _registry


@contextlib.contextmanager
def isolated(*, autoload: bool = True) -> Iterator[Registry]:
    """A fresh process-wide registry inside a ``with`` block; the previous one comes back after.

    For tests of plugins: ``with augplug.registry.isolated() as reg: reg.register_plugin(...)``.
    """
    global _registry
    previous, _registry = _registry, Registry(autoload=autoload)
    try:
        yield _registry
    finally:
        _registry = previous


def reset(*, autoload: bool = True) -> Registry:
    """Forget every plugin and start over (re-reads the environment variables on next use)."""
    global _registry
    _registry = Registry(autoload=autoload)
    return _registry


def create(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Build a registered component, e.g. ``create("objective", "infonce", temperature=0.2)``.

    Unknown names raise :class:`ComponentNotFoundError` listing close matches; unknown or
    misspelt keyword arguments raise ``TypeError`` listing the accepted ones.
    """
    return _registry.create(kind, name, **kwargs)


def available(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Names of the usable components of one kind, or a dict of all kinds."""
    return _registry.available(kind)


def describe(kind: str, name: str) -> ComponentInfo:
    """Signature, defaults, docstring and providing plugin of a component."""
    return _registry.describe(kind, name)


def plugins() -> list[PluginInfo]:
    """Every discovered plugin with its status (ok / failed / disabled) and components."""
    return _registry.plugins()


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Register a plugin object or module in this process (see :mod:`augplug.hookspecs`)."""
    return _registry.register_plugin(plugin, name)
