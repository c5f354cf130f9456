"""``authbroker doctor`` as a person runs it: a real CLI process on a private bus, with our daemon
running (and signed in, its store key in a file or in an unlocked gnome-keyring), with nothing
running, and against an authority whose CA is not trusted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import certifi
import pytest

from authbroker import broker1
from fixtures.daemon import DaemonProcess, daemon_env

SCOPE = "https://storage.azure.com/.default"
USER = "user@contoso.example"
CLI = [sys.executable, "-m", "authbroker"]


@pytest.fixture
def env(dbus_session, authority, tmp_path) -> dict[str, str]:
    return daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                      AUTHBROKER_UI="browser")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def doctor(env: dict[str, str], store: Path) -> tuple[int, dict[str, dict]]:
    """Doctor's exit status and its JSON checks by name (each exactly check/ok/detail/fix)."""
    proc = cli(env, "doctor", "--output", "json", "--store", str(store))
    checks = json.loads(proc.stdout)
    assert all(set(check) == {"check", "ok", "detail", "fix"} for check in checks), checks
    return proc.returncode, {check["check"]: check for check in checks}


def tls_check(checks: dict[str, dict], authority) -> dict:
    return checks[f"tls {authority.authority.removeprefix('https://')}"]


def test_with_our_daemon_running_everything_is_ok(dbus_session, authority, env, tmp_path):
    store = tmp_path / "store.enc"
    with DaemonProcess(dbus_session, env, tmp_path, store=store) as daemon:
        status, checks = doctor(env, store)
        assert status == 0, checks
        owner = checks["broker-name"]
        assert owner["ok"] and f"pid {daemon.pid}" in owner["detail"]
        assert Path(sys.executable).resolve().name in owner["detail"]  # its executable
        assert checks["broker-version"]["ok"]
        assert checks["session-bus"]["ok"] and checks["plugin-dbus"]["ok"]
        assert "no store yet" in checks["store"]["detail"]
        assert tls_check(checks, authority)["ok"]
        assert authority.authority in checks["routing"]["detail"]
        assert checks["sign-in-ui"]["ok"] and "browser" in checks["sign-in-ui"]["detail"]
        assert not checks["secret-service"]["ok"]  # no keyring on this bus: a warning only

        login = cli(env, "login", "--scope", SCOPE)
        assert login.returncode == 0, login.stderr
        status, checks = doctor(env, store)
        assert status == 0, checks
        key_file = store.with_name(store.name + ".key")
        assert checks["store"]["ok"], checks["store"]
        assert f"key: file ({key_file})" in checks["store"]["detail"]
        text = cli(env, "doctor", "--store", str(store))
        assert text.returncode == 0 and "ok    store" in text.stdout
    key = key_file.read_bytes()
    for output in (json.dumps(checks), text.stdout + text.stderr):
        assert key.hex() not in output and key.hex().upper() not in output


def test_store_key_in_the_unlocked_keyring(dbus_session, secret_service, authority, tmp_path):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                     AUTHBROKER_UI="browser", **secret_service.env)
    store = tmp_path / "store.enc"
    with DaemonProcess(dbus_session, env, tmp_path, store=store):
        assert cli(env, "login", "--scope", SCOPE).returncode == 0
        status, checks = doctor(env, store)
    assert status == 0, checks
    assert checks["secret-service"] == {
        "check": "secret-service", "ok": True,
        "detail": "present and unlocked; holds the store key", "fix": "",
    }
    assert checks["store"]["ok"] and "key: secret-service" in checks["store"]["detail"]
    (key,) = secret_service.secrets({"application": "authbroker"})
    assert key.hex() not in json.dumps(checks)


def test_with_nothing_running_the_fix_names_install_service(dbus_session, env, tmp_path):
    status, checks = doctor(env, tmp_path / "store.enc")
    assert status != 0
    owner = checks["broker-name"]
    assert not owner["ok"] and broker1.BUS_NAME in owner["detail"]
    assert "authbroker install-service" in owner["fix"]
    assert not checks["broker-version"]["ok"]
    assert "authbroker install-service" in checks["plugin-dbus"]["fix"]
    text = cli(env, "doctor", "--store", str(tmp_path / "store.enc"))
    assert text.returncode == status
    assert "FAIL  broker-name" in text.stdout
    assert "fix: run `authbroker install-service`" in text.stdout


def test_activatable_name_is_ok_without_starting_it(dbus_session, env, tmp_path):
    dbus_session.write_service_file(broker1.BUS_NAME, ["/bin/false"])
    status, checks = doctor(env, tmp_path / "store.enc")
    assert checks["broker-name"]["ok"] and "activatable" in checks["broker-name"]["detail"]
    assert not checks["broker-version"]["ok"] and status != 0  # /bin/false never answers


def test_untrusted_authority_ca_names_requests_ca_bundle(dbus_session, authority, env, tmp_path):
    untrusted = dict(env, REQUESTS_CA_BUNDLE=certifi.where(), CURL_CA_BUNDLE=certifi.where())
    store = tmp_path / "store.enc"
    with DaemonProcess(dbus_session, env, tmp_path, store=store):
        status, checks = doctor(untrusted, store)
    assert status != 0
    tls = tls_check(checks, authority)
    assert not tls["ok"] and "certificate not trusted" in tls["detail"]
    assert "REQUESTS_CA_BUNDLE" in tls["fix"]
    assert checks["broker-name"]["ok"]  # only the trust is wrong


def test_single_file_store_header_and_key(dbus_session, env, tmp_path):
    from authbroker.daemon.keys import FileKeyProvider, new_key
    from authbroker.daemon.store import encrypt_document

    store = tmp_path / "legacy" / "store.enc"
    store.parent.mkdir(mode=0o700)
    key_file = FileKeyProvider(store.with_name("store.enc.key"))
    key_file.write(key := new_key())
    store.write_bytes(encrypt_document({"accounts": {"secret-marker": {}}}, key))
    store.chmod(0o600)
    _, checks = doctor(env, store)
    assert checks["store"]["ok"], checks["store"]
    assert f"single-file store, format 1); key: file ({key_file.path})" in checks["store"]["detail"]
    assert "secret-marker" not in json.dumps(checks)  # the header only: nothing decrypted

    store.write_bytes(encrypt_document({}, new_key()))  # a key nobody has any more
    _, checks = doctor(env, store)
    assert not checks["store"]["ok"] and "key that is not available" in checks["store"]["detail"]


def test_settings_that_block_sign_in_are_named(dbus_session, env, tmp_path):
    wrong = {k: v for k, v in env.items() if k != "AUTHBROKER_AUTHORITY"}
    wrong.update(AUTHBROKER_ROUTE_PUBLIC_CLOUD="1", AUTHBROKER_BACKEND="wam2")
    status, checks = doctor(wrong, tmp_path / "store.enc")
    assert status != 0
    assert not checks["routing"]["ok"] and "AUTHBROKER_AUTHORITY" in checks["routing"]["fix"]
    assert not checks["plugin"]["ok"] and "AUTHBROKER_BACKEND='wam2'" in checks["plugin"]["detail"]
