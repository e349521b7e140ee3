"""A FastAPI shop behind the waiting room: `app.add_middleware(WaitingRoom, settings=...)`.

Run it with `uvicorn examples.fastapi.app:app --port 8000` (the repo root as the working
directory). One visitor at a time may shop; the next waits on the waiting page and is let in
when the buyer reaches /thanks (a done path). With WAITINGROOM_GATE_PROOF_SECRET set, the routes
check the proof header the gate adds, as an origin behind the reverse proxy would.
"""
