// canary dashboard: keeps #live current from the server's event stream, and sends the buttons'
// actions with the page's CSRF token. Fragments come from the server, every value escaped there.
"use strict";

(function () {
  const live = document.getElementById("live");
  const conn = document.getElementById("conn");
  const flash = document.getElementById("flash");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function status(state, text) {
    conn.dataset.state = state;
    conn.textContent = text;
  }

  function say(text, kind) {
    flash.textContent = text;
    flash.dataset.kind = kind;
  }

  const url = live.dataset.stream;
  if (url) {
    const source = new EventSource(url);
    source.addEventListener("open", () => status("live", "live"));
    source.addEventListener("update", (ev) => {
      live.innerHTML = JSON.parse(ev.data).html;
      live.dataset.updates = String(Number(live.dataset.updates || 0) + 1);
      status("live", "live · " + new Date().toLocaleTimeString());
    });
    source.addEventListener("trouble", (ev) => {
      status("trouble", "store unreachable: " + JSON.parse(ev.data).message);
    });
    source.addEventListener("final", () => {
      source.close();
      status("final", "ended");
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) status("trouble", "reconnecting…");
    });
  } else {
    status("final", "");
  }

  const CONFIRM = {
    promote: "Send all traffic to the canary now and end the rollout?",
    abort: "Send all traffic back to stable now and end the rollout?",
  };

  live.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const rollout = button.dataset.rollout;
    if (CONFIRM[action] && !window.confirm(CONFIRM[action])) return;
    button.disabled = true;
    try {
      const resp = await fetch(
        "/rollouts/" + encodeURIComponent(rollout) + "/actions/" + encodeURIComponent(action),
        {
          method: "POST",
          headers: { "X-CSRF-Token": csrf },
          credentials: "same-origin",
        },
      );
      const body = await resp.json();
      say(body.ok ? body.message : action + " refused: " + body.message, body.ok ? "ok" : "error");
    } catch (err) {
      say(action + " failed: " + err, "error");
    } finally {
      button.disabled = false;
    }
  });
})();
