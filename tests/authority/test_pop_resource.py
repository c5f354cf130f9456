"""The PoP-protected demo resource (``/resource/pop``) over TLS: its nonce challenge, a 200 for
SHRs built with ``authbroker.shr`` and, independently, with PyJWT, and a 401 with a fresh
challenge for every check a real resource makes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from authbroker import shr
from authbroker.authority import AuthorityConfig, serve
from authbroker.authority.minting import Grant
from authbroker.authority.nonces import Nonces
from authbroker.authority.scopes import POP_RESOURCE_SCOPE, parse_scopes

CHALLENGE = re.compile(r'PoP nonce="([A-Za-z0-9_.-]+)"')


def _nonce(answer: requests.Response) -> str:
    assert answer.status_code == 401, answer.text
    match = CHALLENGE.fullmatch(answer.headers["WWW-Authenticate"])
    assert match, answer.headers["WWW-Authenticate"]
    return match.group(1)


@pytest.fixture
def nonce(authority) -> str:
    return _nonce(requests.get(authority.pop_resource, timeout=10))


@pytest.fixture(scope="module")
def host(authority) -> str:
    return f"127.0.0.1:{authority.port}"


def _call(url: str, authorization: str | None, method: str = "GET") -> requests.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.request(method, url, headers=headers, timeout=10)


def _refused(answer: requests.Response, reason: str, *secrets: str) -> None:
    _nonce(answer)  # a fresh challenge with every refusal
    body = answer.json()
    assert body["error"] == "invalid_token", body
    assert reason in body["error_description"], body["error_description"]
    for secret in secrets:
        assert secret not in answer.text


def test_without_authorization_the_resource_challenges_with_a_fresh_nonce(authority):
    first = requests.get(authority.pop_resource, timeout=10)
    second = requests.post(authority.pop_resource + "/deeper/path?x=1", timeout=10)
    assert _nonce(first) != _nonce(second)
    assert first.json()["error"] == "invalid_request"
    assert "Authorization: PoP" in first.json()["error_description"]
    assert first.headers["Cache-Control"] == "no-store"


def test_an_shr_from_authbroker_shr_is_accepted(authority, pop_key, pop_access_token, host,
                                                nonce):
    for method, path in (("GET", "/resource/pop"), ("POST", "/resource/pop/items/7")):
        signed = shr.sign(pop_key, method=method, host=host, path=path, at=pop_access_token,
                          nonce=nonce)
        answer = _call(authority.url(path + "?query=ignored"), f"PoP {signed}", method)
        assert answer.status_code == 200, answer.text
        who = answer.json()
        assert who["preferred_username"] == "user@contoso.example"
        assert who["name"] and who["oid"] and who["tid"] == authority.tenant_id
        assert who["appid"] == who["azp"] == "3c5d6b41-7f0c-4f6e-9a77-1f2b3c4d5e6f"
        assert (who["method"], who["path"], who["token_type"]) == (method, path, "pop")


def test_an_shr_built_with_pyjwt_directly_is_accepted(authority, pop_key, pop_access_token,
                                                      host, nonce):
    jwk = RSAAlgorithm.to_jwk(pop_key.public_key(), as_dict=True)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]},
                           separators=(",", ":")).encode()
    kid = shr.b64url(hashlib.sha256(canonical).digest())
    payload = {"at": pop_access_token, "ts": int(time.time()), "m": "GET", "u": host,
               "p": "/resource/pop", "nonce": nonce, "cnf": {"jwk": jwk}}
    signed = jwt.encode(payload, pop_key, algorithm="RS256", headers={"kid": kid, "typ": "pop"})
    answer = _call(authority.pop_resource, f"PoP {signed}")
    assert answer.status_code == 200, answer.text
    # ... and the resource's own check agrees with one made here with PyJWT alone.
    assert jwt.get_unverified_header(signed)["typ"] == "pop"
    at_claims = jwt.decode(pop_access_token, options={"verify_signature": False})
    assert at_claims["cnf"]["kid"] == kid


def test_binding_mismatches_are_refused(authority, pop_key, pop_access_token, host, nonce):
    def sign(**overrides: object) -> str:
        args: dict = {"method": "GET", "host": host, "path": "/resource/pop",
                      "at": pop_access_token, "nonce": nonce, **overrides}
        return "PoP " + shr.sign(pop_key, **args)

    url = authority.pop_resource
    _refused(_call(url, sign(method="POST")), "m (method)")
    _refused(_call(url + "/other", sign()), "p (path)", pop_access_token)
    _refused(_call(url, sign(path="/resource/pop/other")), "p (path)")
    _refused(_call(url, sign(host=f"localhost:{authority.port}")), "u (host)")
    _refused(_call(url, sign(host="127.0.0.1")), "u (host)")
    _refused(_call(url, sign(ts=int(time.time()) - 600)), "ts")
    _refused(_call(url, sign(ts=int(time.time()) + 600)), "ts")
    _refused(_call(url, sign(nonce="unknown")), "not issued by this resource")
    _refused(_call(url, sign(nonce=Nonces().issue())), "not issued by this resource")
    _refused(_call(url, sign(nonce=None)), "no nonce")
    _refused(_call(url, sign(nonce=nonce[:-2] + "AA")), "not issued by this resource")
    # The same SHR that works on its own path is refused on another: a path mismatch, no 404.
    good = sign()
    assert _call(url, good).status_code == 200
    _refused(_call(url + "/replayed", good), "p (path)")


def test_forged_and_tampered_shrs_are_refused(authority, pop_key, pop_access_token, host,
                                              nonce):
    url = authority.pop_resource
    args = {"method": "GET", "host": host, "path": "/resource/pop", "nonce": nonce}
    foreign = shr.new_key()
    # A foreign key: an SHR signed (and its cnf.jwk set) by a key the token is not bound to.
    _refused(_call(url, "PoP " + shr.sign(foreign, at=pop_access_token, **args)),
             "not signed with the key the access token is bound to")
    # The right cnf.jwk but signed with another key.
    header, payload, _ = shr.sign(pop_key, at=pop_access_token, **args).split(".")
    _, _, foreign_sig = shr.sign(foreign, at=pop_access_token, **args).split(".")
    _refused(_call(url, f"PoP {header}.{payload}.{foreign_sig}"), "signature does not verify")
    # Tampered: the payload changed after signing (method GET -> the path of another call).
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["p"] = "/resource/pop/admin"
    _, _, sig = shr.sign(pop_key, at=pop_access_token, **args).split(".")
    tampered = shr.b64url(json.dumps(claims).encode())
    _refused(_call(url + "/admin", f"PoP {header}.{tampered}.{sig}"), "signature does not verify")
    _refused(_call(url, "PoP not.a.jws"), "not a signed HTTP request")
    as_jwt = jwt.encode({"at": pop_access_token, "cnf": {"jwk": shr.public_jwk(pop_key)}},
                        pop_key, algorithm="RS256")  # typ JWT
    _refused(_call(url, f"PoP {as_jwt}"), "typ pop")


def test_bearer_tokens_are_refused(authority, token_post, refresh_token, pop_key, host, nonce):
    scope = authority.pop_resource_scope
    bearer = token_post(grant_type="refresh_token", refresh_token=refresh_token(scope),
                        scope=scope).json()["access_token"]
    url = authority.pop_resource
    _refused(_call(url, f"Bearer {bearer}"), "bearer tokens are not accepted", bearer)
    _refused(_call(url, f"PoP {bearer}"), "not a signed HTTP request", bearer)
    wrapped = shr.sign(pop_key, method="GET", host=host, path="/resource/pop", at=bearer,
                       nonce=nonce)
    _refused(_call(url, f"PoP {wrapped}"), "no cnf.kid", bearer)
    _refused(_call(url, "Basic dXNlcjpwYXNz"), "scheme must be PoP")
    no_at = shr.sign(pop_key, method="GET", host=host, path="/resource/pop", nonce=nonce)
    _refused(_call(url, f"PoP {no_at}"), "no access token")


def test_access_tokens_for_another_audience_or_not_from_this_authority_are_refused(
        authority, token_post, refresh_token, pop_key, pop_access_token, host, nonce):
    kid = shr.thumbprint(shr.public_jwk(pop_key))
    other = token_post(grant_type="refresh_token", scope="api://other/.default",
                       refresh_token=refresh_token("api://other/.default"), token_type="pop",
                       req_cnf=shr.req_cnf(kid)).json()["access_token"]
    claims = jwt.decode(pop_access_token, options={"verify_signature": False})
    signing = serialization.load_pem_private_key(
        (authority.data_dir / "signing-key.pem").read_bytes(), password=None)
    authority_kid = jwt.get_unverified_header(pop_access_token)["kid"]
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60},
                         signing, algorithm="RS256", headers={"kid": authority_kid})
    forged = jwt.encode(claims, shr.new_key(), algorithm="RS256",
                        headers={"kid": authority_kid})
    foreign_issuer = jwt.encode({**claims, "iss": "https://evil.example/x/v2.0"}, signing,
                                algorithm="RS256", headers={"kid": authority_kid})
    for at, reason in ((other, "not for this resource"), (expired, "expired"),
                       (forged, "not signed by this authority"),
                       (foreign_issuer, "not issued by this authority")):
        signed = shr.sign(pop_key, method="GET", host=host, path="/resource/pop", at=at,
                          nonce=nonce)
        _refused(_call(authority.pop_resource, f"PoP {signed}"), reason, at)


def test_an_expired_nonce_is_refused_and_a_fresh_one_offered(tmp_path):
    async def main() -> None:
        async with serve(AuthorityConfig(data_dir=tmp_path, port=0)) as running:
            st = running.state
            user = st.directory.user("user@contoso.example")
            assert user is not None
            key = shr.new_key()
            grant = Grant(user, "3c5d6b41-7f0c-4f6e-9a77-1f2b3c4d5e6f",
                          parse_scopes(POP_RESOURCE_SCOPE), int(time.time()),
                          cnf_kid=shr.thumbprint(shr.public_jwk(key)))
            at = st.minter.access_token(st.base_url, grant, int(time.time()))
            url = f"{st.base_url}/resource/pop"

            def call(nonce: str) -> requests.Response:
                signed = shr.sign(key, method="GET", host=f"127.0.0.1:{running.port}",
                                  path="/resource/pop", at=at, nonce=nonce)
                return requests.get(url, headers={"Authorization": f"PoP {signed}"},
                                    verify=str(running.pki.ca_cert), timeout=10)

            old = await asyncio.to_thread(call, st.nonces.issue(now=time.time() - 301))
            _refused(old, "the nonce has expired")
            fresh = await asyncio.to_thread(call, _nonce(old))
            assert fresh.status_code == 200, fresh.text

    asyncio.run(main())


def test_nonces_are_signed_and_short_lived():
    nonces = Nonces(lifetime=300)
    now = time.time()
    issued = nonces.issue(now=now)
    assert nonces.check(issued, now=now + 299) is None
    assert "expired" in str(nonces.check(issued, now=now + 301))
    assert "not issued" in str(nonces.check(Nonces().issue(now=now), now=now))
    assert "not issued" in str(nonces.check(nonces.issue(now=now + 60), now=now))  # future
    assert "not issued" in str(nonces.check("x" * 500, now=now))
    assert "no nonce" in str(nonces.check(None, now=now))
