"""A client of Microsoft's unmodified stack (msal + pymsalruntime, azure-identity-broker), run
as a subprocess by test_msal_pymsalruntime.py: pymsalruntime binds to the broker when it is
imported, so every scenario needs a fresh process started after the daemon owns its name.

Usage: ``python msal_client.py AUTHORITY TENANT CLIENT_ID SCOPE STEP [STEP ...]`` where a step
is ``select`` (interactive, prompt=select_account), ``default`` (interactive without prompt:
getAccounts + silent), ``silent`` (acquire_token_silent for the first cached account),
``sleep:N``, ``accounts``, ``cae`` (``default`` from an app with client capabilities CP1) or
``credential`` (azure-identity-broker's InteractiveBrowserBrokerCredential.get_token). One
JSON line per step on stdout; tokens are never printed, only a short SHA-256 of the access
token and its ``xms_cc`` claim.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from typing import Any

import msal
from msal.oauth2cli.oidc import decode_part


def digest(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


def summary(result: dict[str, Any] | None) -> dict[str, Any]:
    if result is None:
        return {"result": None}
    claims = result.get("id_token_claims") or {}
    access_token = result.get("access_token")
    at_claims = json.loads(decode_part(access_token.split(".")[1])) if access_token else {}
    return {
        "at": digest(access_token),
        "xms_cc": at_claims.get("xms_cc"),
        "token_source": result.get("token_source"),
        "username": claims.get("preferred_username"),
        "expires_in": result.get("expires_in"),
        "scope": result.get("scope"),
        "error": result.get("error"),
        "error_description": result.get("error_description"),
    }


def main(argv: list[str]) -> int:
    authority, tenant, client_id, scope, *steps = argv

    def new_app(**kwargs: Any) -> msal.PublicClientApplication:
        return msal.PublicClientApplication(
            client_id,
            authority=f"{authority}/{tenant}",
            enable_broker_on_linux=True,
            instance_discovery=False,
            **kwargs,
        )

    app = new_app()
    handle = msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE
    for step in steps:
        out: dict[str, Any] = {"step": step}
        if step == "select":
            out |= summary(app.acquire_token_interactive(
                [scope], prompt="select_account", parent_window_handle=handle))
        elif step == "default":
            out |= summary(app.acquire_token_interactive([scope], parent_window_handle=handle))
        elif step == "silent":
            accounts = app.get_accounts()
            out["accounts"] = len(accounts)
            out |= summary(app.acquire_token_silent([scope], account=accounts[0])
                           if accounts else None)
        elif step == "cae":
            cae_app = new_app(client_capabilities=["CP1"])
            out |= summary(cae_app.acquire_token_interactive([scope], parent_window_handle=handle))
        elif step.startswith("sleep:"):
            time.sleep(float(step.split(":", 1)[1]))
        elif step == "accounts":
            out["accounts"] = [
                {"username": a.get("username"), "source": a.get("account_source")}
                for a in app.get_accounts()
            ]
        elif step == "credential":
            from azure.identity.broker import InteractiveBrowserBrokerCredential

            credential = InteractiveBrowserBrokerCredential(
                authority=authority,
                tenant_id=tenant,
                disable_instance_discovery=True,
                parent_window_handle=handle,
            )
            token = credential.get_token(scope)
            out |= {"at": digest(token.token), "expires_on": token.expires_on}
        else:
            raise SystemExit(f"unknown step {step!r}")
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
