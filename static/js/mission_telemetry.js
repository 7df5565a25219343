/* A mission's track and its speed and connectivity charts (plotly.js, offline).
 *
 * Markup on the mission page:
 *   <div id="mission-telemetry" data-url="/missions/42/telemetry.json"
 *        data-topojson-url="/static/vendor/topojson/"></div>
 *   <script src="/static/vendor/plotly/plotly.min.js"></script>
 *   <script src="/static/js/mission_telemetry.js" defer></script>
 * The series are the mission's 1 Hz samples; new ones are fetched every few
 * seconds with ?since=<last timestamp> and appended.
 */
(function () {
  "use strict";
  var root = document.getElementById("mission-telemetry");
  if (!root || typeof Plotly === "undefined") { return; }
  var POLL_MS = 5000;
  var config = { topojsonURL: root.dataset.topojsonUrl, responsive: true, displaylogo: false };
  var series = { ts: [], lat: [], lon: [], speed_kph: [], latency_ms: [], packet_loss_pct: [] };

  function panel(id, label) {
    var div = document.createElement("div");
    div.id = id;
    div.className = "telemetry-chart";
    div.setAttribute("role", "img");
    div.setAttribute("aria-label", label);
    div.style.height = "260px";
    root.appendChild(div);
    return div;
  }
  var trackEl = panel("mission-track", "Track of the mission");
  var speedEl = panel("mission-speed", "Speed over time");
  var connEl = panel("mission-connectivity", "Latency and packet loss over time");

  function draw() {
    Plotly.react(trackEl, [{
      type: "scattergeo", mode: "lines+markers", lat: series.lat, lon: series.lon,
      line: { width: 2, color: "#1b9e77" }, marker: { size: 3 }, hoverinfo: "skip"
    }], {
      margin: { l: 0, r: 0, t: 0, b: 0 }, showlegend: false,
      geo: { scope: "usa", projection: { type: "albers usa" }, showland: true, landcolor: "#f3f1ea",
             subunitcolor: "#b9b5a8", fitbounds: series.lat.length ? "locations" : false }
    }, config);
    Plotly.react(speedEl, [{ type: "scatter", mode: "lines", x: series.ts, y: series.speed_kph, name: "km/h" }],
      { margin: { l: 50, r: 10, t: 10, b: 40 }, yaxis: { title: { text: "km/h" }, rangemode: "tozero" } }, config);
    Plotly.react(connEl, [
      { type: "scatter", mode: "lines", x: series.ts, y: series.latency_ms, name: "latency (ms)" },
      { type: "scatter", mode: "lines", x: series.ts, y: series.packet_loss_pct, name: "packet loss (%)", yaxis: "y2" }
    ], {
      margin: { l: 50, r: 50, t: 10, b: 40 }, legend: { orientation: "h" },
      yaxis: { title: { text: "ms" }, rangemode: "tozero" },
      yaxis2: { title: { text: "%" }, overlaying: "y", side: "right", rangemode: "tozero" }
    }, config);
  }

  function load() {
    var url = root.dataset.url;
    var last = series.ts.length ? series.ts[series.ts.length - 1] : null;
    if (last) { url += "?since=" + encodeURIComponent(last); }
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.points) { return; }
        Object.keys(series).forEach(function (k) { series[k] = series[k].concat(data[k]); });
        draw();
      })
      .catch(function () { /* the next poll retries */ });
  }

  draw();
  load();
  window.setInterval(load, POLL_MS);
})();
