"""The server as a process: CLI contract, files, restart, discovery documents, load."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import jwt
import pytest
import requests

from authbroker.authority import DEMO_TENANT_ID, AuthorityConfig, serve
from fixtures.authority import TEST_CLIENT_ID, browser_sign_in, msal_app, start_authority

STORAGE = "https://storage.azure.com/.default"


def test_cli_prints_one_json_line_and_stops_cleanly_on_signals(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(
            [sys.executable, "-m", "authbroker", "authority", "--data-dir", str(tmp_path),
             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        info = json.loads(proc.stdout.readline())
        assert info["authority"] == f"https://127.0.0.1:{info['port']}"
        assert info["tenant_id"] == DEMO_TENANT_ID
        assert info["pid"] == proc.pid
        assert info["jwks_uri"].startswith(info["authority"])
        for key in ("ca_bundle", "ca_cert"):
            assert os.path.isfile(info[key])
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out == ""  # exactly one line on stdout; logs went to stderr
        assert "serving https://127.0.0.1:" in err


def test_short_token_lifetime_needs_the_test_switch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUTHBROKER_AUTHORITY_ALLOW_SHORT_TOKENS"}
    done = subprocess.run(
        [sys.executable, "-m", "authbroker", "authority", "--data-dir", str(tmp_path),
         "--port", "0", "--token-lifetime", "60"],
        capture_output=True, text=True, env=env, timeout=20)
    assert done.returncode == 2 and "at least 600" in done.stderr and done.stdout == ""


def test_secret_files_are_private_and_bundle_has_public_roots(authority):
    for name in ("server.key", "ca.key", "signing-key.pem"):
        mode = stat.S_IMODE((authority.data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    bundle = Path(authority.ca_bundle).read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 50
    assert bundle.rstrip().endswith(Path(authority.ca_cert).read_text().rstrip())
    # the machine's own trust store (with any proxy CA it holds) stays trusted through the bundle
    system = ssl.get_default_verify_paths().cafile
    if system and Path(system).exists():
        assert Path(system).read_text().strip() in bundle


def test_restart_reuses_ca_and_signing_key(tmp_path, authority):
    with start_authority(tmp_path) as first:
        ca1 = Path(first.ca_cert).read_text()
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
        session.verify = first.ca_cert
        keys1 = session.get(first.info["jwks_uri"], timeout=10).json()
        app = msal_app(first.authority, first.tenant_id, http_client=session)
        token = browser_sign_in(app, ["api://orders/read"], response_mode="form_post",
                                session=session)["access_token"]
    with start_authority(tmp_path) as second:
        assert Path(second.ca_cert).read_text() == ca1
        keys2 = session.get(second.info["jwks_uri"], timeout=10).json()  # old trust still works
        assert keys2 == keys1
        key = jwt.PyJWKSet.from_dict(keys2).keys[0]
        assert jwt.decode(token, key.key, algorithms=["RS256"], audience="api://orders")


@pytest.mark.parametrize("tenant, issuer_tenant", [
    (DEMO_TENANT_ID, DEMO_TENANT_ID), ("contoso.example", DEMO_TENANT_ID),
    ("organizations", "{tenantid}"), ("common", "{tenantid}"),
    ("consumers", "9188040d-6c67-4c5b-b112-36a304b66dad"),
])
def test_discovery_document_per_tenant(authority, tenant, issuer_tenant):
    doc = requests.get(authority.url(f"/{tenant}/v2.0/.well-known/openid-configuration"),
                       timeout=10).json()
    assert doc["issuer"] == f"{authority.authority}/{issuer_tenant}/v2.0"
    realm = DEMO_TENANT_ID if tenant == "contoso.example" else tenant
    for key, path in (("authorization_endpoint", "oauth2/v2.0/authorize"),
                      ("token_endpoint", "oauth2/v2.0/token"),
                      ("device_authorization_endpoint", "oauth2/v2.0/devicecode"),
                      ("jwks_uri", "discovery/v2.0/keys")):
        assert doc[key] == f"{authority.authority}/{realm}/{path}"
    assert "form_post" in doc["response_modes_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_instance_discovery_shape(authority):
    answer = requests.get(authority.url("/common/discovery/instance"), params={
        "api-version": "1.1",
        "authorization_endpoint": "https://127.0.0.1/organizations/oauth2/v2.0/authorize",
    }, timeout=10).json()
    assert answer["tenant_discovery_endpoint"] == authority.url(
        "/organizations/v2.0/.well-known/openid-configuration")
    assert "127.0.0.1" in answer["metadata"][0]["aliases"]
    # msal accepts it as its instance discovery endpoint
    app = msal_app(authority.authority, "organizations",
                   instance_discovery=authority.url("/common/discovery/instance"))
    flow = app.initiate_device_flow(scopes=[STORAGE])
    assert flow["verification_uri"] == authority.url("/devicelogin")
    log = (authority.data_dir.parent / "authority.log").read_text()
    assert "GET /common/discovery/instance 200" in log


def test_burst_of_parallel_requests_is_served(authority):
    base, tenant = authority.authority, authority.tenant_id

    async def burst() -> list[int]:
        ctx = ssl.create_default_context(cafile=authority.ca_cert)
        connector = aiohttp.TCPConnector(ssl=ctx, limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def one(i: int) -> int:
                kind = i % 4
                if kind == 0:
                    url = f"{base}/{tenant}/v2.0/.well-known/openid-configuration"
                    async with http.get(url) as r:
                        await r.json()
                        return r.status
                if kind == 1:
                    async with http.get(f"{base}/{tenant}/discovery/v2.0/keys") as r:
                        return r.status
                if kind == 2:
                    data = {"client_id": TEST_CLIENT_ID, "scope": f"{STORAGE} openid"}
                    async with http.post(f"{base}/{tenant}/oauth2/v2.0/devicecode",
                                         data=data) as r:
                        assert "device_code" in await r.json()
                        return r.status
                data = {"grant_type": "refresh_token", "client_id": TEST_CLIENT_ID,
                        "refresh_token": f"junk-{i}"}
                async with http.post(f"{base}/{tenant}/oauth2/v2.0/token", data=data) as r:
                    assert (await r.json())["error"] == "invalid_grant"
                    return r.status
            return await asyncio.gather(*(one(i) for i in range(200)))

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 150 and statuses.count(400) == 50
    # still healthy afterwards: a full sign-in
    app = msal_app(authority.authority, authority.tenant_id)
    assert "access_token" in browser_sign_in(app, [STORAGE], response_mode="form_post")


def test_in_process_serve_api(tmp_path):
    async def main() -> dict:
        async with serve(AuthorityConfig(data_dir=tmp_path, port=0)) as running:
            ctx = ssl.create_default_context(cafile=running.info["ca_cert"])
            async with aiohttp.ClientSession() as http, http.get(
                running.info["openid_configuration"], ssl=ctx
            ) as r:
                return await r.json()

    doc = asyncio.run(main())
    assert doc["issuer"].endswith(f"/{DEMO_TENANT_ID}/v2.0")


def test_unexpected_exception_becomes_entra_error_without_secrets(tmp_path, caplog):
    from aiohttp import web

    from authbroker.authority.app import create_app
    from authbroker.authority.directory import Clients, Directory
    from authbroker.authority.minting import Minter, SigningKey
    from authbroker.authority.state import AuthorityState

    caplog.set_level(logging.INFO, logger="authbroker.authority")

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("refresh_token=SECRET-VALUE")

    async def main() -> tuple[int, dict]:
        state = AuthorityState(Directory.demo(), Clients(),
                          Minter(SigningKey.load_or_create(tmp_path / "k.pem"), 3600))
        app = create_app(state)
        app.router.add_get("/boom", broken)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/boom?code=SECRET-CODE"
            ) as r:
                return r.status, await r.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(main())
    assert status == 500 and body["error"] == "server_error"
    assert body["error_description"].startswith("AADSTS50000:")
    assert "Traceback" not in json.dumps(body) and "SECRET" not in json.dumps(body)
    assert "RuntimeError" in caplog.text and "GET /boom 500" in caplog.text
    assert "SECRET" not in caplog.text


def test_users_file_replaces_the_demo_tenant(tmp_path, authority):
    tenant = "11111111-2222-3333-4444-555555555555"
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"tenant_id": tenant, "domain": "fabrikam.example", "users": [
        {"username": "ann@fabrikam.example", "password": "An0ther-secret", "name": "Ann"}]}))
    with start_authority(tmp_path, "--users", str(users), ca_from=authority) as own:
        assert own.tenant_id == tenant
        app = msal_app(own.authority, "fabrikam.example")
        result = browser_sign_in(app, [STORAGE], username="ann@fabrikam.example",
                                 password="An0ther-secret", response_mode="form_post")
        assert result["id_token_claims"]["tid"] == tenant
        assert result["id_token_claims"]["name"] == "Ann"
        with pytest.raises(AssertionError, match="password is incorrect"):
            browser_sign_in(msal_app(own.authority, tenant), [STORAGE],
                            response_mode="form_post")  # the demo user does not exist here
