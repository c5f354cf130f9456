"""Pure Entra ID / msal facts that the daemon and the plugin both rely on (no I/O, no msal).

One rule per fact: how ``client_info`` is encoded, how an id_token's payload is read, which
account fields a sign-in's claims give, which OAuth errors only a person can fix, and how the
CAE capability (``xms_cc``) travels inside a claims request. The local authority keeps its own
copies on purpose: it is the other side of the protocol and must not share our assumptions.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: OAuth error codes after which only a person signing in can help.
INTERACTION_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "login_required", "consent_required"}
)
#: The client capability that asks for CAE tokens.
CAE_CAPABILITY = "CP1"
_AADSTS = re.compile(r"AADSTS(\d+)")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def encode_client_info(uid: str, utid: str) -> str:
    """The base64url ``{"uid", "utid"}`` blob Entra returns beside a token."""
    raw = json.dumps({"uid": uid, "utid": utid}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_client_info(client_info: str) -> tuple[str, str]:
    """``(uid, utid)`` of a client_info blob; ValueError when it is not one."""
    try:
        data = json.loads(_b64url_decode(client_info))
        return str(data["uid"]), str(data["utid"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError("clientInfo is not a base64url {uid, utid} object") from exc


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The id_token's payload, unverified (as msal reads it); ``{}`` when unreadable."""
    try:
        claims = json.loads(_b64url_decode(id_token.split(".")[1]))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def account_fields(
    claims: Mapping[str, Any], client_info: str, environment: str
) -> dict[str, str] | None:
    """The account a sign-in names, as ``broker1.Account`` keyword arguments, or None.

    msal's rule for the home account id: ``uid.utid`` of the client_info; without one (or with
    an unreadable one), ``oid.tid`` of the id_token. Names fall back to the display name split
    in two; the username is ``preferred_username``, else ``upn``, else ``email``.
    """
    uid = utid = ""
    if client_info:
        try:
            uid, utid = decode_client_info(client_info)
        except ValueError:
            uid = utid = ""
    if not uid:
        uid = str(claims.get("oid") or claims.get("sub") or "")
        utid = str(claims.get("tid") or "")
    if not uid:
        return None
    name = str(claims.get("name") or "")
    first, _, rest = name.partition(" ")
    return {
        "home_account_id": f"{uid}.{utid}" if utid else uid,
        "local_account_id": str(claims.get("oid") or uid),
        "realm": str(claims.get("tid") or utid),
        "username": str(
            claims.get("preferred_username") or claims.get("upn") or claims.get("email") or ""
        ),
        "environment": environment,
        "name": name,
        "given_name": str(claims.get("given_name") or first),
        "family_name": str(claims.get("family_name") or rest),
        "client_info": client_info or (encode_client_info(uid, utid) if utid else ""),
    }


def aadsts_code(description: str) -> int:
    """The AADSTS number in an error description (0 when there is none)."""
    match = _AADSTS.search(description)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True)
class Claims:
    """A claims request split into client capabilities (``xms_cc``) and a real challenge."""

    capabilities: tuple[str, ...] = ()
    challenge: str | None = None


@functools.lru_cache(maxsize=256)  # pure, and asked on every silent call; Claims is frozen
def split_claims(decoded: str) -> Claims:
    """``xms_cc`` becomes the capabilities (CP1); the rest is a challenge. ValueError: not JSON."""
    if not decoded.strip():
        return Claims()
    try:
        claims = json.loads(decoded)
    except ValueError:
        raise ValueError("decodedClaims is not JSON") from None
    if not isinstance(claims, dict):
        return Claims(challenge=decoded)
    capabilities: tuple[str, ...] = ()
    access = claims.get("access_token")
    if isinstance(access, dict) and isinstance(access.get("xms_cc"), dict):
        values = access["xms_cc"].get("values") or []
        capabilities = tuple(sorted(str(v) for v in values))
        access = {k: v for k, v in access.items() if k != "xms_cc"}
        claims = dict(claims, access_token=access) if access else {
            k: v for k, v in claims.items() if k != "access_token"
        }
    return Claims(capabilities, json.dumps(claims) if claims else None)


def merge_claims(challenge: str | None, *, enable_cae: bool) -> str:
    """A challenge deep-merged with the CP1 capability when CAE is on (JSON text, or "")."""
    merged: dict[str, Any] = {}
    if enable_cae:
        merged = {"access_token": {"xms_cc": {"values": [CAE_CAPABILITY]}}}
    if challenge:
        merged = _deep_merge(merged, json.loads(challenge))
    return json.dumps(merged, separators=(",", ":")) if merged else ""


def _deep_merge(left: dict[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(left)
    for key, value in right.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
