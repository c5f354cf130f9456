"""Run in a fresh process (pymsalruntime pings the broker once, at import): get a token with
InteractiveBrowserBrokerCredential and print one JSON line describing what happened."""

from __future__ import annotations

import json
import sys

import jwt
import msal
from azure.core.exceptions import ClientAuthenticationError

from azure.identity.broker import InteractiveBrowserBrokerCredential


def main(authority: str, tenant: str, scope: str, *steps: str) -> None:
    credential = InteractiveBrowserBrokerCredential(
        authority=authority,
        tenant_id=tenant,
        disable_instance_discovery=True,
        parent_window_handle=msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE,
        use_default_broker_account="default" in steps,
        disable_interactive_fallback="quiet" in steps,
    )
    token = credential.get_token(scope)
    fallback = credential._driver.fallback
    pop_error = None
    if "pop" in steps:
        pop = {"resource_request_method": "GET", "resource_request_url": "https://h/p"}
        pop["nonce"] = "n"
        try:
            info = credential.get_token_info(scope, options={"pop": pop})  # type: ignore[typeddict-item]
            pop_error = f"returned a {info.token_type} token"
        except ClientAuthenticationError as exc:
            pop_error = f"{type(exc).__name__}: {exc.message}"
    report = {
        "pop": pop_error,
        "backend": next(iter(fallback.backends)),
        "reasons": fallback.selection.reasons,
        "upn": jwt.decode(token.token, options={"verify_signature": False}).get("upn"),
        "username": credential._auth_record.username if credential._auth_record else None,
    }
    sys.stderr.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
