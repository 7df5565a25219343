/* Live map: active vehicles on a plotly scattergeo map of the US, fed by the ws/map/ socket.
 *
 * The server sends the fleet on connect ("snapshot"), then at most a few
 * "positions" frames per second, each with the latest position of the trucks
 * that moved. Drawing is coalesced to one Plotly.react per animation frame.
 * Map geometry comes from /static/vendor/topojson/ (no tile server, no CDN).
 */
(function () {
  "use strict";

  var STATUS_COLOURS = {
    en_route: "#1b9e77", arriving: "#377eb8", unloading: "#7570b3", assigned: "#e6ab02", suspended: "#d95f02"
  };
  var STALE_COLOUR = "#9e9e9e";
  var MODE_SYMBOLS = { autonomous: "circle", supervised: "diamond", manual: "square", safe_hold: "x" };
  var LIST_MAX = 300;
  // Human labels for the raw choice values on the wire, rendered by the server (json_script).
  var LABELS = { status: {}, mode: {} };
  var labelsEl = document.getElementById("livemap-labels");
  if (labelsEl) { try { LABELS = JSON.parse(labelsEl.textContent); } catch (e) { /* keep raw values */ } }

  function statusLabel(value) { return value ? (LABELS.status[value] || value) : ""; }
  function modeLabel(value) { return value ? (LABELS.mode[value] || value) : ""; }
  // The table column is narrow: drop the parenthesised explanation ("Manual (human driver)" -> "Manual").
  function shortModeLabel(value) { return modeLabel(value).replace(/\s*\(.*\)$/, ""); }

  var el = document.getElementById("livemap");
  if (!el || typeof Plotly === "undefined") { return; }
  var statusEl = document.getElementById("livemap-status");
  var detailEl = document.getElementById("livemap-detail");
  var rowsEl = document.getElementById("livemap-rows");
  var countEl = document.getElementById("livemap-count");

  var vehicles = new Map();   // mission_id -> latest row
  var clockSkewMs = 0;        // server time - browser time
  var selected = null;
  var drawPending = false;
  var socket = null;
  var retryMs = 1000;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function nowMs() { return Date.now() + clockSkewMs; }

  function isStale(v) {
    if (!v.last_seen_at) { return true; }
    return (nowMs() - Date.parse(v.last_seen_at)) / 1000 > (v.stale_after_s || 60);
  }

  function ago(iso) {
    if (!iso) { return "never"; }
    var s = Math.max(0, Math.round((nowMs() - Date.parse(iso)) / 1000));
    if (s < 90) { return s + " s ago"; }
    if (s < 5400) { return Math.round(s / 60) + " min ago"; }
    return Math.round(s / 3600) + " h ago";
  }

  function label(v) {
    return (v.vehicle_id || "?") + " · mission " + v.mission_id + "<br>" + statusLabel(v.status) + " · " +
      modeLabel(v.autonomy_mode) + "<br>" + (v.speed_kph == null ? "—" : Math.round(v.speed_kph) + " km/h") +
      (isStale(v) ? "<br><b>STALE</b> (" + ago(v.last_seen_at) + ")" : "");
  }

  function traceData() {
    var lat = [], lon = [], color = [], symbol = [], text = [], ids = [], opacity = [], size = [];
    vehicles.forEach(function (v) {
      if (v.lat == null || v.lon == null) { return; }
      var stale = isStale(v);
      v.stale = stale;
      lat.push(v.lat); lon.push(v.lon); ids.push(v.mission_id);
      color.push(stale ? STALE_COLOUR : (STATUS_COLOURS[v.status] || "#444"));
      symbol.push(MODE_SYMBOLS[v.autonomy_mode] || "circle");
      opacity.push(stale ? 0.45 : 0.95);
      size.push(v.mission_id === selected ? 14 : 9);
      text.push(label(v));
    });
    return {
      type: "scattergeo", mode: "markers", lat: lat, lon: lon, customdata: ids, text: text,
      hovertemplate: "%{text}<extra></extra>",
      marker: { color: color, symbol: symbol, opacity: opacity, size: size, line: { width: 1, color: "#222" } }
    };
  }

  var layout = {
    margin: { l: 0, r: 0, t: 0, b: 0 }, showlegend: false, dragmode: "pan",
    geo: {
      scope: "usa", projection: { type: "albers usa" }, showland: true, landcolor: "#f3f1ea",
      subunitcolor: "#b9b5a8", countrycolor: "#8c887c", showlakes: false, bgcolor: "rgba(0,0,0,0)"
    }
  };
  var config = {
    topojsonURL: el.dataset.topojsonUrl, responsive: true, displaylogo: false,
    modeBarButtonsToRemove: ["toImage", "sendDataToCloud"]
  };

  function draw() {
    drawPending = false;
    Plotly.react(el, [traceData()], layout, config);
    if (countEl) { countEl.textContent = "(" + vehicles.size + ")"; }
  }

  function scheduleDraw() {
    if (drawPending) { return; }
    drawPending = true;
    window.requestAnimationFrame(draw);
  }

  function cell(tr, text, cls, title) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    if (title) { td.title = title; }
    tr.appendChild(td);
  }

  function renderList() {
    var rows = Array.from(vehicles.values()).sort(function (a, b) {
      return (b.stale === true) - (a.stale === true) || String(a.vehicle_id).localeCompare(String(b.vehicle_id));
    }).slice(0, LIST_MAX);
    var body = document.createDocumentFragment();
    rows.forEach(function (v) {
      var tr = document.createElement("tr");
      tr.dataset.missionId = v.mission_id;
      tr.dataset.stale = isStale(v) ? "true" : "false";
      if (isStale(v)) { tr.className = "stale"; }
      cell(tr, v.vehicle_id || "?");
      cell(tr, statusLabel(v.status));
      cell(tr, shortModeLabel(v.autonomy_mode), "", modeLabel(v.autonomy_mode));
      cell(tr, v.speed_kph == null ? "—" : String(Math.round(v.speed_kph)), "num");
      // The column is headed "Last seen": "11 min" instead of "11 min ago" keeps it inside the narrow card.
      cell(tr, ago(v.last_seen_at).replace(/ ago$/, ""), "seen", ago(v.last_seen_at));
      tr.addEventListener("click", function () { select(v.mission_id); });
      body.appendChild(tr);
    });
    rowsEl.replaceChildren(body);
  }

  function merge(row) {
    var current = vehicles.get(row.mission_id) || {};
    if (current.last_seen_at && row.last_seen_at && row.last_seen_at < current.last_seen_at) { return; }
    vehicles.set(row.mission_id, Object.assign({}, current, row));
  }

  function select(missionId) {
    selected = missionId;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "detail", mission_id: missionId }));
    }
    scheduleDraw();
  }

  function term(dl, name, value, cls) {
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd"); dd.textContent = value;
    if (cls) { dd.className = cls; }
    dl.appendChild(dt); dl.appendChild(dd);
  }

  function renderDetail(m) {
    if (!m) { detailEl.textContent = "This mission is no longer available."; return; }
    var dl = document.createElement("dl");
    var link = document.createElement("a");
    link.href = m.url; link.textContent = "Mission #" + m.mission_id + " (" + m.shipment + ")";
    term(dl, "Vehicle", (m.vehicle_id || "?") + " · " + m.carrier);
    term(dl, "Route", m.origin + " → " + m.destination);
    term(dl, "Status", statusLabel(m.status));
    term(dl, "Mode", modeLabel(m.autonomy_mode));
    term(dl, "Speed", m.speed_kph == null ? "—" : Math.round(m.speed_kph) + " km/h");
    term(dl, "Last seen", ago(m.last_seen_at) + (m.stale ? " (stale)" : ""), m.stale ? "exc" : "");
    term(dl, "Open exceptions", m.exceptions.length ? m.exceptions.map(function (e) { return e.label; }).join(", ") : "none",
      m.exceptions.length ? "exc" : "");
    detailEl.replaceChildren(link, dl);
  }

  function onMessage(event) {
    var msg = JSON.parse(event.data);
    if (msg.type === "snapshot") {
      clockSkewMs = Date.parse(msg.server_time) - Date.now();
      vehicles.clear();
      msg.vehicles.forEach(merge);
      scheduleDraw(); renderList();
    } else if (msg.type === "positions") {
      msg.vehicles.forEach(merge);
      scheduleDraw();
    } else if (msg.type === "detail" && msg.mission_id === selected) {
      renderDetail(msg.mission);
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + el.dataset.wsPath);
    socket.onopen = function () { retryMs = 1000; setStatus("live", "live"); };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403) { setStatus("offline", "not allowed"); return; }
      setStatus("offline", "reconnecting…");
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  Plotly.newPlot(el, [traceData()], layout, config).then(function () {
    el.on("plotly_click", function (data) {
      if (data.points && data.points.length) { select(data.points[0].customdata); }
    });
  });
  // Staleness changes with time alone: re-evaluate once a second.
  window.setInterval(function () { scheduleDraw(); renderList(); if (selected) { select(selected); } }, 1000);
  connect();
})();
