"""``authbroker demo``: sign in offline against the local authority and use the token.

By default the sign-in goes through the broker daemon on a private D-Bus bus
(``authbroker.demo.broker``); ``--no-broker`` signs in directly with azure-identity's
InteractiveBrowserCredential (the steps below). Nothing secret is printed: the token is shown
only as its decoded claims, and the only password ever printed is the documented demo
credential (with ``--interactive``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import selectors
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from authbroker.devkit import azurite
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_AUDIENCE = "https://storage.azure.com"
_TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")


class DemoError(Exception):
    """A step failed; the message says which and why."""


@dataclass
class Authority:
    url: str
    tenant_id: str
    ca_bundle: str
    ca_cert: str
    data_dir: Path


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="open your real browser for the sign-in instead of the scripted user agent",
    )
    parser.add_argument(
        "--no-broker",
        action="store_true",
        help="sign in directly with azure-identity's InteractiveBrowserCredential, without the "
        "broker daemon (the default when dbus-daemon is not installed)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the authority's data directory (default: a fresh temporary directory)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}", flush=True)


def say(text: str) -> None:
    print(f"    {text}", flush=True)


# --- the steps ------------------------------------------------------------------------------


def start_authority(data_dir: Path, stack: ExitStack, timeout: float = 30.0) -> Authority:
    """Run ``authbroker authority --port 0`` and read its JSON line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "authority.log", "ab") as log_file:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "authbroker", "authority", "--data-dir", str(data_dir),
             "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
        )  # fmt: skip
    stack.callback(azurite.stop_process, proc)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise DemoError(f"the authority did not start within {timeout:.0f} s")
    line = proc.stdout.readline()
    try:
        info = json.loads(line)
    except ValueError:
        raise DemoError(
            f"the authority did not start (exit {proc.poll()}); see {data_dir / 'authority.log'}"
        ) from None
    return Authority(
        info["authority"], info["tenant_id"], info["ca_bundle"], info["ca_cert"], data_dir
    )


def trust_local_ca(authority: Authority) -> None:
    """requests (msal) and azure-core read these; they replace the trust store (§4)."""
    os.environ["REQUESTS_CA_BUNDLE"] = authority.ca_bundle
    os.environ["CURL_CA_BUNDLE"] = authority.ca_bundle


def use_scripted_browser(log_path: Path) -> None:
    """Point Python's webbrowser at the scripted user agent, signing in as the demo user."""
    os.environ["BROWSER"] = f"{shlex.quote(sys.executable)} -m authbroker.devkit.useragent %s"
    os.environ["AUTHBROKER_UA_USERNAME"] = DEFAULT_USERNAME
    os.environ["AUTHBROKER_UA_PASSWORD"] = DEFAULT_PASSWORD
    os.environ["AUTHBROKER_UA_LOG"] = str(log_path)


def sign_in(authority: Authority, *, interactive: bool) -> tuple[Any, str, str]:
    """InteractiveBrowserCredential against the local authority; (credential, user, token)."""
    from azure.identity import InteractiveBrowserCredential

    credential = InteractiveBrowserCredential(
        authority=authority.url,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        login_hint=None if interactive else DEFAULT_USERNAME,
        timeout=300 if interactive else 60,
    )
    record = credential.authenticate(scopes=[STORAGE_SCOPE])
    token = credential.get_token(STORAGE_SCOPE).token  # from the cache, no second sign-in
    return credential, record.username, token


def show_claims(token: str) -> dict[str, Any]:
    """Print the access token's claims, decoded; never the token."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    say(f"header: alg={header.get('alg')} kid={header.get('kid')}")
    width = max(len(k) for k in claims)
    for key in sorted(claims):
        value = claims[key]
        if key in _TIME_CLAIMS and isinstance(value, int | float):
            value = f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
        say(f"{key:<{width}}  {value}")
    return claims


def verify_with_jwks(authority: Authority, token: str) -> None:
    """Check the signature, issuer, audience and lifetime against the authority's JWKS."""
    jwks_url = f"{authority.url}/{authority.tenant_id}/discovery/v2.0/keys"
    ctx = ssl.create_default_context(cafile=authority.ca_cert)
    key = jwt.PyJWKClient(jwks_url, ssl_context=ctx).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=STORAGE_AUDIENCE,
        issuer=f"https://sts.windows.net/{authority.tenant_id}/",
    )
    say(f"JWKS: {jwks_url}")
    say(f"RS256 signature valid (kid {key.key_id}); iss, aud and exp check out")
    say(f"token valid for another {int(claims['exp'] - time.time()) // 60} minutes")


