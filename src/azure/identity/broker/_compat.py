"""Every private azure-identity name the broker credentials use, imported or listed here only.

azure-identity may rename any of these in a minor release. The canary
(``tests/plugin/test_compat.py``) checks each one on the pinned version, so an upgrade that
breaks one fails with its name instead of deep inside a sign-in. The plugin core is lent the
functions it needs from here (``PluginCore(resolve_tenant=..., build_auth_record=...)``); it
never imports ``azure.identity._internal`` itself (the plugin may not import this package).
"""

from __future__ import annotations

from azure.identity._internal import resolve_tenant, within_dac
from azure.identity._internal.interactive import _DEFAULT_AUTHENTICATE_SCOPES, _build_auth_record

__all__ = [
    "ALLOW_PROMPT",
    "CREDENTIAL_ATTRIBUTES",
    "CREDENTIAL_METHODS",
    "_DEFAULT_AUTHENTICATE_SCOPES",
    "_build_auth_record",
    "resolve_tenant",
    "within_dac",
]

#: Instance attributes of InteractiveBrowserCredential that the broker credential reads.
CREDENTIAL_ATTRIBUTES = (
    "_authority",
    "_tenant_id",
    "_client_id",
    "_additionally_allowed_tenants",
    "_login_hint",
    "_timeout",
    "_parsed_url",
    "_enable_support_logging",
    "_cache",
    "_cae_cache",
    "_client",
    "_instance_discovery",
    "_auth_record",
    "_disable_automatic_authentication",
)

#: Its private methods that the broker credential calls (``_initialize_cache``, the pickling
#: pair through ``super()``) or overrides (``_get_token_base``, ``_request_token``).
CREDENTIAL_METHODS = (
    "_initialize_cache",
    "_get_token_base",
    "_request_token",
    "__getstate__",
    "__setstate__",
)

#: The private keyword azure-identity's ``authenticate`` passes to ``get_token``.
ALLOW_PROMPT = "_allow_prompt"
