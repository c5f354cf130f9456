"""Microsoft's unmodified pymsalruntime 0.20.7, driven directly with ``popParams`` (as third-party
Broker1 clients do), gets Signed HTTP Requests from our daemon on a private bus with the local
authority: ``is_pop_authorization()``, the header ``pop <shr>``, each SHR verified here with PyJWT
(its signature with its ``cnf.jwk``, that key's thumbprint the access token's ``cnf.kid``, m, u,
p and nonce) and accepted by the authority's PoP-protected demo resource, which refuses the same
SHR replayed against another path."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from jwt.algorithms import RSAAlgorithm

from authbroker import shr
from fixtures.authority import AuthorityProcess
from fixtures.daemon import DaemonProcess, daemon_env

if importlib.util.find_spec("pymsalruntime") is None:  # importing it would ping the bus
    pytest.skip("pymsalruntime is not installed", allow_module_level=True)

CALLER = Path(__file__).parent / "pop_pymsalruntime_caller.py"
CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def broker(authority, dbus_session, secret_service,
           tmp_path: Path) -> Iterator[tuple[AuthorityProcess, dict[str, str]]]:
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UI=None)
    with DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc"):
        yield authority, env


def challenge(url: str) -> str:
    """The resource's nonce, from its 401 ``WWW-Authenticate: PoP nonce="…"``."""
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 401
    found = re.search(r'nonce="([^"]+)"', answer.headers["WWW-Authenticate"])
    assert found, answer.headers["WWW-Authenticate"]
    return found.group(1)


def run(authority: AuthorityProcess, env: dict[str, str], scope: str,
        *steps: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(CALLER), f"https://127.0.0.1/{authority.tenant_id}", CLIENT_ID,
         scope, *steps], capture_output=True, text=True, env=dict(env, BROWSER=env["BROWSER"]),
        timeout=180)
    assert proc.returncode == 0, f"caller failed:\n{proc.stderr[-3000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def verified(header: str, method: str, host: str, path: str, nonce: str) -> dict[str, Any]:
    """The SHR of ``pop <shr>``, checked independently: signature, thumbprint, m/u/p/nonce."""
    scheme, _, token = header.partition(" ")
    assert scheme == "pop"
    unverified = jwt.decode(token, options={"verify_signature": False})
    jwk = unverified["cnf"]["jwk"]
    key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    payload: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"])  # type: ignore[arg-type]
    kid = shr.thumbprint(jwk)
    assert jwt.get_unverified_header(token)["kid"] == kid
    at = jwt.decode(payload["at"], options={"verify_signature": False})
    assert at["cnf"]["kid"] == kid
    assert (payload["m"], payload["u"], payload["p"], payload["nonce"]) == (
        method, host, path, nonce)
    return payload


def test_pymsalruntime_gets_signed_http_requests_the_resource_accepts(broker) -> None:
    authority, env = broker
    url = authority.pop_resource
    parts = urlsplit(url)
    host, path = parts.netloc, parts.path
    nonces = [challenge(url) for _ in range(3)]
    steps = [f"interactive,GET,{host},{path},{nonces[0]}",
             f"silent,GET,{host},{path},{nonces[1]}",
             f"silent,GET,{host},{path},{nonces[2]}"]
    results = run(authority, env, authority.pop_resource_scope, *steps)
    assert [r["error"] for r in results] == [None, None, None], results
    assert all(r["is_pop"] for r in results)
    payloads = [verified(r["header"], "GET", host, path, n)
                for r, n in zip(results, nonces, strict=True)]
    assert len({p["at"] for p in payloads}) == 1  # one bound access token, three SHRs
    assert len({r["header"] for r in results}) == 3
    first = results[0]["header"].partition(" ")[2]
    answer = requests.get(url, headers={"Authorization": f"PoP {first}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    replayed = requests.get(url + "/elsewhere",
                            headers={"Authorization": f"PoP {results[1]['header'].split()[1]}"},
                            timeout=10)
    assert replayed.status_code == 401  # the SHR names its path


def test_pymsalruntime_bearer_request_after_a_pop_one_gets_a_bearer_token(broker) -> None:
    """The same process asking without PoP afterwards is never handed a PoP token."""
    authority, env = broker
    parts = urlsplit(authority.pop_resource)
    pop, bearer = run(authority, env, authority.pop_resource_scope,
                      f"interactive,GET,{parts.netloc},{parts.path},n0", "bearer,,,,")
    assert pop["error"] is None and pop["is_pop"], pop
    assert bearer["error"] is None and not bearer["is_pop"], bearer
    assert "cnf" not in jwt.decode(bearer["at"], options={"verify_signature": False})
    assert bearer["at"] != verified(pop["header"], "GET", parts.netloc, parts.path, "n0")["at"]
