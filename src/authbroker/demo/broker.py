"""The default ``authbroker demo``: the seed's example, signed in through our broker.

A private ``dbus-daemon`` (its own socket and config, no service directories, so nothing is
ever activated and the user's session bus is never touched) carries our daemon; the demo's
``InteractiveBrowserBrokerCredential`` reaches it with the ``dbus`` backend. The daemon, not
this process, opens the (scripted) browser; which Broker1 calls it served is read back from
its log. The daemon's store lives in the demo's directory, its key in a file there (no
Secret Service on the private bus).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt

from authbroker.broker1 import BUS_NAME, Method
from authbroker.demo import (
    STORAGE_SCOPE,
    Authority,
    DemoError,
    call_storage,
    first_line,
    say,
    show_claims,
    start_authority,
    step,
    trust_local_ca,
    verify_with_jwks,
)
from authbroker.devkit import azurite
from authbroker.devkit.privatebus import bus_config
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME

_BUS_VARS = ("DBUS_SESSION_BUS_ADDRESS", "DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE")
_CALL_LINE = re.compile(r"authbroker\.daemon\.service (?:INFO|DEBUG) (\w+) correlation=")


def dbus_daemon() -> str | None:
    return shutil.which("dbus-daemon")


def start_private_bus(stack: ExitStack, timeout: float = 10.0) -> str:
    """A session-type dbus-daemon on a socket of its own; its address, also made this
    process's session bus until the stack closes."""
    daemon = dbus_daemon()
    assert daemon is not None
    base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ab-bus-", dir="/tmp")))
    config = base / "bus.conf"  # /tmp: a socket path must fit in 108 bytes
    config.write_text(bus_config(base / "bus"))
    with open(base / "dbus-daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [daemon, f"--config-file={config}", "--print-address=1", "--nofork"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    stack.callback(azurite.stop_process, proc)
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    address = proc.stdout.readline().decode().strip()  # printed once it listens
    if not address:
        raise DemoError(f"dbus-daemon did not start (exit {proc.poll()})")
    saved = {k: os.environ.pop(k, None) for k in _BUS_VARS}
    stack.callback(_restore_env, saved)
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
    return address


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def daemon_environment(authority: Authority, address: str, work: Path, *,
                       interactive: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AUTHBROKER_BACKEND", "BROWSER")}
    env.update(
        DBUS_SESSION_BUS_ADDRESS=address,
        AUTHBROKER_AUTHORITY=authority.url,
        REQUESTS_CA_BUNDLE=authority.ca_bundle,
        CURL_CA_BUNDLE=authority.ca_bundle,
        XDG_CONFIG_HOME=str(work / "config"),  # not the user's config file
        XDG_STATE_HOME=str(work / "state"),
    )
    if not interactive:
        env.update(
            BROWSER=f"{shlex.quote(sys.executable)} -m authbroker.devkit.useragent %s",
            AUTHBROKER_UI="browser",
            AUTHBROKER_UA_USERNAME=DEFAULT_USERNAME,
            AUTHBROKER_UA_PASSWORD=DEFAULT_PASSWORD,
            AUTHBROKER_UA_LOG=str(work / "useragent.log"),
        )
    return env


class BrokerDaemon:
    """``python -m authbroker daemon`` as the demo's child; its log says what it served."""

    def __init__(self, work: Path, address: str) -> None:
        self.work, self.address = work, address
        self.log = work / "daemon.log"
        self.ua_log = work / "useragent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], stack: ExitStack, timeout: float = 20.0) -> None:
        from authbroker.client import BrokerClient

        # -v: answered silent calls are logged at DEBUG, and the demo counts what was served
        argv = [sys.executable, "-m", "authbroker", "daemon", "-v", "--store",
                str(self.work / "store.enc")]
        with open(self.log, "ab") as log:  # stderr only: warnings stay out of the demo output
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=log, env=env)
        stack.callback(azurite.stop_process, self.process)
        deadline = time.monotonic() + timeout
        with BrokerClient(bus=self.address, timeout=5.0) as client:
            while not client.is_available():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise DemoError(f"the broker daemon did not start; see {self.log}")
                time.sleep(0.05)

    def last_problem(self) -> str:
        """The daemon's last warning or error, for a failure message (its logs hold no secrets;
        the whole log is in the demo's directory, kept with --data-dir)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        lines = [ln for ln in text.splitlines() if " ERROR " in ln or " WARNING " in ln]
        lines = [ln for ln in lines if "Secret Service unavailable" not in ln]
        return f" (daemon: {lines[-1].split(' ', 2)[-1]})" if lines else ""

    def calls(self) -> list[str]:
        """The Broker1 methods served so far, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return _CALL_LINE.findall(text)

    def browser_sign_ins(self) -> int:
        """How many times the scripted user agent (started by the daemon) signed in."""
        text = self.ua_log.read_text(errors="replace") if self.ua_log.exists() else ""
        return text.count("signing in as")

    def default_account(self) -> str | None:
        from authbroker.client import BrokerClient

        with BrokerClient(bus=self.address, timeout=5.0) as client:
            account = client.get_default_account()
        return account.username if account else None


def broker_credential(authority: Authority, **extra: Any) -> Any:
    """The seed's credential, pointed at the local authority."""
    import msal

    from azure.identity.broker import InteractiveBrowserBrokerCredential

    return InteractiveBrowserBrokerCredential(
        parent_window_handle=msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE,
        authority=authority.url,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        timeout=300,
        **extra,
    )


def _served(daemon: BrokerDaemon, before: int) -> str:
    new = daemon.calls()[before:]
    return ", ".join(f"{m} x{new.count(m)}" for m in dict.fromkeys(new)) or "nothing"


def run_broker_steps(args: argparse.Namespace, data_dir: Path, stack: ExitStack) -> int:
    interactive = bool(args.interactive)
    services = stack.enter_context(ExitStack())  # closed in the last step, before the temp dir
    print("(through the broker daemon, as an application would; --no-broker skips it)")

    step(1, "Starting the local authority (authbroker authority --port 0)")
    authority = start_authority(data_dir, services)
    trust_local_ca(authority)
    say(f"{authority.url}  tenant {authority.tenant_id}")
    say("this process trusts its CA via REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE")

    step(2, "Starting a private D-Bus session bus and the broker daemon on it")
    address = start_private_bus(services)
    say(f"bus: {address.split(',')[0]} (private: your own session bus is left alone)")
    daemon = BrokerDaemon(data_dir, address)
    daemon.start(daemon_environment(authority, address, data_dir, interactive=interactive),
                 services)
    assert daemon.process is not None
    say(f"daemon: python -m authbroker daemon (pid {daemon.process.pid}) owns {BUS_NAME}")
    say(f"its store: {data_dir / 'store.enc'} (key in a file beside it: no keyring here)")

    step(3, "Signing in through the broker with InteractiveBrowserBrokerCredential")
    if interactive:
        say("the daemon opens your browser (with none, it prints a device code below); the")
        say("browser will warn about the local CA. Sign in as")
        say(f"{DEFAULT_USERNAME}, password {DEFAULT_PASSWORD} (the well-known demo credential).")
    else:
        say("the daemon opens the sign-in page in a scripted user agent (BROWSER=python -m")
        say("authbroker.devkit.useragent), which picks the account and fills the form")
    credential = broker_credential(authority)
    services.callback(credential.close)
    try:
        token = credential.get_token(STORAGE_SCOPE).token
    except Exception as exc:
        raise DemoError(f"sign-in failed: {type(exc).__name__}: {first_line(exc)}"
                        f"{daemon.last_problem()}") from None
    calls = daemon.calls()
    if Method.ACQUIRE_TOKEN_INTERACTIVELY.value not in calls:
        raise DemoError("the token did not come from the broker daemon (no D-Bus sign-in)")
    say(f"backend: dbus; the daemon served {_served(daemon, 0)}")
    say(f"signed in as {daemon.default_account()} (now the broker's default account)")

    step(4, "The access token's claims (decoded; the token itself is not shown)")
    show_claims(token)

    step(5, "Verifying the token with the authority's signing keys (JWKS, PyJWT)")
    verify_with_jwks(authority, token)

    step(6, "The seed's example: BlobServiceClient(account_url, credential=credential)")
    stored = call_storage(authority, credential)

    step(7, "A new credential with use_default_broker_account=True: no second sign-in")
    sign_ins, before = daemon.browser_sign_ins(), len(daemon.calls())
    with broker_credential(authority, use_default_broker_account=True) as second:
        second_token = second.get_token(STORAGE_SCOPE).token
    claims = jwt.decode(second_token, options={"verify_signature": False})
    say(f"token for {claims.get('upn')}, aud {claims.get('aud')}")
    say(f"the daemon served {_served(daemon, before)} from the default account")
    if not interactive:
        if daemon.browser_sign_ins() != sign_ins:
            raise DemoError("the second credential opened the browser again")
        say("no browser was opened this time (the user agent signed in once in all)")

    step(8, "Stopping the daemon, the bus and the authority")
    services.close()
    say("stopped; the demo's temporary files are removed on exit")
    if stored:
        print("\nDone: signed in once through the broker and used the token on Azurite storage.")
    else:
        print("\nDone: signed in once through the broker and verified the token.")
    return 0
