"""Drop-in ``azure.identity.broker``: broker-backed interactive sign-in for azure-identity.

Backends (pymsalruntime, our D-Bus client, msal's browser flow) are imported on first use, so
importing this package costs little more than importing ``azure.identity``.
"""

from ._credential import InteractiveBrowserBrokerCredential, PopTokenRequestOptions

__all__ = [
    "InteractiveBrowserBrokerCredential",
    "PopTokenRequestOptions",
]
