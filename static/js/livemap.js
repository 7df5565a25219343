/* Live map: active missions on a plotly scattergeo map of the US, fed by the ws/map/ socket.
 *
 * The server sends the fleet on connect ("snapshot"), then a "positions"
 * frame soon after trucks report (at most twenty a second by default), each with
 * the latest position of the trucks that moved and their ETA against the
 * delivery window (computed by the server). Planned routes are not in the frames: the page asks for the routes
 * of missions it has not seen ("routes") and keeps them, so each crosses the
 * socket once.
 *
 * Two plots share one projection: the states and the routes underneath
 * (#livemap-routes, static), the trucks on top (#livemap, transparent, where
 * the pointer goes). plotly redraws a whole geo plot on any change, and a
 * thousand routes cost three times what a thousand trucks do, so the trucks
 * redraw with every frame (one Plotly.react per animation frame) while the
 * routes redraw only when what they show or the view changes.
 * Map geometry comes from /static/vendor/topojson/ (no tile server, no CDN).
 */
(function () {
  "use strict";

  var STATUS_COLOURS = {
    en_route: "#1b9e77", arriving: "#377eb8", unloading: "#7570b3", assigned: "#e6ab02", suspended: "#d95f02"
  };
  // Stale: hollow symbol, amber. Lost: grey, crossed symbol, and a label on the map. Never colour alone.
  var STALE_COLOUR = "#e69f00";
  var LOST_COLOUR = "#9e9e9e";
  var LOST_LINE = "#424242";
  var MODE_SYMBOLS = { autonomous: "circle", supervised: "diamond", manual: "square", safe_hold: "x" };
  var LOST_SYMBOL = "circle-x";
  var ROUTE_COLOUR = "#7f93ad";
  var RISK_COLOUR = "#c62828";
  var SELECTED_ROUTE_COLOUR = "#1f3a5f";
  // A carrier's verified signed route plan replaces the console's estimate of the route.
  var VERIFIED_ROUTE_COLOUR = "#2e7d32";
  var FOLLOW_SCALE = 5;
  var LIST_MAX = 300;
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // Human labels for the raw choice values on the wire, rendered by the server (json_script).
  var LABELS = { status: {}, mode: {} };
  var labelsEl = document.getElementById("livemap-labels");
  if (labelsEl) { try { LABELS = JSON.parse(labelsEl.textContent); } catch (e) { /* keep raw values */ } }

  function statusLabel(value) { return value ? (LABELS.status[value] || value) : ""; }
  function modeLabel(value) { return value ? (LABELS.mode[value] || value) : ""; }
  // The table column is narrow: drop the parenthesised explanation ("Manual (human driver)" -> "Manual").
  function shortModeLabel(value) { return modeLabel(value).replace(/\s*\(.*\)$/, ""); }

  var el = document.getElementById("livemap");
  var routesEl = document.getElementById("livemap-routes");
  if (!el || !routesEl || typeof Plotly === "undefined") { return; }
  var statusEl = document.getElementById("livemap-status");
  var detailEl = document.getElementById("livemap-detail");
  var rowsEl = document.getElementById("livemap-rows");
  var countEl = document.getElementById("livemap-count");
  var riskEl = document.getElementById("livemap-risk");
  var riskRowsEl = document.getElementById("livemap-risk-rows");
  var riskCountEl = document.getElementById("livemap-risk-count");
  var riskEmptyEl = document.getElementById("livemap-risk-empty");
  var filterEls = {
    carrier: document.getElementById("livemap-filter-carrier"),
    status: document.getElementById("livemap-filter-status"),
    mode: document.getElementById("livemap-filter-mode"),
    routes: document.getElementById("livemap-filter-routes")
  };
  var followingEl = document.getElementById("livemap-following");
  var followingVehicleEl = document.getElementById("livemap-following-vehicle");

  var vehicles = new Map();   // mission_id -> latest row (position, status, mode, ETA)
  var routes = new Map();     // mission_id -> planned route, lane, delivery window (sent once)
  var requested = new Set();  // mission ids whose route was asked for
  var wanted = new Set();     // mission ids whose route is to be asked for
  var wantTimer = null;
  var clockSkewMs = 0;        // server time - browser time
  var selected = null;
  var following = null;
  var lastDetail = null;
  var filters = { carrier: "", status: "", mode: "", routes: true };
  var riskSort = { key: "late", descending: true };
  var drawPending = false;
  var routeCache = { key: null, traces: null };
  var routesDrawn = { key: null, view: null, busy: false, again: false };
  var socket = null;
  var retryMs = 1000;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function nowMs() { return Date.now() + clockSkewMs; }

  function routeOf(v) { return routes.get(v.mission_id) || null; }
  function carrierOf(v) { var r = routeOf(v); return v.carrier || (r && r.carrier) || ""; }

  // live / stale / lost: silence against the contract's gap (stale past half of it, lost past it).
  function comms(v) {
    if (!v.last_seen_at) { return "lost"; }
    var r = routeOf(v);
    var lostAfter = v.lost_after_s != null ? v.lost_after_s : (r ? r.lost_after_s : 60);
    var staleAfter = v.stale_after_s != null ? v.stale_after_s : (r ? r.stale_after_s : lostAfter / 2);
    var silent = (nowMs() - Date.parse(v.last_seen_at)) / 1000;
    if (silent > lostAfter) { return "lost"; }
    return silent > staleAfter ? "stale" : "live";
  }

  function visible(v) {
    if (v.lat == null || v.lon == null) { return false; }
    if (filters.carrier && carrierOf(v) !== filters.carrier) { return false; }
    if (filters.status && v.status !== filters.status) { return false; }
    if (filters.mode && v.autonomy_mode !== filters.mode) { return false; }
    return true;
  }

  function ago(iso) {
    if (!iso) { return "never"; }
    var s = Math.max(0, Math.round((nowMs() - Date.parse(iso)) / 1000));
    if (s < 90) { return s + " s ago"; }
    if (s < 5400) { return Math.round(s / 60) + " min ago"; }
    return Math.round(s / 3600) + " h ago";
  }

  function duration(seconds) {
    var minutes = Math.max(1, Math.ceil(seconds / 60));
    if (minutes < 120) { return minutes + " min"; }
    var rest = minutes % 60;
    return Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate() + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  // "late by 35 min" / "on time" (with the slack when the margin flags it).
  function arrival(v) {
    if (!v.eta) { return "—"; }
    if (v.late_s > 0) { return "late by " + duration(v.late_s); }
    if (v.at_risk) { return "on time, " + duration(-v.late_s) + " to spare"; }
    return "on time";
  }

  function hoverText(v, state) {
    var lines = [
      "<b>" + (v.vehicle_id || "?") + "</b> · mission " + v.mission_id + (carrierOf(v) ? " · " + carrierOf(v) : ""),
      statusLabel(v.status) + " · " + modeLabel(v.autonomy_mode) + " · " +
        (v.speed_kph == null ? "—" : Math.round(v.speed_kph) + " km/h")
    ];
    if (v.eta) { lines.push("ETA " + when(v.eta) + " UTC · " + arrival(v)); }
    if (state === "stale") { lines.push("<b>STALE</b>: quiet for " + ago(v.last_seen_at).replace(/ ago$/, "")); }
    if (state === "lost") { lines.push("<b>LOST</b>: silent since " + ago(v.last_seen_at)); }
    return lines.join("<br>");
  }

  // The trucks (markers) and, apart, the labels of lost ones: text on a thousand markers costs a redraw.
  function trucksTraces(shown) {
    var lat = [], lon = [], color = [], symbol = [], hover = [], ids = [], size = [];
    var labelLat = [], labelLon = [], labels = [];
    var lineColour = [], lineWidth = [], opacity = [];
    shown.forEach(function (v) {
      var state = comms(v);
      var mode = MODE_SYMBOLS[v.autonomy_mode] || "circle";
      lat.push(v.lat); lon.push(v.lon); ids.push(v.mission_id);
      hover.push(hoverText(v, state));
      var big = v.mission_id === selected || v.mission_id === following;
      if (state === "lost") {
        color.push(LOST_COLOUR); symbol.push(LOST_SYMBOL); lineColour.push(LOST_LINE); lineWidth.push(1.5);
        opacity.push(0.95); size.push(big ? 16 : 12);
        labelLat.push(v.lat); labelLon.push(v.lon); labels.push("LOST " + (v.vehicle_id || ""));
      } else if (state === "stale") {
        color.push(STALE_COLOUR); symbol.push(mode + "-open"); lineColour.push(STALE_COLOUR); lineWidth.push(2.5);
        opacity.push(1); size.push(big ? 15 : 11);
      } else {
        color.push(STATUS_COLOURS[v.status] || "#444"); symbol.push(mode); lineColour.push("#222"); lineWidth.push(1);
        opacity.push(0.95); size.push(big ? 14 : 9);
      }
    });
    return [{
      type: "scattergeo", name: "trucks", mode: "markers", lat: lat, lon: lon, customdata: ids,
      hovertext: hover, hovertemplate: "%{hovertext}<extra></extra>",
      marker: {
        color: color, symbol: symbol, opacity: opacity, size: size,
        line: { width: lineWidth, color: lineColour }
      }
    }, {
      // Invisible markers the size of a lost truck's, so the label sits above it, not on it; never hovered.
      type: "scattergeo", name: "lost-labels", mode: "markers+text", lat: labelLat, lon: labelLon, text: labels,
      textposition: "top center", textfont: { size: 10, color: LOST_LINE }, hoverinfo: "skip",
      marker: { size: 16, opacity: 0 }
    }];
  }

  function lineTrace(name, list, colour, width, dash) {
    var lat = [], lon = [];
    list.forEach(function (r) {
      r.points.forEach(function (p) { lat.push(p[0]); lon.push(p[1]); });
      lat.push(null); lon.push(null);
    });
    return {
      type: "scattergeo", name: name, mode: "lines", lat: lat, lon: lon, hoverinfo: "skip",
      line: { color: colour, width: width, dash: dash || "solid" }
    };
  }

  function endsTrace(list) {
    var lat = [], lon = [], symbol = [], color = [];
    list.forEach(function (r) {
      lat.push(r.origin.lat); lon.push(r.origin.lon); symbol.push("triangle-up"); color.push("#37474f");
      lat.push(r.destination.lat); lon.push(r.destination.lon); symbol.push("star"); color.push(SELECTED_ROUTE_COLOUR);
    });
    return {
      type: "scattergeo", name: "route-ends", mode: "markers", lat: lat, lon: lon, hoverinfo: "skip",
      marker: { symbol: symbol, color: color, size: 9, line: { width: 1, color: "#fff" } }
    };
  }

  // Routes of the shown trucks: plain, at risk (dashed red) and the selected one; rebuilt only on change.
  function routeTraces(shown) {
    var plain = [], verified = [], risky = [], chosen = [], ends = [];
    var keyParts = [filters.routes ? 1 : 0, selected, following, routes.size];
    shown.forEach(function (v) {
      var r = routeOf(v);
      if (!r) { return; }
      keyParts.push(v.at_risk ? -v.mission_id : v.mission_id);
      if (v.mission_id === selected || v.mission_id === following) { chosen.push(r); }
      if (!filters.routes && v.mission_id !== selected && v.mission_id !== following) { return; }
      (v.at_risk ? risky : (r.verified_plan ? verified : plain)).push(r);
      ends.push(r);
    });
    if (chosen.length && ends.indexOf(chosen[0]) < 0) { ends.push(chosen[0]); }
    var key = keyParts.join(",");
    if (routeCache.key === key) { return routeCache.traces; }
    routeCache.key = key;
    routeCache.traces = [
      lineTrace("routes", plain, ROUTE_COLOUR, 1.5),
      lineTrace("routes-verified", verified, VERIFIED_ROUTE_COLOUR, 2),
      lineTrace("routes-at-risk", risky, RISK_COLOUR, 2, "dash"),
      lineTrace("route-selected", chosen, SELECTED_ROUTE_COLOUR, 4),
      endsTrace(ends)
    ];
    return routeCache.traces;
  }

  var CLEAR = "rgba(0,0,0,0)";
  // The trucks' plot: the same projection as the map underneath, nothing drawn but the trucks.
  var layout = {
    margin: { l: 0, r: 0, t: 0, b: 0 }, showlegend: false, dragmode: "pan", hovermode: "closest",
    paper_bgcolor: CLEAR, plot_bgcolor: CLEAR,
    geo: {
      scope: "usa", projection: { type: "albers usa", scale: 1 }, bgcolor: CLEAR, showland: false,
      showsubunits: false, showcountries: false, showcoastlines: false, showlakes: false, showframe: false
    }
  };
  var config = {
    topojsonURL: el.dataset.topojsonUrl, responsive: true, displaylogo: false,
    modeBarButtonsToRemove: ["toImage", "sendDataToCloud"]
  };
  // The map underneath: states and routes, no interaction of its own (it follows the trucks' view).
  var routesLayout = {
    margin: { l: 0, r: 0, t: 0, b: 0 }, showlegend: false, paper_bgcolor: CLEAR,
    geo: {
      scope: "usa", projection: { type: "albers usa", scale: 1 }, showland: true, landcolor: "#f3f1ea",
      subunitcolor: "#b9b5a8", countrycolor: "#8c887c", showlakes: false, bgcolor: CLEAR
    }
  };
  var routesConfig = { topojsonURL: el.dataset.topojsonUrl, responsive: true, staticPlot: true };

  function shownTrucks() {
    var shown = [];
    vehicles.forEach(function (v) { if (visible(v)) { shown.push(v); } });
    return shown;
  }

  function applyFollow() {
    if (following == null) { return; }
    var v = vehicles.get(following);
    if (!v || !visible(v)) { stopFollowing(); return; }
    layout.geo.center = { lat: v.lat, lon: v.lon };
    if (!(layout.geo.projection.scale >= FOLLOW_SCALE)) { layout.geo.projection.scale = FOLLOW_SCALE; }
  }

  function draw() {
    drawPending = false;
    var shown = shownTrucks();
    applyFollow();
    Plotly.react(el, trucksTraces(shown), layout, config);
    el.dataset.trucksShown = String(shown.length);
    el.dataset.following = following == null ? "" : String(following);
    drawRoutes(shown);
  }

  // The view (centre, zoom, rotation) of the trucks' plot, which the pointer moves, copied underneath.
  function viewOf(geo) {
    return { center: geo.center, scale: geo.projection.scale, rotation: geo.projection.rotation };
  }

  function drawRoutes(shown) {
    var traces = routeTraces(shown || shownTrucks());
    var view = JSON.stringify(viewOf(layout.geo));
    if (routesDrawn.key === routeCache.key && routesDrawn.view === view) { return; }
    if (routesDrawn.busy) { routesDrawn.again = true; return; }
    var v = viewOf(layout.geo);
    if (v.center) { routesLayout.geo.center = Object.assign({}, v.center); } else { delete routesLayout.geo.center; }
    if (v.rotation) { routesLayout.geo.projection.rotation = Object.assign({}, v.rotation); }
    else { delete routesLayout.geo.projection.rotation; }
    routesLayout.geo.projection.scale = v.scale;
    routesDrawn.busy = true;
    routesDrawn.key = routeCache.key;
    routesDrawn.view = view;
    Plotly.react(routesEl, traces, routesLayout, routesConfig).then(function () {
      routesDrawn.busy = false;
      if (routesDrawn.again) { routesDrawn.again = false; drawRoutes(); }
    });
  }

  function scheduleDraw() {
    if (drawPending) { return; }
    drawPending = true;
    window.requestAnimationFrame(draw);
  }

  function tag(kind, text) {
    var span = document.createElement("span");
    span.className = "tag tag-" + kind;
    span.textContent = text;
    return span;
  }

  function cell(tr, text, cls, title) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    if (title) { td.title = title; }
    tr.appendChild(td);
    return td;
  }

  function rowFor(v) {
    var tr = document.createElement("tr");
    var state = comms(v);
    tr.dataset.missionId = v.mission_id;
    tr.dataset.comms = state;
    tr.dataset.stale = state === "live" ? "false" : "true";
    tr.dataset.atRisk = v.at_risk ? "true" : "false";
    tr.tabIndex = 0;
    if (v.mission_id === selected) { tr.className = "is-selected"; }
    tr.addEventListener("click", function () { select(v.mission_id); });
    tr.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(v.mission_id); }
    });
    var first = cell(tr, v.vehicle_id || "?");
    if (state !== "live") { first.appendChild(tag(state, state)); }
    return tr;
  }

  var COMMS_ORDER = { lost: 0, stale: 1, live: 2 };

  function renderFleet(shown) {
    var rows = shown.slice().sort(function (a, b) {
      return COMMS_ORDER[comms(a)] - COMMS_ORDER[comms(b)] || (b.at_risk === true) - (a.at_risk === true) ||
        String(a.vehicle_id).localeCompare(String(b.vehicle_id));
    }).slice(0, LIST_MAX);
    var body = document.createDocumentFragment();
    rows.forEach(function (v) {
      var tr = rowFor(v);
      cell(tr, carrierOf(v));
      cell(tr, statusLabel(v.status));
      cell(tr, shortModeLabel(v.autonomy_mode), "", modeLabel(v.autonomy_mode));
      cell(tr, v.speed_kph == null ? "—" : String(Math.round(v.speed_kph)), "num");
      cell(tr, arrival(v), v.late_s > 0 ? "late" : (v.eta ? "ontime" : ""));
      // The column is headed "Last seen": "11 min" instead of "11 min ago" keeps it inside the narrow card.
      cell(tr, ago(v.last_seen_at).replace(/ ago$/, ""), "seen", ago(v.last_seen_at));
      body.appendChild(tr);
    });
    rowsEl.replaceChildren(body);
    countEl.textContent = "(" + shown.length + (shown.length === vehicles.size ? "" : " of " + vehicles.size) + ")";
  }

  var RISK_KEYS = {
    vehicle: function (v) { return String(v.vehicle_id || ""); },
    carrier: function (v) { return carrierOf(v); },
    eta: function (v) { return Date.parse(v.eta) || 0; },
    late: function (v) { return v.late_s || 0; }
  };

  function renderRisk(shown) {
    var key = RISK_KEYS[riskSort.key];
    var sign = riskSort.descending ? -1 : 1;
    var risky = shown.filter(function (v) { return v.at_risk; }).sort(function (a, b) {
      var x = key(a), y = key(b);
      var order = typeof x === "number" ? x - y : x.localeCompare(y);
      return sign * order || a.mission_id - b.mission_id;
    }).slice(0, LIST_MAX);
    var body = document.createDocumentFragment();
    risky.forEach(function (v) {
      var tr = rowFor(v);
      cell(tr, carrierOf(v));
      cell(tr, when(v.eta), "", v.eta_basis === "carrier" ? "the carrier's ETA" : "estimated from the route");
      cell(tr, v.late_s > 0 ? duration(v.late_s) : duration(-v.late_s) + " spare", v.late_s > 0 ? "num late" : "num");
      body.appendChild(tr);
    });
    riskRowsEl.replaceChildren(body);
    riskCountEl.textContent = "(" + risky.length + ")";
    riskEmptyEl.hidden = risky.length > 0;
    riskEl.querySelectorAll("th[aria-sort]").forEach(function (th) {
      var button = th.querySelector("button");
      th.setAttribute("aria-sort", button.dataset.sort === riskSort.key ?
        (riskSort.descending ? "descending" : "ascending") : "none");
    });
  }

  function renderLists() {
    var shown = shownTrucks();
    renderFleet(shown);
    renderRisk(shown);
    if (selected != null) { renderDetail(); }
  }

  function merge(row) {
    var current = vehicles.get(row.mission_id) || {};
    if (current.last_seen_at && row.last_seen_at && row.last_seen_at < current.last_seen_at) { return; }
    vehicles.set(row.mission_id, Object.assign({}, current, row));
    needRoute(row.mission_id);
  }

  // --- routes: asked for once per mission -----------------------------------------------------

  function needRoute(missionId) {
    if (routes.has(missionId) || requested.has(missionId)) { return; }
    wanted.add(missionId);
    if (wantTimer == null) { wantTimer = window.setTimeout(askRoutes, 50); }
  }

  function askRoutes() {
    wantTimer = null;
    if (!wanted.size || !socket || socket.readyState !== WebSocket.OPEN) { return; }
    var ids = Array.from(wanted);
    wanted.clear();
    ids.forEach(function (id) { requested.add(id); });
    socket.send(JSON.stringify({ type: "routes", mission_ids: ids }));
  }

  function carrierOption(name) {
    if (!name || !filterEls.carrier) { return; }
    var known = Array.prototype.some.call(filterEls.carrier.options, function (o) { return o.value === name; });
    if (!known) { filterEls.carrier.appendChild(new Option(name, name)); }
  }

  // --- selection, detail, follow --------------------------------------------------------------

  function askDetail() {
    if (selected != null && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "detail", mission_id: selected }));
    }
  }

  function select(missionId) {
    if (selected !== missionId) { lastDetail = null; }
    selected = missionId;
    askDetail();
    renderDetail();
    renderLists();
    scheduleDraw();
  }

  function follow(missionId) {
    following = missionId;
    var v = vehicles.get(missionId);
    followingVehicleEl.textContent = v ? (v.vehicle_id || "mission " + missionId) : "mission " + missionId;
    followingEl.hidden = false;
    if (!(layout.geo.projection.scale >= FOLLOW_SCALE)) { layout.geo.projection.scale = FOLLOW_SCALE; }
    renderDetail();
    scheduleDraw();
  }

  function stopFollowing() {
    following = null;
    followingEl.hidden = true;
    renderDetail();
    scheduleDraw();
  }

  function wholeMap() {
    if (following != null) { stopFollowing(); }
    delete layout.geo.center;
    delete layout.geo.projection.rotation;
    layout.geo.projection.scale = 1;
    scheduleDraw();
  }

  function term(dl, name, value, cls) {
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd");
    if (value instanceof Node) { dd.appendChild(value); } else { dd.textContent = value; }
    if (cls) { dd.className = cls; }
    dl.appendChild(dt); dl.appendChild(dd);
  }

  function renderDetail() {
    if (selected == null) { return; }
    var v = vehicles.get(selected) || {};
    var m = lastDetail || {};
    var r = routes.get(selected);
    if (lastDetail === false) { detailEl.textContent = "This mission is no longer available."; return; }
    var state = v.mission_id != null ? comms(v) : "live";
    var head = document.createElement("p");
    head.className = "livemap-detail-actions";
    var link = document.createElement("a");
    link.href = "/missions/" + selected + "/";
    link.textContent = "Mission #" + selected + (m.shipment || (r && r.shipment) ? " (" + (m.shipment || r.shipment) + ")" : "");
    head.appendChild(link);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-small";
    button.dataset.follow = String(selected);
    button.setAttribute("aria-pressed", following === selected ? "true" : "false");
    button.textContent = following === selected ? "Stop following" : "Follow this truck";
    button.addEventListener("click", function () {
      if (following === selected) { stopFollowing(); } else { follow(selected); }
    });
    head.appendChild(button);
    var dl = document.createElement("dl");
    term(dl, "Vehicle", (v.vehicle_id || m.vehicle_id || "?") + " · " + (carrierOf(v) || m.carrier || ""));
    if (r) {
      term(dl, "Lane", r.origin.address + " → " + r.destination.address);
      if (r.verified_plan) {
        var plan = r.verified_plan;
        term(dl, "Route", Math.round(r.km).toLocaleString("en-US") + " km, " + plan.label +
          (plan.current ? "" : " (outside its validity window)") + " · sha256 " + plan.sha256.slice(0, 12) + "…");
      } else {
        term(dl, "Planned route", Math.round(r.km).toLocaleString("en-US") + " km, " + r.basis);
      }
      term(dl, "Delivery window", when(r.delivery_window_start) + " – " + when(r.delivery_window_end) + " UTC");
    }
    term(dl, "Status", statusLabel(v.status || m.status));
    term(dl, "Mode", modeLabel(v.autonomy_mode || m.autonomy_mode));
    term(dl, "Speed", v.speed_kph == null ? "—" : Math.round(v.speed_kph) + " km/h");
    var seen = document.createDocumentFragment();
    seen.appendChild(document.createTextNode(ago(v.last_seen_at || m.last_seen_at) + " "));
    if (state !== "live") { seen.appendChild(tag(state, state)); }
    term(dl, "Last seen", seen, state === "live" ? "" : "exc");
    if (v.eta) {
      var basis = { route: "along the planned route", direct: "straight to the destination, off route",
        carrier: "the carrier's ETA, off route" }[v.eta_basis] || "";
      term(dl, "ETA", when(v.eta) + " UTC · " + arrival(v), v.late_s > 0 ? "late" : "ontime");
      if (v.remaining_km != null) { term(dl, "Remaining", Math.round(v.remaining_km).toLocaleString("en-US") + " km, " + basis); }
    }
    if (r && r.carrier_eta) { term(dl, "Carrier's ETA", when(r.carrier_eta) + " UTC (at acceptance)"); }
    var exceptions = m.exceptions || [];
    term(dl, "Open exceptions", exceptions.length ? exceptions.map(function (e) { return e.label; }).join(", ") : "none",
      exceptions.length ? "exc" : "");
    detailEl.replaceChildren(head, dl);
  }

  // --- socket ---------------------------------------------------------------------------------

  function onMessage(event) {
    var msg = JSON.parse(event.data);
    if (msg.type === "snapshot") {
      clockSkewMs = Date.parse(msg.server_time) - Date.now();
      vehicles.clear();
      msg.vehicles.forEach(merge);
      msg.vehicles.forEach(function (v) { carrierOption(v.carrier); });
      scheduleDraw(); renderLists();
    } else if (msg.type === "snapshot_more") {
      // The rest of a large fleet's snapshot (the server sends no message over 768 KiB).
      msg.vehicles.forEach(merge);
      msg.vehicles.forEach(function (v) { carrierOption(v.carrier); });
      scheduleDraw(); renderLists();
    } else if (msg.type === "positions") {
      msg.vehicles.forEach(merge);
      scheduleDraw();
    } else if (msg.type === "routes") {
      msg.routes.forEach(function (r) { routes.set(r.mission_id, r); carrierOption(r.carrier); });
      scheduleDraw(); renderLists();
    } else if (msg.type === "detail" && msg.mission_id === selected) {
      lastDetail = msg.mission || false;
      renderDetail();
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + el.dataset.wsPath);
    socket.onopen = function () {
      retryMs = 1000;
      setStatus("live", "live");
      // Routes asked for on a socket that closed before answering are asked for again.
      requested.forEach(function (id) { if (!routes.has(id)) { requested.delete(id); needRoute(id); } });
      askRoutes();
    };
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      if (event.code === 4401 || event.code === 4403) { setStatus("offline", "not allowed"); return; }
      setStatus("offline", "reconnecting…");
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    };
  }

  // --- controls -------------------------------------------------------------------------------

  ["carrier", "status", "mode"].forEach(function (name) {
    var select_ = filterEls[name];
    if (!select_) { return; }
    select_.addEventListener("change", function () {
      filters[name] = select_.value;
      scheduleDraw(); renderLists();
    });
  });
  if (filterEls.routes) {
    filterEls.routes.addEventListener("change", function () { filters.routes = filterEls.routes.checked; scheduleDraw(); });
  }
  document.getElementById("livemap-filters").addEventListener("submit", function (event) { event.preventDefault(); });
  document.getElementById("livemap-follow-stop").addEventListener("click", stopFollowing);
  document.getElementById("livemap-reset-view").addEventListener("click", wholeMap);
  riskEl.querySelectorAll("th button[data-sort]").forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.dataset.sort;
      riskSort = { key: key, descending: riskSort.key === key ? !riskSort.descending : key === "late" };
      renderLists();
    });
  });

  Plotly.newPlot(routesEl, routeTraces([]), routesLayout, routesConfig);
  Plotly.newPlot(el, trucksTraces([]), layout, config).then(function () {
    el.on("plotly_click", function (data) {
      var point = data.points && data.points.find(function (p) { return p.data.name === "trucks"; });
      if (point) { select(point.customdata); }
    });
    // Panned or zoomed by the dispatcher: the map underneath follows (during the gesture too).
    el.on("plotly_relayout", function () { drawRoutes(); });
    el.on("plotly_relayouting", function () { drawRoutes(); });
  });
  // Staleness changes with time alone: re-evaluate once a second.
  window.setInterval(function () { scheduleDraw(); renderLists(); askDetail(); }, 1000);
  connect();
})();
