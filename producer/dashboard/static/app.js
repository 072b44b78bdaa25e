// The dashboard's only script: refresh the page's content in place, ask before destructive
// actions, select all rows, and "/" to search. Everything works without it, but for refresh.
"use strict";

(function () {
  const main = document.getElementById("main");

  function busy() {
    // Never replace what the user is working on: a focused field or a ticked box.
    const active = document.activeElement;
    if (active && main.contains(active) && active.matches("input, select, textarea")) return true;
    return main.querySelector("input[type=checkbox]:checked") !== null;
  }

  async function refresh() {
    if (document.hidden || busy() || main.hasAttribute("data-no-refresh")) return;
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Coroq-Fragment": "1", "Accept": "text/html" },
        credentials: "same-origin",
      });
      if (!response.ok && response.status !== 503) return;
      const html = await response.text();
      main.innerHTML = html; // rendered and escaped by the server, from the same origin
      main.dispatchEvent(new CustomEvent("coroq:refreshed", { bubbles: true }));
    } catch (error) {
      // The dashboard is restarting or the network is gone: the next tick tries again.
    }
  }

  const seconds = Math.max(1, parseInt(main.dataset.refresh || "5", 10));
  if (!main.hasAttribute("data-no-refresh")) setInterval(refresh, seconds * 1000);

  document.addEventListener("submit", function (event) {
    const button = event.submitter;
    const message = (button && button.dataset.confirm) || event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  document.addEventListener("change", function (event) {
    const all = event.target.closest("[data-select-all]");
    if (!all) return;
    for (const box of all.closest("form").querySelectorAll("input[type=checkbox][name=id]")) box.checked = all.checked;
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.target.matches("input, textarea, select")) return;
    event.preventDefault();
    document.getElementById("job-search").focus();
  });
})();
