"""A protected resource: Azurite's blob service accepts the authority's tokens."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

from authbroker.devkit.azurite import API_VERSION
from azure.identity import InteractiveBrowserCredential

STORAGE_SCOPE = "https://storage.azure.com/.default"


def test_blob_round_trip_with_a_token_from_the_authority(authority, azurite, scripted_browser):
    credential = InteractiveBrowserCredential(
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        timeout=30,
    )
    service = BlobServiceClient(
        azurite.account_url, credential=credential, api_version=API_VERSION, retry_total=0
    )
    name = f"c{uuid.uuid4().hex[:12]}"
    container = service.create_container(name)
    payload = b"hello from the local authority\n" * 100
    container.upload_blob("greeting.txt", payload)
    assert container.download_blob("greeting.txt").readall() == payload
    assert [b.name for b in container.list_blobs()] == ["greeting.txt"]
    assert name in [c.name for c in service.list_containers()]


class _ForgedToken:
    """A token not from the authority: a v2 issuer Azurite must refuse."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, 2**31)


def test_azurite_refuses_a_token_with_the_wrong_issuer(authority, azurite):
    now = int(time.time())
    claims = {
        "iss": "https://127.0.0.1/not-sts/",
        "aud": "https://storage.azure.com",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }
    forged = jwt.encode(claims, "k" * 32, algorithm="HS256")
    service = BlobServiceClient(
        azurite.account_url,
        credential=_ForgedToken(forged),
        api_version=API_VERSION,
        retry_total=0,
    )
    with pytest.raises((HttpResponseError, ClientAuthenticationError)) as caught:
        service.create_container(f"c{uuid.uuid4().hex[:12]}")
    assert caught.value.status_code == 403
