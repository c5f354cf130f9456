"""The seed's README example, as written except for ``win32gui``: BlobServiceClient on Azurite
(OAuth, HTTPS) with InteractiveBrowserBrokerCredential, through our daemon and the local
authority — sync (azure.storage.blob) and aio (azure.storage.blob.aio) in one suite."""

from __future__ import annotations

import asyncio
import os
import uuid

import msal
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AioBlobServiceClient

from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker.aio import InteractiveBrowserBrokerCredential as AioCredential
from fixtures.azurite import API_VERSION

# On Linux there is no win32gui: the console handle is what msal documents for console apps.
current_window_handle = msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE
DATA = b"hello from the broker\n" * 100


def round_trip_sync(account_url: str, **kwargs) -> bytes:
    credential = InteractiveBrowserBrokerCredential(
        parent_window_handle=current_window_handle, **kwargs
    )
    with credential:
        client = BlobServiceClient(account_url, credential=credential, api_version=API_VERSION)
        container = client.create_container(f"c{uuid.uuid4().hex[:12]}")
        container.upload_blob("greeting.txt", DATA)
        data = container.download_blob("greeting.txt").readall()
        assert [b.name for b in container.list_blobs()] == ["greeting.txt"]
        return data


async def round_trip_aio(account_url: str, **kwargs) -> bytes:
    # aiohttp ignores REQUESTS_CA_BUNDLE: trust the local authority's CA explicitly
    verify = os.environ["REQUESTS_CA_BUNDLE"]
    credential = AioCredential(parent_window_handle=current_window_handle, **kwargs)
    async with credential:
        client = AioBlobServiceClient(
            account_url, credential=credential, api_version=API_VERSION, connection_verify=verify
        )
        async with client:
            container = await client.create_container(f"c{uuid.uuid4().hex[:12]}")
            await container.upload_blob("greeting.txt", DATA)
            stream = await container.download_blob("greeting.txt")
            data = await stream.readall()
            assert [b.name async for b in container.list_blobs()] == ["greeting.txt"]
            return data


def round_trip(flavour: str, account_url: str, **kwargs) -> bytes:
    if flavour == "sync":
        return round_trip_sync(account_url, **kwargs)
    return asyncio.run(round_trip_aio(account_url, **kwargs))


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_seed_example_blob_round_trip(flavour, azurite, cred_kwargs, broker_daemon) -> None:
    assert round_trip(flavour, azurite.account_url, **cred_kwargs) == DATA
    assert broker_daemon.sign_ins() == 1


@pytest.mark.parametrize("flavour", ["sync", "aio"])
def test_seed_example_with_default_broker_account(
    flavour, azurite, cred_kwargs, broker_daemon
) -> None:
    round_trip(flavour, azurite.account_url, **cred_kwargs)  # the picker, once
    data = round_trip(flavour, azurite.account_url, use_default_broker_account=True, **cred_kwargs)
    assert data == DATA
    assert broker_daemon.sign_ins() == 1  # the second client used the default account silently
