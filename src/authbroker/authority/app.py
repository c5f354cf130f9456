"""The aiohttp application: routes, discovery documents, JWKS, and the error/log middleware."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from authbroker.authority import admin, authorize, drs, errors, pop_resource, prt, token_endpoint
from authbroker.authority.directory import CONSUMER_TENANT_ID
from authbroker.authority.errors import EntraError
from authbroker.authority.state import STATE_KEY, AuthorityState, authority_of

log = logging.getLogger("authbroker.authority")
access_log = logging.getLogger("authbroker.authority.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(request: web.Request, exc: EntraError) -> web.Response:
    correlation = request.headers.get("client-request-id", "")[:64] or None
    return web.json_response(exc.body(correlation), status=exc.status,
                             headers=token_endpoint.NO_STORE)


@web.middleware
async def entra_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Entra-style JSON for every OAuth error, never a traceback, and a secret-free access log
    (method, path without query, status, duration)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except EntraError as exc:
        status = exc.status
        return _error_response(request, exc)
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception as exc:  # noqa: BLE001 - the point: no 500 with a traceback, ever
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        log.error("unexpected %s at %s:%s while handling %s %s", type(exc).__name__,
                  frame.filename.rsplit("/", 1)[-1], frame.lineno, request.method,
                  request.path[:200])
        return _error_response(request, errors.internal_error())
    finally:
        access_log.info("%s %s %d %.1fms", request.method, request.path[:200], status,
                        (time.perf_counter() - started) * 1000)


def _segment_out(st: AuthorityState, segment: str) -> str:
    """The tenant as it appears in endpoint URLs (a domain is replaced by the tenant GUID)."""
    return st.directory.tenant_id if segment.lower() == st.directory.domain else segment


def _issuer_tenant(st: AuthorityState, segment: str) -> str:
    seg = segment.lower()
    if seg in ("organizations", "common"):
        return "{tenantid}"
    if seg in ("consumers", CONSUMER_TENANT_ID):
        return CONSUMER_TENANT_ID
    return st.directory.tenant_id


async def openid_configuration(request: web.Request) -> web.Response:
    st = authority_of(request)
    segment = request.match_info["tenant"]
    st.tenant(segment)
    base = f"{st.base_url}/{_segment_out(st, segment)}"
    return web.json_response({
        "issuer": f"{st.base_url}/{_issuer_tenant(st, segment)}/v2.0",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token",
                                  token_endpoint.DEVICE_CODE_GRANT, prt.SRV_CHALLENGE,
                                  prt.JWT_BEARER],
        "capabilities": ["kdf_ver2"],  # [MS-OIDCE] 2.2.3.2: session-key KDFv2 accepted
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nbf", "auth_time", "nonce", "name", "oid", "tid",
            "preferred_username", "ver",
        ],
        "request_uri_parameter_supported": False,
        "tenant_region_scope": None,
        "cloud_instance_name": urlsplit(st.base_url).hostname,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    })


async def jwks(request: web.Request) -> web.Response:
    st = authority_of(request)
    st.tenant(request.match_info["tenant"])
    return web.json_response(st.minter.key.jwks())


async def instance_discovery(request: web.Request) -> web.Response:
    """msal's instance discovery shape, pointing back at this authority."""
    st = authority_of(request)
    path = urlsplit(request.query.get("authorization_endpoint", "")).path.strip("/")
    segment = path.split("/", 1)[0] or "common"
    st.tenant(segment)
    host = urlsplit(st.base_url).hostname or "127.0.0.1"
    return web.json_response({
        "tenant_discovery_endpoint":
            f"{st.base_url}/{segment}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host, "preferred_cache": host,
            "aliases": list(dict.fromkeys([host, "127.0.0.1", "localhost"])),
        }],
    })


async def index(request: web.Request) -> web.Response:
    st = authority_of(request)
    return web.json_response({
        "service": "authbroker local authority",
        "tenant_id": st.directory.tenant_id,
        "openid_configuration":
            f"{st.base_url}/{st.directory.tenant_id}/v2.0/.well-known/openid-configuration",
        **device_urls(st.base_url, st.directory.tenant_id),
    })


def device_urls(base_url: str, tenant_id: str) -> dict[str, str]:
    """The device registration URLs of the JSON line and ``GET /``."""
    return {
        "device_discovery": f"{base_url}/{tenant_id}/Discover",
        "device_join_endpoint": f"{base_url}{drs.JOIN_PATH}",
        "device_admin": f"{base_url}{admin.ADMIN_PATH}",
    }


def create_app(st: AuthorityState) -> web.Application:
    app = web.Application(middlewares=[entra_middleware], client_max_size=256 * 1024)
    app[STATE_KEY] = st
    app.router.add_get("/", index)
    app.router.add_get("/common/discovery/instance", instance_discovery)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", jwks)
    app.router.add_get("/{tenant}/oauth2/v2.0/authorize", authorize.authorize_get)
    app.router.add_post("/{tenant}/oauth2/v2.0/authorize", authorize.authorize_post)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token_endpoint.token)
    app.router.add_post("/{tenant}/oauth2/token", token_endpoint.token)  # v1, as PRT clients use
    app.router.add_get("/{tenant}/oauth2/authorize", authorize.authorize_get)  # v1 alias
    app.router.add_post("/{tenant}/oauth2/authorize", authorize.authorize_post)
    app.router.add_post("/{tenant}/oauth2/v2.0/devicecode", token_endpoint.devicecode)
    app.router.add_get("/devicelogin", authorize.devicelogin_get)
    app.router.add_post("/devicelogin", authorize.devicelogin_post)
    pop_resource.add_routes(app)
    drs.add_routes(app)
    admin.add_routes(app)
    return app
