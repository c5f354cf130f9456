"""Accounts' PoP keys: what a PoP request asks for, the key that answers it, the SHR it signs.

Each account has one RSA-2048 key, made on its first PoP use and kept, as PEM, among the
account's partitions (``partitions.POP_KEY``), so the record store seals it with the account's
tokens and ``removeAccount`` deletes it with them. A :class:`PopKey` is that key parsed, with
its RFC 7638 thumbprint (the ``kid`` msal's ``req_cnf`` names and the access token's
``cnf.kid`` carries). A key never appears in a ``repr``, a log line or an exception.

:func:`pop_request` says what a token request's ``popParams`` ask for (the daemon's one place
for it): none or ``authenticationScheme: "bearer"`` is a bearer request; ``"pop"`` (the
default) is a PoP request whose HTTP method, host and path must be given; any other scheme
(``"mtls_pop"``) is refused. A client-held key (``kid``) is refused unless it is the account's
own (:meth:`PopKey.check_kid`).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker import broker1, shr
from authbroker.errors import BrokerStatusError

#: What msal's token request says for a PoP token (``token_type``).
POP_TOKEN_TYPE = "pop"
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_HOST = re.compile(r"[^\s/?#@]{1,255}")


@dataclass(frozen=True)
class PopKey:
    """An account's PoP key (never in a ``repr``) and its thumbprint."""

    key: rsa.RSAPrivateKey = field(repr=False)
    kid: str
    jwk: dict[str, str] = field(repr=False, compare=False)

    @classmethod
    def new(cls) -> PopKey:
        return cls.of(shr.new_key())

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey) -> PopKey:
        jwk = shr.public_jwk(key)
        return cls(key, shr.thumbprint(jwk), jwk)

    @classmethod
    def from_pem(cls, pem: str) -> PopKey:
        """ValueError if ``pem`` is not an RSA private key (the text is never repeated)."""
        try:
            return cls.of(shr.key_from_pem(pem))
        except (ValueError, TypeError):
            raise ValueError("the saved PoP key is unreadable") from None

    def to_pem(self) -> str:
        return shr.key_to_pem(self.key)

    def token_request_data(self) -> dict[str, str]:
        """msal's ``data`` for a PoP-bound access token: sent with the refresh (``token_type``,
        ``req_cnf``), and ``key_id``, which msal records on the token and looks it up by."""
        return {"token_type": POP_TOKEN_TYPE, "req_cnf": shr.req_cnf(self.kid),
                "key_id": self.kid}

    def sign(self, pop: broker1.PopParams, at: str | None = None) -> str:
        """A fresh Signed HTTP Request for ``pop``'s HTTP request (``at`` None: without one)."""
        return shr.sign(self.key, at=at, method=pop.http_method, host=pop.uri_host,
                        path=pop.uri_path, nonce=pop.nonce or None,
                        client_claims=pop.client_claims or None, jwk=self.jwk)

    def check_kid(self, pop: broker1.PopParams) -> None:
        """A client-held key (``popParams.kid``) is refused unless it is this very key."""
        if pop.kid and pop.kid != self.kid:
            raise BrokerStatusError(
                broker1.Status.UNEXPECTED,
                "PoP with a client-held key (popParams.kid) is not supported by authbroker: "
                "leave kid out and the broker signs with the account's own PoP key",
                tag="pop.kid",
            )

    def __repr__(self) -> str:
        return f"PopKey(kid={self.kid!r})"


def _refused(what: str, tag: str) -> BrokerStatusError:
    return BrokerStatusError(broker1.Status.UNEXPECTED, what, tag=tag)


def check_pop_params(pop: broker1.PopParams) -> broker1.PopParams:
    """``pop`` if it asks for a Proof-of-Possession token authbroker can sign (the HTTP
    request named), else the BrokerStatusError saying why not (status 0)."""
    if not pop.is_pop:
        raise _refused(
            f"Proof-of-Possession with authenticationScheme {pop.authentication_scheme!r} "
            "(e.g. mTLS PoP) is not supported by authbroker; ask for \"pop\" (a Signed HTTP "
            "Request) or \"bearer\"", "pop.scheme")
    missing = [name for name, value in (("httpMethod", pop.http_method),
                                        ("uriHost", pop.uri_host), ("uriPath", pop.uri_path))
               if not value]
    if missing:
        raise _refused(f"a PoP request needs popParams.{', popParams.'.join(missing)} (the "
                       "HTTP request the token is for)", "pop.params")
    if not _METHOD.fullmatch(pop.http_method):
        raise _refused("popParams.httpMethod is not an HTTP method", "pop.params")
    if not _HOST.fullmatch(pop.uri_host):
        raise _refused("popParams.uriHost must be host[:port] (no scheme, path or query)",
                       "pop.params")
    if not pop.uri_path.startswith("/") or len(pop.uri_path) > 4096:
        raise _refused("popParams.uriPath must be the path of the URL, starting with /",
                       "pop.params")
    return pop


def pop_request(auth: broker1.AuthParameters) -> broker1.AuthParameters:
    """``auth`` as served: a bearer request (``popParams`` null, or scheme ``"bearer"``:
    ``popParams`` dropped) or a PoP request whose ``popParams`` are checked."""
    pop = auth.pop_params
    if pop is None:
        return auth
    if pop.is_bearer:
        return dataclasses.replace(auth, pop_params=None)
    check_pop_params(pop)
    return auth


class PopKeys:
    """Accounts' parsed keys as last read from their partitions, for the event loop (a memo
    hit signs without going to the engine). Thread-safe."""

    def __init__(self) -> None:
        self._keys: dict[str, PopKey] = {}
        self._lock = threading.Lock()

    def get(self, home_account_id: str) -> PopKey | None:
        with self._lock:
            return self._keys.get(home_account_id)

    def keep(self, home_account_id: str, key: PopKey) -> None:
        with self._lock:
            self._keys[home_account_id] = key

    def forget(self, home_account_id: str) -> None:
        with self._lock:
            self._keys.pop(home_account_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


def pop_token(result: broker1.TokenResult, key: PopKey,
              pop: broker1.PopParams) -> broker1.TokenResult:
    """The caller's reply: ``result`` (a PoP-bound access token) with a fresh SHR for its
    HTTP request as the token, ``accessTokenType`` 1, the access token's expiry."""
    return dataclasses.replace(result, access_token=key.sign(pop, result.access_token),
                               access_token_type=broker1.AccessTokenType.POP)

