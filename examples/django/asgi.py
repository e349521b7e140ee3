"""The ASGI entry point: Django's own application, wrapped by the waiting room."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from gatekeeper import WaitingRoom

# Django reads this when the application is made (below), not at import.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django.settings")
django_application = get_asgi_application()
# Django answers HTTP only; the gate runs the lifespan (store, grant loop) on its own.
application = WaitingRoom(django_application, settings.GATEKEEPER)
