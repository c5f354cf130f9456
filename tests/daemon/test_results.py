"""msal answers as Broker1 results, without an authority: the account a sign-in names (the one
``entra.account_fields`` rule), error dicts, the silent key and the account table's rules."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from authbroker import broker1, entra
from authbroker.daemon.accounts import DOCUMENT_VERSION, AccountTable
from authbroker.daemon.hot import SilentKey
from authbroker.daemon.results import error_from_result, token_result
from authbroker.daemon.routing import Target
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import CP1, SCOPE, auth

TARGET = Target("https://127.0.0.1:8443/organizations", False)
OID, TID = "0b1c2d3e-aaaa-4bbb-8ccc-111122223333", "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"


def _id_token(claims: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{payload}.sig"


def test_a_sign_in_with_client_info_names_the_account_as_before() -> None:
    claims = {"oid": OID, "tid": TID, "name": "Ada Lovelace", "preferred_username": "ada@x.example"}
    client_info = entra.encode_client_info(OID, TID)
    answer = {"access_token": "at", "id_token": _id_token(claims), "client_info": client_info,
              "expires_in": 3600}
    result = token_result(answer, (SCOPE,), None, TARGET)  # type: ignore[arg-type]
    assert result.account == broker1.Account(
        home_account_id=f"{OID}.{TID}", local_account_id=OID, realm=TID,
        username="ada@x.example", environment="127.0.0.1", name="Ada Lovelace",
        given_name="Ada", family_name="Lovelace", client_info=client_info,
    )
    assert result.client_info == client_info and result.granted_scopes == (SCOPE,)


def test_without_client_info_the_account_comes_from_oid_and_tid() -> None:
    claims = {"oid": OID, "tid": TID, "upn": "u@x.example", "given_name": "U", "name": "U X"}
    answer = {"access_token": "at", "id_token_claims": claims}
    result = token_result(answer, (SCOPE,), None, TARGET)  # type: ignore[arg-type]
    assert broker1.decode_client_info(result.client_info) == (OID, TID)
    assert result.account and result.account.home_account_id == f"{OID}.{TID}"
    assert (result.account.username, result.account.given_name,
            result.account.family_name) == ("u@x.example", "U", "X")


def test_an_answer_naming_no_account_or_no_token_is_an_error() -> None:
    with pytest.raises(BrokerStatusError) as err:
        token_result({"access_token": "at"}, (SCOPE,), None, TARGET)  # type: ignore[arg-type]
    assert "names no account" in err.value.context
    with pytest.raises(BrokerStatusError) as err:
        token_result({"id_token": "x"}, (SCOPE,), None, TARGET)  # type: ignore[arg-type]
    assert "no access token" in err.value.context


def test_error_dicts_become_statuses_with_the_aadsts_number() -> None:
    needs_person = error_from_result(
        {"error": "invalid_grant", "error_description": "AADSTS70008: expired\nTrace ID: 1"},
        "test",
    )
    assert needs_person.status == broker1.Status.INTERACTION_REQUIRED
    assert needs_person.error_code == 70008
    assert needs_person.context == "invalid_grant: AADSTS70008: expired"
    other = error_from_result({"error": "invalid_client", "error_codes": [7000218],
                               "error_description": "AADSTS7000218: no secret"}, "test")
    assert other.status == broker1.Status.UNEXPECTED and other.error_code == 7000218
    assert "AADSTS-7000218" in other.context  # msal must not read it as its redirect error


def test_the_silent_key_names_its_parts() -> None:
    key = SilentKey.of(auth(scopes=("B", "a"), decoded_claims=CP1), TARGET.authority, "h.t")
    assert key.home_account_id == "h.t"
    assert key.scopes == ("a", "b") and key.capabilities == ("CP1",) and key.challenge is None
    assert key != SilentKey.of(auth(scopes=("a", "b")), TARGET.authority, "h.t")


def _account(name: str) -> broker1.Account:
    return broker1.Account(home_account_id=f"{name}.t", local_account_id=name, realm="t",
                           username=f"{name}@x.example")


class _NoCaches:
    def load_caches(self, states: Any) -> None:
        self.states = states

    def load_legacy_cache(self, state: str | None) -> int:
        self.legacy = state
        return 0


def test_the_default_account_rules() -> None:
    table = AccountTable()
    assert table.default is None and table.listed() == []
    table.seen(_account("only"))  # a single account is the default even if never chosen
    assert table.default == "only.t"
    table.signed_in(_account("a"))
    table.signed_in(_account("b"))
    assert table.default == "b.t"  # the latest sign-in
    table.choose_default("a.t")
    table.signed_in(_account("c"))
    assert table.default == "a.t"  # a chosen default sticks
    assert [a.username for a in table.listed()][0] == "a@x.example"
    table.forget("a.t")
    assert table.default == "c.t"  # the latest sign-in inherits it
    with pytest.raises(BrokerStatusError) as err:
        table.choose_default("gone.t")
    assert err.value.status == broker1.Status.ACCOUNT_NOT_FOUND


def test_the_table_round_trips_and_single_file_documents_are_migrated() -> None:
    table = AccountTable()
    table.signed_in(_account("a"))
    table.choose_default("a.t")
    meta = table.meta()
    assert meta == {"core": DOCUMENT_VERSION, "defaultAccount": "a.t", "defaultChosen": True}
    assert DOCUMENT_VERSION == 3
    again = AccountTable()  # what the record store gives back: the meta row and each row
    again.load(meta, {"a.t": table.entry("a.t") or {}})
    assert again.meta() == meta and again.entries() == table.entries()
    # the single-file store's documents: version 2 (caches by capability set) and version 1
    v2 = {"core": 2, "msalCaches": {"plain": "{}"}, "accounts": table.entries(),
          "defaultAccount": "a.t", "defaultChosen": True}
    two, caches = AccountTable(), _NoCaches()
    assert two.apply_document(v2, caches) is True  # converted into the record store
    assert caches.states == {"plain": "{}"} and two.meta() == meta
    old, legacy = AccountTable(), _NoCaches()
    v1 = {"core": 1, "msalCache": "{}", "accounts": table.entries(), "defaultAccount": None}
    assert old.apply_document(v1, legacy) is True
    assert legacy.legacy == "{}" and old.default == "a.t"
