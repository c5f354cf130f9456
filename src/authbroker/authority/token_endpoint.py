"""The machine side: ``/{tenant}/oauth2/v2.0/token`` and its v1 twin ``/{tenant}/oauth2/token``
(authorization_code with PKCE S256, refresh_token with rotation and family refresh tokens,
device_code; [MS-OAPXBC] srv_challenge and the jwt-bearer PRT request and exchange, which carry
no client_id form field) and ``/{tenant}/oauth2/v2.0/devicecode``."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from aiohttp import web

from authbroker.authority import errors, prt, prt_exchange, prt_grant
from authbroker.authority.flows import DeviceRecord, RefreshRecord
from authbroker.authority.minting import Grant, b64url
from authbroker.authority.pop_request import requested_cnf
from authbroker.authority.scopes import (
    ScopeRequest,
    client_capabilities,
    parse_claims,
    parse_scopes,
)
from authbroker.authority.state import AuthorityState, authority_of

log = logging.getLogger(__name__)

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def read_form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise errors.malformed_request("the body must be application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError):
        raise errors.malformed_request("the form body cannot be decoded") from None
    out: dict[str, str] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            raise errors.malformed_request("file uploads are not accepted")
        out.setdefault(key, value)
    return out


def _require(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise errors.missing_parameter(name)
    return value


def _client(st: AuthorityState, request: web.Request, form: dict[str, str]) -> str:
    if ("client_secret" in form or "client_assertion" in form
            or request.headers.get("Authorization", "").lower().startswith("basic ")):
        raise errors.confidential_client_unsupported()
    client_id = _require(form, "client_id")
    st.check_client(client_id)
    return client_id


def _capabilities(*claims: dict[str, Any]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for claim in claims for c in client_capabilities(claim)))


def _verify_pkce(challenge: str, verifier: str | None) -> None:
    if not verifier:
        raise errors.pkce_missing()
    computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    if not (43 <= len(verifier) <= 128) or not hmac.compare_digest(computed, challenge):
        raise errors.pkce_mismatch()


def _respond(
    st: AuthorityState, grant: Grant, *, chain: str | None, form: dict[str, str],
) -> web.Response:
    """Mint the answer; with a chain, also a refresh token in it (a family refresh token when
    the client is a family member)."""
    refresh_token = None
    if chain is not None:
        refresh_token = st.flows.issue_refresh(RefreshRecord(
            chain=chain, client_id=grant.client_id, user=grant.user,
            scope=grant.scopes.text, auth_time=grant.auth_time, family=grant.family,
        ))
    body = st.minter.response(
        st.base_url, grant, refresh_token=refresh_token,
        with_client_info=form.get("client_info") == "1",
    )
    return web.json_response(body, headers=NO_STORE)


def _scopes(form: dict[str, str], fallback: str) -> ScopeRequest:
    return parse_scopes(form.get("scope") or fallback)


def _refresh(st: AuthorityState, form: dict[str, str], client_id: str,
             claims: dict[str, Any], cnf_kid: str | None) -> web.Response:
    requested = parse_scopes(form["scope"]) if form.get("scope") else None  # before spending
    family = st.clients.in_family(client_id)
    old = st.flows.redeem_refresh(_require(form, "refresh_token"), client_id,
                                  family_member=family)
    grant = Grant(old.user, client_id, requested or parse_scopes(old.scope), old.auth_time,
                  capabilities=_capabilities(claims), family=family, cnf_kid=cnf_kid)
    return _respond(st, grant, chain=old.chain, form=form)


def _jwt_bearer(st: AuthorityState, form: dict[str, str]) -> web.Response:
    """The PRT request (device-signed, JSON answer) or the PRT exchange (session-signed,
    encrypted answer)."""
    request_jwt = _require(form, "request")
    if prt.request_kind(request_jwt) == "prt":
        return web.json_response(prt_grant.prt_request(st, request_jwt), headers=NO_STORE)
    return web.Response(text=prt_exchange.exchange(st, request_jwt),
                        content_type="application/jose", headers=NO_STORE)


async def token(request: web.Request) -> web.Response:
    st = authority_of(request)
    st.tenant(request.match_info["tenant"])
    form = await read_form(request)
    grant_type = _require(form, "grant_type")
    if grant_type == prt.SRV_CHALLENGE:
        return web.json_response(prt.srv_challenge(st), headers=NO_STORE)
    if grant_type == prt.JWT_BEARER:
        return _jwt_bearer(st, form)
    if grant_type not in ("authorization_code", "refresh_token", DEVICE_CODE_GRANT):
        raise errors.unsupported_grant(grant_type)
    client_id = _client(st, request, form)
    claims = parse_claims(form.get("claims"))
    cnf_kid = requested_cnf(form)  # before any code or refresh token is spent
    if grant_type == "refresh_token":
        return _refresh(st, form, client_id, claims, cnf_kid)
    family = st.clients.in_family(client_id)
    if grant_type == "authorization_code":
        code = st.flows.redeem_code(_require(form, "code"), client_id)
        if form.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            raise errors.redirect_mismatch(form["redirect_uri"][:300])
        _verify_pkce(code.code_challenge, form.get("code_verifier"))
        scopes = _scopes(form, code.scope)
        grant = Grant(code.user, client_id, scopes, code.auth_time, nonce=code.nonce,
                      capabilities=_capabilities(code.claims, claims), family=family,
                      cnf_kid=cnf_kid, amr=code.amr, device_id=code.device_id)
        code.chain = st.flows.new_chain() if scopes.offline else None
        return _respond(st, grant, chain=code.chain, form=form)
    device_code = form.get("device_code") or form.get("code") or ""
    if not device_code:
        raise errors.missing_parameter("device_code")
    device = st.flows.poll_device(device_code, client_id)
    assert device.user is not None
    scopes = parse_scopes(device.scope)
    grant = Grant(device.user, client_id, scopes, device.auth_time,
                  capabilities=_capabilities(device.claims, claims), family=family,
                  cnf_kid=cnf_kid)
    return _respond(st, grant, chain=st.flows.new_chain() if scopes.offline else None,
                    form=form)


async def devicecode(request: web.Request) -> web.Response:
    st = authority_of(request)
    segment = request.match_info["tenant"]
    st.tenant(segment)
    form = await read_form(request)
    client_id = _client(st, request, form)
    scope = _require(form, "scope")
    parse_scopes(scope)
    claims = parse_claims(form.get("claims"))
    user_code = st.flows.new_user_code()
    device_code = st.flows.issue_device_code(DeviceRecord(
        client_id=client_id, user_code=user_code, scope=scope, claims=claims,
        tenant_segment=segment,
    ))
    uri = f"{st.base_url}/devicelogin"
    return web.json_response({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "verification_uri_complete": f"{uri}?user_code={user_code}",
        "expires_in": st.flows.device_code_lifetime,
        "interval": st.device_interval,
        "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                   f"{user_code} to authenticate.",
    }, headers=NO_STORE)
