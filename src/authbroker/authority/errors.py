"""Entra-style OAuth errors: ``error``, ``error_description: "AADSTSnnnnn: ..."`` and friends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


class EntraError(Exception):
    """An OAuth error answered as Entra does. The message must never contain a secret."""

    def __init__(
        self, error: str, code: int, description: str, *, status: int = 400,
        suberror: str | None = None, additional_info: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{error} AADSTS{code}")
        self.error = error
        self.code = code
        self.description = description
        self.status = status
        self.suberror = suberror
        self.additional_info = additional_info

    def body(self, correlation_id: str | None = None) -> dict[str, Any]:
        now = datetime.now(UTC)
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {now:%Y-%m-%d %H:%M:%SZ}"
            ),
            "error_codes": [self.code],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        if self.additional_info:
            body["error_additional_info"] = list(self.additional_info)
        return body


# The errors this authority answers with, named by what went wrong.
def missing_parameter(name: str) -> EntraError:
    return EntraError(
        "invalid_request", 900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def malformed_request(detail: str) -> EntraError:
    return EntraError("invalid_request", 90014, f"The request is malformed: {detail}.")


def unknown_tenant(segment: str) -> EntraError:
    return EntraError(
        "invalid_tenant", 90002,
        f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud.",
    )


def bad_redirect_uri(redirect_uri: str, client_id: str) -> EntraError:
    return EntraError(
        "invalid_request", 50011,
        f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
        f"URIs configured for the application '{client_id}'.",
    )


def unknown_client(client_id: str) -> EntraError:
    return EntraError(
        "invalid_client", 700016,
        f"Application with identifier '{client_id}' was not found in the directory.",
        status=401,
    )


def confidential_client_unsupported() -> EntraError:
    return EntraError(
        "invalid_client", 7000215,
        "Invalid client secret provided. This authority only serves public clients.",
        status=401,
    )


def unsupported_grant(grant_type: str) -> EntraError:
    return EntraError(
        "unsupported_grant_type", 70003,
        f"The app requested an unsupported grant type '{grant_type[:80]}'.",
    )


def invalid_code() -> EntraError:
    return EntraError(
        "invalid_grant", 70000,
        "The provided value for the 'code' parameter is not valid.",
    )


def code_redeemed() -> EntraError:
    return EntraError(
        "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry "
        "with a new valid code or use an existing refresh token.",
    )


def code_expired() -> EntraError:
    return EntraError(
        "invalid_grant", 70008,
        "The provided authorization code or refresh token has expired due to inactivity. "
        "Send a new interactive authorization request for this user and resource.",
    )


def pkce_missing() -> EntraError:
    return EntraError(
        "invalid_request", 501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request: 'code_verifier' is required (PKCE S256).",
    )


def pkce_mismatch() -> EntraError:
    return EntraError(
        "invalid_grant", 50148,
        "The code_verifier provided does not match the code_challenge supplied in the "
        "authorization request for PKCE.",
    )


def redirect_mismatch(redirect_uri: str) -> EntraError:
    return EntraError(
        "invalid_grant", 50011,
        f"The redirect URI '{redirect_uri}' does not match the redirect URI used in the "
        "authorization request.",
    )


def client_mismatch() -> EntraError:
    return EntraError(
        "invalid_grant", 70000,
        "The provided grant was issued to a different client.",
    )


def refresh_token_other_client() -> EntraError:
    """A refresh token presented by a client it was not issued to, when the two are not both
    in the family. msal reads ``client_mismatch`` in ``error_additional_info`` as "this app is
    not in the family" and stops trying family refresh tokens."""
    return EntraError(
        "invalid_grant", 700007, "The grant was issued for a different client id.",
        suberror="client_mismatch", additional_info=("client_mismatch",),
    )


def refresh_token_invalid() -> EntraError:
    return EntraError(
        "invalid_grant", 9002313,
        "Invalid request. The refresh token is malformed or unknown.",
    )


def refresh_token_reused() -> EntraError:
    return EntraError(
        "invalid_grant", 70008,
        "The refresh token has already been redeemed (refresh tokens rotate); all tokens of "
        "this sign-in have been revoked. Send a new interactive authorization request.",
        suberror="bad_token",
    )