def call_storage(authority: Authority, credential: Any) -> bool:
    """Create a container, upload and download a blob on Azurite; False if no Azurite."""
    if azurite.find_azurite() is None:
        say("Azurite is not installed here (`make node-deps` installs it), so this step is")
        say("skipped; the JWKS check above showed the token is genuine.")
        return False
    from azure.storage.blob import BlobServiceClient

    cert, key = authority.data_dir / "server.pem", authority.data_dir / "server.key"
    with azurite.run_azurite(cert, key) as server:
        say(f"Azurite blob service at {server.account_url} (--oauth basic, HTTPS)")
        service = BlobServiceClient(
            server.account_url, credential=credential, api_version=azurite.API_VERSION,
            retry_total=0,
        )  # fmt: skip
        name = f"demo-{uuid.uuid4().hex[:8]}"
        container = service.create_container(name)
        say(f"created container {name!r}")
        text = f"Hello from authbroker at {datetime.now(UTC):%H:%M:%S} UTC"
        container.upload_blob("hello.txt", text.encode())
        say("uploaded hello.txt")
        data = container.download_blob("hello.txt").readall().decode()
        if data != text:
            raise DemoError("the downloaded blob differs from the uploaded one")
        say(f"downloaded hello.txt: {data!r}")
        names = [b.name for b in container.list_blobs()]
        say(f"blobs in {name!r}: {', '.join(names)}")
    return True


# --- the command ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):  # the SDKs log every HTTP request at INFO
        for name in ("azure", "msal", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    print("authbroker demo: an offline sign-in against a local Entra-compatible authority")
    with ExitStack() as stack:
        if args.data_dir is not None:
            data_dir = Path(args.data_dir)
        else:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authbroker-")))
        try:
            return _run_steps(args, data_dir, stack)
        except DemoError as exc:
            print(f"\ndemo failed: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # a library error: name it, without a traceback
            print(f"\ndemo failed: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
            return 1


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _run_steps(args: argparse.Namespace, data_dir: Path, stack: ExitStack) -> int:
    if not args.no_broker:
        from authbroker.demo import broker as demo_broker

        if demo_broker.dbus_daemon() is not None:
            return demo_broker.run_broker_steps(args, data_dir, stack)
        print("dbus-daemon is not installed (scripts/install-system-deps.sh adds it), so the")
        print("broker daemon cannot run here: signing in directly instead (--no-broker).")
    return run_direct_steps(args, data_dir, stack)


def run_direct_steps(args: argparse.Namespace, data_dir: Path, stack: ExitStack) -> int:
    """The sign-in without the broker: InteractiveBrowserCredential opens the browser itself."""
    step(1, "Starting the local authority (authbroker authority --port 0)")
    authority = start_authority(data_dir, stack)
    say(f"authority: {authority.url}")
    say(f"tenant:    {authority.tenant_id}")

    step(2, "Trusting its CA: REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE")
    trust_local_ca(authority)
    say(f"bundle: {authority.ca_bundle} (public roots + the local CA)")

    step(3, f"Signing in {DEFAULT_USERNAME} with azure-identity's InteractiveBrowserCredential")
    ua_log = data_dir / "useragent.log"
    if args.interactive:
        say("your browser opens the sign-in page; it will warn about the local CA")
        say(f"({authority.ca_cert}). Sign in as {DEFAULT_USERNAME}, password {DEFAULT_PASSWORD}")
        say("(the well-known demo credential).")
    else:
        use_scripted_browser(ua_log)
        say("BROWSER=python -m authbroker.devkit.useragent (a scripted user agent fills the form)")
    try:
        credential, username, token = sign_in(authority, interactive=args.interactive)
    except Exception as exc:
        detail = ua_log.read_text().strip().splitlines()[-1:] if ua_log.exists() else []
        raise DemoError(
            f"sign-in failed: {type(exc).__name__}: {first_line(exc)}"
            + (f" (user agent: {detail[0]})" if detail else "")
        ) from None
    say(f"signed in as {username}")

    step(4, "The access token's claims (decoded; the token itself is not shown)")
    show_claims(token)

    step(5, "Verifying the token with the authority's signing keys (JWKS, PyJWT)")
    verify_with_jwks(authority, token)

    step(6, "Calling a protected resource with the token: Azurite blob storage")
    if call_storage(authority, credential):
        print("\nDone: signed in offline and used the token on a protected resource.")
    else:
        print("\nDone: signed in offline and verified the token.")
    return 0
