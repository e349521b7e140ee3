-- wrk: every request joins the queue (POST /api/waiting-room/sessions with an empty object).
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
