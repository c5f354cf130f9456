"""Family refresh tokens (FOCI): real msal apps of different client ids sharing one token cache
against the authority, and the raw refresh grant across client ids."""

from __future__ import annotations

import json

import jwt
import msal
import pytest
import requests

from authbroker.authority import DEMO_PASSWORD
from authbroker.authority.directory import FAMILY_CLIENTS, Clients
from authbroker.errors import ConfigurationError
from fixtures.authority import browser_sign_in, msal_app, parse_page, start_authority

STORAGE = "https://storage.azure.com/.default"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
EDGE = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"
VS_CODE = "aebc6443-996d-45c2-90f0-388ff96faa56"
OUTSIDER = "0f1e2d3c-4b5a-4697-8877-665544332211"  # registered, not in the family
ADDED = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"  # joins the family in the clients file
DROPPED = "ab9b8c07-8f02-4f72-87fa-80105867a763"  # well-known member taken out by the file


@pytest.fixture(scope="module")
def family_authority(tmp_path_factory, authority):
    clients = tmp_path_factory.mktemp("family") / "clients.json"
    clients.write_text(json.dumps({"allow_unregistered": False, "clients": [
        {"client_id": OUTSIDER, "redirect_uris": []},
        {"client_id": ADDED, "family": True},
        {"client_id": DROPPED, "family": False},
    ]}))
    with start_authority(clients.parent, "--clients", str(clients),
                         ca_from=authority) as running:
        yield running


def _app(running, client_id: str, cache: msal.SerializableTokenCache):
    return msal_app(running.authority, running.tenant_id, client_id=client_id,
                    token_cache=cache)


def _signed_in(running, client_id: str = AZURE_CLI):
    """A cache holding one sign-in through ``client_id``; returns (cache, app, msal result)."""
    cache = msal.SerializableTokenCache()
    app = _app(running, client_id, cache)
    result = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert "access_token" in result, result
    return cache, app, result


def _refresh_tokens(cache: msal.SerializableTokenCache, client_id: str) -> list[dict]:
    return list(cache.search(cache.CredentialType.REFRESH_TOKEN, query={"client_id": client_id}))


def _refresh(running, client_id: str, refresh_token: str) -> requests.Response:
    return requests.post(
        running.url(f"/{running.tenant_id}/oauth2/v2.0/token"),
        data={"grant_type": "refresh_token", "client_id": client_id, "client_info": "1",
              "refresh_token": refresh_token, "scope": f"{STORAGE} offline_access openid"},
        timeout=10,
    )


def _assert_other_client(response: requests.Response) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [700007]
    assert body["error_description"].startswith(
        "AADSTS700007: The grant was issued for a different client id.")
    assert body["suberror"] == "client_mismatch"
    assert body["error_additional_info"] == ["client_mismatch"]


def test_well_known_family_ids():
    for client_id in (AZURE_CLI, "1950a258-227b-4e31-a9cf-717495945fc2",
                      "872cd9fa-d31f-45e0-9eab-6e460a02d1f1", VS_CODE,
                      "d3590ed6-52b3-4102-aeff-aad2292ab01c",
                      "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
                      "27922004-5251-4030-b22d-91ecd9a37ea4", DROPPED,
                      "ecd6b820-32c2-49b6-98a6-444530e5a77a", EDGE):
        assert client_id in FAMILY_CLIENTS


def test_clients_file_family_field(tmp_path):
    default = Clients()
    assert default.in_family(EDGE) and not default.in_family(OUTSIDER)
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"allow_unregistered": False, "clients": [
        {"client_id": ADDED, "family": True}, {"client_id": DROPPED, "family": False}]}))
    clients = Clients.from_file(path)
    assert clients.in_family(ADDED) and clients.in_family(AZURE_CLI)
    assert not clients.in_family(DROPPED) and clients.known(DROPPED)
    assert clients.known(EDGE) and not clients.known(OUTSIDER)  # well-known ids are registered
    path.write_text(json.dumps({"clients": [{"client_id": ADDED, "family": "yes"}]}))
    with pytest.raises(ConfigurationError, match="'family'"):
        Clients.from_file(path)


def test_family_member_gets_foci_and_msal_records_the_family(family_authority):
    cache, _, result = _signed_in(family_authority)
    assert jwt.decode(result["id_token"], options={"verify_signature": False})["aud"] == AZURE_CLI
    [rt] = _refresh_tokens(cache, AZURE_CLI)
    assert rt["family_id"] == "1"
    [meta] = cache.search(cache.CredentialType.APP_METADATA, query={"client_id": AZURE_CLI})
    assert meta["family_id"] == "1"


def test_second_family_member_gets_a_token_silently_from_the_family_refresh_token(
        family_authority):
    cache, cli, first = _signed_in(family_authority)
    [frt] = _refresh_tokens(cache, AZURE_CLI)
    edge = _app(family_authority, EDGE, cache)
    [account] = edge.get_accounts()
    result = edge.acquire_token_silent([STORAGE], account=account)
    assert result and "access_token" in result, result
    assert result["token_source"] == "identity_provider"
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == EDGE and claims["oid"] == first["id_token_claims"]["oid"]
    # msal rotates the one family refresh token in place (it stays under Azure CLI's entry)
    # and records Edge as a family member.
    assert _refresh_tokens(cache, EDGE) == []
    [rotated] = _refresh_tokens(cache, AZURE_CLI)
    assert rotated["family_id"] == "1" and rotated["secret"] != frt["secret"]
    [meta] = cache.search(cache.CredentialType.APP_METADATA, query={"client_id": EDGE})
    assert meta["family_id"] == "1"
    # Both apps keep refreshing on the shared cache (newest family token first): the rotated
    # tokens never trip reuse detection.
    for app in (cli, edge, cli, edge):
        [acct] = app.get_accounts()
        again = app.acquire_token_silent_with_error([STORAGE], account=acct, force_refresh=True)
        assert again and "access_token" in again, again


