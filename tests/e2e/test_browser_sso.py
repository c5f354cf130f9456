"""Browser SSO with headless Chromium: a web app on loopback sends the browser to the local
authority's authorize endpoint; with the daemon's SSO cookie (acquirePrtSsoCookie over D-Bus,
as browser SSO extensions get it) set for the authority's host, Chromium lands back at the app
signed in (a code the app redeems, the device id in its token) with no password page; without
the cookie the password page is shown; a spent cookie is challenged with ``sso_nonce`` and a
cookie signed for that nonce signs in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web

from authbroker.client import BrokerClient
from authbroker.devkit.browser import Chromium, chromium_path
from daemon.test_prt_bus import running  # noqa: F401 - the fixture: a daemon on a private bus
from daemon.test_prt_core import APP

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
COOKIE = "x-ms-RefreshTokenCredential"
PASSWORD_PAGE = "!!document.querySelector('input[type=password]')"


class WebApp:
    """A confidential-less web app: ``/`` starts a PKCE sign-in, ``/cb`` redeems the code."""

    def __init__(self, authority: str, tenant: str, ca_bundle: str) -> None:
        self.authority, self.tenant = authority, tenant
        self.tls = ssl.create_default_context(cafile=ca_bundle)
        self.verifier = secrets.token_urlsafe(48)
        self.base = ""
        self.claims: dict[str, object] = {}

    def authorize_url(self) -> str:
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        return f"{self.authority}/{self.tenant}/oauth2/v2.0/authorize?" + urlencode({
            "client_id": APP, "response_type": "code", "redirect_uri": f"{self.base}/cb",
            "scope": "openid profile", "code_challenge": challenge,
            "code_challenge_method": "S256", "state": "s1"})

    async def start(self, _: web.Request) -> web.Response:
        raise web.HTTPFound(self.authorize_url())

    async def callback(self, request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.post(
                f"{self.authority}/{self.tenant}/oauth2/v2.0/token", ssl=self.tls, data={
                    "grant_type": "authorization_code", "client_id": APP,
                    "code": request.query["code"], "redirect_uri": f"{self.base}/cb",
                    "code_verifier": self.verifier}) as resp:
            body = await resp.json()
        self.claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        return web.Response(text=f"signed in as {self.claims.get('upn', '?')}",
                            content_type="text/html")


async def _scenario(authority, server_cert: Path, device_id: str) -> None:
    app = WebApp(authority.authority, authority.tenant_id, authority.ca_bundle)
    site_app = web.Application()
    site_app.router.add_get("/", app.start)
    site_app.router.add_get("/cb", app.callback)
    runner = web.AppRunner(site_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    app.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    landed = f"location.href.startsWith('{app.base}/cb')"
    try:
        async with Chromium(trust=server_cert) as browser:
            await browser.navigate(app.base + "/")  # no cookie: the password page
            assert (await browser.wait_for(PASSWORD_PAGE)).startswith(authority.authority)

            with BrokerClient(timeout=60) as client:
                cookie = await asyncio.to_thread(
                    client.acquire_prt_sso_cookie, sso_url=app.authorize_url())
            await browser.set_cookie(authority.authority + "/", COOKIE, cookie.cookie_content)
            await browser.navigate(app.base + "/")
            url = await browser.wait_for(f"{landed} || {PASSWORD_PAGE}")
            assert url.startswith(f"{app.base}/cb?"), url
            assert parse_qs(urlsplit(url).query)["state"] == ["s1"]
            assert app.claims["deviceid"] == device_id

            await browser.navigate(app.base + "/")  # the same (spent) cookie: challenged
            url = await browser.wait_for(f"{landed} || {PASSWORD_PAGE}")
            assert not url.startswith(app.base), "a replayed cookie must not sign in"
            nonce = parse_qs(urlsplit(url).query)["sso_nonce"][0]
            with BrokerClient(timeout=60) as client:  # as an SSO extension: ask again for it
                answer = await asyncio.to_thread(client.acquire_prt_sso_cookie, sso_url=url)
            await browser.set_cookie(authority.authority + "/", COOKIE, answer.cookie_content)
            await browser.navigate(url)
            url = await browser.wait_for(f"{landed} || {PASSWORD_PAGE}")
            assert url.startswith(f"{app.base}/cb?"), url
            assert nonce and app.claims["deviceid"] == device_id
    finally:
        await runner.cleanup()


def test_chromium_signs_in_with_the_daemons_sso_cookie(running, authority) -> None:  # noqa: F811
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
    assert device.prt == "active"
    asyncio.run(_scenario(authority, Path(authority.info["server_cert"]), device.device_id))
