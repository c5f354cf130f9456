"""PoP on the wire: popParams in token requests, generateSignedHttpRequest's request and reply,
accessTokenType 1; malformed popParams are protocol errors, never a crash or a silent bearer."""

from __future__ import annotations

import json

import pytest

from authbroker import broker1
from authbroker.errors import BrokerProtocolError

POP_WIRE = {"httpMethod": "GET", "uriHost": "api.example:8443", "uriPath": "/v1/me",
            "nonce": "n1", "clientClaims": "", "homeAccountId": ""}


def token_request(pop: object) -> str:
    return json.dumps({"authParameters": {"clientId": "c", "requestedScopes": ["s"],
                                          "popParams": pop}})


def test_pymsalruntime_pop_params_parse_and_round_trip() -> None:
    request = broker1.parse_request(broker1.Method.ACQUIRE_TOKEN_SILENTLY, token_request(POP_WIRE))
    assert isinstance(request, broker1.TokenRequest)
    pop = request.auth.pop_params
    assert pop == broker1.PopParams("GET", "api.example:8443", "/v1/me", nonce="n1")
    assert pop.is_pop and not pop.is_bearer and pop.authentication_scheme == broker1.POP_SCHEME
    assert broker1.PopParams.from_wire(pop.to_wire()) == pop
    other = broker1.PopParams.from_wire(dict(POP_WIRE, authenticationScheme="Bearer", kid="k"))
    assert other.is_bearer and other.kid == "k" and other.to_wire()["kid"] == "k"
    bearer = broker1.parse_request(broker1.Method.ACQUIRE_TOKEN_SILENTLY, token_request(None))
    assert isinstance(bearer, broker1.TokenRequest) and bearer.auth.pop_params is None
    empty = broker1.parse_request(broker1.Method.ACQUIRE_TOKEN_SILENTLY, token_request({}))
    assert isinstance(empty, broker1.TokenRequest)
    assert empty.auth.pop_params is not None  # an empty popParams is a PoP request, not bearer


@pytest.mark.parametrize("pop", ["GET", [1], {"httpMethod": 5}, {"uriHost": ["h"]},
                                 {"kid": {}}])
def test_malformed_pop_params_are_protocol_errors(pop: object) -> None:
    for method, text in ((broker1.Method.ACQUIRE_TOKEN_SILENTLY, token_request(pop)),
                         (broker1.Method.GENERATE_SIGNED_HTTP_REQUEST,
                          json.dumps({"clientId": "c", "popParams": pop}))):
        with pytest.raises(BrokerProtocolError):
            broker1.parse_request(method, text)


def test_generate_signed_http_request_shapes() -> None:
    method = broker1.Method.GENERATE_SIGNED_HTTP_REQUEST
    spec = broker1.METHODS[method]
    assert spec.request is broker1.SignedHttpRequestRequest
    assert spec.result is broker1.SignedHttpRequestResult and not spec.token_call
    wire = {"clientId": "c", "popParams": dict(POP_WIRE, homeAccountId="oid.tid")}
    request = broker1.parse_request(method, json.dumps(wire))
    assert isinstance(request, broker1.SignedHttpRequestRequest)
    assert request.client_id == "c" and request.pop_params.home_account_id == "oid.tid"
    assert broker1.SignedHttpRequestRequest.from_wire(request.to_wire()) == request
    with pytest.raises(BrokerProtocolError):
        broker1.parse_request(method, "{}")
    result = broker1.parse_response(method, '{"signedHttpRequest": "a.b.c"}')
    assert result == broker1.SignedHttpRequestResult("a.b.c")
    assert result.to_wire() == {"signedHttpRequest": "a.b.c"} and "a.b.c" not in repr(result)
    with pytest.raises(BrokerProtocolError):
        broker1.parse_response(method, '{"signedHttpRequest": ""}')


def test_a_pop_token_result_says_type_1() -> None:
    result = broker1.TokenResult("shr", "", "ci", 1000.0,
                                 access_token_type=broker1.AccessTokenType.POP)
    body = result.to_wire()["brokerTokenResponse"]
    assert body["accessTokenType"] == 1 and body["accessToken"] == "shr"
    back = broker1.parse_response(broker1.Method.ACQUIRE_TOKEN_SILENTLY, json.dumps(
        result.to_wire()))
    assert isinstance(back, broker1.TokenResult)
    assert back.access_token_type is broker1.AccessTokenType.POP
