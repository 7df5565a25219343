/* Behaviour every console page shares, kept out of the templates so the Content-Security-Policy
   needs no inline script: a <select data-autosubmit> submits its form as soon as it changes
   (the window and filter pickers of the SLA pages). */
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit();
    }
  });
})();
