// Broker pages: copy buttons, and on the approval page the live status (no reload). Every page
// works without it; the script only adds what needs it.
(function () {
  "use strict";

  // Copy buttons: <button class="copy" data-copy="<id of the field>" data-done="<id of the note>">.
  var buttons = document.querySelectorAll("button.copy");
  Array.prototype.forEach.call(buttons, function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    var done = document.getElementById(button.getAttribute("data-done"));
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = button.getAttribute("data-text") || field.value || field.textContent;
      if (field.select) field.select();
      var finish = function () { if (done) done.textContent = button.getAttribute("data-copied"); };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(finish, function () { document.execCommand("copy"); finish(); });
      } else {
        document.execCommand("copy");
        finish();
      }
    });
  });

  // The code page's countdown: <p id="code-expiry" data-seconds="<n>" data-expired="...">.
  var expiry = document.getElementById("code-expiry");
  if (expiry) {
    var left = parseInt(expiry.getAttribute("data-seconds"), 10);
    var template = expiry.getAttribute("data-template");
    var tick = function () {
      if (left <= 0) {
        expiry.textContent = expiry.getAttribute("data-expired");
        return;
      }
      var m = Math.floor(left / 60), s = left % 60;
      expiry.textContent = template.replace("{time}", m + ":" + (s < 10 ? "0" : "") + s);
      left -= 1;
      setTimeout(tick, 1000);
    };
    if (left > 0 && template) tick();
  }

  // Pages without a link to offer: "go back" where the browser has somewhere to go back to.
  var back = document.getElementById("go-back");
  if (back && window.history.length > 1) {
    back.hidden = false;
    back.addEventListener("click", function () { window.history.back(); });
  }

  var main = document.getElementById("approval");
  if (!main) return;
  // A link shared as ".../approval/<id>#admin" opens the administrator's part.
  var admin = document.getElementById("admin");
  if (admin && window.location.hash === "#admin") admin.open = true;

  if (main.getAttribute("data-status") !== "pending") return;
  var region = document.getElementById("approval-status");
  var title = document.getElementById("title");
  var waiting = document.getElementById("waiting-view");
  // Without the script the note says "reload to check"; with it, the page follows by itself. Same
  // place, one line: the page does not jump.
  var live = document.getElementById("live-note");
  if (live) live.textContent = live.getAttribute("data-live");
  var show = function (status, id) {
    main.setAttribute("data-status", status);
    main.setAttribute("data-view", status);
    region.className = "status status-" + status;
    region.textContent = main.getAttribute("data-" + status + "-text");
    title.textContent = main.getAttribute("data-" + status + "-title");
    document.title = title.textContent;
    if (waiting) waiting.hidden = true;
    var view = document.getElementById(id);
    if (view) view.hidden = false;
  };
  var url = main.getAttribute("data-status-url");
  var poll = function () {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && s.status === "approved") {
          show("approved", "approved-view");
          // Only the browser that started the sign-in has a continue button.
          var next = document.getElementById("continue");
          if (next) next.focus();
        } else if (s && s.status === "expired") {
          show("expired", "expired-view");
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  };
  setTimeout(poll, 2000);
})();
