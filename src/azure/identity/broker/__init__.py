"""Drop-in ``azure.identity.broker``: broker-backed interactive sign-in for azure-identity.

Backends (pymsalruntime, our D-Bus client, msal's browser flow) are imported on first use, so
importing this package costs little more than importing ``azure.identity``.
"""

import os as _os
import warnings as _warnings
from pathlib import Path as _Path

from ._credential import InteractiveBrowserBrokerCredential, PopTokenRequestOptions

_MICROSOFT_MODULES = ("_browser.py", "_utils.py")


def _foreign_modules(directory: _Path) -> list[str]:
    """Modules of Microsoft's azure-identity-broker found in our package directory."""
    return [name for name in _MICROSOFT_MODULES if _os.path.exists(directory / name)]


if _foreign_modules(_Path(__file__).parent):
    _warnings.warn(
        "azure.identity.broker: Microsoft's azure-identity-broker and authbroker are installed "
        "in the same environment and overwrite each other's files; uninstall one of them",
        RuntimeWarning,
        stacklevel=2,
    )

__all__ = [
    "InteractiveBrowserBrokerCredential",
    "PopTokenRequestOptions",
]
