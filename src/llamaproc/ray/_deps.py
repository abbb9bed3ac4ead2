"""Ray Serve, imported on first use: ``llamaproc.ray`` imports without Ray installed and says
how to get it when it is needed.

Ray's objects are typed ``Any`` here: Ray is an optional extra, and a type checker run where it
is not installed must still pass on llamaproc.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from ..errors import DependencyMissingError
from ..messages import message

#: What installs the extra.
INSTALL_HINT = 'pip install "llamaproc[ray]"'


def _import(name: str) -> ModuleType:
    try:
        with warnings.catch_warnings():
            # Ray Serve's own models warn about Pydantic features it uses (at import time,
            # nothing a llamaproc user can act on)
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(name)
    except ImportError as exc:
        raise DependencyMissingError(message("ray.missing", error=exc, hint=INSTALL_HINT), missing="ray[serve]",
                                     install_hint=INSTALL_HINT) from exc


def ray() -> ModuleType:
    """The ``ray`` package (DependencyMissingError naming the extra without it)."""
    return _import("ray")


def serve() -> ModuleType:
    """The ``ray.serve`` package (DependencyMissingError naming the extra without it)."""
    _import("ray")
    return _import("ray.serve")


def aiohttp() -> ModuleType:
    """aiohttp (a dependency of ``ray[serve]``): the replicas' client of their loopback server."""
    return _import("aiohttp")
