"""The PRT exchange ([MS-OAPXBC] §3.2.5.1.3) and renewal (§2.5 of docs/device-identity.md): a
JWT signed with a key derived from the PRT's session key asks for tokens for any client the
directory allows (family or not); the answer is an ordinary token response encrypted with the
session key (compact JWE, ``application/jose``).

The tokens carry ``deviceid`` and the PRT's original ``amr``/``auth_time``; the client also gets
a refresh token of its own (a new chain). With ``aza`` in the scope the answer's
``refresh_token`` is instead a new PRT (same session key; the old one lives 60 s more).
"""

from __future__ import annotations

import logging
from typing import Any

from authbroker import devicecrypto
from authbroker.authority import errors
from authbroker.authority.flows import RefreshRecord
from authbroker.authority.minting import Grant
from authbroker.authority.pop_request import requested_cnf
from authbroker.authority.prt import (
    SessionRequest,
    check_times,
    claim_text,
    nonce_checked,
    session_request,
    split_scopes,
)
from authbroker.authority.state import AuthorityState

log = logging.getLogger(__name__)


def _scope_text(claims: dict[str, Any]) -> str:
    """``scope`` (v2), else ``resource`` (v1) as its ``.default``."""
    scope = claim_text(claims, "scope", required=False)
    if scope:
        return scope
    resource = claim_text(claims, "resource", required=False)
    if not resource:
        raise errors.missing_parameter("scope")
    return f"{resource.rstrip('/')}/.default"


def _pop_kid(claims: dict[str, Any]) -> str | None:
    """``token_type: pop`` + ``req_cnf`` in the claims, read as the PoP form fields are."""
    fields: dict[str, str] = {}
    for name in ("token_type", "req_cnf"):
        if name in claims:
            fields[name] = claim_text(claims, name)
    return requested_cnf(fields)


def _grant(st: AuthorityState, req: SessionRequest) -> tuple[Grant, bool]:
    claims = req.claims
    if claim_text(claims, "grant_type") != "refresh_token":
        raise errors.unsupported_grant(str(claims.get("grant_type"))[:80])
    check_times(claims)
    nonce_checked(st, claims)
    client_id = claim_text(claims, "client_id")
    st.check_client(client_id)
    redirect_uri = claim_text(claims, "redirect_uri", required=False)
    if redirect_uri and not st.clients.redirect_allowed(client_id, redirect_uri):
        raise errors.bad_redirect_uri(redirect_uri[:300], client_id[:100])
    scopes, renew = split_scopes(_scope_text(claims))
    cnf_kid = _pop_kid(claims)
    user = st.directory.user(req.record.username)
    if user is None:
        raise errors.prt_invalid()  # the user left the directory
    grant = Grant(user, client_id, scopes, req.record.auth_time,
                  family=st.clients.in_family(client_id), cnf_kid=cnf_kid,
                  amr=req.record.amr, device_id=req.record.device_id)
    return grant, renew


def exchange(st: AuthorityState, token: str) -> str:
    """Tokens from a PRT; returns the encrypted response (compact JWE)."""
    req = session_request(st, token)
    grant, renew = _grant(st, req)
    if renew:
        refresh_token = st.prts.renew(req.prt)
    else:
        refresh_token = st.flows.issue_refresh(RefreshRecord(
            chain=st.flows.new_chain(), client_id=grant.client_id, user=grant.user,
            scope=grant.scopes.text, auth_time=grant.auth_time, family=grant.family,
        ))
    body = st.minter.response(st.base_url, grant, refresh_token=refresh_token,
                              with_client_info=True)
    if renew:
        record = st.prts.lookup(refresh_token)
        assert record is not None
        body["refresh_token_expires_in"] = st.prts.lifetime
        log.info("renewed a PRT of device %s", record.device_id)
    return devicecrypto.encrypt_response(body, req.record.session_key)
