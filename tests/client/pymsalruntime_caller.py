"""A third-party-style caller of Microsoft's unmodified pymsalruntime, run as a subprocess by
test_third_party.py: like the Broker1 clients that hard-code an authority, it calls
pymsalruntime directly (through msal.broker's thin wrappers, so no msal app object and no OIDC
discovery) with the authority given, whatever host it names.

Usage: ``python pymsalruntime_caller.py AUTHORITY CLIENT_ID SCOPE STEP [STEP ...]``, a step
being ``interactive`` or ``silent`` (signin_silently: getAccounts + acquireTokenSilently). One
JSON line per step on stdout; never a token, only whether there was one.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from msal import broker


def summary(result: dict[str, Any] | None) -> dict[str, Any]:
    result = result or {}
    claims = result.get("id_token_claims") or {}
    return {"token": bool(result.get("access_token")), "username": claims.get("preferred_username"),
            "error": result.get("error"), "error_description": result.get("error_description")}


def main(argv: list[str]) -> int:
    authority, client_id, scope, *steps = argv
    for step in steps:
        if step == "interactive":
            result = broker._signin_interactively(authority, client_id, [scope], None)
        elif step == "silent":
            result = broker._signin_silently(authority, client_id, [scope])
        else:
            raise SystemExit(f"unknown step {step!r}")
        print(json.dumps({"step": step} | summary(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
