"""The Broker1 wire schema: what pymsalruntime sends parses, what we send has its required shape."""

import json

import pytest

from authbroker import broker1
from authbroker.errors import BrokerProtocolError, BrokerStatusError

PYMSALRUNTIME_INTERACTIVE = {
    "authParameters": {
        "accessTokenToRenew": "", "account": None,
        "additionalQueryParametersForAuthorization": {
            "msal_client_sku": "MSAL.Python", "msal_gui_thread": "true"},
        "authority": "https://127.0.0.1/organizations", "authorizationType": 6,
        "clientId": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "decodedClaims": "",
        "enrollmentId": "", "isSignIn": True, "isTestMode": False,
        "onboardingBlob": "{}", "parentWindow": {"handle": 1}, "password": "",
        "popParams": None,
        "redirectUri": "https://login.microsoftonline.com/common/oauth2/nativeclient",
        "requestedScopes": ["https://storage.azure.com/.default"], "username": "",
        "uxContextHandle": -1},
    "parentWindowHandle": 1,
}

ACCOUNT = broker1.Account("oid.tid", "oid", "tid", "user@contoso.example")


def test_pymsalruntime_interactive_request_parses():
    req = broker1.parse_request(
        broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, json.dumps(PYMSALRUNTIME_INTERACTIVE))
    assert isinstance(req, broker1.TokenRequest)
    assert req.auth.requested_scopes == ("https://storage.azure.com/.default",)
    assert req.auth.is_sign_in and req.auth.account is None
    assert req.auth.parent_window == 1 and req.parent_window_handle == 1
    assert req.auth.extra_query["msal_gui_thread"] == "true"


def test_top_level_account_is_accepted():
    body = {"account": ACCOUNT.to_wire(),
            "authParameters": {"clientId": "c", "requestedScopes": ["s"]}}
    req = broker1.parse_request(broker1.Method.ACQUIRE_TOKEN_SILENTLY, json.dumps(body))
    assert req.auth.account == ACCOUNT


@pytest.mark.parametrize("text", [
    "{", "[]", '"x"', json.dumps({"authParameters": {"requestedScopes": ["s"]}}),
    json.dumps({"authParameters": {"clientId": 5, "requestedScopes": ["s"]}}),
    json.dumps({"authParameters": {"clientId": "c", "requestedScopes": "a b", "account": 3}}),
    "x" * (broker1.MAX_REQUEST_BYTES + 1),
])
def test_malformed_requests_raise_wire_error(text):
    with pytest.raises(BrokerProtocolError):
        broker1.parse_request(broker1.Method.ACQUIRE_TOKEN_SILENTLY, text)


def test_token_result_has_every_field_pymsalruntime_requires_and_hides_tokens():
    result = broker1.TokenResult(
        access_token="secret-at", id_token="a.b.c",
        client_info=broker1.encode_client_info("oid", "tid"), expires_on=1767225600.5,
        granted_scopes=("https://storage.azure.com/.default",), account=ACCOUNT)
    wire = result.to_wire()["brokerTokenResponse"]
    for key in ("accessToken", "accessTokenType", "clientInfo", "idToken", "expiresOn",
                "extendedExpiresOn"):
        assert key in wire
    assert wire["expiresOn"] == 1767225600500
    assert "secret-at" not in repr(result)
    back = broker1.parse_response(broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                                  broker1.encode(result.to_wire()))
    assert back.access_token == "secret-at" and back.account == ACCOUNT


def test_errors_are_objects_in_the_right_place_and_round_trip():
    err = BrokerStatusError(broker1.Status.INTERACTION_REQUIRED, "sign in needed",
                              error_code=50076)
    token_wire = broker1.error_reply(err, broker1.Method.ACQUIRE_TOKEN_SILENTLY)
    assert set(token_wire["brokerTokenResponse"]["error"]) >= {
        "status", "errorCode", "tag", "context", "subStatus"}
    assert isinstance(token_wire["brokerTokenResponse"]["error"]["tag"], int)
    assert "error" in broker1.error_reply(err, broker1.Method.GET_ACCOUNTS)
    with pytest.raises(BrokerStatusError) as raised:
        broker1.parse_response(broker1.Method.ACQUIRE_TOKEN_SILENTLY, broker1.encode(token_wire))
    assert raised.value.status == broker1.Status.INTERACTION_REQUIRED
    assert raised.value.error_code == 50076


