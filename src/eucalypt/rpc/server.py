"""Serving the internal protocol: ``POST /v1/<Operation>`` with typed bodies.

Each component builds its app with :func:`rpc_app` and registers operations
on an :class:`RpcRouter`::

    router = RpcRouter()

    @router.operation("DescribeResource", DescribeResourceRequest,
                      DescribeResourceResponse, allow={"cc", "admin"})
    async def describe_resource(req, caller): ...

    app = rpc_app("nc", credentials)
    router.mount(app)

Every request is SigV4-verified (service ``eucalypt``) by ``eucalypt.auth``;
``allow`` names the components (and ``"admin"`` for cloud administrators)
permitted to call. FastAPI serves the OpenAPI document at ``/openapi.json``
(the paper's WSDL).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from eucalypt import __version__
from eucalypt.auth import AuthError, HttpRequest, authenticate
from eucalypt.auth.credentials import Credential, CredentialStore
from eucalypt.logs import REQUEST_ID_HEADER, new_request_id, request_id_var
from eucalypt.rpc.errors import AccessDenied, AuthFailure, InvalidRequest, RemoteError, RpcError

log = logging.getLogger("eucalypt.rpc")

Req = TypeVar("Req", bound=BaseModel)
Resp = TypeVar("Resp", bound=BaseModel)
Handler = Callable[[Any, Credential], Awaitable[BaseModel]]


def caller_name(credential: Credential) -> str:
    """``cc`` for ``component:cc``; ``admin`` for an admin user; else ``user``."""
    if credential.principal.startswith("component:"):
        return credential.principal.split(":", 1)[1]
    return "admin" if credential.is_admin else "user"


def _error_response(err: RpcError) -> JSONResponse:
    rid = request_id_var.get()
    return JSONResponse(
        {"error": {"code": err.code, "message": err.message}, "request_id": rid},
        status_code=err.status,
        headers={REQUEST_ID_HEADER: rid},
    )


def rpc_app(component: str, credentials: CredentialStore) -> FastAPI:
    """A FastAPI app with request ids, access logs, error envelopes and ``/healthz``."""
    app = FastAPI(
        title=f"eucalypt {component}",
        version=__version__,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.credentials = credentials
    app.state.component = component

    @app.middleware("http")
    async def request_context(request: Request, call_next: Any) -> Any:
        rid = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception:
                log.exception("unhandled error", extra={"path": request.url.path})
                response = _error_response(RpcError())
            response.headers[REQUEST_ID_HEADER] = rid
            if request.url.path != "/healthz":
                log.info(
                    "request",
                    extra={
                        "method": request.method,
                        "path": request.url.path,
                        "status": response.status_code,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
        finally:
            request_id_var.reset(token)
        return response

    @app.exception_handler(RpcError)
    async def on_rpc_error(_request: Request, exc: RpcError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error_response(InvalidRequest(f"Invalid request body: {details}"))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "component": component, "version": __version__}

    return app


async def authenticate_caller(request: Request, allow: Collection[str]) -> Credential:
    """Verify the SigV4 signature of an internal request and the caller's right."""
    body = await request.body()
    http = HttpRequest.create(
        request.method,
        request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        request.headers.items(),
        body,
    )
    try:
        result = await authenticate(http, request.app.state.credentials, services=("eucalypt",))
    except AuthError as exc:
        raise AuthFailure(exc.message) from None
    except RemoteError as exc:
        # The key is not a component's, and the CLC that knows users' keys did not answer.
        raise AuthFailure(
            f"The access key could not be verified: the CLC did not answer ({exc.message})"
        ) from None
    who = caller_name(result.credential)
    if who not in allow:
        raise AccessDenied(f"{who} may not call {request.url.path}; allowed: {sorted(allow)}")
    return result.credential


class RpcRouter:
    """Collects operations; :meth:`mount` adds them to an app."""

    def __init__(self) -> None:
        self.api = APIRouter()

    def operation(
        self,
        name: str,
        request_model: type[Req],
        response_model: type[Resp],
        *,
        allow: Collection[str],
    ) -> Callable[[Callable[[Req, Credential], Awaitable[Resp]]], Callable[..., Any]]:
        allowed = frozenset(allow)

        def register(fn: Callable[[Req, Credential], Awaitable[Resp]]) -> Callable[..., Any]:
            async def endpoint(request: Request, body: Any) -> Any:
                caller = await authenticate_caller(request, allowed)
                return await fn(body, caller)

            # FastAPI reads the signature to find the body type; give it the real classes.
            endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
                [
                    inspect.Parameter(
                        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
                    ),
                    inspect.Parameter(
                        "body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=request_model
                    ),
                ],
                return_annotation=response_model,
            )
            endpoint.__name__ = name
            self.api.add_api_route(
                f"/v1/{name}",
                endpoint,
                methods=["POST"],
                response_model=response_model,
                name=name,
                summary=(fn.__doc__ or name).strip().splitlines()[0],
            )
            return fn

        return register

    def mount(self, app: FastAPI) -> None:
        app.include_router(self.api)
