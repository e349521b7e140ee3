"""Seats — Example Arena: an example origin site to put gatekeeper in front of."""

from __future__ import annotations
