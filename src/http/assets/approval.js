// Approval page: live status (no reload) and "copy message for IT". The page works without it.
(function () {
  "use strict";
  var main = document.getElementById("approval");
  if (!main) return;

  var copy = document.getElementById("copy-message");
  var message = document.getElementById("it-message");
  var done = document.getElementById("copy-done");
  if (copy && message) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      message.select();
      var finish = function () { done.textContent = copy.getAttribute("data-copied"); };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(message.value).then(finish, function () { document.execCommand("copy"); finish(); });
      } else {
        document.execCommand("copy");
        finish();
      }
    });
  }

  if (main.getAttribute("data-status") !== "pending") return;
  var region = document.getElementById("approval-status");
  var next = document.getElementById("continue");
  var url = main.getAttribute("data-status-url");
  var poll = function () {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && s.status === "approved") {
          main.setAttribute("data-status", "approved");
          region.className = "status status-approved";
          region.textContent = main.getAttribute("data-approved-text");
          // Only the browser that started the sign-in has a continue button.
          if (next) {
            next.hidden = false;
            next.focus();
          }
        } else if (s && s.status === "expired") {
          main.setAttribute("data-status", "expired");
          region.textContent = main.getAttribute("data-expired-text");
        } else {
          setTimeout(poll, 2000);
        }
      })
      .catch(function () { setTimeout(poll, 5000); });
  };
  setTimeout(poll, 2000);
})();