def refresh_token_revoked() -> EntraError:
    return EntraError(
        "invalid_grant", 50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
        suberror="bad_token",
    )


def authorization_pending() -> EntraError:
    return EntraError(
        "authorization_pending", 70016,
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    )


def device_code_expired() -> EntraError:
    return EntraError(
        "expired_token", 70020,
        "The provided value for the input parameter 'device_code' is not valid. This device "
        "code has expired.",
    )


def invalid_device_code() -> EntraError:
    return EntraError(
        "invalid_grant", 70000,
        "The provided value for the input parameter 'device_code' is not valid.",
    )


def several_resources() -> EntraError:
    return EntraError(
        "invalid_scope", 28000,
        "Provided value for the input parameter scope is not valid because it contains more "
        "than one resource.",
    )


def invalid_claims() -> EntraError:
    return EntraError(
        "invalid_request", 90100, "The 'claims' parameter is not a valid JSON object."
    )


def interaction_required() -> EntraError:
    return EntraError(
        "interaction_required", 50058,
        "A silent sign-in request was sent but no user is signed in.",
    )


def unsupported_response_type(value: str) -> EntraError:
    return EntraError(
        "unsupported_response_type", 70002,
        f"The response type '{value[:40]}' is not supported; use 'code'.",
    )


def pkce_required_at_authorize() -> EntraError:
    return EntraError(
        "invalid_request", 9002325,
        "Proof Key for Code Exchange is required: send code_challenge with "
        "code_challenge_method=S256.",
    )


def internal_error() -> EntraError:
    return EntraError(
        "server_error", 50000,
        "There was an error issuing a token or an issue with our sign-in service.",
        status=500,
    )


def invalid_request_parameter(name: str, detail: str) -> EntraError:
    """Entra's InvalidRequestParameter (AADSTS90100), used for ``token_type``/``req_cnf``."""
    return EntraError(
        "invalid_request", 90100,
        f"The parameter '{name}' is empty or not valid: {detail}.",
    )


# Device identity (issue 10): a device certificate that does not authenticate a device.
def device_auth_failed(detail: str) -> EntraError:
    """AADSTS50155 DeviceAuthenticationFailed: unknown, deleted or expired device credential."""
    return EntraError("invalid_grant", 50155, f"Device authentication failed: {detail}.")


def device_untrusted(detail: str) -> EntraError:
    """AADSTS50012: the device certificate does not chain to this authority's device CA."""
    return EntraError(
        "invalid_grant", 50012, f"Authentication failed: the device certificate is not "
        f"trusted ({detail}).",
    )


def device_disabled() -> EntraError:
    """AADSTS135011: the device exists but an administrator disabled it."""
    return EntraError(
        "invalid_grant", 135011, "Device used during the authentication is disabled.",
    )


# The PRT grants ([MS-OAPXBC]): the rest of the error table of docs/device-identity.md §3.
def session_signature_invalid() -> EntraError:
    """AADSTS50006: the request is not signed with a key derived from the PRT's session key."""
    return EntraError(
        "invalid_grant", 50006,
        "Signature verification failed: the request is not signed with the session key of "
        "the primary refresh token.",
    )


def request_nonce_invalid() -> EntraError:
    """AADSTS50027: the request_nonce is missing, unknown, expired or already used."""
    return EntraError(
        "invalid_grant", 50027,
        "JWT token is invalid or malformed: the 'request_nonce' is missing, was not issued by "
        "this server, has expired or was already used; request a new one "
        "(grant_type=srv_challenge).",
    )


def prt_invalid() -> EntraError:
    """AADSTS70008: the primary refresh token is unknown, expired or revoked."""
    return EntraError(
        "invalid_grant", 70008,
        "The provided primary refresh token has expired or was revoked. Register the device "
        "again or sign in interactively.",
        suberror="bad_token",
    )


def bad_credentials() -> EntraError:
    """AADSTS50126 (the password variant of the PRT request)."""
    return EntraError(
        "invalid_grant", 50126,
        "Error validating credentials due to invalid username or password.",
    )
