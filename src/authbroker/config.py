"""Settings: AUTHBROKER_* environment variables, XDG paths and the config file.

The config file is ``$XDG_CONFIG_HOME/authbroker/config.toml`` (flat keys, e.g.
``authority = "https://127.0.0.1:8443"``). Environment variables win over the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from authbroker.errors import ConfigurationError

ENV_PREFIX = "AUTHBROKER_"


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
    return Path(os.environ.get(ENV_PREFIX + "CONFIG") or config_dir() / "config.toml")


def load_file_settings(path: Path | None = None) -> dict[str, object]:
    """Read the config file; a missing file is empty, a malformed one is a clear error."""
    path = path or config_file()
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc}", hint="fix or remove the file"
        ) from exc


def setting(name: str, default: str | None = None) -> str | None:
    """A setting by its lower-case name: ``AUTHBROKER_<NAME>`` first, then the file."""
    env = os.environ.get(ENV_PREFIX + name.upper())
    if env:
        return env
    value = load_file_settings().get(name.lower())
    return str(value) if value is not None else default


@dataclass(frozen=True)
class Settings:
    authority: str | None
    ui: str | None
    backend: str | None

    @classmethod
    def load(cls) -> Settings:
        return cls(
            authority=setting("authority"),
            ui=setting("ui"),
            backend=setting("backend"),
        )
