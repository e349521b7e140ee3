"""Route tables: what the JSON and operator APIs dispatch through, and the OpenAPI 3.1 of each."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from gatekeeper.asgi import Receive, Scope, Send

Schema = dict[str, Any]
"""A JSON Schema (2020-12, as OpenAPI 3.1 has it) or another piece of the document."""
Handler = Callable[[Scope, Receive, Send, str], Awaitable[None]]
"""Serves one operation; the last argument is the path parameter ("" when there is none)."""

OPENAPI_PATH = "/openapi.json"
# Header name → schema of the headers operations document.
_HEADERS: dict[str, Schema] = {
    "Location": {"type": "string", "description": "The poll URL of the session."},
    "Retry-After": {"type": "string", "pattern": "^[0-9]+$", "description": "Seconds."},
    "Allow": {"type": "string", "description": "The methods the path takes."},
    "WWW-Authenticate": {"type": "string"},
}
_ALWAYS = frozenset({"Location", "Allow", "WWW-Authenticate"})
"""Headers present on every answer that documents them (Retry-After is not always)."""
_TEXT: Schema = {"type": "string"}


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: what it means, its JSON body (None: no body), its headers."""

    description: str
    schema: Schema | None = None
    headers: tuple[str, ...] = ()
    links: Schema | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter."""

    name: str
    description: str
    schema: Schema


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: the method and path template (relative to the API's prefix, at most one
    `{parameter}`, a whole segment or its start) dispatch matches, and what the spec says."""

    method: str
    path: str
    operation_id: str
    summary: str
    replies: Mapping[int, Reply]
    body: Schema | None = None
    body_required: bool = False
    query: tuple[Query, ...] = ()


@dataclass(frozen=True, slots=True)
class Table:
    """An API's operations, the schemas of its path parameters (by name), its named schemas."""

    title: str
    description: str
    operations: tuple[Operation, ...]
    parameters: Mapping[str, Schema]
    schemas: Mapping[str, Schema]
    bearer: bool = False


def error(description: str, *codes: str, headers: tuple[str, ...] = ()) -> Reply:
    """An answer in the error shape `{"error": {"code", "message"}}`, with these codes only."""
    schema = _object(
        {"error": _object({"code": {"type": "string", "enum": list(codes)}, "message": _TEXT})}
    )
    return Reply(description, schema, headers)


def ref(name: str) -> Schema:
    """A reference to a named schema of the table."""
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Schema) -> Schema:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class Route:
    """A path template's handlers by method (HEAD with GET) and its `Allow` header value."""

    handlers: dict[str, Handler]
    allow: bytes


class Router:
    """Finds the route of a path: a dict lookup, else a few prefix/suffix checks (a path
    parameter holds no `/` and no `:`, so no two templates match one path)."""

    def __init__(self, table: Table, handlers: Mapping[str, Handler]) -> None:
        declared = {op.operation_id for op in table.operations}
        if declared != set(handlers):  # the table and the code cannot drift apart
            odd = sorted(declared ^ set(handlers))
            raise ValueError(f"operations without a handler, or handlers without one: {odd}")
        by_path: dict[str, dict[str, Handler]] = {}
        for op in table.operations:
            methods = by_path.setdefault(op.path, {})
            methods[op.method] = handlers[op.operation_id]
            if op.method == "GET":
                methods["HEAD"] = handlers[op.operation_id]
        self._exact: dict[str, Route] = {}
        # (head, tail, shortest path, the parameter's slice, route), in table order.
        self._templated: list[tuple[str, str, int, slice, Route]] = []
        for path, methods in by_path.items():
            route = Route(methods, ", ".join(methods).encode())
            head, brace, rest = path.partition("{")
            if brace:
                tail = rest.partition("}")[2]
                cut = slice(len(head), -len(tail) or None)
                self._templated.append((head, tail, len(head) + len(tail), cut, route))
            else:
                self._exact[path] = route

    def match(self, path: str) -> tuple[Route, str] | None:
        """The route of `path` and its parameter, or None."""
        route = self._exact.get(path)
        if route is not None:
            return route, ""
        for head, tail, shortest, cut, route in self._templated:
            # The length check: `/rooms/event` is the room `event`, not an event of no room.
            if path.startswith(head) and path.endswith(tail) and len(path) >= shortest:
                param = path[cut]
                if "/" not in param and ":" not in param:
                    return route, param
        return None


def document(table: Table, prefix: str) -> Schema:
    """The OpenAPI 3.1 document of `table` served under `prefix`."""
    paths: dict[str, Schema] = {}
    for op in table.operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(table, op)
    components: Schema = {"schemas": dict(table.schemas)}
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {"title": table.title, "version": _version(), "description": table.description},
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": components,
    }
    if table.bearer:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def encoded(table: Table, prefix: str) -> bytes:
    """`document` as the bytes served."""
    return json.dumps(document(table, prefix), separators=(",", ":")).encode()


def _operation(table: Table, op: Operation) -> Schema:
    parameters: list[Schema] = []
    if "{" in op.path:
        name = op.path.partition("{")[2].partition("}")[0]
        schema = table.parameters[name]
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for query in op.query:
        parameters.append(
            {"name": query.name, "in": "query", "description": query.description,
             "schema": query.schema}
        )  # fmt: skip
    found: Schema = {"operationId": op.operation_id, "summary": op.summary}
    if parameters:
        found["parameters"] = parameters
    if op.body is not None:
        content = {"application/json": {"schema": op.body}}
        found["requestBody"] = {"required": op.body_required, "content": content}
    found["responses"] = {str(status): _reply(r) for status, r in sorted(op.replies.items())}
    return found


def _reply(reply: Reply) -> Schema:
    found: Schema = {"description": reply.description}
    if reply.headers:
        found["headers"] = {
            name: {"schema": _HEADERS[name], "required": name in _ALWAYS} for name in reply.headers
        }
    if reply.schema is not None:
        found["content"] = {"application/json": {"schema": reply.schema}}
    if reply.links:
        found["links"] = reply.links
    return found


def _version() -> str:
    try:
        return metadata.version("gatekeeper-waitingroom")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"
