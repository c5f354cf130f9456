"""The demo's shared steps: the authority, trusting it, the claims, the JWKS check, storage, output.

Both paths (``authbroker.demo.broker`` and ``authbroker.demo.direct``) import these; nothing
here imports either path. Nothing secret is printed: a token only as its decoded claims.
"""

from __future__ import annotations

import os
import ssl
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from authbroker.devkit import azurite
from authbroker.devkit.processes import AuthorityProcess, StartError

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_AUDIENCE = "https://storage.azure.com"
_TIME_CLAIMS = ("iat", "nbf", "exp", "auth_time")


class DemoError(Exception):
    """A step failed; the message says which and why."""


def step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}", flush=True)


def say(text: str) -> None:
    print(f"    {text}", flush=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def start_authority(data_dir: Path, stack: ExitStack, timeout: float = 30.0) -> AuthorityProcess:
    """Run ``authbroker authority --port 0`` in ``data_dir`` until ``stack`` closes."""
    authority = AuthorityProcess(data_dir, log=data_dir / "authority.log", timeout=timeout)
    try:
        return stack.enter_context(authority)
    except StartError as exc:
        raise DemoError(str(exc)) from None


def trust_local_ca(authority: AuthorityProcess) -> None:
    """requests (msal) and azure-core read these; they replace the trust store (§4)."""
    os.environ.update(authority.trust_env())


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


def verify_with_jwks(authority: AuthorityProcess, token: str) -> None:
    """Check the signature, issuer, audience and lifetime against the authority's JWKS."""
    jwks_url = f"{authority.authority}/{authority.tenant_id}/discovery/v2.0/keys"
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


def call_storage(authority: AuthorityProcess, credential: Any) -> bool:
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
