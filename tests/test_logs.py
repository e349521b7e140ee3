"""JSON logs: one parseable object per line, access records with their fields."""

from __future__ import annotations

import json
import logging

from gatekeeper.logs import JsonFormatter


def test_event_and_access_records_become_json_lines():
    fmt = JsonFormatter()
    event = logging.LogRecord("gatekeeper.gate", logging.WARNING, "x", 1, "held %s", ("a",), None)
    line = json.loads(fmt.format(event))
    assert line["level"] == "warning" and line["message"] == "held a"
    assert line["ts"].endswith("Z")
    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, "x", 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/seats", "1.1", 200), None,
    )  # fmt: skip
    line = json.loads(fmt.format(access))
    assert line["event"] == "access"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/seats", 200)
