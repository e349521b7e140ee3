"""schemathesis against a running `gatekeeper run`, with the embedded store and with Redis.

Both OpenAPI documents, as served (`{api.prefix}/openapi.json` and, with the bearer token,
`{admin.prefix}/openapi.json`): generated requests that fit each operation and requests that do
not, and after that stateful runs that follow the documents' links (a join's session polled and
left). Every answer must be below 500, have a documented status code, content type and headers,
and a body its schema describes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from gatekeeper.web import admin_routes, api_routes
from gatekeeper.web.openapi import OPENAPI_PATH
from tests.conftest import unique_prefix
from tests.processes import gatekeeper_process

TOKEN = "s" * 32
API = "/api/waiting-room"
ADMIN = "/_gatekeeper/admin"
# What the documents promise: no 5xx; status code, content type, headers and body as described.
CHECKS = [
    getattr(checks, name)  # the registry's checks, looked up by name
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
]
RUN = settings(
    max_examples=40,
    deadline=None,
    # No shrinking: a failure is reported as found (shrinking against a live server is slow).
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def gatekeeper(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A `gatekeeper run` (API mode, the operator API on) on the backend; its base URL."""
    env = {"WAITINGROOM_ADMIN_TOKEN": TOKEN, "WAITINGROOM_PROCESSING_RATE_MS": "50"}
    # Every request comes from one address: with a per-client join limit, whether a join gets
    # its session (and the links that follow from it) would depend on the minute it is sent,
    # and a stateful run must be able to replay its steps (hypothesis checks that it does).
    env["WAITINGROOM_PROCESSING_CLIENT_JOINS_PER_MINUTE"] = "0"
    if request.param == "redis":
        env["WAITINGROOM_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["WAITINGROOM_REDIS_KEY_PREFIX"] = unique_prefix()
    log = tmp_path_factory.mktemp("schemathesis") / "gatekeeper.log"
    with gatekeeper_process(["--log-level", "warning"], env, log) as (base, _):
        yield base


def _load(url: str, headers: dict[str, str]) -> OpenApiSchema:
    config = SchemathesisConfig.from_dict({"headers": headers})
    schema = schemathesis.openapi.from_url(url, config=config)
    assert isinstance(schema, OpenApiSchema)
    return schema


# The spec's path under the base URL, the headers every request carries, the route table.
APIS = {
    "json": (API + OPENAPI_PATH, {}, api_routes.TABLE),
    "operator": (ADMIN + OPENAPI_PATH, {"Authorization": f"Bearer {TOKEN}"}, admin_routes.TABLE),
}
OPERATIONS = [
    (api, op.operation_id, mode)
    for api, (_, _, table) in APIS.items()
    for op in table.operations
    for mode in GenerationMode
    # Negative cases need something to break: a parameter or a body.
    if mode is GenerationMode.POSITIVE or op.body or op.query or "{" in op.path
]


@pytest.mark.parametrize(("api", "operation_id", "mode"), OPERATIONS)
def test_operation(gatekeeper: str, api: str, operation_id: str, mode: GenerationMode) -> None:
    """Requests that fit the operation (positive) or break it (negative): answers as documented."""
    path, headers, _ = APIS[api]
    operation = _load(gatekeeper + path, headers).find_operation_by_id(operation_id)

    @RUN
    @given(case=operation.as_strategy(mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


@pytest.mark.parametrize("api", list(APIS))
def test_stateful(gatekeeper: str, api: str) -> None:
    """Sequences along the documents' links (and those schemathesis infers): a join's session
    polled and left, a room changed and read back."""
    path, headers, _ = APIS[api]
    machine = _load(gatekeeper + path, headers).as_state_machine()

    class Calls(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=headers)

    Calls.run(settings=settings(RUN, max_examples=30, stateful_step_count=6))
