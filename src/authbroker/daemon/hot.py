"""The hot memo: recent silent results by request key, answered without leaving the event loop."""

from __future__ import annotations

import time
from typing import NamedTuple

from authbroker import broker1
from authbroker.daemon.routing import split_claims

#: msal treats an access token with less than this many seconds left as expired.
HOT_MARGIN_S = 300.0
HOT_MAX_ENTRIES = 1024
#: SilentKey schemes.
BEARER, POP = "", "pop"

class SilentKey(NamedTuple):
    """What makes two silent requests the same. The client capabilities are part of it, so a
    CAE token is never served to a plain request, nor the other way round; so is the scheme
    (``""`` bearer, ``"pop:<kid>"`` a PoP-bound access token, ``"pop"`` a PoP request whose
    key is not known yet), so a PoP request is never served a bearer token, nor the other way
    round. A PoP entry is the access token; each caller signs its own SHR over it."""

    client_id: str
    authority: str
    home_account_id: str
    scopes: tuple[str, ...]  # lower case, sorted
    capabilities: tuple[str, ...]
    challenge: str | None
    scheme: str = BEARER

    @classmethod
    def of(cls, auth: broker1.AuthParameters, authority: str, home_account_id: str) -> SilentKey:
        """The request's key: a PoP request's (``popParams``) says ``"pop"`` until
        :meth:`bound` names its key."""
        claims = split_claims(auth.decoded_claims)
        scopes = tuple(sorted(s.lower() for s in auth.requested_scopes))
        return cls(auth.client_id, authority, home_account_id, scopes, claims.capabilities,
                   claims.challenge, POP if auth.pop_params is not None else BEARER)

    def bound(self, kid: str) -> SilentKey:
        """A PoP request's key once its key id is known: where its access token is kept."""
        return self._replace(scheme=f"{POP}:{kid}")


class HotTokens:
    """Recent silent results by request key, served while msal would serve them from its cache."""

    def __init__(self) -> None:
        self._tokens: dict[SilentKey, broker1.TokenResult] = {}

    def get(self, key: SilentKey) -> broker1.TokenResult | None:
        hot = self._tokens.get(key)
        if hot is not None and hot.expires_on - time.time() > HOT_MARGIN_S:
            return hot
        return None

    def keep(self, key: SilentKey, result: broker1.TokenResult) -> None:
        if len(self._tokens) >= HOT_MAX_ENTRIES:
            now = time.time()
            self._tokens = {
                k: v for k, v in self._tokens.items() if v.expires_on - now > HOT_MARGIN_S
            }
            if len(self._tokens) >= HOT_MAX_ENTRIES:
                self._tokens.clear()
        self._tokens[key] = result

    def forget_account(self, home_account_id: str) -> None:
        self._tokens = {
            k: v for k, v in self._tokens.items() if k.home_account_id != home_account_id
        }
