"""Settings: every AUTHBROKER_* environment variable, the XDG paths and the config file.

The config file is ``$XDG_CONFIG_HOME/authbroker/config.toml`` (flat keys, e.g.
``authority = "https://127.0.0.1:8443"``). Environment variables win over the file. Every
``AUTHBROKER_*`` name the project reads is a constant below; nothing else spells one.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from authbroker.errors import ConfigurationError

ENV_PREFIX = "AUTHBROKER_"

# -- the environment variables (users and scripts rely on these names: never rename one)
#: The config file to read instead of $XDG_CONFIG_HOME/authbroker/config.toml.
CONFIG = ENV_PREFIX + "CONFIG"
#: The plugin's backend: native | dbus | browser (or auto).
BACKEND = ENV_PREFIX + "BACKEND"
#: The daemon's private authority, https://HOST:PORT[/tenant].
AUTHORITY = ENV_PREFIX + "AUTHORITY"
#: The routing setting (off by default; ``route_public_cloud = true`` in the config file): send
#: requests naming Microsoft's public-cloud hosts (login.microsoftonline.com …) to AUTHORITY,
#: for offline use of unmodified apps that hard-code them. Off: nothing meant for Microsoft is
#: redirected.
ROUTE_PUBLIC_CLOUD = ENV_PREFIX + "ROUTE_PUBLIC_CLOUD"
#: The daemon's sign-in UI: browser | device-code.
UI = ENV_PREFIX + "UI"
#: Seconds the daemon waits for an interactive sign-in.
SIGN_IN_TIMEOUT = ENV_PREFIX + "SIGN_IN_TIMEOUT"
#: The scripted user agent (authbroker.devkit.useragent): who signs in, and where it logs.
UA_USERNAME = ENV_PREFIX + "UA_USERNAME"
UA_PASSWORD = ENV_PREFIX + "UA_PASSWORD"
UA_LOG = ENV_PREFIX + "UA_LOG"
#: The azurite-blob command for the demo and the tests.
AZURITE = ENV_PREFIX + "AZURITE"
#: The local authority: allow access tokens shorter than msal's refresh margin (tests).
AUTHORITY_ALLOW_SHORT_TOKENS = ENV_PREFIX + "AUTHORITY_ALLOW_SHORT_TOKENS"

#: The daemon's access log (one line per answered call: method, correlation id, outcome,
#: duration; never a body). A documented contract: the demo and the tests read it by this name.
ACCESS_LOGGER = "authbroker.daemon.access"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def state_dir() -> Path:
    """Where authbroker keeps state (the authority's CA, the daemon's store)."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "authbroker"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "authbroker"


def data_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_file() -> Path:
    return Path(os.environ.get(CONFIG) or config_dir() / "config.toml")


_file_cache: dict[Path, tuple[int, dict[str, object]]] = {}


def load_file_settings(path: Path | None = None) -> dict[str, object]:
    """Read the config file (again only when it changed); a missing file is empty, a
    malformed one is a clear error."""
    path = path or config_file()
    try:
        stamp = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc}", hint="fix or remove the file"
        ) from exc
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return dict(cached[1])
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc}", hint="fix or remove the file"
        ) from exc
    _file_cache[path] = (stamp, values)
    return dict(values)


def setting(name: str, default: str | None = None) -> str | None:
    """A setting by its lower-case name: ``AUTHBROKER_<NAME>`` first, then the file."""
    env = os.environ.get(ENV_PREFIX + name.upper())
    if env:
        return env
    value = load_file_settings().get(name.lower())
    return str(value) if value is not None else default


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off", ""})


def flag(name: str) -> bool:
    """An on/off setting by its lower-case name (1/0, true/false, yes/no, on/off); unset is
    off, anything else a ConfigurationError naming the setting."""
    raw = setting(name)
    value = (raw or "").strip().lower()
    if value in _ON or value in _OFF:
        return value in _ON
    raise ConfigurationError(
        f"{ENV_PREFIX}{name.upper()} (or `{name}` in the config file) must be on or off "
        f"(1 or 0, true or false), not {raw!r}",
        hint=f"fix {ENV_PREFIX}{name.upper()} or `{name}` in {config_file()}",
    )


@dataclass(frozen=True)
class Settings:
    authority: str | None
    ui: str | None
    backend: str | None
    #: ROUTE_PUBLIC_CLOUD: requests naming Microsoft's public-cloud hosts go to ``authority``.
    route_public_cloud: bool = False

    @classmethod
    def load(cls) -> Settings:
        return cls(
            authority=setting("authority"),
            ui=setting("ui"),
            backend=setting("backend"),
            route_public_cloud=flag("route_public_cloud"),
        )
