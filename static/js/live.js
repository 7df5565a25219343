/* Live timelines for console pages (vanilla JS, no framework, no outside requests).
 *
 * A page opts in with an element carrying
 *   data-live data-live-kind="shipment|mission|incident|incidents" data-live-id="<id>"
 *   data-live-after="<id of the newest event rendered by the server>"
 * Inside it:
 *   [data-live-timeline]          an <ol> that receives new timeline rows,
 *   [data-live-status="type:id"]  badges whose status follows events,
 *   [data-live-mode="type:id"]    autonomy-mode badges,
 *   [data-live-section][id]       blocks re-fetched from the server after events
 *                                 (so new missions, tenders and offers appear),
 *   [data-live-indicator]         the connection state.
 * On a dropped connection it reconnects with ?after=<last event id seen>, and
 * the server replays what was missed. Close codes 4401/4403/4404 are final.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-live]");
  if (!root || !("WebSocket" in window)) return;

  var kind = root.getAttribute("data-live-kind");
  var subjectId = root.getAttribute("data-live-id") || "0";
  var cursor = parseInt(root.getAttribute("data-live-after") || "0", 10) || 0;
  var timeline = root.querySelector("[data-live-timeline]");
  var indicator = root.querySelector("[data-live-indicator]");
  var FINAL_CODES = { 4401: "sign in again for live updates", 4403: "no permission for live updates", 4404: "not found" };
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  var socket = null;
  var retryDelay = 1000;
  var pingTimer = null;
  var reconnectTimer = null;
  var refreshTimer = null;
  var refreshing = false;
  var refreshAgain = false;
  var seen = {};

  if (timeline) {
    Array.prototype.forEach.call(timeline.querySelectorAll("[data-event-id]"), function (li) {
      seen[li.getAttribute("data-event-id")] = true;
    });
  }

  function setIndicator(state, text) {
    if (!indicator) return;
    indicator.className = "live-indicator is-" + state;
    indicator.textContent = text;
  }

  function humanize(value) {
    var text = String(value === null || value === undefined ? "" : value).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function plain(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "string" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.test(value)) return formatTime(value);
    if (typeof value === "string") return /^[a-z0-9_]+$/.test(value) ? value.replace(/_/g, " ") : value;
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // Same wording as the server's event_title / event_summary template filters.
  var STEP_ACTIONS = {
    "runbook.step_waiting": "Waiting for on-call to confirm", "runbook.step_started": "Started",
    "runbook.step_confirmed": "Confirmed", "runbook.step_done": "Done", "runbook.step_skipped": "Skipped",
    "runbook.step_failed": "Failed", "runbook.step_retrying": "Retrying", "runbook.step_retry_requested": "Retry requested"
  };
  var INCIDENT_TITLES = {
    "runbook.started": "Runbook started", "incident.page_queued": "Page queued", "incident.paged": "On-call paged",
    "incident.page_failed": "Page failed", "incident.note": "Note"
  };

  function brief(text) {
    var value = String(text).replace(/\s+/g, " ").trim();
    return value.length <= 200 ? value : value.slice(0, 199).trim() + "\u2026";
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function incidentSummary(action, data) {
    var parts = [];
    if (Object.prototype.hasOwnProperty.call(STEP_ACTIONS, action)) {
      var outcome = STEP_ACTIONS[action];
      if (action === "runbook.step_failed" && data.attempts) outcome += " after " + plural(data.attempts, "attempt");
      else if (action === "runbook.step_retrying" && data.attempt) outcome += " (attempt " + data.attempt + " failed)";
      parts.push(outcome);
      if (data.note) parts.push("Note: " + brief(data.note));
      if (data.reason) parts.push("Reason: " + brief(data.reason));
      if (data.error) parts.push("Error: " + brief(data.error));
      if (data.result && typeof data.result === "object") {
        var shown = Object.keys(data.result).filter(function (k) {
          return data.result[k] !== null && data.result[k] !== "";
        }).map(function (k) { return k.replace(/_/g, " ") + ": " + resultValue(data.result[k]); }).join(", ");
        if (shown) parts.push("Result: " + brief(shown));
      }
      return parts.join(" \u00b7 ");
    }
    if (action === "runbook.started") {
      return (data.runbook || "") + (data.version !== undefined && data.version !== null ? " v" + data.version : "");
    }
    if (action === "incident.page_queued" || action === "incident.paged" || action === "incident.page_failed") {
      if (data.event_action) parts.push("PagerDuty " + data.event_action);
      if (data.status) parts.push("HTTP " + data.status);
      if (data.attempts) parts.push(plural(data.attempts, "attempt"));
      if (data.error) parts.push("Error: " + brief(data.error));
      return parts.join(" \u00b7 ");
    }
    if (action === "incident.note") return String(data.text || "");
    return null;
  }

  // Python's str() of a result value: True/False like the server renders them.
  function resultValue(v) { return typeof v === "boolean" ? (v ? "True" : "False") : plain(v); }

  function eventTitle(action, data) {
    data = data && typeof data === "object" ? data : {};
    if (Object.prototype.hasOwnProperty.call(STEP_ACTIONS, action) && data.step !== undefined && data.step !== null) {
      return "Step " + data.step + (data.title ? ": " + data.title : "");
    }
    if (Object.prototype.hasOwnProperty.call(INCIDENT_TITLES, action)) return INCIDENT_TITLES[action];
    var parts = String(action).split(".");
    var words = (parts[0] + " " + parts.slice(1).join(".")).replace(/_/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function isEmpty(v) {
    if (v === null || v === undefined || v === "") return true;
    if (Array.isArray(v)) return v.length === 0;
    if (typeof v === "object") return Object.keys(v).length === 0;
    return false;
  }

  function eventSummary(ev) {
    var before = ev.before && typeof ev.before === "object" ? ev.before : {};
    var after = ev.after && typeof ev.after === "object" ? ev.after : {};
    var data = ev.data && typeof ev.data === "object" ? ev.data : {};
    var special = incidentSummary(ev.action, data);
    if (special !== null) return special;
    var parts = [];
    Object.keys(after).forEach(function (key) {
      var now = after[key];
      if (isEmpty(now)) return;
      var label = key.replace(/_/g, " ");
      if (Object.prototype.hasOwnProperty.call(before, key)) {
        if (JSON.stringify(before[key]) !== JSON.stringify(now)) parts.push(label + ": " + plain(before[key]) + " \u2192 " + plain(now));
      } else {
        parts.push(label + ": " + plain(now));
      }
    });
    ["reason", "note", "text", "why", "summary", "confirmation"].forEach(function (key) {
      if (data[key]) parts.push(key + ": " + data[key]);
    });
    return parts.join(" \u00b7 ");
  }

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate() + ", " + pad(d.getUTCHours()) + ":" +
      pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function appendTimeline(ev) {
    if (!timeline || seen[ev.id]) return;
    seen[ev.id] = true;
    var li = el("li", "tl-item tl-" + (ev.actor_kind || "system") + " live-new");
    li.setAttribute("data-event-id", String(ev.id));
    var time = el("time", "", formatTime(ev.occurred_at));
    time.setAttribute("datetime", ev.occurred_at);
    time.title = ev.occurred_at;
    var body = el("div", "tl-body");
    body.appendChild(el("span", "tl-action", eventTitle(ev.action, ev.data)));
    body.appendChild(document.createTextNode(" "));
    body.appendChild(el("span", "tl-actor", ev.actor || ""));
    var summary = eventSummary(ev);
    if (summary) body.appendChild(el("div", "tl-summary", summary));
    li.appendChild(time);
    li.appendChild(body);
    // Keep id order even when a late-committed event arrives after a newer one.
    var next = null;
    Array.prototype.some.call(timeline.children, function (child) {
      if (parseInt(child.getAttribute("data-event-id"), 10) > ev.id) { next = child; return true; }
      return false;
    });
    timeline.insertBefore(li, next);
    var empty = root.querySelector(".tl-empty");
    if (empty) empty.hidden = true;
  }

  function updateBadges(attr, key, value, label) {
    Array.prototype.forEach.call(root.querySelectorAll("[" + attr + '="' + key + '"]'), function (badge) {
      badge.className = badge.className.replace(/\bs-[a-z0-9_-]+/g, "").trim() + " s-" + value + " live-changed";
      badge.textContent = label;
    });
  }

  function applyEvent(ev) {
    if (typeof ev.id === "number" && ev.id > cursor) cursor = ev.id;
    appendTimeline(ev);
    var after = ev.after && typeof ev.after === "object" ? ev.after : {};
    var key = ev.subject_type + ":" + ev.subject_id;
    if (after.status) updateBadges("data-live-status", key, after.status, humanize(after.status));
    if (after.autonomy_mode) updateBadges("data-live-mode", key, after.autonomy_mode, humanize(after.autonomy_mode));
    scheduleRefresh();
  }

  // Sections that hold forms or rows the server renders (tenders, missions,
  // offers) are fetched again rather than rebuilt here, so the markup has one
  // source; a section being typed in is left alone until the next event.
  function scheduleRefresh() {
    if (!root.querySelector("[data-live-section][id]")) return;
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshSections, 400);
  }

  function busy(section) {
    if (section.contains(document.activeElement) && document.activeElement !== document.body) return true;
    var typed = Array.prototype.some.call(section.querySelectorAll("input[type=text], input[type=number], textarea"), function (input) {
      return input.value && input.value !== input.defaultValue;
    });
    var picked = Array.prototype.some.call(section.querySelectorAll("select"), function (select) {
      var option = select.options[select.selectedIndex];
      return option && !option.defaultSelected && select.selectedIndex !== 0;
    });
    return typed || picked;
  }

  function refreshSections() {
    refreshTimer = null;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "live.js" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        Array.prototype.forEach.call(document.querySelectorAll("[data-live-section][id]"), function (section) {
          if (busy(section)) return;
          var fresh = doc.getElementById(section.id);
          if (!fresh) { section.parentNode.removeChild(section); return; }
          var known = {};
          Array.prototype.forEach.call(section.querySelectorAll("tr[data-mission-id], tr[data-tender-id]"), function (row) {
            known[row.getAttribute("data-mission-id") || "t" + row.getAttribute("data-tender-id")] = true;
          });
          var imported = document.importNode(fresh, true);
          Array.prototype.forEach.call(imported.querySelectorAll("tr[data-mission-id], tr[data-tender-id]"), function (row) {
            var rowKey = row.getAttribute("data-mission-id") || "t" + row.getAttribute("data-tender-id");
            if (!known[rowKey]) row.classList.add("live-new");
          });
          section.parentNode.replaceChild(imported, section);
        });
      })
      .catch(function () { /* the next event refreshes again */ })
      .then(function () {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
      });
  }

  function connect() {
    reconnectTimer = null;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var path = "/ws/timeline/" + encodeURIComponent(kind) + "/" + encodeURIComponent(subjectId) + "/";
    socket = new WebSocket(scheme + window.location.host + path + "?after=" + cursor);
    setIndicator("connecting", "connecting\u2026");

    socket.onmessage = function (msg) {
      var data;
      try { data = JSON.parse(msg.data); } catch (e) { return; }
      if (data.type === "event" && data.event) {
        applyEvent(data.event);
      } else if (data.type === "ready") {
        retryDelay = 1000;
        setIndicator("live", "live");
      }
    };

    socket.onopen = function () {
      if (pingTimer) clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "ping" }));
      }, 25000);
    };

    socket.onclose = function (evt) {
      if (pingTimer) { clearInterval(pingTimer); pingTimer = null; }
      socket = null;
      if (FINAL_CODES[evt.code]) {
        setIndicator("refused", FINAL_CODES[evt.code]);
        return;
      }
      setIndicator("down", "reconnecting\u2026");
      reconnectTimer = setTimeout(connect, retryDelay + Math.floor(Math.random() * 500));
      retryDelay = Math.min(retryDelay * 2, 15000);
    };
  }

  // A tab that wakes from sleep reconnects at once instead of waiting out the backoff.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && socket === null && reconnectTimer) {
      clearTimeout(reconnectTimer);
      retryDelay = 1000;
      connect();
    }
  });

  connect();
})();
