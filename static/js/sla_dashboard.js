/* SLA dashboards: draws the plotly charts from the JSON endpoints and refreshes them every minute,
   so the figures follow each evaluation without a reload. No request leaves the console's origin. */
(function () {
  "use strict";
  var REFRESH_MS = 60000;
  var PCT_SLIS = ["on_time", "mission_success", "telemetry_integrity"];
  var LABELS = {
    on_time: "On-time delivery", mission_success: "Mission success", telemetry_integrity: "Telemetry integrity",
    failover_time: "Time to failover (median)", mttr: "MTTR", api_latency_p99: "API latency p99",
    api_error_rate: "API error rate"
  };
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  var LAYOUT = { margin: { t: 30, r: 10, b: 40, l: 50 }, height: 260, legend: { orientation: "h" } };

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error(url + ": " + r.status); }
      return r.json();
    });
  }

  function layout(extra) { return Object.assign({}, LAYOUT, extra); }

  function drawComparison(el) {
    fetchJson(el.dataset.url).then(function (data) {
      var carriers = data.rows.map(function (r) { return r.carrier; });
      var traces = PCT_SLIS.map(function (sli) {
        return {
          type: "bar", name: LABELS[sli], x: carriers,
          y: data.rows.map(function (r) { var c = r.slis[sli]; return c ? c.value : null; })
        };
      });
      Plotly.react(el, traces, layout({ barmode: "group", yaxis: { title: "%", range: [0, 100] } }), CONFIG);
      el.dataset.drawn = "1";
    }).catch(function (e) { el.textContent = "Chart unavailable (" + e.message + ")"; });
  }

  function chartFor(container, sli) {
    var id = "sla-series-" + sli;
    var el = document.getElementById(id);
    if (!el) {
      el = document.createElement("div");
      el.id = id;
      el.className = "sla-chart";
      el.setAttribute("role", "img");
      el.setAttribute("aria-label", (LABELS[sli] || sli) + " against target");
      container.appendChild(el);
    }
    return el;
  }

  function drawSeries(container) {
    fetchJson(container.dataset.url).then(function (data) {
      Object.keys(data.series).sort().forEach(function (sli) {
        var s = data.series[sli];
        var traces = [
          { type: "scatter", mode: "lines+markers", name: "measured", x: s.t, y: s.value, connectgaps: false },
          { type: "scatter", mode: "lines", name: "target", x: s.t, y: s.target, line: { dash: "dash" } }
        ];
        Plotly.react(chartFor(container, sli), traces,
          layout({ title: { text: (data.labels[sli] || sli) + " (" + data.window + ")" }, yaxis: { title: s.unit[0] } }),
          CONFIG);
      });
      var burn = document.getElementById("sla-burndown");
      if (burn) {
        var traces = Object.keys(data.burn_down).sort().map(function (sli) {
          var b = data.burn_down[sli];
          return { type: "scatter", mode: "lines", name: data.labels[sli] || sli, x: b.t, y: b.budget };
        });
        Plotly.react(burn, traces, layout({ yaxis: { title: "budget left, %" },
          shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#b42318" } }] }), CONFIG);
      }
      container.dataset.drawn = "1";
    }).catch(function (e) { container.textContent = "Charts unavailable (" + e.message + ")"; });
  }

  function start() {
    if (typeof Plotly === "undefined") { return; }
    var comparison = document.getElementById("sla-comparison");
    var series = document.getElementById("sla-series");
    function refresh() {
      if (comparison) { drawComparison(comparison); }
      if (series) { drawSeries(series); }
    }
    refresh();
    window.setInterval(function () { if (!document.hidden) { refresh(); } }, REFRESH_MS);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
