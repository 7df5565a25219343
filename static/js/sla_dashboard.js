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
  // The legend sits above the plot, right-aligned, so it never covers the two-line date ticks below it.
  var LAYOUT = {
    margin: { t: 48, r: 10, b: 50, l: 56 }, height: 280,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" }
  };
  var UNIT_LABELS = { pct: "%", seconds: "s", second: "s", ms: "ms" };
  // Budget left can fall to thousands of percent below zero (10 bad of an allowance of 0.1);
  // plotting that flattens every other line, so the chart pins values to this range.
  var BUDGET_MIN = -100, BUDGET_MAX = 100;

  function unitLabel(unit) { return UNIT_LABELS[unit] || unit || ""; }
  function hasData(values) { return values.some(function (v) { return v !== null && v !== undefined; }); }
  function fmt(value) { return value.toLocaleString("en-US", { maximumFractionDigits: 1 }); }

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
      Plotly.react(el, traces, layout({ barmode: "group", yaxis: { title: "%", range: [0, 100] },
        legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { t: 30, r: 10, b: 40, l: 50 } }), CONFIG);
      el.dataset.drawn = "1";
    }).catch(function (e) { el.textContent = "Chart unavailable (" + e.message + ")"; });
  }

  function chartFor(container, sli) {
    var id = "sla-series-" + sli;
    var el = document.getElementById(id);
    if (!el) {
      el = document.createElement("div");
      el.id = id;
      container.appendChild(el);
    }
    return el;
  }

  function showChart(el, label) {
    el.classList.add("sla-chart");
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", label + " against target");
  }

  // SLIs without a single measured value (no missions, no API calls in the window) get one note
  // across the grid instead of empty charts with meaningless axes.
  function showEmpty(container, slis, data) {
    slis.forEach(function (sli) {
      var old = document.getElementById("sla-series-" + sli);
      if (old) { Plotly.purge(old); old.remove(); }
    });
    var box = document.getElementById("sla-series-empty");
    if (!slis.length) { if (box) { box.remove(); } return; }
    if (!box) {
      box = document.createElement("div");
      box.id = "sla-series-empty";
      box.className = "sla-chart-empty";
    }
    container.appendChild(box);
    var h = document.createElement("h3");
    h.textContent = "No traffic in this window (" + data.window + ")";
    var p = document.createElement("p");
    p.textContent = "Nothing to measure yet for: " +
      slis.map(function (sli) { return data.labels[sli] || sli; }).join(", ") + ".";
    box.replaceChildren(h, p);
  }

  function drawBurnDown(burn, note, data) {
    var clamped = [];
    var traces = Object.keys(data.burn_down).sort().filter(function (sli) {
      return hasData(data.burn_down[sli].budget);
    }).map(function (sli) {
      var b = data.burn_down[sli];
      var name = data.labels[sli] || sli;
      var lowest = null;
      var y = b.budget.map(function (v) {
        if (v === null || v === undefined) { return null; }
        if (v < BUDGET_MIN && (lowest === null || v < lowest)) { lowest = v; }
        return Math.max(BUDGET_MIN, Math.min(BUDGET_MAX, v));
      });
      if (lowest !== null) { clamped.push(name + " (lowest " + fmt(lowest) + " %)"); }
      return {
        type: "scatter", mode: "lines+markers", name: name, x: b.t, y: y, customdata: b.budget,
        hovertemplate: "%{fullData.name}: %{customdata:,.1f} % budget left<extra></extra>"
      };
    });
    if (!traces.length) {
      Plotly.purge(burn);
      burn.classList.remove("sla-chart");
      burn.classList.add("sla-chart-empty");
      burn.textContent = "No traffic this month: there is no error budget to burn yet.";
      if (note) { note.hidden = true; }
      return;
    }
    if (burn.classList.contains("sla-chart-empty")) {
      burn.textContent = "";
      burn.classList.remove("sla-chart-empty");
      burn.classList.add("sla-chart");
    }
    Plotly.react(burn, traces, layout({
      height: 300, showlegend: true,
      yaxis: { title: "budget left, %", range: [BUDGET_MIN - 8, BUDGET_MAX + 5], ticksuffix: " %" },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#b42318" } }]
    }), CONFIG);
    if (note) {
      note.hidden = clamped.length === 0;
      note.textContent = clamped.length ? "Plotted between " + BUDGET_MIN + " % and " + BUDGET_MAX +
        " %; lower values are drawn at " + BUDGET_MIN + " %: " + clamped.join(", ") +
        ". Hover a point for the exact figure." : "";
    }
  }

  function drawSeries(container) {
    fetchJson(container.dataset.url).then(function (data) {
      var slis = Object.keys(data.series).sort();
      // Charts with data first, the "no traffic" notes after them.
      var withData = slis.filter(function (sli) { return hasData(data.series[sli].value); });
      var empty = slis.filter(function (sli) { return withData.indexOf(sli) < 0; });
      // Place every box before drawing any: plotly sizes a chart by its grid cell at draw time.
      withData.forEach(function (sli) { container.appendChild(chartFor(container, sli)); });
      showEmpty(container, empty, data);
      withData.forEach(function (sli) {
        var s = data.series[sli];
        var label = data.labels[sli] || sli;
        var el = chartFor(container, sli);
        showChart(el, label);
        var unit = unitLabel(s.unit[0]);
        var traces = [
          { type: "scatter", mode: "lines+markers", name: "measured", x: s.t, y: s.value, connectgaps: false,
            hovertemplate: "%{y:,.2f} " + unit + "<extra>measured</extra>" },
          { type: "scatter", mode: "lines", name: "target", x: s.t, y: s.target, line: { dash: "dash" },
            hovertemplate: "%{y:,.2f} " + unit + "<extra>target</extra>" }
        ];
        Plotly.react(el, traces, layout({
          title: { text: label + " (" + data.window + ")", x: 0, xanchor: "left", font: { size: 14 } },
          yaxis: { title: unit, rangemode: unit === "%" ? "normal" : "tozero" }
        }), CONFIG);
      });
      var burn = document.getElementById("sla-burndown");
      if (burn) { drawBurnDown(burn, document.getElementById("sla-burndown-note"), data); }
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
