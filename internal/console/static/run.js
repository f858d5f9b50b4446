// nano-vm-mcp console, run page: verifies the receipt in place and keeps a
// running run's page current. Without this script the verify button posts
// a form to a result page, and the page is current as of its loading.
"use strict";
(function () {
  const nc = window.nanoConsole;

  // The receipt check: post the receipt the page shows, list each check.
  nc.on("#verify-form", (form) => {
    const button = form.querySelector("#verify-receipt");
    const verdict = document.getElementById("receipt-verdict");
    const list = document.getElementById("receipt-checks");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      verdict.textContent = "checking…";
      verdict.className = "";
      list.replaceChildren();
      try {
        const rep = await nc.json(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)) });
        for (const c of rep.checks) {
          const result = c.ok ? "pass" : c.skipped ? "skip" : "FAIL";
          list.append(nc.el("li", { class: result === "FAIL" ? "fail" : result },
            nc.el("strong", {}, result), " ", nc.el("code", {}, c.name), ": " + c.detail));
        }
        verdict.textContent = rep.valid ? "valid" : "invalid";
        verdict.className = rep.valid ? "pass" : "fail";
      } catch (err) {
        verdict.textContent = "could not verify: " + err.message;
        verdict.className = "fail";
      } finally {
        button.disabled = false;
      }
    });
  });

  // Live updates: while the run goes on, poll its state and reload the
  // page when an event has been appended (the run's end is one too).
  nc.on("#run[data-running='true']", (run) => {
    const live = document.getElementById("live");
    const url = "/ui/runs/" + encodeURIComponent(run.dataset.runId) + "/state.json";
    const events = Number(run.dataset.events);
    const every = 1500;
    let failures = 0;
    live.textContent = "live";
    live.title = "This page follows the run: it reloads when the run moves on.";
    const poll = async () => {
      try {
        const s = await nc.json(url);
        failures = 0;
        if (s.events !== events || s.status !== run.dataset.status) {
          // Reload once per new state: should the page still disagree
          // with the state it was reloaded for, stop rather than loop.
          const key = "nano-vm-run-" + run.dataset.runId, seen = s.events + "/" + s.status;
          if (sessionStorage.getItem(key) === seen) {
            live.textContent = "";
            return;
          }
          sessionStorage.setItem(key, seen);
          live.textContent = "updating…";
          window.location.reload();
          return;
        }
        live.textContent = "live";
      } catch (err) {
        failures++;
        live.textContent = "live (reconnecting)";
      }
      // Back off while the server does not answer, up to 30 s.
      setTimeout(poll, Math.min(every * 2 ** failures, 30000));
    };
    setTimeout(poll, every);
  });
})();
