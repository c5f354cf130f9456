"""Golden Broker1 texts: what we send and answer, byte for byte, so a wire change fails loudly.

The texts were produced by the codec before the split into broker1/{names,methods,messages,…};
pymsalruntime and the blocking/async clients depend on exactly these shapes.
"""

from __future__ import annotations

import pytest

from authbroker import broker1
from authbroker.errors import BrokerProtocolError, BrokerStatusError

CLIENT_INFO = "eyJ1aWQiOiJvaWQiLCJ1dGlkIjoidGlkIn0"  # {"uid": "oid", "utid": "tid"}
SCOPE = "https://storage.azure.com/.default"
ACCOUNT = broker1.Account("oid.tid", "oid", "tid", "user@contoso.example", name="User",
                          client_info=CLIENT_INFO)
ACCOUNT_JSON = (
    '{"homeAccountId":"oid.tid","localAccountId":"oid","realm":"tid",'
    '"username":"user@contoso.example","environment":"login.microsoftonline.com","name":"User",'
    '"givenName":"","familyName":"","passwordExpiry":0,"clientInfo":"' + CLIENT_INFO + '"}'
)
SILENT_REQUEST = (
    '{"authParameters":{"clientId":"cid","authority":"https://login.microsoftonline.com/tid",'
    '"redirectUri":"https://login.microsoftonline.com/common/oauth2/nativeclient",'
    '"requestedScopes":["' + SCOPE + '"],"authorizationType":1,"account":' + ACCOUNT_JSON + ','
    '"username":"","decodedClaims":"","popParams":null,'
    '"additionalQueryParametersForAuthorization":{},"accessTokenToRenew":"","enrollmentId":"",'
    '"password":"","isTestMode":false,"uxContextHandle":-1}}'
)
SILENT_REPLY = (
    '{"brokerTokenResponse":{"accessToken":"at","accessTokenType":0,"clientInfo":"'
    + CLIENT_INFO + '","idToken":"a.b.c","expiresOn":1767225600500,'
    '"extendedExpiresOn":1767225600500,"grantedScopes":"' + SCOPE + '","account":'
    + ACCOUNT_JSON + '}}'
)
GET_ACCOUNTS_REQUEST = '{"clientId":"cid","redirectUri":"cid"}'
GET_ACCOUNTS_REPLY = '{"accounts":[' + ACCOUNT_JSON + ']}'
ERROR_OBJECT = ('{"status":2,"errorCode":50076,"tag":1234,"subStatus":0,'
                '"context":"sign in needed","diagnostics":null}')
CANCEL_REQUEST = ('{"error":{"context":"The interactive request was cancelled by the app",'
                  '"diagnostics":null,"errorCode":0,"status":7,"subStatus":0,"tag":1236227422}}')

AUTH = broker1.AuthParameters(client_id="cid", requested_scopes=(SCOPE,),
                              authority="https://login.microsoftonline.com/tid", account=ACCOUNT)
TOKEN = broker1.TokenResult(access_token="at", id_token="a.b.c", client_info=CLIENT_INFO,
                            expires_on=1767225600.5, extended_expires_on=1767225600.5,
                            granted_scopes=(SCOPE,), account=ACCOUNT)
ERROR = BrokerStatusError(broker1.Status.INTERACTION_REQUIRED, "sign in needed",
                          error_code=50076, tag=1234)


def test_acquire_token_silently_request_and_reply_texts():
    assert broker1.encode(broker1.TokenRequest(auth=AUTH).to_wire()) == SILENT_REQUEST
    assert broker1.encode(TOKEN.to_wire()) == SILENT_REPLY
    method = broker1.Method.ACQUIRE_TOKEN_SILENTLY
    assert broker1.parse_request(method, SILENT_REQUEST) == broker1.TokenRequest(auth=AUTH)
    assert broker1.parse_response(method, SILENT_REPLY) == TOKEN


def test_get_accounts_request_and_reply_texts():
    assert broker1.encode(broker1.GetAccountsRequest("cid").to_wire()) == GET_ACCOUNTS_REQUEST
    assert broker1.encode(broker1.AccountsResult((ACCOUNT,)).to_wire()) == GET_ACCOUNTS_REPLY
    method = broker1.Method.GET_ACCOUNTS
    assert broker1.parse_request(method, GET_ACCOUNTS_REQUEST) == broker1.GetAccountsRequest("cid")
    assert broker1.parse_response(method, GET_ACCOUNTS_REPLY).accounts == (ACCOUNT,)


def test_cancel_request_text():
    assert broker1.encode(broker1.CancelRequest().to_wire()) == CANCEL_REQUEST


INSIDE = '{"brokerTokenResponse":{"error":' + ERROR_OBJECT + '}}'
TOP_LEVEL = '{"error":' + ERROR_OBJECT + '}'


@pytest.mark.parametrize(("method", "text"), [
    (broker1.Method.ACQUIRE_TOKEN_SILENTLY, INSIDE),
    (broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, INSIDE),
    (broker1.Method.GET_ACCOUNTS, TOP_LEVEL),
    (broker1.Method.REMOVE_ACCOUNT, TOP_LEVEL),
    (broker1.UiMethod.SET_DEFAULT_ACCOUNT, TOP_LEVEL),
])
def test_error_objects_inside_brokerTokenResponse_for_token_calls_only(method, text):
    assert broker1.encode(broker1.error_reply(ERROR, method)) == text
    with pytest.raises(BrokerStatusError) as raised:
        broker1.parse_response(method, text)
    assert (raised.value.status, raised.value.error_code, raised.value.tag) == (2, 50076, 1234)
    assert raised.value.context == "sign in needed"


def test_token_calls_are_exactly_the_two_acquire_methods():
    token_calls = {m for m, spec in broker1.METHODS.items() if spec.token_call}
    assert token_calls == {broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                           broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY}
    assert all(m.is_token_method == broker1.is_token_method(m) for m in broker1.METHODS)


def test_client_info_is_entra_rule_and_malformed_is_a_protocol_error():
    assert broker1.encode_client_info("oid", "tid") == CLIENT_INFO
    assert broker1.decode_client_info(CLIENT_INFO) == ("oid", "tid")
    with pytest.raises(BrokerProtocolError):
        broker1.decode_client_info("not-client-info")


def test_an_unknown_access_token_type_is_a_protocol_error():
    with pytest.raises(BrokerProtocolError):
        broker1.parse_response(broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                               SILENT_REPLY.replace('"accessTokenType":0', '"accessTokenType":9'))
