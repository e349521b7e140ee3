"""Runnable examples: a seat-selection site to protect, and ways to put gatekeeper in front."""
