"""``/openapi.json``: every route, its operations and bodies, from the route table."""

from __future__ import annotations

import re
from typing import Any

import gaffer
from gaffer.http.handlers.base import BaseHandler, Op
from gaffer.http.schema import SCHEMAS

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad input",
    401: "No key",
    403: "Not allowed",
    404: "Unknown",
    409: "Conflict",
    413: "Body too large",
    426: "Not a WebSocket upgrade",
    500: "Internal error",
    503: "Unavailable (the cluster's etcd)",
}
_WEBSOCKETS = {"/channel", "/{pid}/channel", "/{pid}/channel/{stream}"}


def build_spec() -> dict[str, Any]:
    from gaffer.http.routes import api_routes

    paths: dict[str, Any] = {}
    for route in api_routes():
        item: dict[str, Any] = {}
        for method, op in route.handler.ops.items():
            item[method] = _operation(route.template, method, op)
        if item:
            paths.setdefault(route.template, {}).update(item)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "gaffer",
            "version": gaffer.__version__,
            "description": "The HTTP API of gafferd (docs/http-api.md). Errors are "
            '`{"error": code, "reason": text}`. With require_key, '
            "send the key in the X-Api-Key header.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                **SCHEMAS,
                "Error": {
                    "type": "object",
                    "required": ["error", "reason"],
                    "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        },
        "security": [{}, {"apiKey": []}],
    }


def _operation(template: str, method: str, op: Op) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if name == "pid" else "string"},
        }
        for name in re.findall(r"\{(\w+)\}", template)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in op.params.items()
    ]
    operation: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{method}_{template}".replace("/", "_")
        .replace("{", "")
        .replace("}", "")
        .replace(".", "_"),
        "parameters": parameters,
        "description": f"Permission: {op.permission}."
        + (" A WebSocket: upgrade the GET." if template in _WEBSOCKETS else ""),
        "responses": {},
    }
    if op.body == "text":
        operation["requestBody"] = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    elif op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body}"}}
            },
        }
    for status in op.statuses:
        content_type = op.response if status < 400 else "application/json"
        schema = {"$ref": "#/components/schemas/Error"} if status >= 400 else {}
        operation["responses"][str(status)] = {
            "description": _STATUS_TEXT.get(status, ""),
            "content": {content_type: {"schema": schema}},
        }
    return operation


class OpenAPIHandler(BaseHandler):
    ops = {"get": Op("This description of the API (OpenAPI 3)")}

    async def prepare(self) -> None:  # public, like /version
        self._cors()

    def get(self) -> None:
        self.write_json(build_spec())
