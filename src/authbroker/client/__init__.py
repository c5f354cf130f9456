"""Clients of the Broker1 daemon: ``BrokerClient`` (blocking) and ``AsyncBrokerClient`` (asyncio).

Both are thin twins over one sans-I/O core (:class:`Broker1Messages`) that builds the D-Bus
messages from ``broker1`` requests (interface and signature from ``broker1.METHODS``) and turns
replies into ``broker1`` results or errors; the twins only move messages. They raise only
``authbroker.errors``: replies carrying an error object raise ``BrokerStatusError``; a missing
bus or broker, a timeout or a lost connection raise ``BrokerUnavailableError``; a reply that
breaks the protocol raises ``BrokerProtocolError`` (misuse, such as naming no account, is a
``ValueError``). The package imports ``broker1`` and ``errors`` only, never the daemon.

Interactive calls listen for the daemon's device-code prompt (a signal on
``broker1.EXTENSION_INTERFACE`` carrying the call's correlation id) while the call runs, and
hand it to ``on_device_code``; the default prints the prompt's message to stderr.
"""

from authbroker.broker1 import DeviceCodePrompt
from authbroker.client.aio import AsyncBrokerClient
from authbroker.client.blocking import BrokerClient
from authbroker.client.messages import Broker1Messages, print_device_code

__all__ = ["AsyncBrokerClient", "Broker1Messages", "BrokerClient", "DeviceCodePrompt",
           "print_device_code"]
