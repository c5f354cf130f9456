"""A silent request as a PRT exchange, and the exchange's answer as msal's cached tokens.

What the exchange asks for (:func:`exchange_request`: the request's client id and scopes plus
``openid profile offline_access``, its ``decodedClaims``, and for a PoP request ``token_type``
``pop`` with the ``req_cnf`` of the account's PoP key), and where its answer goes
(:func:`cache_answer`): the client's msal partition of the account (its PoP one for a PoP
token, the access token recorded with the key's ``kid`` as msal's own PoP refresh does), the
refresh token it carries spread to the account's other partitions, so that the next call is a
memo or msal cache hit, and the refresh token serves the client from then on. Blocks (msal's
locks, the account's lock): the broker's executor.
"""

from __future__ import annotations

from typing import Any

from authbroker import broker1, shr
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.popkeys import PopKey
from authbroker.daemon.routing import msal_scopes, split_claims

#: What every exchange asks for besides the request's scopes (msal asks for them too).
OIDC_SCOPES = ("openid", "profile", "offline_access")


def exchange_request(auth: broker1.AuthParameters,
                     pop_key: PopKey | None) -> tuple[str, dict[str, Any]]:
    """The exchange's ``scope`` and its extra claims for ``auth``."""
    extra: dict[str, Any] = {}
    if auth.decoded_claims.strip():
        extra["claims"] = auth.decoded_claims
    if pop_key is not None:
        extra.update(token_type="pop", req_cnf=shr.req_cnf(pop_key.kid))
    return " ".join([*msal_scopes(auth.requested_scopes), *OIDC_SCOPES]), extra


def cache_answer(engine: TokenEngine, auth: broker1.AuthParameters, home_account_id: str,
                 response: dict[str, Any], pop_key: PopKey | None) -> broker1.TokenResult:
    """The exchange's answer added to the client's partition; the caller's result."""
    target = engine.target(auth)
    capabilities = split_claims(auth.decoded_claims).capabilities
    app, _router = engine.routed_app(auth.client_id, target, capabilities)
    scope = response.get("scope")
    event = {
        "client_id": auth.client_id,
        "scope": scope.split() if isinstance(scope, str) and scope
        else msal_scopes(auth.requested_scopes),
        # msal looks an access token up by the realm of its app's authority
        "token_endpoint": f"https://{target.environment}/{app.authority.tenant}/oauth2/v2.0/token",
        "environment": target.environment,
        "response": dict(response),
        "data": {"key_id": pop_key.kid} if pop_key is not None else {},
        "grant_type": "refresh_token",
    }
    pop = pop_key is not None
    with engine.account_lock(home_account_id):
        tokens = engine.tokens(home_account_id)
        tokens.get(capabilities, pop).add(event)
        tokens.spread(capabilities, target.environment, pop)
        engine.resident.touch(home_account_id)
    return engine.token_result(response, auth.requested_scopes, app, target, home_account_id)
