"""The PoP pipeline policies with a real azure-core PipelineClient (RequestsTransport and
AioHttpTransport) against the authority's /resource/pop over TLS, through the real daemon on a
private bus; and the WWW-Authenticate parser they read challenges with."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core import AsyncPipelineClient, PipelineClient
from azure.core.credentials import AccessTokenInfo
from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
from azure.core.rest import HttpRequest

from authbroker.plugin.challenge import parse_challenges, pop_nonce
from authbroker.plugin.policy import AsyncPopTokenPolicy, PopTokenPolicy
from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker.aio import InteractiveBrowserBrokerCredential as AioCredential
from plugin.conftest import USERNAME
from plugin.pop_checks import verify_shr


class Counting:
    """A credential wrapper counting the SHRs asked for (and optionally spoiling them)."""

    def __init__(self, inner, spoil: bool = False) -> None:
        self.inner, self.spoil, self.calls = inner, spoil, 0

    def _spoiled(self, info):
        self.calls += 1
        if not self.spoil:
            return info
        return AccessTokenInfo(info.token[:-4] + "AAAA", info.expires_on, token_type="pop")


class SyncCounting(Counting):
    def get_token_info(self, *scopes, options=None):
        return self._spoiled(self.inner.get_token_info(*scopes, options=options))


class AsyncCounting(Counting):
    async def get_token_info(self, *scopes, options=None):
        return self._spoiled(await self.inner.get_token_info(*scopes, options=options))


class Client:
    """One blocking face over a sync or async PipelineClient with the PoP policy."""

    def __init__(self, flavour: str, authority, cred_kwargs, spoil: bool = False) -> None:
        self.flavour = flavour
        if flavour == "sync":
            self.credential = SyncCounting(InteractiveBrowserBrokerCredential(**cred_kwargs),
                                           spoil)
            self.policy = PopTokenPolicy(self.credential, authority.pop_resource_scope)
            self.client = PipelineClient(authority.pop_resource, policies=[self.policy],
                                         transport=RequestsTransport())
            self.loop = None
        else:
            self.loop = asyncio.new_event_loop()
            self.credential = AsyncCounting(AioCredential(**cred_kwargs), spoil)
            self.policy = AsyncPopTokenPolicy(self.credential, authority.pop_resource_scope)
            self.client = AsyncPipelineClient(authority.pop_resource, policies=[self.policy],
                                              transport=AioHttpTransport(
                                                  connection_verify=authority.ca_bundle))

    def send(self, method: str, url: str):
        request = HttpRequest(method, url)
        if self.loop is None:
            return self.client.send_request(request)

        async def send():
            response = await self.client.send_request(request)
            await response.read()
            return response

        return self.loop.run_until_complete(send())

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            self.credential.inner.close()
        else:
            self.loop.run_until_complete(self.client.close())
            self.loop.run_until_complete(self.credential.inner.close())
            self.loop.close()


@pytest.fixture(params=["sync", "aio"])
def make_client(request, authority, cred_kwargs, broker_daemon):
    made = []

    def make(**kwargs) -> Client:
        made.append(Client(request.param, authority, cred_kwargs, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_the_policy_answers_the_challenge_then_signs_at_once(make_client, authority,
                                                             broker_daemon) -> None:
    client = make_client()
    url = authority.pop_resource
    first = client.send("GET", url)
    assert first.status_code == 200, first.text()
    assert first.json()["preferred_username"] == USERNAME
    assert client.credential.calls == 1
    shr = first.request.headers["Authorization"].removeprefix("PoP ")
    nonce = client.policy.challenges.known_nonce_of(url)
    verify_shr(shr, method="GET", url=url, nonce=nonce)
    # the host's nonce is remembered: the next request goes signed at once (one SHR, one send)
    second = client.send("POST", url + "/items")
    assert second.status_code == 200 and second.json()["method"] == "POST"
    assert client.credential.calls == 2
    verify_shr(second.request.headers["Authorization"].removeprefix("PoP "), method="POST",
               url=url + "/items", nonce=nonce)
    assert broker_daemon.sign_ins() == 1


def test_a_refused_nonce_falls_back_to_the_challenge(make_client, authority) -> None:
    client = make_client()
    url = authority.pop_resource
    client.policy.challenges.remember_for(url, "a-nonce-the-resource-never-issued")
    answer = client.send("GET", url)
    assert answer.status_code == 200, answer.text()
    assert client.credential.calls == 2  # the stale nonce's SHR, then the challenge's
    assert client.policy.challenges.known_nonce_of(url) != "a-nonce-the-resource-never-issued"


def test_a_permanently_refused_request_does_not_loop(make_client, authority) -> None:
    client = make_client(spoil=True)  # every SHR's signature is broken
    url = authority.pop_resource
    answer = client.send("GET", url)
    assert answer.status_code == 401 and client.credential.calls == 1
    assert client.policy.challenges.known_nonce_of(url) is None  # forgotten: not retried
    again = client.send("GET", url)
    assert again.status_code == 401 and client.credential.calls == 2


class _BearerOnly(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="elsewhere", error="invalid_token"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_a_401_without_a_pop_challenge_is_returned_as_is(flavour) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BearerOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/x"
    try:
        if flavour == "sync":
            credential = SyncCounting(None)
            policy = PopTokenPolicy(credential, "scope", enforce_https=False)
            answer = PipelineClient(url, policies=[policy]).send_request(HttpRequest("GET", url))
        else:
            credential = AsyncCounting(None)

            async def send():
                policy = AsyncPopTokenPolicy(credential, "scope", enforce_https=False)
                async with AsyncPipelineClient(url, policies=[policy]) as client:
                    return await client.send_request(HttpRequest("GET", url))

            answer = asyncio.run(send())
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 401 and "Bearer" in answer.headers["WWW-Authenticate"]
    assert credential.calls == 0


def test_plain_http_is_refused() -> None:
    from azure.core.exceptions import ServiceRequestError

    policy = PopTokenPolicy(SyncCounting(None), "scope")
    client = PipelineClient("http://127.0.0.1:9", policies=[policy])
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        client.send_request(HttpRequest("GET", "http://127.0.0.1:9/x"))


@pytest.mark.parametrize(("header", "nonce"), [
    ('PoP nonce="abc"', "abc"),
    ('pop NONCE=tok', "tok"),
    ('Bearer realm="x", error="invalid_token", PoP nonce="n\\"1", Basic', 'n"1'),
    ('Negotiate YWJj==, PoP realm="r",nonce="x,y"', "x,y"),
    ('PoP "junk", PoP nonce=z', "z"),
    ('PoP nonce="unterminated', None),
    ('Bearer realm="x"', None),
    ('PoP nonce=""', None),
    ("", None),
    (" , ,", None),
])
def test_challenges_are_parsed_robustly(header: str, nonce: str | None) -> None:
    assert pop_nonce(header) == nonce


def test_several_headers_and_their_parameters() -> None:
    found = parse_challenges(['Bearer authorization_uri="https://a/b", error=x', "PoP nonce=q"])
    assert [(c.scheme, c.params) for c in found] == [
        ("bearer", {"authorization_uri": "https://a/b", "error": "x"}), ("pop", {"nonce": "q"})]
