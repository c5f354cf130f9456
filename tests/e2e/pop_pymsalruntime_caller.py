"""A caller of Microsoft's unmodified pymsalruntime asking for PoP tokens directly (as third-party
Broker1 clients do), run as a subprocess by test_pop_pymsalruntime.py.

Usage: ``python pop_pymsalruntime_caller.py AUTHORITY CLIENT_ID SCOPE STEP [STEP ...]``, a step
being ``interactive|silent,METHOD,HOST,PATH,NONCE`` (a PoP request) or ``bearer,,,,`` (a silent
request without PoP). One JSON line per step on stdout: the error
(if any), ``is_pop_authorization()``, the authorization header and the access token.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import pymsalruntime

REDIRECT_URI = "https://login.microsoftonline.com/common/oauth2/nativeclient"


def call(kind: str, authority: str, client_id: str, scope: str, method: str, host: str,
         path: str, nonce: str) -> dict[str, Any]:
    params = pymsalruntime.MSALRuntimeAuthParameters(client_id, authority)
    params.set_redirect_uri(REDIRECT_URI)
    params.set_requested_scopes([scope])
    if kind != "bearer":
        params.set_pop_params(method, host, path, nonce)
    interactive = kind == "interactive"
    done = pymsalruntime.CallbackData(is_interactive=interactive)
    correlation_id = str(uuid.uuid4())
    if interactive:
        window = pymsalruntime.get_console_window() or pymsalruntime.get_desktop_window()
        pymsalruntime.signin_interactively(window, params, correlation_id, None,
                                           lambda r, d=done: d.complete(r))
    else:
        pymsalruntime.signin_silently(params, correlation_id, lambda r, d=done: d.complete(r))
    done.signal.wait()
    result = done.result
    error = result.get_error()
    if error:
        return {"step": kind, "error": str(error.get_context())}
    return {"step": kind, "error": None, "is_pop": result.is_pop_authorization(),
            "header": result.get_authorization_header(), "at": result.get_access_token(),
            "expires_on": result.get_access_token_expiry_time()}


def main(argv: list[str]) -> int:
    authority, client_id, scope, *steps = argv
    for step in steps:
        kind, method, host, path, nonce = step.split(",", 4)
        print(json.dumps(call(kind, authority, client_id, scope, method, host, path, nonce)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
