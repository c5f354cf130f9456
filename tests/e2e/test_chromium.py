"""The sign-in page in a real browser: headless Chromium, driven over the DevTools protocol."""

from __future__ import annotations

import struct

import msal

from authbroker.authority import DEMO_PASSWORD

SCOPES = ["https://storage.azure.com/.default"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_sign_in_page_round_trip_in_chromium(authority, chromium, loopback, tmp_path):
    app = msal.PublicClientApplication(
        "chromium-test-client",
        authority=f"{authority.authority}/{authority.tenant_id}",
        instance_discovery=False,
    )
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post"
    )
    page = chromium.new_page()
    try:
        page.navigate(flow["auth_uri"])
        assert page.wait_for("!!document.querySelector('form input[name=password]')")
        assert page.evaluate("document.location.protocol") == "https:"  # the pinned cert works
        page.type_into("input[name=username]", "user@contoso.example")
        page.type_into("input[name=password]", DEMO_PASSWORD)
        shot = page.screenshot(tmp_path / "sign-in.png")
        page.evaluate("document.querySelector('form button[type=submit]').click()")
        # The form_post page's script posts the code to the app's loopback listener.
        arrival = loopback.wait(15)
        assert page.wait_for("document.body && document.body.innerText.includes('Signed in')")
    finally:
        page.close()
    assert arrival.method == "POST"
    assert arrival.fields["state"] == flow["state"] and arrival.fields["code"]
    result = app.acquire_token_by_auth_code_flow(flow, arrival.fields)
    assert result["id_token_claims"]["preferred_username"] == "user@contoso.example"
    width, height = _png_size(shot.read_bytes())
    assert width >= 400 and height >= 300
