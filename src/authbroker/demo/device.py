"""The demo's device step: register this machine through the broker, get a token for an app
outside the family silently from the Primary Refresh Token, sign a browser request in at the
authorize endpoint with the broker's SSO cookie, then unregister. Only ids and claims are shown,
never the PRT, the cookie or a key."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests

from authbroker import broker1
from authbroker.demo.steps import DemoError, say
from authbroker.devkit.privatebus import PrivateBus
from authbroker.devkit.processes import AuthorityProcess

#: An app id outside the family: without a device it would need a sign-in of its own.
OTHER_APP = "b1c2d3e4-0f1a-4b2c-8d3e-5f6a7b8c9d0e"
SCOPE = "https://storage.azure.com/.default"
COOKIE = "x-ms-RefreshTokenCredential"


def _authorize_url(authority: AuthorityProcess) -> str:
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(secrets.token_urlsafe(48).encode()).digest()).rstrip(b"=").decode()
    return f"{authority.authority}/{authority.tenant_id}/oauth2/v2.0/authorize?" + urlencode({
        "client_id": OTHER_APP, "response_type": "code", "scope": "openid profile",
        "redirect_uri": "http://localhost:8400/", "code_challenge": challenge,
        "code_challenge_method": "S256", "state": "demo"})


def device_sso(authority: AuthorityProcess, bus: PrivateBus) -> None:
    """Register, a PRT-served token, a cookie sign-in, unregister (DemoError if not so)."""
    from authbroker.client import BrokerClient

    with BrokerClient(bus=bus.address, timeout=120) as client:
        device = client.register_device(on_device_code=None)
        say(f"registered: device {device.device_id} in tenant {device.tenant_id}, "
            f"PRT {device.prt}")
        account = client.get_default_account()
        if account is None:
            raise DemoError("no default account after registration")
        token = client.acquire_token_silently(broker1.AuthParameters(
            client_id=OTHER_APP, requested_scopes=(SCOPE,),
            authority=f"https://127.0.0.1/{authority.tenant_id}", account=account))
        claims = jwt.decode(token.access_token, options={"verify_signature": False})
        if claims.get("deviceid") != device.device_id:
            raise DemoError("the token for the other app does not name the device")
        say(f"app {OTHER_APP[:8]}… (not in the family) got a token silently from the PRT: "
            f"appid {claims.get('appid', '')[:8]}…, deviceid {claims['deviceid'][:8]}…")
        url = _authorize_url(authority)
        cookie = client.acquire_prt_sso_cookie(account, sso_url=url)
        answer = requests.get(url, cookies={COOKIE: cookie.cookie_content},
                              allow_redirects=False, timeout=10)
        where = answer.headers.get("Location", "")
        if answer.status_code != 302 or "code" not in parse_qs(urlsplit(where).query):
            raise DemoError(f"the SSO cookie did not sign in ({answer.status_code})")
        say(f"GET authorize with the {COOKIE} cookie: 302 to the app with a code, no password "
            "page")
        gone = client.unregister_device()
        say("unregistered: deleted at the authority" if gone.deleted_at_authority
            else f"unregistered locally ({gone.reason})")
