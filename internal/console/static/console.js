// nano-vm-mcp console: a little progressive enhancement, no dependencies.
// Every page works without it; with it, running runs refresh themselves,
// the receipt check and the laboratory fill in without a reload, and the
// demo walks its run step by step. Features register themselves by the
// data-* attributes their markup carries.
"use strict";
(function () {
  const features = [];
  window.nanoConsole = {
    // on registers a feature: f(element) runs for every element matching sel.
    on(sel, f) { features.push([sel, f]); },
    // json fetches a same-origin URL and parses the answer; a non-2xx
    // answer rejects with its text.
    async json(url, opts) {
      const res = await fetch(url, Object.assign({ credentials: "same-origin", headers: { "Accept": "application/json" } }, opts || {}));
      const text = await res.text();
      if (!res.ok) throw new Error(text || res.statusText);
      return text ? JSON.parse(text) : null;
    },
    post(url) { return this.json(url, { method: "POST" }); },
    // el builds an element: el("td", {class: "x"}, "text", child...).
    el(tag, attrs, ...children) {
      const e = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
      for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
      return e;
    },
  };
  document.addEventListener("DOMContentLoaded", () => {
    for (const [sel, f] of features) document.querySelectorAll(sel).forEach(f);
  });
})();
