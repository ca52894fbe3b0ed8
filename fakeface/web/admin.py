"""The operator's endpoints: list, promote from feedback, and roll back the live controller.

========================================  ==========================================================
``GET /api/admin/controllers``            the bundle's version and every promoted one (live marked)
``POST /api/admin/promote``               ``{"min_clients"?, "min_cases"?}``: fit a candidate from the
                                          feedback log; live only if it passes the replay guard
``POST /api/admin/rollback``              ``{"version"}``: make a known version live again
========================================  ==========================================================

They exist only on a server started with a token (``--token``), and every call must carry it:
without one, any visitor could change what everyone else is told, which is exactly what
feedback must not be able to do. A server without a token answers 403 with that reason.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI, Request

from blackboard.controller_state import StateError
from blackboard.feedback_promotion import PromotionRule
from fakeface.web.guards import WebRefusal

MAX_BODY = 4096  # admin bodies are a few small fields


def _int_field(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise WebRefusal(400, f"{name} must be a whole number from 1 to 1000000, received {value!r}.",
                         code="INVALID_ARGUMENT")
    return value


def add_admin_routes(app: FastAPI, service: Any, check: Callable[[str, str], bool] | None) -> None:
    """Adds the admin routes to the page's app.

    Args:
        app: the page's FastAPI app.
        service: the running `DetectorService` (its ``admin`` is a `ControllerAdmin` or None).
        check: the bearer-token check of the page (None: the server runs without tokens).
    """

    def admin(request: Request) -> Any:
        if check is None:
            raise WebRefusal(403, "Controller promotion and rollback need a server started with --token; this "
                                  "one has none, so they are switched off.", code="PERMISSION_DENIED")
        if not check(request.headers.get("authorization", ""), "admin"):
            raise WebRefusal(401, "The admin endpoints need the server's token (Authorization: Bearer ...).",
                             code="UNAUTHENTICATED")
        if service.admin is None:
            raise WebRefusal(409, "This server has no feedback log or no fitted controller, so there is nothing "
                                  "to promote or roll back.", code="FAILED_PRECONDITION")
        return service.admin

    async def body_of(request: Request) -> dict[str, Any]:
        data = await request.body()
        if len(data) > MAX_BODY:
            raise WebRefusal(413, f"Admin requests are at most {MAX_BODY} bytes.", code="RESOURCE_EXHAUSTED")
        if not data:
            return {}
        import json

        try:
            body = json.loads(data)
        except (ValueError, RecursionError) as err:
            raise WebRefusal(400, "The body must be a JSON object.", code="INVALID_ARGUMENT") from err
        if not isinstance(body, dict):
            raise WebRefusal(400, "The body must be a JSON object.", code="INVALID_ARGUMENT")
        return body

    @app.get("/api/admin/controllers")
    def controllers(request: Request) -> dict[str, Any]:
        ctl = admin(request)
        return {"live": service.ensemble.controller_version, "versions": ctl.versions()}

    @app.post("/api/admin/promote")
    async def promote(request: Request) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        ctl = admin(request)
        body = await body_of(request)
        rule = PromotionRule(min_clients=_int_field(body, "min_clients", ctl.rule.min_clients),
                             min_cases=_int_field(body, "min_cases", ctl.rule.min_cases), guard=ctl.rule.guard)
        result = await run_in_threadpool(ctl.promote, rule)
        return result.to_dict()

    @app.post("/api/admin/rollback")
    async def rollback(request: Request) -> dict[str, Any]:
        ctl = admin(request)
        version = (await body_of(request)).get("version")
        if not isinstance(version, str) or not version or len(version) > 100:
            raise WebRefusal(400, "rollback needs {\"version\": \"<a version listed by /api/admin/controllers>\"}.",
                             code="INVALID_ARGUMENT")
        try:
            live = ctl.rollback(version)
        except StateError as err:
            raise WebRefusal(404 if "Unknown" in str(err) else 409, str(err), code="NOT_FOUND") from err
        return {"live": live}
