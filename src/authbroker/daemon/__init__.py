"""The Broker1 D-Bus daemon: service, token engine and encrypted store."""
