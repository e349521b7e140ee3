"""A Django project behind the waiting room: its real ASGI application wrapped by `WaitingRoom`.

Run it with `uvicorn examples.django.asgi:application --port 8000` (the repo root as the working
directory). One visitor at a time may shop; the next waits on the waiting page and is let in
when the buyer reaches /thanks (a done path). With WAITINGROOM_GATE_PROOF_SECRET set, the views
check the proof header the gate adds, as an origin behind the reverse proxy would.
"""
