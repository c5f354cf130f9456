"""``authbroker demo --no-broker``: azure-identity's InteractiveBrowserCredential signs in itself.

The sign-in opens the (scripted) browser from this process, without the broker daemon; it is
also the path taken when dbus-daemon is not installed.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from authbroker.demo import steps
from authbroker.demo.steps import say, step
from authbroker.devkit import useragent
from authbroker.devkit.processes import AuthorityProcess
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME


def use_scripted_browser(log_path: Path) -> None:
    """Point Python's webbrowser at the scripted user agent, signing in as the demo user."""
    os.environ.update(useragent.browser_env(
        log_path, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD))


def sign_in(authority: AuthorityProcess, *, interactive: bool) -> tuple[Any, str, str]:
    """InteractiveBrowserCredential against the local authority; (credential, user, token)."""
    from azure.identity import InteractiveBrowserCredential

    credential = InteractiveBrowserCredential(
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        login_hint=None if interactive else DEFAULT_USERNAME,
        timeout=300 if interactive else 60,
    )
    record = credential.authenticate(scopes=[steps.STORAGE_SCOPE])
    token = credential.get_token(steps.STORAGE_SCOPE).token  # from the cache, no second sign-in
    return credential, record.username, token


def run(interactive: bool, data_dir: Path, stack: ExitStack) -> int:
    """The sign-in without the broker: InteractiveBrowserCredential opens the browser itself."""
    step(1, "Starting the local authority (authbroker authority --port 0)")
    authority = steps.start_authority(data_dir, stack)
    say(f"authority: {authority.authority}")
    say(f"tenant:    {authority.tenant_id}")

    step(2, "Trusting its CA: REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE")
    steps.trust_local_ca(authority)
    say(f"bundle: {authority.ca_bundle} (public roots + the local CA)")

    step(3, f"Signing in {DEFAULT_USERNAME} with azure-identity's InteractiveBrowserCredential")
    ua_log = data_dir / "useragent.log"
    if interactive:
        say("your browser opens the sign-in page; it will warn about the local CA")
        say(f"({authority.ca_cert}). Sign in as {DEFAULT_USERNAME}, password {DEFAULT_PASSWORD}")
        say("(the well-known demo credential).")
    else:
        use_scripted_browser(ua_log)
        say("BROWSER=python -m authbroker.devkit.useragent (a scripted user agent fills the form)")
    try:
        credential, username, token = sign_in(authority, interactive=interactive)
    except Exception as exc:
        detail = ua_log.read_text().strip().splitlines()[-1:] if ua_log.exists() else []
        raise steps.DemoError(
            f"sign-in failed: {type(exc).__name__}: {steps.first_line(exc)}"
            + (f" (user agent: {detail[0]})" if detail else "")
        ) from None
    say(f"signed in as {username}")

    step(4, "The access token's claims (decoded; the token itself is not shown)")
    steps.show_claims(token)

    step(5, "Verifying the token with the authority's signing keys (JWKS, PyJWT)")
    steps.verify_with_jwks(authority, token)

    step(6, "Calling a protected resource with the token: Azurite blob storage")
    if steps.call_storage(authority, credential):
        print("\nDone: signed in offline and used the token on a protected resource.")
    else:
        print("\nDone: signed in offline and verified the token.")
    return 0
