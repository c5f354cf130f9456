"""msal's answers as Broker1 results: a ``TokenResult``, or the ``BrokerStatusError`` they carry.

An error dict is status 2 when only a person signing in can help (``entra.INTERACTION_ERRORS``),
else 0, with the AADSTS number as ``errorCode``; an authority that cannot be reached names the
setting that points at it. No ``context`` ever holds a token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import msal
import requests

from authbroker import broker1, entra
from authbroker.daemon.routing import Target, unreachable_hint
from authbroker.errors import BrokerStatusError

# msal raises RedirectUriError when a broker's error text names these codes; the redirect URI
# in question is the daemon's, not the app's, so the text spells them differently.
_REDIRECT_CODES = re.compile(r"AADSTS(50011|7000218)")


def error_from_result(result: Mapping[str, Any], site: str) -> BrokerStatusError:
    """An msal error dict as a BrokerStatusError: 2 when a person must sign in, else 0."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "").strip()
    codes = result.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        code = codes[0]
    else:
        code = entra.aadsts_code(description)
    first_line = description.splitlines()[0] if description else ""
    context = _REDIRECT_CODES.sub(r"AADSTS-\1", f"{error}: {first_line}" if first_line else error)
    status = broker1.Status.UNEXPECTED
    if error in entra.INTERACTION_ERRORS:
        status = broker1.Status.INTERACTION_REQUIRED
    return BrokerStatusError(status, context[:1000], error_code=code, tag=site)


def unreachable(exc: BaseException, authority: str, site: str) -> BrokerStatusError:
    """An authority that cannot be reached, with a doctor-style hint naming the setting."""
    hint = unreachable_hint(authority)  # names the setting that would fix it
    if isinstance(exc, requests.exceptions.SSLError):
        what, status = "its TLS certificate is not trusted", broker1.Status.NO_NETWORK
        hint = "point REQUESTS_CA_BUNDLE at a bundle that includes the authority's CA"
    elif isinstance(exc, requests.exceptions.Timeout):
        what, status = "it did not answer in time", broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE
    elif isinstance(exc, requests.exceptions.ConnectionError):
        what, status = "the connection failed", broker1.Status.NO_NETWORK
    elif isinstance(exc, requests.exceptions.RequestException):
        what, status = "the request failed", broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE
    else:  # msal's ValueError("Unable to get authority configuration ...") and the like
        what, status = "it has no usable OpenID configuration", broker1.Status.UNEXPECTED
    return BrokerStatusError(
        status, f"cannot reach the authority {authority}: {what}; {hint}", tag=site
    )


def cached_id_token(
    app: msal.PublicClientApplication, target: Target, home_account_id: str
) -> str:
    """The id token msal keeps for an account and app (a refresh's answer may carry none)."""
    query = {
        "home_account_id": home_account_id,
        "environment": target.environment,
        "client_id": app.client_id,
    }
    kind = msal.TokenCache.CredentialType.ID_TOKEN
    for entry in app.token_cache.search(kind, query=query):
        return str(entry.get("secret") or "")
    return ""


def _client_info(
    result: Mapping[str, Any], id_claims: Mapping[str, Any], home_account_id: str | None
) -> str:
    """The answer's client_info, else one made from the id token's oid/tid or the account."""
    client_info = str(result.get("client_info") or "")
    if client_info:
        return client_info
    oid, tid = id_claims.get("oid") or id_claims.get("sub"), id_claims.get("tid")
    if not (oid and tid) and home_account_id and "." in home_account_id:
        oid, tid = home_account_id.split(".", 1)
    if not (oid and tid):
        raise BrokerStatusError(
            broker1.Status.UNEXPECTED,
            "the authority's answer names no account (no client_info, oid or tid)",
            tag="engine.no_account",
        )
    return entra.encode_client_info(str(oid), str(tid))


def token_result(
    result: Mapping[str, Any],
    requested_scopes: tuple[str, ...],
    app: msal.PublicClientApplication,
    target: Target,
    home_account_id: str | None = None,
) -> broker1.TokenResult:
    """An msal result as a wire TokenResult (or the BrokerStatusError it carries)."""
    if "error" in result:
        raise error_from_result(result, "engine.result")
    access_token = result.get("access_token")
    if not access_token:
        raise BrokerStatusError(
            broker1.Status.UNEXPECTED, "the authority returned no access token",
            tag="engine.no_at",
        )
    id_token = str(result.get("id_token") or "")
    id_claims = dict(result.get("id_token_claims") or {})
    if not id_token and home_account_id:
        id_token = cached_id_token(app, target, home_account_id)
    if id_token and not id_claims:
        id_claims = entra.id_token_claims(id_token)
    client_info = _client_info(result, id_claims, home_account_id)
    fields = entra.account_fields(id_claims, client_info, target.environment)
    now = time.time()
    expires_in = float(result.get("expires_in") or 3600)
    ext = float(result.get("ext_expires_in") or expires_in)
    return broker1.TokenResult(
        access_token=str(access_token),
        id_token=id_token,
        client_info=client_info,
        expires_on=now + expires_in,
        extended_expires_on=now + ext,
        granted_scopes=tuple(requested_scopes),
        account=broker1.Account(**fields) if fields else None,
    )
