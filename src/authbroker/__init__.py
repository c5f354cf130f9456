"""authbroker: an open authentication broker for Python.

Parts: the local Entra-compatible authority (``authbroker.authority``), the Broker1 D-Bus
daemon (``authbroker.daemon``), its clients (``authbroker.client``) and the drop-in
``azure.identity.broker`` plugin. See docs/ and the README.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
