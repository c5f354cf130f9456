"""The canary: every private azure-identity name the broker credentials use still exists on the
installed (pinned) azure-identity. An upgrade that renames one fails here, naming it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from azure.identity._internal.interactive import InteractiveCredential

from azure.identity import AuthenticationRecord, InteractiveBrowserCredential
from azure.identity.broker import _compat

COMPAT = Path(_compat.__file__).resolve()
PACKAGE = COMPAT.parent


@pytest.fixture(scope="module")
def original() -> InteractiveBrowserCredential:
    return InteractiveBrowserCredential(disable_instance_discovery=True)


@pytest.mark.parametrize("name", _compat.CREDENTIAL_ATTRIBUTES)
def test_attribute_exists_on_a_constructed_credential(original, name: str) -> None:
    assert name in vars(original), f"InteractiveBrowserCredential no longer sets {name}"


@pytest.mark.parametrize("name", _compat.CREDENTIAL_METHODS)
def test_method_is_azure_identitys_own(name: str) -> None:
    method = getattr(InteractiveBrowserCredential, name, None)
    assert callable(method), f"InteractiveBrowserCredential has no {name}"
    assert method is not getattr(object, name, None), f"{name} is only object's"


def test_get_token_base_keeps_the_hook_signature() -> None:
    parameters = inspect.signature(InteractiveCredential._get_token_base).parameters
    assert {"scopes", "options", "base_method_name", "kwargs"} <= set(parameters)


def test_authenticate_still_passes_allow_prompt() -> None:
    assert _compat.ALLOW_PROMPT in inspect.getsource(InteractiveCredential.authenticate)
    assert _compat.ALLOW_PROMPT in inspect.getsource(InteractiveCredential._get_token_base)


def test_functions_behave_as_the_credentials_expect() -> None:
    assert _compat.resolve_tenant("a", additionally_allowed_tenants=[]) == "a"
    assert _compat.resolve_tenant("a", "b", additionally_allowed_tenants=["b"]) == "b"
    assert _compat.within_dac.get() is False
    assert all(isinstance(v, tuple) for v in _compat._DEFAULT_AUTHENTICATE_SCOPES.values())
    record = _compat._build_auth_record(
        {
            "id_token_claims": {
                "iss": "https://login.microsoftonline.com/t/v2.0",
                "aud": "client",
                "tid": "t",
                "preferred_username": "user@contoso.example",
            },
            "client_info": "eyJ1aWQiOiJ1IiwidXRpZCI6InQifQ",  # {"uid":"u","utid":"t"}
        }
    )
    assert isinstance(record, AuthenticationRecord)
    assert (record.home_account_id, record.username) == ("u.t", "user@contoso.example")


def test_no_other_module_imports_azure_identity_internals() -> None:
    """_compat is the only place: the credentials and the plugin import the names from it."""
    src = PACKAGE.parents[2]
    pattern = re.compile(r"azure\.identity\._[a-z]|from \.+_internal")
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path != COMPAT and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_every_private_attribute_the_credentials_read_is_listed() -> None:
    """Each ``self._x`` / ``self._sync._x`` the credentials read is ours or in the list."""
    ours = {"_plugin", "_driver", "_flight", "_sync", "_parent_window_handle",
            "_enable_msa_passthrough", "_use_default_broker_account",
            "_disable_interactive_fallback", "_plugin_options", "_msal_settings",
            "_make_backend", "_start_driver", "_get_token_base", "_request_token"}
    listed = set(_compat.CREDENTIAL_ATTRIBUTES) | set(_compat.CREDENTIAL_METHODS)
    reads = {  # the module, and who the azure-identity credential is there
        PACKAGE / "_credential.py": r"self",
        PACKAGE / "aio" / "_credential.py": r"self\._sync",
        PACKAGE / "_call.py": r"credential",
    }
    used: set[str] = set()
    for path, who in reads.items():
        used |= set(re.findall(who + r"\.(_[a-z][a-z_]*)", path.read_text()))
    assert "_authority" in used  # the scan sees the reads
    assert used - ours - listed == set()
