"""gatekeeper's own HTTP endpoints: the JSON API, the operator API, health checks and pages."""