def test_family_members_from_the_clients_file(family_authority):
    cache, _, _ = _signed_in(family_authority, ADDED)
    assert _refresh_tokens(cache, ADDED)[0]["family_id"] == "1"
    vscode = _app(family_authority, VS_CODE, cache)
    [account] = vscode.get_accounts()
    assert "access_token" in vscode.acquire_token_silent([STORAGE], account=account)
    dropped, _, result = _signed_in(family_authority, DROPPED)  # still registered
    assert "foci" not in result and "family_id" not in _refresh_tokens(dropped, DROPPED)[0]


@pytest.mark.parametrize("client_id", [OUTSIDER, DROPPED])
def test_non_family_client_gets_no_token_silently(family_authority, client_id):
    cache, cli, _ = _signed_in(family_authority)
    [frt] = _refresh_tokens(cache, AZURE_CLI)
    outsider = _app(family_authority, client_id, cache)
    [account] = outsider.get_accounts()
    assert outsider.acquire_token_silent([STORAGE], account=account) is None
    assert _refresh_tokens(cache, client_id) == []
    # The refused attempt did not spend the family refresh token.
    assert _refresh(family_authority, AZURE_CLI, frt["secret"]).status_code == 200


def test_refresh_token_of_a_non_family_client_is_refused_to_other_clients(family_authority):
    cache, _, _ = _signed_in(family_authority, OUTSIDER)
    [rt] = _refresh_tokens(cache, OUTSIDER)
    assert "family_id" not in rt
    for other in (AZURE_CLI, EDGE, DROPPED):
        _assert_other_client(_refresh(family_authority, other, rt["secret"]))
    assert _refresh(family_authority, OUTSIDER, rt["secret"]).status_code == 200


def test_family_refresh_token_is_refused_to_a_non_family_client(family_authority):
    cache, _, _ = _signed_in(family_authority)
    [frt] = _refresh_tokens(cache, AZURE_CLI)
    _assert_other_client(_refresh(family_authority, OUTSIDER, frt["secret"]))
    _assert_other_client(_refresh(family_authority, DROPPED, frt["secret"]))


def test_replayed_family_refresh_token_revokes_the_chain_for_every_member(family_authority):
    cache, cli, _ = _signed_in(family_authority)
    [rt1] = _refresh_tokens(cache, AZURE_CLI)
    by_edge = _refresh(family_authority, EDGE, rt1["secret"])
    assert by_edge.status_code == 200 and by_edge.json()["foci"] == "1"
    rt2 = by_edge.json()["refresh_token"]
    by_vscode = _refresh(family_authority, VS_CODE, rt2)
    assert by_vscode.status_code == 200
    rt3 = by_vscode.json()["refresh_token"]
    replay = _refresh(family_authority, VS_CODE, rt1["secret"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant" and replay.json()["error_codes"] == [70008]
    for client_id, token in ((VS_CODE, rt3), (AZURE_CLI, rt3), (EDGE, rt2)):
        dead = _refresh(family_authority, client_id, token)
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    [account] = cli.get_accounts()
    assert cli.acquire_token_silent_with_error(
        [STORAGE], account=account, force_refresh=True)["error"] == "invalid_grant"


def test_device_flow_to_a_family_member_carries_foci(family_authority):
    cache = msal.SerializableTokenCache()
    app = _app(family_authority, EDGE, cache)
    flow = app.initiate_device_flow(scopes=[STORAGE])
    browser = requests.Session()
    page = browser.get(flow["verification_uri"], timeout=10)
    assert parse_page(page.text)[0]
    done = browser.post(flow["verification_uri"], data={
        "user_code": flow["user_code"], "username": "user@contoso.example",
        "password": DEMO_PASSWORD,
    }, timeout=10)
    assert done.status_code == 200
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert _refresh_tokens(cache, EDGE)[0]["family_id"] == "1"
    cli = _app(family_authority, AZURE_CLI, cache)
    [account] = cli.get_accounts()
    assert "access_token" in cli.acquire_token_silent([STORAGE], account=account)


def test_non_family_response_has_no_foci(authority):
    app = msal_app(authority.authority, authority.tenant_id)  # an unregistered client id
    result = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert "access_token" in result
    [rt] = app.token_cache.search(app.token_cache.CredentialType.REFRESH_TOKEN)
    assert "family_id" not in rt


def test_refused_scope_does_not_spend_the_refresh_token(family_authority):
    cache, _, _ = _signed_in(family_authority)
    [frt] = _refresh_tokens(cache, AZURE_CLI)
    bad = requests.post(
        family_authority.url(f"/{family_authority.tenant_id}/oauth2/v2.0/token"),
        data={"grant_type": "refresh_token", "client_id": EDGE, "refresh_token": frt["secret"],
              "scope": "https://storage.azure.com/.default api://other/read"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_scope"
    assert _refresh(family_authority, EDGE, frt["secret"]).status_code == 200
