"""``authbroker token --pop-url``: real CLI processes, the real daemon on a private bus, the local
authority's PoP resource behind it; every SHR printed is accepted by the resource and checked
independently (plugin.pop_checks)."""

from __future__ import annotations

import json
import subprocess
import sys

import jwt
import pytest

from fixtures.daemon import DaemonProcess, daemon_env
from plugin.pop_checks import call, challenge, verify_shr

USER = "user@contoso.example"
CLI = [sys.executable, "-m", "authbroker"]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def signed_in(dbus_session, authority, tmp_path):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                     AUTHBROKER_UI="browser")
    daemon = DaemonProcess(dbus_session, env, tmp_path)
    daemon.start()
    try:
        login = cli(env, "login", "--scope", authority.pop_resource_scope)
        assert login.returncode == 0, login.stderr
        yield env
    finally:
        daemon.stop()
        assert daemon.stdout_text() == ""


def test_pop_url_asks_for_the_nonce_and_prints_an_shr(signed_in, authority) -> None:
    scope, url = authority.pop_resource_scope, authority.pop_resource
    done = cli(signed_in, "token", "--scope", scope, "--pop-url", url)
    assert done.returncode == 0, done.stderr
    shr = done.stdout.strip()
    assert len(done.stdout.splitlines()) == 1 and shr not in done.stderr
    answer = call(url, shr)
    assert answer.status_code == 200, answer.text
    assert answer.json()["preferred_username"] == USER


def test_pop_nonce_method_and_json(signed_in, authority) -> None:
    scope, url = authority.pop_resource_scope, authority.pop_resource + "/items"
    nonce = challenge(url, "POST")
    done = cli(signed_in, "token", "--scope", scope, "--pop-url", url + "?q=1",
               "--pop-method", "post", "--pop-nonce", nonce, "--output", "json")
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert obj["tokenType"] == "pop" and obj["username"] == USER
    assert obj["pop"] == {"method": "POST", "host": url.split("/")[2],
                          "path": "/resource/pop/items", "nonce": nonce}
    verify_shr(obj["accessToken"], method="POST", url=url, nonce=nonce)
    assert call(url, obj["accessToken"], method="POST").status_code == 200
    assert call(url, obj["accessToken"], method="GET").status_code == 401


def test_an_empty_nonce_signs_none_and_bearer_stays_bearer(signed_in, authority) -> None:
    scope, url = authority.pop_resource_scope, authority.pop_resource
    done = cli(signed_in, "token", "--scope", scope, "--pop-url", url, "--pop-nonce", "",
               "--output", "json")
    assert done.returncode == 0, done.stderr
    shr = json.loads(done.stdout)["accessToken"]
    assert "nonce" not in jwt.decode(shr, options={"verify_signature": False})
    assert call(url, shr).status_code == 401  # this resource needs one
    bearer = json.loads(cli(signed_in, "token", "--scope", scope, "--output", "json").stdout)
    assert bearer["tokenType"] == "Bearer" and "pop" not in bearer


def test_pop_errors_exit_1_with_a_hint(signed_in, authority, tmp_path) -> None:
    scope = authority.pop_resource_scope
    bad = cli(signed_in, "token", "--scope", scope, "--pop-url", "not-a-url")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "--pop-url must be an http(s) URL" in bad.stderr and "hint:" in bad.stderr
    closed = cli(signed_in, "token", "--scope", scope, "--pop-url", "https://127.0.0.1:9/x")
    assert closed.returncode == 1 and closed.stdout == ""
    assert "cannot ask https://127.0.0.1:9/x for its PoP nonce" in closed.stderr
    assert "--pop-nonce" in closed.stderr
    # a URL that asks for no nonce: said on stderr, the SHR is still printed
    plain = cli(signed_in, "token", "--scope", scope, "--pop-url", authority.authority + "/")
    assert plain.returncode == 0, plain.stderr
    assert "asked for no PoP nonce" in plain.stderr and plain.stdout.count(".") == 2
