/* gatekeeper waiting page: polls the status API and lets the visitor in as soon as it's their turn. */
(function () {
  "use strict";

  var MIN_DELAY_MS = 500;
  var MAX_DELAY_MS = 60000;
  var MAX_BACKOFF_MS = 30000;
  var MAX_RETRY_AFTER_MS = 300000;
  var REQUEST_TIMEOUT_MS = 15000;
  var FIRST_BACKOFF_MS = 2000;

  var root = document.getElementById("gk-room");
  if (!root) {
    return;
  }
  var statusUrl = root.getAttribute("data-status-url") || "";
  var nextDelay = clamp(toNumber(root.getAttribute("data-poll-after-ms")), 2000);
  var joined = toNumber(root.getAttribute("data-joined-position"));
  if (joined === null) {
    // Remember the first position this tab saw, so the bar shows progress since then.
    joined = rememberedStart(statusUrl, toNumber(root.getAttribute("data-position")));
  }

  // The <noscript> meta refresh is off now that scripts run, so without fetch fall back to
  // reloading: the gate re-renders this page or lets the visitor in.
  if (!window.fetch || !statusUrl) {
    window.setTimeout(function () {
      window.location.reload();
    }, jitter(nextDelay));
    return;
  }

  var positionEl = document.getElementById("gk-position");
  var etaEl = document.getElementById("gk-eta");
  var progressEl = document.getElementById("gk-progress");
  var connectionEl = document.getElementById("gk-connection");
  var baseTitle = document.title;

  var timer = null;
  var inFlight = false;
  var done = false;
  var failureDelay = 0;
  var holdUntil = 0;
  var lastPollAt = 0;

  function rememberedStart(key, position) {
    var stored = null;
    try {
      stored = toNumber(window.sessionStorage.getItem("gk-start:" + key));
      if (stored === null && position !== null) {
        window.sessionStorage.setItem("gk-start:" + key, String(position));
      }
    } catch (e) {
      // Storage may be disabled; the bar then counts from this page load.
    }
    return stored !== null ? stored : position;
  }

  function toNumber(value) {
    if (value === null || value === undefined || value === "") {
      return null;
    }
    var n = Number(value);
    return isFinite(n) ? n : null;
  }

  function clamp(ms, fallback) {
    if (ms === null) {
      return fallback;
    }
    return Math.min(Math.max(ms, MIN_DELAY_MS), MAX_DELAY_MS);
  }

  function jitter(ms) {
    return Math.round(ms * (0.8 + Math.random() * 0.4));
  }

  function formatCount(n) {
    try {
      return n.toLocaleString("en-US");
    } catch (e) {
      return String(n);
    }
  }

  // Mirrors describe_position() in gatekeeper/pages.py.
  function positionText(status, n) {
    if (status === "ACTIVE") {
      return "It's your turn, taking you in\u2026";
    }
    if (status === "LEFT" || status === "EXPIRED") {
      return "Finding your place in line\u2026";
    }
    if (n <= 0) {
      return "You're next";
    }
    if (n === 1) {
      return "1 person ahead of you";
    }
    return formatCount(n) + " people ahead of you";
  }

  // Mirrors describe_wait() in gatekeeper/pages.py.
  function waitText(seconds) {
    if (seconds === null || seconds < 0) {
      return "calculating\u2026";
    }
    if (seconds < 15) {
      return "any moment now";
    }
    if (seconds < 60) {
      return "less than a minute";
    }
    var minutes = Math.round(seconds / 60);
    if (minutes < 90) {
      return minutes === 1 ? "about 1 minute" : "about " + minutes + " minutes";
    }
    var hours = Math.round(seconds / 3600);
    return hours < 24 ? "about " + hours + " hours" : "more than a day";
  }

  // Only touch text that changed, so the live region announces real news, not every poll.
  function setText(el, text) {
    if (el && el.textContent !== text) {
      el.textContent = text;
    }
  }

  function showReconnecting(show) {
    if (connectionEl) {
      connectionEl.hidden = !show;
    }
  }

  function update(data) {
    var position = toNumber(data.position);
    position = position === null ? 0 : Math.max(0, Math.floor(position));
    setText(positionEl, positionText(data.status, position));
    setText(etaEl, waitText(toNumber(data.estimatedWaitSeconds)));
    if (progressEl && joined !== null && joined >= 0) {
      progressEl.max = joined + 1;
      progressEl.value =
        data.status === "ACTIVE" ? joined + 1 : Math.min(Math.max(joined - position, 0), joined);
    }
    var title = data.status === "WAITING" && position > 0 ? "(" + formatCount(position) + ") " : "";
    if (document.title !== title + baseTitle) {
      document.title = title + baseTitle;
    }
  }

  function schedule(ms) {
    if (timer !== null) {
      window.clearTimeout(timer);
    }
    timer = window.setTimeout(poll, ms);
  }

  function leave() {
    done = true;
    if (timer !== null) {
      window.clearTimeout(timer);
    }
    window.location.reload();
  }

  function backoff() {
    var base = failureDelay || Math.max(nextDelay, FIRST_BACKOFF_MS / 2);
    failureDelay = Math.min(base * 2, MAX_BACKOFF_MS);
    var wait = Math.min(jitter(failureDelay), MAX_BACKOFF_MS);
    holdUntil = Date.now() + wait;
    schedule(wait);
  }

  function retryAfterMs(response) {
    var header = response.headers.get("Retry-After");
    if (!header) {
      return null;
    }
    var ms;
    if (/^\s*\d+\s*$/.test(header)) {
      ms = parseInt(header, 10) * 1000;
    } else {
      var when = Date.parse(header);
      if (isNaN(when)) {
        return null;
      }
      ms = when - Date.now();
    }
    return Math.min(Math.max(ms, MIN_DELAY_MS), MAX_RETRY_AFTER_MS);
  }

  function onData(data) {
    if (!data || typeof data.status !== "string") {
      throw new Error("unexpected status reply");
    }
    failureDelay = 0;
    holdUntil = 0;
    showReconnecting(false);
    update(data);
    if (data.status === "ACTIVE" || data.status === "LEFT" || data.status === "EXPIRED") {
      // ACTIVE: the gate now forwards to the site; LEFT/EXPIRED: the gate puts them back in line.
      leave();
      return;
    }
    nextDelay = clamp(toNumber(data.pollAfterMs), nextDelay);
    schedule(jitter(nextDelay));
  }

  function onHttpError(response) {
    var status = response.status;
    if (status === 429 || status === 503) {
      showReconnecting(status === 503);
      var wait = retryAfterMs(response);
      if (wait === null) {
        backoff();
      } else {
        // Jitter only upwards: never come back before the server asked.
        wait = Math.round(wait * (1 + Math.random() * 0.2));
        holdUntil = Date.now() + wait;
        schedule(wait);
      }
    } else if (status === 401 || status === 403 || status === 404 || status === 410) {
      // The gate no longer knows this session: a reload lets it decide what to show.
      leave();
    } else {
      showReconnecting(status >= 500);
      backoff();
    }
  }

  function poll() {
    timer = null;
    if (done || inFlight) {
      return;
    }
    inFlight = true;
    lastPollAt = Date.now();
    var controller = window.AbortController ? new AbortController() : null;
    var killer = controller
      ? window.setTimeout(function () {
          controller.abort();
        }, REQUEST_TIMEOUT_MS)
      : null;
    var options = {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    };
    if (controller) {
      options.signal = controller.signal;
    }
    window
      .fetch(statusUrl, options)
      .then(function (response) {
        if (response.ok) {
          return response.json().then(onData);
        }
        onHttpError(response);
        return null;
      })
      .catch(function () {
        if (!done) {
          showReconnecting(true);
          backoff();
        }
      })
      .then(function () {
        inFlight = false;
        if (killer !== null) {
          window.clearTimeout(killer);
        }
      });
  }

  // Background tabs get their timers throttled; check at once when the visitor comes back.
  function pollSoon() {
    var now = Date.now();
    if (done || inFlight || now < holdUntil || now - lastPollAt < 1000) {
      return;
    }
    schedule(0);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      pollSoon();
    }
  });
  window.addEventListener("online", pollSoon);
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      pollSoon();
    }
  });

  schedule(jitter(nextDelay));
})();
