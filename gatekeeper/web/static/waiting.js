/* gatekeeper waiting page: polls the status API and lets the visitor in as soon as it's their turn. */
(function () {
  "use strict";

  // SHA-256 round constants (for the proof-of-work challenge, below).
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ];
  var W = new Array(64);

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
  // The page's texts in its language (gatekeeper/web/i18n), or null in an operator's template
  // without them: then the script keeps the server's words and only polls and lets in.
  var i18n = readStrings();
  var lang = (i18n && i18n.lang) || document.documentElement.lang || "en";
  // A page that answered a POST must not send the form again: it lets the visitor in with a GET.
  var method = (root.getAttribute("data-method") || "GET").toUpperCase();
  // A busy room with a challenge: meet it first; the reload that follows takes the place.
  var challengeEl = document.getElementById("gk-challenge");
  if (challengeEl) {
    meetChallenge(challengeEl);
    return;
  }

  var statusUrl = root.getAttribute("data-status-url") || "";
  var nextDelay = clamp(toNumber(root.getAttribute("data-poll-after-ms")), 2000);

  // The <noscript> meta refresh is off now that scripts run, so without fetch fall back to
  // reloading: the gate re-renders this page or lets the visitor in. A page without a status
  // URL (the first answer of a lazy join: no place is taken yet) reloads to take its place.
  if (!window.fetch || !statusUrl) {
    window.setTimeout(reopen, jitter(nextDelay));
    return;
  }
  var joined = toNumber(root.getAttribute("data-joined-position"));
  if (joined === null) {
    // Remember the first position this tab saw, so the bar shows progress since then.
    joined = rememberedStart(statusUrl, toNumber(root.getAttribute("data-position")));
  }

  var prequeueEl = document.getElementById("gk-prequeue");
  var positionEl = document.getElementById("gk-position");
  var etaEl = document.getElementById("gk-eta");
  var progressEl = document.getElementById("gk-progress");
  var connectionEl = document.getElementById("gk-connection");
  var baseTitle = document.title;

  var numbers = null;
  var timer = null;
  var inFlight = false;
  var done = false;
  var failureDelay = 0;
  var holdUntil = 0;
  var lastPollAt = 0;

  // Load this URL again for the gate to decide: a reload, or for a POST's answer a GET of the
  // same URL (a reload would send the form again; a URL with a #fragment would not load).
  function reopen() {
    if (method === "GET" || method === "HEAD") {
      window.location.reload();
    } else {
      window.location.replace(window.location.href.split("#")[0]);
    }
  }

  function readStrings() {
    var el = document.getElementById("gk-strings");
    try {
      var data = el ? JSON.parse(el.textContent || "") : null;
      return data && typeof data.strings === "object" && data.strings ? data : null;
    } catch (e) {
      return null;
    }
  }

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
      numbers = numbers || new Intl.NumberFormat(lang);
      return numbers.format(n);
    } catch (e) {
      return String(n);
    }
  }

  // A text of the catalogue with its {name}s filled in; null when the page has no texts.
  function t(key, values) {
    var text = i18n ? i18n.strings[key] : undefined;
    if (typeof text !== "string") {
      return null;
    }
    return text.replace(/\{([a-z_]+)\}/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole;
    });
  }

  // The form of counted text `key` for n, by the language's plural rules (else "other").
  function plural(key, n, values) {
    var category = "other";
    try {
      category = new Intl.PluralRules(lang).select(n);
    } catch (e) {
      // No Intl.PluralRules: the "other" form.
    }
    var filled = { count: formatCount(n) };
    for (var name in values || {}) {
      filled[name] = values[name];
    }
    var text = t(key + "." + category, filled);
    return text !== null ? text : t(key + ".other", filled);
  }

  // Mirrors describe_position() in gatekeeper/web/wording.py.
  function positionText(status, n) {
    if (status === "ACTIVE") {
      return t("position.active");
    }
    if (status === "LEFT" || status === "EXPIRED") {
      return t("position.finding");
    }
    return n <= 0 ? t("position.next") : plural("position.ahead", n);
  }

  // Mirrors describe_wait() in gatekeeper/web/wording.py.
  function waitText(seconds) {
    if (seconds === null || seconds < 0) {
      return t("wait.calculating");
    }
    if (seconds < 15) {
      return t("wait.moment");
    }
    if (seconds < 60) {
      return t("wait.under_minute");
    }
    var minutes = Math.round(seconds / 60);
    if (minutes < 90) {
      return plural("wait.minutes", minutes);
    }
    var hours = Math.round(seconds / 3600);
    return hours < 24 ? plural("wait.hours", hours) : t("wait.day");
  }

  // "about 4–7 minutes"; one number when both ends round alike (mirrors wording._span).
  function rangeText(low, high) {
    if (high < 60) {
      return waitText(high);
    }
    var highM = Math.round(high / 60);
    if (highM < 90) {
      var lowM = Math.max(1, Math.round(low / 60));
      if (lowM >= highM) {
        return plural("wait.minutes", highM);
      }
      return plural("wait.minutes_range", highM, { low: formatCount(lowM), high: formatCount(highM) });
    }
    var lowH = Math.max(1, Math.round(low / 3600));
    if (lowH >= 24) {
      return t("wait.day");
    }
    var highH = Math.min(Math.round(high / 3600), 24);
    if (lowH >= highH) {
      return plural("wait.hours", highH);
    }
    return plural("wait.hours_range", highH, { low: formatCount(lowH), high: formatCount(highH) });
  }

  function etaText(data) {
    var range = data.estimatedWaitRange;
    if (range && range.length === 2) {
      var low = toNumber(range[0]);
      var high = toNumber(range[1]);
      if (low !== null && high !== null && low >= 0 && low <= high) {
        return rangeText(low, high);
      }
    }
    return waitText(toNumber(data.estimatedWaitSeconds));
  }

  // Only touch text that changed, so the live region announces real news, not every poll.
  function setText(el, text) {
    if (el && text !== null && el.textContent !== text) {
      el.textContent = text;
    }
  }

  function showReconnecting(show) {
    if (connectionEl) {
      connectionEl.hidden = !show;
    }
  }

  function update(data) {
    var messageEl = document.getElementById("gk-message");
    if (messageEl) {
      // The operator's message, as plain text (textContent never parses HTML).
      setText(messageEl, typeof data.message === "string" ? data.message : "");
      messageEl.hidden = !messageEl.textContent;
    }
    if (data.phase === "prequeue") {
      // Everyone in the pre-queue is equal until the draw at the start: no position yet.
      setText(positionEl, t("position.prequeue"));
      return;
    }
    var position = toNumber(data.position);
    position = position === null ? 0 : Math.max(0, Math.floor(position));
    setText(positionEl, positionText(data.status, position));
    setText(etaEl, etaText(data));
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
    reopen();
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
    var drawn = prequeueEl !== null && data.phase !== "prequeue";
    if (drawn || data.status === "ACTIVE" || data.status === "LEFT" || data.status === "EXPIRED") {
      // Drawn: the page comes back with the visitor's place (or lets them in).
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

  if (prequeueEl) {
    countDown(prequeueEl);
  }
  schedule(jitter(nextDelay));

  // The start in the visitor's own time, a countdown to it, and a reload once it has come
  // (spread over a second and a half, so a crowd's reloads do not land in one instant).
  function countDown(el) {
    var startsAt = Date.parse(el.getAttribute("data-starts-at") || "");
    if (isNaN(startsAt)) {
      return;
    }
    var whenEl = document.getElementById("gk-starts-at");
    var leftEl = document.getElementById("gk-countdown");
    try {
      var options = { dateStyle: "medium", timeStyle: "short" };
      setText(whenEl, new Intl.DateTimeFormat(lang, options).format(new Date(startsAt)));
    } catch (e) {
      // An old browser keeps the UTC time the server wrote.
    }
    var two = null;
    try {
      two = new Intl.NumberFormat(lang, { minimumIntegerDigits: 2, useGrouping: false });
    } catch (e) {
      // Padded by hand below.
    }
    var pad = function (n) {
      return two ? two.format(n) : (n < 10 ? "0" : "") + n;
    };
    function tick() {
      var left = Math.max(0, Math.ceil((startsAt - Date.now()) / 1000));
      var h = Math.floor(left / 3600);
      var m = Math.floor((left % 3600) / 60);
      var sec = left % 60;
      var clock = (h > 0 ? formatCount(h) + ":" + pad(m) : formatCount(m)) + ":" + pad(sec);
      setText(leftEl, t("prequeue.countdown", { time: clock }));
      if (left <= 0) {
        done = true;
        window.setTimeout(reopen, Math.round(Math.random() * 1500));
        return;
      }
      window.setTimeout(tick, 1000 - (Date.now() % 1000));
    }
    tick();
  }

  // The answer goes back in a short-lived cookie named by the page; the gate checks it against
  // this page's session when the reload comes (gatekeeper/gate/challenge.py).
  function answerWith(el, value) {
    var secure = window.location.protocol === "https:" ? "; Secure" : "";
    document.cookie =
      el.getAttribute("data-answer-cookie") + "=" + value + "; Path=/; Max-Age=120; SameSite=Lax" + secure;
    reopen();
  }

  function meetChallenge(el) {
    if (el.getAttribute("data-kind") === "proof-of-work") {
      solveProofOfWork(el);
    } else {
      // The verifier's widget calls this with its token once the visitor passed it.
      window.gkSolved = function (token) {
        answerWith(el, token);
      };
    }
  }

  // Find n such that SHA-256("<session>:<n>") starts with `difficulty` zero bits, in slices
  // that leave the page responsive.
  function solveProofOfWork(el) {
    var prefix = el.getAttribute("data-session") + ":";
    var bits = parseInt(el.getAttribute("data-difficulty"), 10) || 1;
    var nonce = 0;
    function slice() {
      for (var end = nonce + 20000; nonce < end; nonce++) {
        var first = sha256FirstWord(prefix + nonce);
        if ((bits >= 32 ? first : first >>> (32 - bits)) === 0) {
          answerWith(el, String(nonce));
          return;
        }
      }
      window.setTimeout(slice, 0);
    }
    slice();
  }


  // SHA-256 of an ASCII string (session ids and digits are ASCII), its first 32-bit word.
  function sha256FirstWord(text) {
    var n = text.length;
    var blocks = ((n + 8) >> 6) + 1;
    var words = new Array(blocks * 16);
    for (var i = 0; i < words.length; i++) {
      words[i] = 0;
    }
    for (i = 0; i < n; i++) {
      words[i >> 2] |= (text.charCodeAt(i) & 0xff) << (24 - (i % 4) * 8);
    }
    words[n >> 2] |= 0x80 << (24 - (n % 4) * 8);
    words[words.length - 1] = n * 8;
    var h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a;
    var h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
    for (var b = 0; b < words.length; b += 16) {
      var a = h0, c1 = h1, c2 = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
      for (var t = 0; t < 64; t++) {
        if (t < 16) {
          W[t] = words[b + t] | 0;
        } else {
          var x = W[t - 15], y = W[t - 2];
          var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
          var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
          W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
        }
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var ch = (e & f) ^ (~e & g);
        var t1 = (h + S1 + ch + K[t] + W[t]) | 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var maj = (a & c1) ^ (a & c2) ^ (c1 & c2);
        var t2 = (S0 + maj) | 0;
        h = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c2;
        c2 = c1;
        c1 = a;
        a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0;
      h1 = (h1 + c1) | 0;
      h2 = (h2 + c2) | 0;
      h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0;
      h5 = (h5 + f) | 0;
      h6 = (h6 + g) | 0;
      h7 = (h7 + h) | 0;
    }
    return h0 >>> 0;
  }
})();
