"""The ``authbroker.cli`` modules as the dispatcher finds them: each command's parser, the one
error base ``accounts/login/token/logout`` catch, and parts that run without printing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from authbroker import broker1, cli, config
from authbroker.cli import broker as broker_cli
from authbroker.cli import daemon as daemon_cli
from authbroker.daemon import install
from authbroker.errors import BrokerStatusError, BrokerUnavailableError

CLI = [sys.executable, "-m", "authbroker"]
SCOPE = "https://storage.azure.com/.default"


@pytest.mark.parametrize(("command", "module", "options"), [
    ("daemon", "authbroker.cli.daemon", ("--store", "--authority", "--idle-exit", "--bus")),
    ("install-service", "authbroker.cli.install", ("--prefix", "--dry-run")),
    ("authority", "authbroker.cli.authority", ("--data-dir", "--port", "--token-lifetime")),
])
def test_help_goes_through_the_cli_module(command, module, options):
    assert cli.COMMANDS[command][0] == module
    done = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"usage: authbroker {command}")
    for option in options:
        assert option in done.stdout


def test_daemon_help_names_the_authority_variable():
    assert f"${config.AUTHORITY} " in daemon_cli.build_parser("authbroker daemon").format_help()


def test_the_daemon_package_and_its_command_import_light():
    """``import authbroker.daemon`` (which every daemon module runs first) must not pull in
    msal or jeepney: the name is owned before the core is built."""
    code = ("import sys, authbroker.daemon, authbroker.cli.daemon, authbroker.daemon.install; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'msal', 'jeepney', "
            "'aiohttp', 'requests'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_install_writes_and_reports_without_printing(tmp_path, capsys):
    done = install.install(tmp_path / "pfx")
    assert capsys.readouterr() == ("", "")
    assert done.written == tuple(install.planned_files(tmp_path / "pfx"))
    assert all(path.is_file() for path in done.written)
    assert done.argv == tuple(install.daemon_argv())
    assert not done.systemd_reloaded and done.overridden == ()  # a prefix touches nothing else


class _FailingClient:
    def __init__(self, exc: Exception, **_: object) -> None:
        self.exc = exc

    def __enter__(self) -> _FailingClient:
        raise self.exc

    def __exit__(self, *exc_info: object) -> None:
        return None


def _run(monkeypatch, exc: Exception, *argv: str) -> int:
    monkeypatch.setattr(broker_cli, "BrokerClient", lambda **kw: _FailingClient(exc, **kw))
    args = broker_cli.build_parser(f"authbroker {argv[0]}").parse_args(argv[1:])
    return broker_cli.run(args)


def test_a_broker_status_gets_its_hint(monkeypatch, capsys):
    exc = BrokerStatusError(broker1.Status.NO_NETWORK, "cannot reach the authority")
    assert _run(monkeypatch, exc, "token", "--scope", SCOPE) == broker_cli.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("authbroker token: cannot reach the authority (status NO_NETWORK)\n"
                   f"  hint: check the network and the authority URL (--authority, "
                   f"{config.AUTHORITY})\n")


def test_an_interaction_hint_names_the_scopes(monkeypatch, capsys):
    exc = BrokerStatusError(broker1.Status.INTERACTION_REQUIRED, "no token")
    assert _run(monkeypatch, exc, "token", "--scope", SCOPE) == broker_cli.EXIT_FAILED
    assert f"hint: sign in first: authbroker login --scope {SCOPE}\n" in capsys.readouterr().err


def test_other_errors_show_their_own_hint(monkeypatch, capsys):
    exc = BrokerUnavailableError("no broker answers", hint="run 'authbroker install-service'")
    assert _run(monkeypatch, exc, "accounts") == broker_cli.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("authbroker accounts: no broker answers\n"
                   "  hint: run 'authbroker install-service'\n")
    assert _run(monkeypatch, BrokerUnavailableError("no bus"), "logout") == 1
    assert capsys.readouterr().err == "authbroker logout: no bus\n"
