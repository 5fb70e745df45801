// relaybus console: live updates over Server-Sent Events. Each element with data-stream="/path" is
// replaced by the HTML fragments the server sends on that stream (rendered and escaped server-side).
"use strict";
(function () {
  function follow(element) {
    var source = new EventSource(element.getAttribute("data-stream"));
    source.addEventListener("fragment", function (event) {
      var message = JSON.parse(event.data);
      element.innerHTML = message.html;
      element.setAttribute("data-updates", String(Number(element.getAttribute("data-updates") || 0) + 1));
      element.classList.remove("stale");
    });
    source.addEventListener("error", function () {
      element.classList.add("stale"); // the browser reconnects by itself
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-stream]").forEach(follow);
  });
})();
