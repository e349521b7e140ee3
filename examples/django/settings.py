"""Django settings of the example shop, and the waiting room's (`GATEKEEPER`)."""

from __future__ import annotations

import os

from gatekeeper import load_config

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "examples.django.urls"
INSTALLED_APPS: list[str] = []
# No CsrfViewMiddleware: the example's one form stays a one-liner. A real shop keeps it; the
# waiting room sits outside Django and neither sees nor needs Django's middleware.
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]
USE_TZ = True

# The waiting room's settings (WAITINGROOM_* variables apply over these, as everywhere).
GATEKEEPER = load_config(
    overrides={
        "waitingroom.processing.capacity": 1,
        "waitingroom.gate.done-paths": ["/thanks"],
        "waitingroom.gate.cookie.secure": False,  # plain http on localhost
    }
)
