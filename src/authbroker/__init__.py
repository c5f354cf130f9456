"""authbroker: an open authentication broker for Python (the version and a map of the parts).

The parts, bottom first (each imports only its own part and the ones above it in this list):

* ``errors``, ``config``, ``entra``, ``files``: the one error tree, every setting, Entra facts,
  private-file writing;
* ``broker1``: the Broker1 wire definition (names, messages, codec);
* ``client``: ``BrokerClient`` / ``AsyncBrokerClient`` over the session bus;
* ``daemon``: the Broker1 D-Bus broker daemon (``authbroker.daemon.run``);
* ``plugin``: what the drop-in ``azure.identity.broker`` runs;
* ``authority``: the offline Entra-compatible local authority (``authbroker.authority.run``);
* ``devkit``, ``demo``: stand-ins for the outside world, and the offline demo;
* ``cli``: the ``authbroker`` command, the only part that parses arguments or prints.

See docs/ and the README.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
