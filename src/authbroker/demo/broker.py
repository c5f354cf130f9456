"""The default ``authbroker demo``: the seed's example, signed in through our broker.

A private ``dbus-daemon`` (its own socket and config, no service directories, so nothing is
ever activated and the user's session bus is never touched) carries our daemon; the demo's
``InteractiveBrowserBrokerCredential`` reaches it with the ``dbus`` backend. The daemon, not
this process, opens the (scripted) browser; which Broker1 calls it served is read back from
its access log (``devkit.processes.served_calls``). The daemon's store lives in the demo's
directory, its key in a file there (no Secret Service on the private bus).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt

from authbroker.broker1 import BUS_NAME, Method
from authbroker.demo import device, pop, steps
from authbroker.demo.steps import say, step
from authbroker.devkit import useragent
from authbroker.devkit.privatebus import PrivateBus
from authbroker.devkit.processes import AuthorityProcess, DaemonProcess, StartError, daemon_env
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME

_KNOWN_WARNING = "Secret Service unavailable"  # expected on the private bus: not a problem


def start_bus(stack: ExitStack) -> PrivateBus:
    """A private session bus without activation, also this process's session bus until
    ``stack`` closes."""
    bus = PrivateBus(services=False)
    try:
        stack.enter_context(bus)
    except StartError as exc:
        raise steps.DemoError(str(exc)) from None
    stack.enter_context(bus.session())
    return bus


def start_daemon(authority: AuthorityProcess, bus: PrivateBus, work: Path, stack: ExitStack, *,
                 interactive: bool) -> DaemonProcess:
    """``python -m authbroker daemon -v`` on ``bus``, its store in ``work``; with the scripted
    user agent unless ``interactive`` (then the person's own browser)."""
    if interactive:
        env = daemon_env(work, authority, bus=bus, overrides={useragent.BROWSER_VAR: None})
    else:
        browser = useragent.browser_env(work / "useragent.log", username=DEFAULT_USERNAME,
                                        password=DEFAULT_PASSWORD)
        env = daemon_env(work, authority, bus=bus, browser=browser, ui="browser")
    # -v: answered silent calls are logged at DEBUG, and the demo counts what was served.
    # Its stderr goes to daemon.log only: warnings stay out of the demo's output.
    daemon = DaemonProcess(bus, env, work, "-v", store=work / "store.enc")
    try:
        return stack.enter_context(daemon)
    except StartError:
        raise steps.DemoError(f"the broker daemon did not start; see {daemon.log}") from None


def default_account(bus: PrivateBus) -> str | None:
    from authbroker.client import BrokerClient

    with BrokerClient(bus=bus.address, timeout=5.0) as client:
        account = client.get_default_account()
    return account.username if account else None


def broker_credential(authority: AuthorityProcess, **extra: Any) -> Any:
    """The seed's credential, pointed at the local authority."""
    import msal

    from azure.identity.broker import InteractiveBrowserBrokerCredential

    return InteractiveBrowserBrokerCredential(
        parent_window_handle=msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE,
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        timeout=300,
        **extra,
    )


def _served(daemon: DaemonProcess, before: int) -> str:
    new = daemon.served_calls()[before:]
    return ", ".join(f"{m} x{new.count(m)}" for m in dict.fromkeys(new)) or "nothing"


def run(interactive: bool, data_dir: Path, stack: ExitStack) -> int:
    services = stack.enter_context(ExitStack())  # closed in the last step, before the temp dir
    print("(through the broker daemon, as an application would; --no-broker skips it)")

    step(1, "Starting the local authority (authbroker authority --port 0)")
    authority = steps.start_authority(data_dir, services)
    steps.trust_local_ca(authority)
    say(f"{authority.authority}  tenant {authority.tenant_id}")
    say("this process trusts its CA via REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE")

    step(2, "Starting a private D-Bus session bus and the broker daemon on it")
    bus = start_bus(services)
    say(f"bus: {bus.address.split(',')[0]} (private: your own session bus is left alone)")
    daemon = start_daemon(authority, bus, data_dir, services, interactive=interactive)
    say(f"daemon: python -m authbroker daemon (pid {daemon.pid}) owns {BUS_NAME}")
    say(f"its store: {data_dir / 'store.enc'} (key in a file beside it: no keyring here)")

    credential = _first_sign_in(authority, bus, daemon, services, interactive=interactive)
    stored = steps.call_storage(authority, credential)
    _second_credential(authority, daemon, interactive=interactive)

    step(8, "Proof-of-Possession: the credential calls a PoP resource with a Signed HTTP Request")
    pop.call_pop_resource(authority, credential)

    step(9, "Device identity: register, a token for any app from the PRT, browser SSO")
    device.device_sso(authority, bus)

    step(10, "Stopping the daemon, the bus and the authority")
    services.close()
    say("stopped; the demo's temporary files are removed on exit")
    if stored:
        print("\nDone: signed in once through the broker and used the token on Azurite storage.")
    else:
        print("\nDone: signed in once through the broker and verified the token.")
    return 0


def _first_sign_in(authority: AuthorityProcess, bus: PrivateBus, daemon: DaemonProcess,
                   services: ExitStack, *, interactive: bool) -> Any:
    """Steps 3 to 6 (up to the storage call): the credential, signed in through the daemon."""
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
        token = credential.get_token(steps.STORAGE_SCOPE).token
    except Exception as exc:
        problem = daemon.last_problem(_KNOWN_WARNING)
        raise steps.DemoError(f"sign-in failed: {type(exc).__name__}: {steps.first_line(exc)}"
                        + (f" (daemon: {problem})" if problem else "")) from None
    if Method.ACQUIRE_TOKEN_INTERACTIVELY.value not in daemon.served_calls():
        raise steps.DemoError("the token did not come from the broker daemon (no D-Bus sign-in)")
    say(f"backend: dbus; the daemon served {_served(daemon, 0)}")
    say(f"signed in as {default_account(bus)} (now the broker's default account)")

    step(4, "The access token's claims (decoded; the token itself is not shown)")
    steps.show_claims(token)

    step(5, "Verifying the token with the authority's signing keys (JWKS, PyJWT)")
    steps.verify_with_jwks(authority, token)

    step(6, "The seed's example: BlobServiceClient(account_url, credential=credential)")
    return credential


def _second_credential(authority: AuthorityProcess, daemon: DaemonProcess, *,
                       interactive: bool) -> None:
    """Step 7: a new credential on the broker's default account, without a browser."""
    step(7, "A new credential with use_default_broker_account=True: no second sign-in")
    sign_ins, before = daemon.sign_ins(), len(daemon.served_calls())
    with broker_credential(authority, use_default_broker_account=True) as second:
        second_token = second.get_token(steps.STORAGE_SCOPE).token
    claims = jwt.decode(second_token, options={"verify_signature": False})
    say(f"token for {claims.get('upn')}, aud {claims.get('aud')}")
    say(f"the daemon served {_served(daemon, before)} from the default account")
    if not interactive:
        if daemon.sign_ins() != sign_ins:
            raise steps.DemoError("the second credential opened the browser again")
        say("no browser was opened this time (the user agent signed in once in all)")
