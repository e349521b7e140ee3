"""The gate: from a request and its cookie to a verdict, and the forwarding of admitted visitors."""
