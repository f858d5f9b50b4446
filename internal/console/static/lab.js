// The laboratory page: runs the faults one at a time and fills the matrix
// in as each answers. The server runs the attacks (POST /ui/lab/run, the
// operator only) and answers a fault's rows as JSON; this script only asks
// and draws. Without it the form posts every fault at once and the server
// answers with the whole matrix.
"use strict";
(function () {
  const nc = window.nanoConsole;

  // message is what an error says: the JSON error's message when the
  // server sent one, else its text.
  function message(err) {
    const text = (err && err.message) || String(err);
    try {
      const j = JSON.parse(text);
      if (j && j.message) return j.message;
    } catch (_) { /* not JSON */ }
    return text;
  }

  function verified(v) {
    if (v === null || v === undefined) return "n/a";
    return v ? "yes" : "NO";
  }

  function resultClass(r) {
    return r === "pass" ? "pass" : r === "FAIL" ? "fail" : "na";
  }

  // row builds a tr.lab-row with the cells the server's page has.
  function row(r) {
    const run = r.run_id
      ? nc.el("a", { href: "/ui/runs/" + encodeURIComponent(r.run_id), title: r.run_id }, r.run_id.slice(0, 12))
      : "–";
    return nc.el("tr", { class: "lab-row" },
      nc.el("td", {}, r.fault),
      // A line-break opportunity after each colon, as the page's template.
      nc.el("td", {}, ...r.sub_attack.split(":").flatMap((p, i) => (i ? [":", nc.el("wbr", {}), p] : [p]))),
      nc.el("td", {}, r.expected),
      nc.el("td", {}, r.observed),
      nc.el("td", { class: "verified" }, verified(r.trace_verified)),
      nc.el("td", { class: "verified" }, verified(r.receipt_verified)),
      nc.el("td", { class: "result " + resultClass(r.result) }, r.result),
      nc.el("td", { class: "run" }, run),
      nc.el("td", { class: "detail" }, r.detail_head ? nc.el("details", {}, nc.el("summary", {}, r.detail_head), r.detail) : r.detail || ""));
  }

  nc.on("#lab-form", (form) => {
    const start = document.getElementById("lab-start");
    const select = document.getElementById("lab-program");
    const tbody = document.querySelector("#lab-matrix tbody");
    const summary = document.getElementById("lab-summary");
    const error = document.getElementById("lab-error");
    const faults = Array.from(document.querySelectorAll("#lab-faults [data-fault]"));
    if (!start || !select || !tbody || !summary || !error) return;

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (start.disabled) return;
      const program = select.value;
      start.disabled = true;
      select.disabled = true;
      tbody.replaceChildren();
      error.hidden = true;
      error.textContent = "";
      for (const li of faults) {
        li.dataset.state = "pending";
        li.querySelector(".lab-status").textContent = "";
      }
      const counts = { pass: 0, FAIL: 0, "n/a": 0 };
      const tally = () => counts.pass + " passed, " + counts.FAIL + " failed, " + counts["n/a"] + " n/a";
      try {
        for (let i = 0; i < faults.length; i++) {
          const li = faults[i];
          const fault = li.dataset.fault;
          li.dataset.state = "running";
          li.querySelector(".lab-status").textContent = "running…";
          summary.textContent = "Running " + fault + " (" + (i + 1) + " of " + faults.length + ")… " + tally();
          const url = "/ui/lab/run?program=" + encodeURIComponent(program) + "&fault=" + encodeURIComponent(fault);
          let rows;
          try {
            rows = await nc.post(url);
          } catch (err) {
            li.dataset.state = "error";
            li.querySelector(".lab-status").textContent = "stopped";
            throw err;
          }
          let failed = 0;
          for (const r of rows || []) {
            counts[r.result] = (counts[r.result] || 0) + 1;
            if (r.result === "FAIL") failed++;
            tbody.append(row(r));
          }
          li.dataset.state = failed ? "failed" : "done";
          li.querySelector(".lab-status").textContent = failed ? failed + " failed" : "done";
        }
        summary.textContent = tally();
      } catch (err) {
        error.textContent = "The laboratory stopped: " + message(err);
        error.hidden = false;
        summary.textContent = tally() + " (stopped)";
      } finally {
        start.disabled = false;
        select.disabled = false;
      }
    });
  });
})();
