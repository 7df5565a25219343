/* SLA pages: draws the plotly charts from the JSON endpoints and refreshes them every minute,
   so the figures follow each evaluation without a reload. No request leaves the console's origin.

   No data is never drawn as failure: an SLI without events in its window comes as null (never 0)
   and is drawn as a gap, marked "no traffic" (or "not evaluated"), never as a bar or a point at 0.
   Axis titles are objects ({text: ...}): plotly.js 3 ignores the old string form. */
(function () {
  "use strict";
  var REFRESH_MS = 60000;
  // The comparison draws the SLIs that are a share of good events (higher is better, 0-100 %).
  var PCT_SLIS = ["on_time", "mission_success", "telemetry_integrity"];
  var LABELS = {
    on_time: "On-time delivery", mission_success: "Mission success", telemetry_integrity: "Telemetry integrity"
  };
  var COLORS = { on_time: "#1f77b4", mission_success: "#2ca02c", telemetry_integrity: "#9467bd" };
  var NO_DATA_TEXT = { no_traffic: "no traffic", not_evaluated: "not evaluated" };
  var STATE_TEXT = {
    met: "meets its target", missed: "misses its target", no_target: "no contract: not judged",
    low_traffic: "too few events to judge", no_traffic: "no traffic", not_evaluated: "not evaluated"
  };
  var CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  var MUTED = "#5f6b7a";
  var TARGET_COLOR = "#1c2430";
  var DANGER = "#b42318";
  // The legend sits above the plot, right-aligned, so it never covers the two-line date ticks below it.
  var LAYOUT = {
    margin: { t: 48, r: 10, b: 64, l: 64 }, height: 300,
    legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom" }
  };
  var UNIT_NAMES = { "%": "percent (%)", s: "seconds (s)", ms: "milliseconds (ms)" };
  var TIME_AXIS = { title: { text: "evaluated at (UTC)" }, type: "date" };
  // Budget left can fall to thousands of percent below zero (10 bad of an allowance of 0.1);
  // plotting that flattens every other line, so the chart pins values to this range.
  var BUDGET_MIN = -100, BUDGET_MAX = 100;
  // Comparison bars: each category (carrier) holds one bar per SLI in this share of its width.
  var GROUP_WIDTH = 0.72;

  function hasData(values) { return values.some(function (v) { return v !== null && v !== undefined; }); }
  function fmt(value) { return value.toLocaleString("en-US", { maximumFractionDigits: 1 }); }
  function axisTitle(text) { return { text: text, standoff: 8 }; }

  function fetchJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error(url + ": " + r.status); }
      return r.json();
    });
  }

  function layout(extra) { return Object.assign({}, LAYOUT, extra); }

  // --- Carriers compared -------------------------------------------------------------------------

  function barSlot(i, j, count) {
    // Bars are placed explicitly (offset and width in category units), so the target dashes and the
    // "no traffic" labels can be put on exactly the slot of their bar, with one carrier as with many.
    var width = GROUP_WIDTH / count;
    var left = i - GROUP_WIDTH / 2 + j * width;
    return { left: left, right: left + width, centre: left + width / 2, width: width };
  }

  function comparisonFigure(rows) {
    var carriers = rows.map(function (r) { return r.carrier; });
    var shapes = [], annotations = [];
    var traces = PCT_SLIS.map(function (sli, j) {
      var cells = rows.map(function (r) { return r.slis[sli] || { state: "not_evaluated", value: null }; });
      cells.forEach(function (c, i) {
        var slot = barSlot(i, j, PCT_SLIS.length);
        if (c.value === null || c.value === undefined) {
          annotations.push({
            x: slot.centre, y: 0, xref: "x", yref: "y", yanchor: "bottom", textangle: -90, showarrow: false,
            text: NO_DATA_TEXT[c.state] || "no value", font: { size: 11, color: MUTED }
          });
        } else if (c.state === "low_traffic") {
          // On the (faint, hatched) bar: above a short one, so even a 0 % measured on one event is seen
          // and read as such; inside the top of a tall one, where there is no room above.
          var tall = c.value > 60;
          annotations.push({
            x: slot.centre, y: c.value, xref: "x", yref: "y", yanchor: tall ? "top" : "bottom", yshift: tall ? -4 : 2,
            textangle: -90, showarrow: false, text: "too few (" + c.total + ")", font: { size: 11, color: MUTED }
          });
        }
        if (c.target !== null && c.target !== undefined) {
          shapes.push({
            type: "line", xref: "x", yref: "y", x0: slot.left, x1: slot.right, y0: c.target, y1: c.target,
            line: { color: TARGET_COLOR, width: 2, dash: "dot" }
          });
        }
      });
      return {
        type: "bar", name: LABELS[sli], x: rows.map(function (r, i) { return barSlot(i, j, PCT_SLIS.length).left; }),
        y: cells.map(function (c) { return c.value === undefined ? null : c.value; }),
        width: GROUP_WIDTH / PCT_SLIS.length, offset: 0,
        // Too few events to judge: the measured value, drawn faint and hatched, in no judging colour.
        marker: {
          color: COLORS[sli],
          opacity: cells.map(function (c) { return c.state === "low_traffic" ? 0.45 : 1; }),
          pattern: { shape: cells.map(function (c) { return c.state === "low_traffic" ? "/" : ""; }) }
        },
        customdata: cells.map(function (c, i) {
          return [carriers[i], c.target_text || "no target", c.total || 0, c.budget_text || "—",
            STATE_TEXT[c.state] || ""];
        }),
        hovertemplate: "%{customdata[0]}<br>" + LABELS[sli] + ": %{y:.2f} % (%{customdata[4]})" +
          "<br>target %{customdata[1]}<br>%{customdata[2]} events · budget %{customdata[3]}<extra></extra>"
      };
    });
    // A legend entry for the target dashes (a shape has none).
    traces.push({
      type: "scatter", mode: "lines", name: "target", x: [null], y: [null], hoverinfo: "skip",
      line: { color: TARGET_COLOR, width: 2, dash: "dot" }
    });
    var count = Math.max(carriers.length, 1);
    // With one or two carriers the axis keeps room around them, so the bars stay bar-shaped.
    var half = Math.max(count, 3) / 2;
    var xaxis = {
      title: axisTitle("carrier"), tickmode: "array", tickvals: carriers.map(function (_, i) { return i; }),
      ticktext: carriers, range: [(count - 1) / 2 - half, (count - 1) / 2 + half], zeroline: false,
      showgrid: false
    };
    return {
      traces: traces,
      layout: layout({
        barmode: "overlay", height: 340, xaxis: xaxis, shapes: shapes, annotations: annotations,
        yaxis: { title: axisTitle("share of good events (%)"), range: [0, 105], ticksuffix: " %" },
        legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, margin: { t: 30, r: 10, b: 64, l: 72 }
      })
    };
  }

  function drawComparison(el) {
    fetchJson(el.dataset.url).then(function (data) {
      var figure = comparisonFigure(data.rows);
      Plotly.react(el, figure.traces, figure.layout, CONFIG);
      el.dataset.drawn = "1";
    }).catch(function (e) { el.textContent = "Chart unavailable (" + e.message + ")"; });
  }

  // --- One carrier: SLI against target over time ------------------------------------------------------

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

  // Shaded bands over the evaluations that had no traffic, each from halfway to the previous
  // evaluation to halfway to the next: the gap in the line is labelled rather than left to guess.
  function noTrafficBands(t, states) {
    var times = t.map(function (s) { return Date.parse(s); });
    var shapes = [];
    var i = 0;
    while (i < states.length) {
      if (states[i] !== "no_traffic") { i += 1; continue; }
      var first = i;
      while (i + 1 < states.length && states[i + 1] === "no_traffic") { i += 1; }
      var last = i;
      var x0 = first > 0 ? (times[first - 1] + times[first]) / 2 : times[first] - 60000;
      var x1 = last + 1 < times.length ? (times[last] + times[last + 1]) / 2 : times[last] + 60000;
      shapes.push({
        type: "rect", xref: "x", yref: "paper", x0: new Date(x0).toISOString(), x1: new Date(x1).toISOString(),
        y0: 0, y1: 1, fillcolor: "#eceff3", opacity: 0.8, line: { width: 0 }, layer: "below",
        label: { text: "no traffic", textposition: "top center", font: { size: 11, color: MUTED } }
      });
      i += 1;
    }
    return shapes;
  }

  function seriesFigure(s, label, data) {
    var unit = (data.units && data.units[s.unit[0]]) || s.unit[0] || "";
    var states = s.state || [];
    var traces = [
      { type: "scatter", mode: "lines+markers", name: "measured", x: s.t, y: s.value, connectgaps: false,
        // An open marker: measured on too few events to judge (the engine's minimum-traffic rule).
        marker: { size: 7, symbol: states.map(function (st) { return st === "low_traffic" ? "circle-open" : "circle"; }) },
        customdata: s.total.map(function (n, i) { return [n, STATE_TEXT[states[i]] || ""]; }),
        hovertemplate: "%{y:,.2f} " + unit + " over %{customdata[0]} events (%{customdata[1]})<extra>measured</extra>" }
    ];
    if (hasData(s.target)) {
      traces.push({ type: "scatter", mode: "lines", name: "target", x: s.t, y: s.target,
        line: { dash: "dash", color: TARGET_COLOR, width: 1.5 },
        hovertemplate: "%{y:,.2f} " + unit + "<extra>target</extra>" });
    }
    return {
      traces: traces,
      layout: layout({
        title: { text: label + " (" + data.window + ")", x: 0, xanchor: "left", font: { size: 14 } },
        showlegend: true,  // even alone, the line says what it is ("measured"; no contract: no target)
        xaxis: TIME_AXIS,
        yaxis: { title: axisTitle(UNIT_NAMES[unit] || unit), rangemode: unit === "%" ? "normal" : "tozero" },
        shapes: noTrafficBands(s.t, s.state || [])
      })
    };
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
        connectgaps: false, hovertemplate: "%{fullData.name}: %{customdata:,.1f} % budget left<extra></extra>"
      };
    });
    if (!traces.length) {
      Plotly.purge(burn);
      burn.classList.remove("sla-chart");
      burn.classList.add("sla-chart-empty");
      burn.textContent = "No error budget to draw this month: no traffic yet, or fewer than " +
        data.min_events + " events (too few to judge).";
      if (note) { note.hidden = true; }
      return;
    }
    if (burn.classList.contains("sla-chart-empty")) {
      burn.textContent = "";
      burn.classList.remove("sla-chart-empty");
      burn.classList.add("sla-chart");
    }
    Plotly.react(burn, traces, layout({
      height: 320, showlegend: true, xaxis: TIME_AXIS,
      yaxis: { title: axisTitle("error budget left (%)"), range: [BUDGET_MIN - 8, BUDGET_MAX + 5], ticksuffix: " %" },
      shapes: [{
        type: "line", xref: "paper", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: DANGER },
        label: { text: "budget spent", textposition: "end", yanchor: "top", font: { size: 11, color: DANGER } }
      }]
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
        var label = data.labels[sli] || sli;
        var el = chartFor(container, sli);
        showChart(el, label);
        var figure = seriesFigure(data.series[sli], label, data);
        Plotly.react(el, figure.traces, figure.layout, CONFIG);
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
