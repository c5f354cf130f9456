"""Async twin of ``azure.identity.broker``."""

from ._credential import InteractiveBrowserBrokerCredential

__all__ = ["InteractiveBrowserBrokerCredential"]
