"""tests/fixtures/msal_client.py (Microsoft's unmodified msal + pymsalruntime, same steps and
usage) with the access token's device claims added to each JSON line: ``deviceid`` and ``amr``.
Run as a subprocess by test_prt_pymsalruntime.py; tokens are never printed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

import msal_client  # noqa: E402
from msal.oauth2cli.oidc import decode_part  # noqa: E402

_summary = msal_client.summary


def summary(result: dict[str, Any] | None) -> dict[str, Any]:
    out = _summary(result)
    if result is None:
        return out
    token = result.get("access_token")
    claims = json.loads(decode_part(token.split(".")[1])) if token else {}
    out.update(deviceid=claims.get("deviceid"), amr=claims.get("amr"))
    return out


msal_client.summary = summary

if __name__ == "__main__":
    sys.exit(msal_client.main(sys.argv[1:]))
