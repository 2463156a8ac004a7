"""The registry of model kinds: built-ins, installed plug-ins and a job's own plug-ins.

Kinds come from three places, all registered with :func:`register_kind`:

- the modules of this package (one per built-in kind), imported on first use;
- installed packages that declare an entry point in the group
  ``surveyproc.kinds`` (``name = "package.module"``), imported on first use;
- a job file's ``plugins:`` list: module names, or paths of ``.py`` files,
  imported by :func:`load_plugins` in the driver and again in every Ray
  actor, Ray Train worker and Dask task that needs the kind (a path must then
  exist on every node: ship it with the image or Ray's ``working_dir``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import pkgutil
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import CheckpointMismatchError, InvalidParameterError
from ..models.checkpoint import Checkpoint
from .base import ModelKind

__all__ = ["ENTRY_POINT_GROUP", "build_network", "get_kind", "load_plugins", "register_kind",
           "registered_kinds"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "surveyproc.kinds"
#: Modules of this package that are infrastructure, not kinds.
_INFRASTRUCTURE = frozenset({"base", "registry", "tasks", "columns"})

_KINDS: dict[str, ModelKind] = {}
_discovered = False


def register_kind(kind: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: register one instance of ``kind`` under ``kind.name``.

    Registering a name again replaces the entry (a plug-in file imported twice)."""
    if not getattr(kind, "name", "") or not getattr(kind, "description", ""):
        msg = f"model kind {kind.__qualname__} needs a name and a description"
        raise InvalidParameterError(msg)
    _KINDS[kind.name] = kind()
    return kind


def _discover() -> None:
    """Import the built-in kinds and the installed plug-ins, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(sys.modules[package].__path__):
        if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as error:  # a broken plug-in must not hide the others
            log.warning("model-kind plug-in %s (%s) failed to load: %s", point.name,
                        point.value, error)


def registered_kinds() -> list[str]:
    """Names of every registered kind."""
    _discover()
    return sorted(_KINDS)


def get_kind(name: str) -> ModelKind:
    """The registered kind ``name`` (one clear line if unknown)."""
    _discover()
    try:
        return _KINDS[name]
    except KeyError:
        msg = (f"unknown model kind {name!r}; known kinds: {', '.join(sorted(_KINDS))} "
               "(a plug-in kind needs its module in the job's 'plugins' list)")
        raise InvalidParameterError(msg) from None


def _module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"surveyproc_plugin_{path.stem}_{digest}"


def load_plugins(plugins: Sequence[str]) -> None:
    """Import each plug-in (a module name, or a ``.py`` file path) so its kinds register.

    Idempotent: a plug-in already imported in this process is not imported again.

    Raises
    ------
    InvalidParameterError
        A plug-in cannot be found or fails to import (the line names it).
    """
    _discover()
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).expanduser().resolve()
                name = _module_name(path)
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None or not path.is_file():
                    msg = f"plug-in {plugin}: no such Python file"
                    raise InvalidParameterError(msg)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(plugin)
        except InvalidParameterError:
            raise
        except Exception as error:
            msg = f"plug-in {plugin}: failed to import ({type(error).__name__}: {error})"
            raise InvalidParameterError(msg) from None


def build_network(checkpoint: Checkpoint) -> Any:
    """The checkpoint's network with its weights, in eval mode.

    Raises
    ------
    CheckpointMismatchError
        The weights do not fit the architecture the config describes.
    """
    try:
        model = get_kind(checkpoint.kind).build(checkpoint.config)
    except (KeyError, TypeError) as error:
        msg = (f"model kind {checkpoint.kind!r}: bad configuration {sorted(checkpoint.config)} "
               f"({type(error).__name__}: {error})")
        raise InvalidParameterError(msg) from None
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        msg = (f"checkpoint of kind {checkpoint.kind!r}: weights do not fit its architecture "
               f"({first})")
        raise CheckpointMismatchError(msg) from None
    return model.eval()
