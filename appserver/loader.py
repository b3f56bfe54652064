"""Find and import the WSGI application the config names.

uWSGI's ways of naming an app are all here: ``module`` ("pkg.mod" or
"pkg.mod:callable"), ``wsgi-file`` (a path executed as a module), ``mount``
(several apps under URL prefixes) and ``callable``.  ``chdir``,
``pythonpath``, ``virtualenv`` and ``env`` prepare the interpreter first.

Every failure becomes one ``AppLoadError`` whose message names what was being
loaded and why it failed; the traceback goes to the log separately.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from appserver.config import AppServerConfig

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AppLoadError(Exception):
    """The app could not be imported or is not a WSGI callable."""


def prepare_interpreter(config: AppServerConfig) -> None:
    """Apply chdir, env, virtualenv and pythonpath, in uWSGI's order."""
    for key, value in config.env:
        os.environ[key] = value
    if config.chdir:
        os.chdir(config.chdir)
    if config.virtualenv:
        _activate_virtualenv(config.virtualenv)
    for entry in reversed(config.pythonpath):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    # uWSGI puts the working directory on sys.path, so "module = mysite.wsgi" finds
    # the project the way "python manage.py" would.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _activate_virtualenv(home: str) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = Path(home) / "lib" / version / "site-packages"
    if not site_packages.is_dir():
        raise AppLoadError(
            f"virtualenv {home}: no {site_packages.relative_to(home)} "
            f"(is it a {version} virtualenv?)"
        )
    import site

    # addsitedir also processes .pth files (editable installs) like a real venv would.
    before = list(sys.path)
    site.addsitedir(str(site_packages))
    added = [entry for entry in sys.path if entry not in before]
    sys.path[:] = added + before
    os.environ["VIRTUAL_ENV"] = home


def load_application(config: AppServerConfig) -> WSGIApp:
    """Import the configured app (or the mount table of apps) and return one WSGI callable."""
    if config.mounts:
        apps = [
            (prefix.rstrip("/"), _load_target(target, config.callable))
            for prefix, target in config.mounts
        ]
        return MountDispatcher(apps)
    if config.wsgi_file:
        return _load_file(config.wsgi_file, config.callable)
    if config.module:
        return _load_module(config.module, config.callable)
    raise AppLoadError("no application configured: set module, wsgi-file or mount")


def describe_application(config: AppServerConfig) -> str:
    if config.mounts:
        return ", ".join(f"{prefix}={target}" for prefix, target in config.mounts)
    if config.wsgi_file:
        return f"{config.wsgi_file}:{config.callable}"
    if config.module:
        return config.module if ":" in config.module else f"{config.module}:{config.callable}"
    return "(none)"


def _load_target(target: str, default_callable: str) -> WSGIApp:
    if target.endswith(".py") or os.sep in target:
        return _load_file(target, default_callable)
    return _load_module(target, default_callable)


def _load_module(spec: str, default_callable: str) -> WSGIApp:
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or default_callable
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"module {module_name}: import failed: {_one_line(exc)}") from exc
    return _get_callable(module, attribute, f"module {module_name}")


def _load_file(path: str, default_callable: str) -> WSGIApp:
    if not os.path.isfile(path):
        raise AppLoadError(f"wsgi-file {path}: no such file")
    # uWSGI loads wsgi-file as a module named after the file; Django's wsgi.py then
    # imports its settings package relative to the working directory.
    name = "uwsgi_file_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"wsgi-file {path}: cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise AppLoadError(f"wsgi-file {path}: {_one_line(exc)}") from exc
    return _get_callable(module, default_callable, f"wsgi-file {path}")


def _get_callable(module: object, attribute: str, where: str) -> WSGIApp:
    app = getattr(module, attribute, None)
    if app is None:
        raise AppLoadError(f"{where}: has no callable {attribute!r} (set callable=)")
    if not callable(app):
        raise AppLoadError(f"{where}: {attribute!r} is not callable")
    return app  # type: ignore[no-any-return]


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__


class MountDispatcher:
    """Several apps under URL prefixes (uWSGI ``mount``): longest prefix wins.

    The chosen prefix moves from PATH_INFO to SCRIPT_NAME, as PEP 3333 asks, so
    an app mounted at /admin sees PATH_INFO "/" for the URL "/admin/".
    """

    def __init__(self, apps: list[tuple[str, WSGIApp]]) -> None:
        self.apps = sorted(apps, key=lambda item: len(item[0]), reverse=True)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.apps:
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"Not Found\n"]
