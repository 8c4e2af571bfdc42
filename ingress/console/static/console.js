// hookline console: copy buttons (URLs, keys, `{{ }}` expressions), live run log, waiting for a queued replay. No build step.
"use strict";

function copyButtons() {
  document.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = "Copied";
      } catch (err) {
        // No clipboard (plain http on another host): select the text instead.
        const code = button.previousElementSibling;
        if (code && code.tagName === "INPUT") code.select();
        else if (code) window.getSelection().selectAllChildren(code);
        button.textContent = "Select + copy";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  });
}

function liveRunLog() {
  const rows = document.getElementById("run-rows");
  const toggle = document.getElementById("live");
  if (!rows || !rows.dataset.live) return;
  async function refresh() {
    if (toggle && !toggle.checked) return;
    try {
      const answer = await fetch(rows.dataset.live, { credentials: "same-origin", cache: "no-store" });
      if (answer.redirected || !answer.ok) return;
      // The server renders and escapes the rows; this only swaps them in.
      rows.innerHTML = await answer.text();
    } catch (err) {
      // The ingress is restarting: try again at the next tick.
    }
  }
  setInterval(refresh, 2000);
}

function waitForReplay() {
  if (document.getElementById("queued")) setTimeout(() => window.location.reload(), 1000);
}

function autoFilter() {
  ["status", "trigger"].forEach((id) => {
    const select = document.getElementById(id);
    if (select) select.addEventListener("change", () => document.getElementById("filters").submit());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  liveRunLog();
  waitForReplay();
  autoFilter();
});
