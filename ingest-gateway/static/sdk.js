/* Tally browser tracker, served by the ingest gateway at /sdk.js.
 *
 *   <script src="https://GATEWAY/sdk.js" data-key="tw_..." defer></script>
 *   tally.track("signup", {plan: "pro"}); tally.identify("user-42");
 *
 * - automatic page views (on load and on history navigation), custom events, identify;
 * - batches of 20 events or every 10 s, whichever first;
 * - sendBeacon when the page is hidden; otherwise fetch, retried with exponential
 *   backoff on network errors, 429 and 5xx (Retry-After is honoured);
 * - every event carries a client event id, so retries are deduplicated downstream.
 */
(function (window, document) {
  "use strict";
  if (window.tally && window.tally.__loaded) return;
  var script = document.currentScript;
  var key = script && script.getAttribute("data-key");
  var endpoint = (script && script.getAttribute("data-endpoint")) ||
    (script ? new URL(script.src).origin : "") + "/api/v1/events/batch";
  var BATCH = 20, EVERY_MS = 10000, MAX_QUEUE = 1000, MAX_RETRIES = 6;
  var queue = [], timer = null, sending = false, retries = 0;

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0;
      return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  function stored(name, make) {
    try {
      var value = window.localStorage.getItem(name);
      if (!value) { value = make(); window.localStorage.setItem(name, value); }
      return value;
    } catch (e) { return make(); }
  }
  var anonymousId = stored("tally_anonymous_id", uuid);
  var userId = null;
  try { userId = window.localStorage.getItem("tally_user_id"); } catch (e) { /* private mode */ }

  function enqueue(name, properties) {
    var event = {
      name: name,
      event_id: uuid(),
      anonymous_id: anonymousId,
      timestamp: Date.now(),
      properties: properties || {}
    };
    if (userId) event.user_id = userId;
    if (queue.length >= MAX_QUEUE) queue.shift();
    queue.push(event);
    if (queue.length >= BATCH) flush();
    else if (!timer) timer = setTimeout(flush, EVERY_MS);
  }

  function body(events) {
    return JSON.stringify({ write_key: key, sent_at: Date.now(), events: events });
  }

  function flush(useBeacon) {
    if (timer) { clearTimeout(timer); timer = null; }
    if (!queue.length || (sending && !useBeacon)) return;
    var events = queue.splice(0, BATCH);
    if (useBeacon && navigator.sendBeacon) {
      var ok = navigator.sendBeacon(endpoint, new Blob([body(events)], { type: "text/plain" }));
      if (!ok) queue = events.concat(queue);
      if (queue.length) flush(true);
      return;
    }
    sending = true;
    fetch(endpoint, {
      method: "POST", keepalive: true, credentials: "omit",
      headers: { "content-type": "application/json" }, body: body(events)
    }).then(function (response) {
      if (response.status === 429 || response.status >= 500) {
        var after = parseInt(response.headers.get("retry-after") || "0", 10) * 1000;
        throw { retryAfter: after };
      }
      retries = 0; // accepted, or refused for good (4xx): do not resend
      sending = false;
      if (queue.length) flush();
    }).catch(function (error) {
      sending = false;
      queue = events.concat(queue);
      if (retries >= MAX_RETRIES) { retries = 0; return; }
      var backoff = Math.max((error && error.retryAfter) || 0, Math.min(60000, 1000 * Math.pow(2, retries++)));
      timer = setTimeout(flush, backoff + Math.random() * 250);
    });
  }

  function page() {
    enqueue("page_view", {
      url: window.location.href,
      path: window.location.pathname,
      referrer: document.referrer || undefined,
      title: document.title
    });
  }

  var api = {
    __loaded: true,
    track: function (name, properties) { enqueue(name, properties); },
    page: page,
    identify: function (id, traits) {
      userId = String(id);
      try { window.localStorage.setItem("tally_user_id", userId); } catch (e) { /* private mode */ }
      enqueue("identify", { traits: traits || {} });
    },
    reset: function () {
      userId = null;
      try { window.localStorage.removeItem("tally_user_id"); } catch (e) { /* private mode */ }
    },
    flush: function () { flush(); }
  };
  window.tally = api;

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", function () { flush(true); });
  var push = history.pushState;
  history.pushState = function () { push.apply(this, arguments); page(); };
  window.addEventListener("popstate", page);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", page);
  else page();
})(window, document);
