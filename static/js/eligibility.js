/* The new-shipment form's eligibility panel: which carriers can take the load typed so far.
 *
 * The panel ([data-eligibility-url]) is rendered with the form; as the dispatcher types,
 * the lane and load fields are sent (GET, debounced) to the server, which answers the
 * panel's body rendered with the same rules the waterfall uses. No outside requests.
 */
(function () {
  "use strict";

  var panel = document.querySelector("[data-eligibility-url]");
  if (!panel || !window.fetch) return;
  var form = panel.closest("form");
  var body = panel.querySelector("[data-eligibility-body]");
  var FIELDS = ["origin_region", "destination_region", "weight_kg", "hazmat", "needs_night_operations", "max_autonomy_level"];
  var timer = null;
  var latest = 0;

  function query() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (!input) return;
      if (input.type === "checkbox") {
        if (input.checked) params.set(name, "on");
      } else if (input.value.trim() !== "") {
        params.set(name, input.value.trim());
      }
    });
    return params.toString();
  }

  function refresh() {
    var ticket = ++latest;
    fetch(panel.getAttribute("data-eligibility-url") + "?" + query(), {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (ticket === latest) body.innerHTML = html; // only the answer to the newest question
      })
      .catch(function () {
        if (ticket === latest) body.setAttribute("data-stale", "true");
      });
  }

  form.addEventListener("input", function (event) {
    if (FIELDS.indexOf(event.target.name) < 0) return;
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 250);
  });
  form.addEventListener("change", function (event) {
    if (FIELDS.indexOf(event.target.name) < 0) return;
    window.clearTimeout(timer);
    refresh();
  });
})();