def test_status_23_cannot_be_expressed():
    assert 23 not in broker1.Status._value2member_map_
    assert 12 not in broker1.Status._value2member_map_


def test_set_default_account_request_and_replies():
    by_name = broker1.parse_request(broker1.UiMethod.SET_DEFAULT_ACCOUNT,
                                    '{"username": "a@b.example"}')
    assert by_name == broker1.SetDefaultAccountRequest(username="a@b.example")
    by_id = broker1.parse_request(broker1.UiMethod.SET_DEFAULT_ACCOUNT,
                                  '{"homeAccountId": "oid.tid"}')
    assert by_id.to_wire() == {"homeAccountId": "oid.tid"}
    for bad in ("{}", '{"username": ""}', '{"username": 3}'):
        with pytest.raises(BrokerProtocolError):
            broker1.parse_request(broker1.UiMethod.SET_DEFAULT_ACCOUNT, bad)
    assert isinstance(broker1.parse_response(broker1.UiMethod.SET_DEFAULT_ACCOUNT, '{"ok": true}'),
                      broker1.OkResult)
    error = BrokerStatusError(broker1.Status.ACCOUNT_NOT_FOUND, "x is not signed in", tag="t")
    wire = broker1.error_reply(error, broker1.UiMethod.SET_DEFAULT_ACCOUNT)
    assert set(wire) == {"error"}  # top level, as for the Broker1 methods other than tokens
    with pytest.raises(BrokerStatusError) as raised:
        broker1.parse_response(broker1.UiMethod.SET_DEFAULT_ACCOUNT, json.dumps(wire))
    assert raised.value.status == broker1.Status.ACCOUNT_NOT_FOUND
    some = broker1.DefaultAccountResult(ACCOUNT)
    assert broker1.parse_response(broker1.UiMethod.GET_DEFAULT_ACCOUNT,
                                  json.dumps(some.to_wire())) == some
    none = broker1.parse_response(broker1.UiMethod.GET_DEFAULT_ACCOUNT, '{"account": null}')
    assert none == broker1.DefaultAccountResult(None)


def test_status_result_round_trips_with_its_device_code() -> None:
    account = broker1.Account("oid.tid", "oid", "tid", "user@contoso.example")
    prompt = broker1.DeviceCodePrompt("https://127.0.0.1:8443/device", "ABCD-EFGH",
                                      "open it and enter ABCD-EFGH", 1_900_000_000.0)
    status = broker1.StatusResult(
        accounts=(account,), default_account_id="oid.tid",
        sign_ins=(broker1.SignInStatus("c1", "client", ":1.42", 4242, 1_800_000_000.0, prompt),
                  broker1.SignInStatus("c2", "client", ":1.43", None, 1_800_000_001.0)),
        callers=(broker1.CallerStatus(":1.42", 4242, "/usr/bin/python3", ("client",), 3,
                                      "getAccounts", 1_800_000_002.0),))
    wire = json.dumps(status.to_wire())
    assert broker1.parse_response(broker1.UiMethod.GET_STATUS, wire) == status
    obj = json.loads(wire)
    assert obj["signIns"][0]["caller"] == {"busName": ":1.42", "pid": 4242}
    assert obj["signIns"][0]["deviceCode"]["userCode"] == "ABCD-EFGH"
    assert obj["signIns"][1]["deviceCode"] is None
    assert obj["recentCallers"][0]["executable"] == "/usr/bin/python3"
    assert broker1.parse_response(broker1.UiMethod.GET_STATUS, "{}") == broker1.StatusResult()
