"""The demo's Proof-of-Possession step: the seed's credential calls the authority's PoP resource.

An azure-core ``PipelineClient`` with :class:`~authbroker.plugin.policy.PopTokenPolicy` sends
``GET /resource/pop``; the resource's 401 carries a nonce, the policy gets a Signed HTTP Request
for that request from the credential (through the broker) and retries; the 200 names who
called. The same SHR sent to another path is refused. Only the SHR's decoded fields are shown.
"""

from __future__ import annotations

from typing import Any

import jwt
import requests

from authbroker.demo.steps import DemoError, say
from authbroker.devkit.processes import AuthorityProcess


def call_pop_resource(authority: AuthorityProcess, credential: Any) -> None:
    """The PoP call, its 200, and the replay elsewhere refused (DemoError if not so)."""
    from azure.core import PipelineClient
    from azure.core.pipeline.transport import RequestsTransport
    from azure.core.rest import HttpRequest, HttpResponse

    from authbroker.plugin.policy import PopTokenPolicy

    url = authority.pop_resource
    policy = PopTokenPolicy(credential, authority.pop_resource_scope)
    client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
        url, policies=[policy], transport=RequestsTransport())
    with client:
        answer = client.send_request(HttpRequest("GET", url))
    if answer.status_code != 200:
        raise DemoError(f"the PoP resource answered {answer.status_code}: {answer.text()[:200]}")
    shr = answer.request.headers["Authorization"].removeprefix("PoP ")
    fields = jwt.decode(shr, options={"verify_signature": False})
    who = answer.json()
    say(f"GET {url}: 401 with a nonce challenge, then 200 with the SHR")
    say(f"SHR: m={fields['m']} u={fields['u']} p={fields['p']} nonce={fields['nonce'][:12]}… "
        f"signed by key {jwt.get_unverified_header(shr)['kid'][:12]}…")
    say(f"the resource says: {who.get('preferred_username')} called as app {who.get('appid')}, "
        f"token_type {who.get('token_type')}")
    other = f"{url}/other"
    replay = requests.get(other, headers={"Authorization": f"PoP {shr}"}, timeout=10)
    if replay.status_code != 401:
        raise DemoError(f"the SHR replayed against {other} was not refused ({replay.status_code})")
    reason = replay.json().get("error_description", "")
    say(f"the same SHR replayed at {other}: {replay.status_code} ({reason[:70]})")
