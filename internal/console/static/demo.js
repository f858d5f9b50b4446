// The demo page: #demo-start starts a demo run, then advances it one
// canned answer at a time, pausing between steps so that a person can
// follow, and lists what the runtime made of each answer.
"use strict";
(function () {
  const nc = window.nanoConsole;
  const pauseMs = 700;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const $ = (id) => document.getElementById(id);

  // line describes one step's answer as a list item.
  function line(s) {
    const li = nc.el("li", { "class": "demo-step" });
    li.append(nc.el("span", { "class": "demo-task" }, `${s.task} (${s.actor})`), ": ");
    if (s.rejected) {
      li.classList.add("rejected");
      li.append(nc.el("span", { "class": "fail" }, `answer rejected: ${s.rejected}`), `, task ${s.seq} stays open`);
      return li;
    }
    if (s.hops.length === 0) {
      li.append(`answer accepted, ${s.status} at ${s.state}`);
      return li;
    }
    s.hops.forEach((h, i) => {
      if (i > 0) li.append(", ");
      const hop = nc.el("span", { "class": "hop" + (h.rollback ? " rollback" : "") }, `${h.from} → ${h.to}`);
      li.append(hop);
      if (h.rollback) li.append(" (rollback)");
    });
    return li;
  }

  nc.on("#demo-start", (button) => {
    button.addEventListener("click", async () => {
      const steps = $("demo-steps"), status = $("demo-status"), outcome = $("demo-outcome");
      const link = $("demo-run-link"), error = $("demo-error");
      button.disabled = true;
      steps.replaceChildren();
      outcome.textContent = "—";
      link.hidden = true;
      error.hidden = true;
      try {
        const run = await nc.post("/ui/demo/start");
        link.href = "/ui/runs/" + encodeURIComponent(run.run_id);
        status.textContent = `Run ${run.run_id} started at ${run.state}.`;
        // Bounded: every step submits one canned answer, and there are
        // run.steps of them.
        for (let i = 0; i < run.steps; i++) {
          await sleep(pauseMs);
          const s = await nc.post(`/ui/demo/${encodeURIComponent(run.run_id)}/step`);
          steps.append(line(s));
          status.textContent = `Step ${s.step} of ${s.steps}: ${s.status} at ${s.state}.`;
          if (s.done) {
            outcome.textContent = s.outcome || s.status;
            break;
          }
        }
        link.hidden = false;
      } catch (e) {
        error.textContent = "The demo stopped: " + e.message;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
  });
})();
