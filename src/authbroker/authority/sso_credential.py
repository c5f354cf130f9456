"""The ``x-ms-RefreshTokenCredential`` at ``/authorize`` ([MS-OAPXBC] §3.2.5.2.1.3): a JWT
signed with a PRT's session key, sent as a header or a cookie of that name, that signs the
device's user in without a page.

:func:`evaluate` says what to do with one: sign in (signature, PRT and device good, nonce ours,
fresh and never used before — it is consumed), challenge (well signed but the nonce is stale,
unknown, replayed or missing: Entra's redirect with a fresh ``sso_nonce``), or ignore it (bad
signature, unknown PRT, disabled or deleted device: the spec says to continue as if it were
absent, i.e. the sign-in page).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from authbroker.authority.errors import EntraError
from authbroker.authority.prt import SessionRequest, session_request
from authbroker.authority.state import AuthorityState

log = logging.getLogger(__name__)

CREDENTIAL = "x-ms-RefreshTokenCredential"
SSO_NONCE = "sso_nonce"
MAX_CREDENTIAL = 16 * 1024


@dataclass(repr=False)
class Verdict:
    action: Literal["sign_in", "challenge", "ignore"]
    session: SessionRequest | None = None


def presented(request: web.Request) -> str | None:
    """The credential of this request: the header, else the cookie (None: none sent)."""
    value = request.headers.get(CREDENTIAL) or request.cookies.get(CREDENTIAL)
    if not value or len(value) > MAX_CREDENTIAL or not value.isascii():
        return None
    return value.strip()


def evaluate(st: AuthorityState, credential: str) -> Verdict:
    try:
        session = session_request(st, credential)
    except EntraError as exc:
        log.info("ignored an SSO credential (AADSTS%s)", exc.code)
        return Verdict("ignore")
    if not st.prt_nonces.consume(session.claims.get("request_nonce")):
        return Verdict("challenge", session)
    return Verdict("sign_in", session)


def challenge(st: AuthorityState, request: web.Request) -> web.Response:
    """302 to the same authorize URL with a fresh single-use ``sso_nonce`` added or replaced."""
    location = request.url.update_query({SSO_NONCE: st.prt_nonces.issue()})
    return web.Response(status=302, headers={"Location": str(location),
                                             "Cache-Control": "no-store"})


def challenged_before(st: AuthorityState, params: dict[str, str]) -> bool:
    """The request already carries an ``sso_nonce`` this authority issued (the loop guard: a
    credential that still fails gets the sign-in page, not another challenge)."""
    return st.prt_nonces.ours(params.get(SSO_NONCE))
