"""Token minting: the RS256 signing key (kept in the data directory), JWKS, and the JWTs.

Every token is minted fresh; nothing is served from a server-side token cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from authbroker.authority.directory import FAMILY_ID, User
from authbroker.authority.pki import write_private
from authbroker.authority.scopes import ScopeRequest


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SigningKey:
    """An RSA key persisted as ``signing-key.pem`` (0600); ``kid`` is its RFC 7638 thumbprint."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self.public_jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        canonical = json.dumps(
            {k: self.public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"),
            sort_keys=True,
        )
        self.kid = b64url(hashlib.sha256(canonical.encode()).digest())
        self.public_jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} is not an RSA key")
            return cls(loaded)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def client_info(user: User) -> str:
    return b64url(json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode())


def pairwise_sub(user: User, client_id: str) -> str:
    """Entra's ``sub`` is per user and application."""
    return b64url(hashlib.sha256(f"{user.oid}|{client_id}".encode()).digest())[:43]


@dataclass(frozen=True)
class Grant:
    """What a token response is minted from."""

    user: User
    client_id: str
    scopes: ScopeRequest
    auth_time: int
    nonce: str | None = None
    capabilities: tuple[str, ...] = ()
    family: bool = False  # the client is in the family of client ids: answer with "foci"
    cnf_kid: str | None = None  # a PoP request: the access token is bound to this key id
    amr: tuple[str, ...] = ("pwd",)  # how the person signed in (a PRT keeps the original)
    device_id: str | None = None  # minted from a PRT: the device's id (``deviceid`` claim)

    def device_claims(self) -> dict[str, Any]:
        """What a token minted from a PRT adds: ``deviceid``, ``amr``, ``auth_time``."""
        if self.device_id is None:
            return {}
        return {"deviceid": self.device_id, "amr": list(self.amr), "auth_time": self.auth_time}


class Minter:
    def __init__(self, key: SigningKey, lifetime: int) -> None:
        self.key = key
        self.lifetime = lifetime

    def issuer(self, base_url: str, tenant_id: str) -> str:
        return f"{base_url}/{tenant_id}/v2.0"

    def id_token(self, base_url: str, grant: Grant, now: int) -> str:
        user = grant.user
        claims: dict[str, Any] = {
            "aud": grant.client_id,
            "iss": self.issuer(base_url, user.tenant_id),
            "iat": now, "nbf": now, "exp": now + self.lifetime,
            "auth_time": grant.auth_time,
            "name": user.name,
            "oid": user.oid,
            "preferred_username": user.username,
            "sub": pairwise_sub(user, grant.client_id),
            "tid": user.tenant_id,
            "uti": b64url(uuid.uuid4().bytes),
            "ver": "2.0",
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(grant.device_claims())
        if grant.device_id is not None:  # [MS-OAPXBC] brokers read upn (or email) from it
            claims["email" if user.personal else "upn"] = user.username
        return self.key.sign(claims)

    def access_token(self, base_url: str, grant: Grant, now: int) -> str:
        user, scopes = grant.user, grant.scopes
        claims: dict[str, Any] = {
            "iat": now, "nbf": now, "exp": now + self.lifetime,
            "name": user.name,
            "oid": user.oid,
            "scp": " ".join(scopes.permissions) or "openid profile",
            "sub": pairwise_sub(user, grant.client_id),
            "tid": user.tenant_id,
            "uti": b64url(uuid.uuid4().bytes),
            "amr": list(grant.amr),
        }
        if scopes.azure_v1:
            assert scopes.resource is not None
            claims.update({
                "aud": scopes.resource,
                "iss": f"https://sts.windows.net/{user.tenant_id}/",
                "appid": grant.client_id, "appidacr": "0",
                "unique_name": user.username,
                "ver": "1.0",
            })
            claims["upn" if not user.personal else "email"] = user.username
            if user.personal:
                claims["idp"] = "live.com"
        else:
            claims.update({
                "aud": scopes.resource or grant.client_id,
                "iss": self.issuer(base_url, user.tenant_id),
                "azp": grant.client_id, "azpacr": "0",
                "preferred_username": user.username,
                "ver": "2.0",
            })
        if grant.capabilities:
            claims["xms_cc"] = list(grant.capabilities)
        if grant.cnf_kid is not None:
            claims["cnf"] = {"kid": grant.cnf_kid}
        claims.update(grant.device_claims())
        return self.key.sign(claims)

    def response(
        self, base_url: str, grant: Grant, *, refresh_token: str | None, with_client_info: bool,
    ) -> dict[str, Any]:
        now = int(time.time())
        body: dict[str, Any] = {
            "token_type": "Bearer" if grant.cnf_kid is None else "pop",
            "scope": grant.scopes.text,
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": self.access_token(base_url, grant, now),
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        if grant.scopes.openid:
            body["id_token"] = self.id_token(base_url, grant, now)
        if with_client_info:
            body["client_info"] = client_info(grant.user)
        if grant.family:
            body["foci"] = FAMILY_ID
        return body
