// canopy dashboard: plain DOM and SVG, no library. Views are read from the dashboard
// server's cache; the server-sent event stream says when to read them again.
"use strict";

const meta = (n) => document.querySelector(`meta[name="${n}"]`).content;
const TOKEN = meta("canopy-token");
const ACTIONS = meta("canopy-actions").split(",").filter((a) => a && a !== "confirm-deletion");
const main = document.getElementById("main");
const live = document.getElementById("live");
const state = { ns: "", phase: "", q: "", view: null, refresh: null, busy: false, again: false };

// el builds an element; text goes in through textContent only, never as HTML.
function el(tag, attrs, ...kids) {
  const svg = ["svg", "path", "line", "text", "title", "desc", "g", "rect", "circle"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class" && !svg) e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// put replaces a container's children; views return nested arrays of nodes.
function put(c, ...kids) {
  c.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined));
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ headers: { "X-Canopy-Token": TOKEN } }, opts));
  const type = r.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && body.error) || body || r.statusText);
  return body;
}

function toast(msg, error) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = "toast" + (error ? " error" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 8000);
}

function table(caption, headers, rows, attrs) {
  return el("table", attrs,
    el("caption", { class: "sr-only", text: caption }),
    el("thead", null, el("tr", null, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", null, rows));
}

function phaseCell(row) {
  return el("span", { class: "phase phase-" + (row.phase || "none"), text: row.phaseText || "-" });
}

function weightCell(row) {
  const frac = row.maxWeight > 0 ? Math.min(1, row.weight / row.maxWeight) : 0;
  const bar = el("span", { class: "bar", "aria-hidden": "true" }, el("span"));
  bar.firstChild.style.width = Math.round(frac * 100) + "%";
  return [bar, el("span", { class: "weight", text: row.weight + "%" })];
}

// ---- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  document.getElementById("nav-canaries").removeAttribute("aria-current");
  document.getElementById("nav-policies").removeAttribute("aria-current");
  put(main);
  if (parts[0] === "canary" && parts.length === 3) return showCanary(parts[1], parts[2]);
  if (parts[0] === "yaml" && parts.length === 5) return showYAML(parts[1], parts[2], parts[3], parts[4]);
  if (parts[0] === "policies") return showPolicies();
  return showList();
}

async function refresh() {
  if (!state.refresh) return;
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try { await state.refresh(); } catch (e) { live.textContent = "error: " + e.message; }
  state.busy = false;
  if (state.again) { state.again = false; refresh(); }
}

// ---- the list of Canaries

function showList() {
  document.getElementById("nav-canaries").setAttribute("aria-current", "page");
  document.title = "Canaries · canopy";
  const nsSel = el("select", { id: "f-ns", onchange: (e) => { state.ns = e.target.value; draw(); } }, el("option", { value: "", text: "all" }));
  const phSel = el("select", { id: "f-phase", onchange: (e) => { state.phase = e.target.value; draw(); } }, el("option", { value: "", text: "all" }));
  const search = el("input", { id: "f-q", type: "search", value: state.q, placeholder: "name", oninput: (e) => { state.q = e.target.value; draw(); } });
  const errors = el("div", { id: "errors" });
  const body = el("div", { id: "canaries" });
  main.append(el("h2", { text: "Canaries" }),
    el("div", { class: "filters", role: "search" },
      el("label", null, "Namespace", nsSel), el("label", null, "Phase", phSel), el("label", null, "Search by name", search)),
    errors, body);
  let data = { canaries: [], errors: {} };
  function options(sel, values, current) {
    const have = [...sel.options].map((o) => o.value);
    for (const v of values) if (!have.includes(v)) sel.append(el("option", { value: v, text: v }));
    sel.value = current;
  }
  function draw() {
    put(errors, ...Object.entries(data.errors || {}).map(([k, m]) => el("p", { class: "result error", role: "alert", text: `${k}: ${m}` })));
    options(nsSel, [...new Set(data.canaries.map((c) => c.namespace))].sort(), state.ns);
    options(phSel, [...new Set(data.canaries.map((c) => c.phase).filter(Boolean))].sort(), state.phase);
    const rows = data.canaries.filter((c) => (!state.ns || c.namespace === state.ns) && (!state.phase || c.phase === state.phase) &&
      (!state.q || c.name.toLowerCase().includes(state.q.toLowerCase())));
    if (!rows.length) {
      put(body, el("p", { class: "muted", text: data.canaries.length ? "No Canary matches the filters." : "No Canaries (or none you may read)." }));
      return;
    }
    put(body, table("Canaries: phase, weight, step, failed checks and revisions",
      ["Namespace", "Name", "Phase", "Weight", "Step", "Failed checks", "Revision in analysis", "Promoted revision", "Age"],
      rows.map((c) => el("tr", { "data-canary": c.namespace + "/" + c.name },
        el("td", { text: c.namespace }),
        el("td", null, el("a", { href: `#/canary/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}`, text: c.name })),
        el("td", null, phaseCell(c)),
        el("td", { class: "num" }, weightCell(c)),
        el("td", { text: c.step }),
        el("td", { class: "num" + (c.failedChecks > 0 ? " warn" : ""), text: `${c.failedChecks}/${c.threshold}` }),
        el("td", { text: c.revision || "-" }),
        el("td", { text: c.promoted || "-" }),
        el("td", { text: c.age })))));
  }
  state.refresh = async () => { data = await api("/api/canaries"); draw(); };
  refresh();
}

// ---- one Canary

function showCanary(ns, name) {
  document.title = `${name} · canopy`;
  const head = el("div");
  const result = el("div", { id: "action-result", role: "status", "aria-live": "polite" });
  const actions = el("div", { class: "actions", role: "group", "aria-label": "Manual controls" },
    ACTIONS.map((a) => el("button", { type: "button", id: "action-" + a, "data-action": a, class: a === "abort" ? "danger" : "",
      onclick: () => act(ns, name, a, result), text: a })));
  const chart = el("div");
  const rest = el("div");
  const generated = el("div");
  main.append(el("p", null, el("a", { href: "#/", text: "← all Canaries" })), head,
    el("h2", { text: "Actions" }), actions, result,
    el("h2", { text: "Weight over time" }), chart, rest,
    el("h2", { text: "Generated objects" }), generated);
  generated.append(el("button", { type: "button", id: "show-generated", text: "List the generated objects", onclick: () => listGenerated("canaries", ns, name, generated) }));
  state.refresh = async () => {
    let d;
    try { d = await api(`/api/canaries/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`); } catch (e) {
      put(head, el("h2", { text: `${ns}/${name}` }), el("p", { class: "result error", role: "alert", text: e.message }));
      return;
    }
    put(head,
      el("h2", null, `Canary ${ns}/${name}: `, phaseCell(d)),
      el("dl", { class: "facts" },
        el("dt", { text: "Weight" }), el("dd", { id: "weight" }, weightCell(d), ` of ${d.maxWeight}%`),
        el("dt", { text: "Step" }), el("dd", { id: "step", text: d.step }),
        el("dt", { text: "Progress" }), el("dd", { text: d.progress + (d.steps ? " — " + d.steps : "") }),
        el("dt", { text: "Revision in analysis" }), el("dd", { text: d.revision || "-" }),
        el("dt", { text: "Promoted revision" }), el("dd", { text: d.promoted || "-" }),
        el("dt", { text: "Failed checks" }), el("dd", { class: d.failedChecks > 0 ? "warn" : "", text: `${d.failedChecks} (a rollback at ${d.threshold})` }),
        (d.hints || []).map((h) => [el("dt", { text: "Next" }), el("dd", { text: h })])));
    for (const a of d.actions || []) {
      const b = document.getElementById("action-" + a.name);
      if (b) b.title = a.ignored ? `canopy will probably ignore ${a.name} now: ${a.ignored}` : a.short;
    }
    // Keep what the reader opened across redraws.
    const open = new Set([...main.querySelectorAll("details[open]")].map((e) => e.dataset.key));
    put(chart, weightChart(d));
    put(rest,
      el("h2", { text: "Checks" }), checks(d),
      el("h2", { text: "Gates and webhooks" }), d.gates && d.gates.length ? table("Gates and webhooks with their last answers",
        ["Name", "Type", "State", "Attempts", "Last call", "Last answer"],
        d.gates.map((g) => el("tr", null, el("td", { text: g.name }), el("td", { text: g.type }), el("td", { text: g.state }),
          el("td", { class: "num", text: g.attempts }), el("td", { text: g.lastCall }), el("td", { text: g.message })))) : el("p", { class: "muted", text: "No gates or rollback webhooks." }),
      el("h2", { text: "Conditions" }), table("Status conditions", ["Type", "Status", "Reason", "Since", "Message"],
        (d.conditions || []).map((c) => el("tr", null, el("td", { text: c.type }), el("td", { text: c.status }), el("td", { text: c.reason }),
          el("td", { text: c.since }), el("td", { text: c.message })))),
      el("h2", { text: "Events" }), d.eventsError ? el("p", { class: "result error", text: "Cannot read the events: " + d.eventsError }) :
        (d.events && d.events.length ? table("The Canary's events, newest last", ["Last seen", "Type", "Reason", "Message"],
          d.events.map((e) => el("tr", null, el("td", { text: e.when }), el("td", { class: e.type === "Warning" ? "warn" : "", text: e.type }),
            el("td", { text: e.reason }), el("td", { text: e.note })))) : el("p", { class: "muted", text: "No events." })));
    for (const e of main.querySelectorAll("details[data-key]")) if (open.has(e.dataset.key)) e.open = true;
  };
  refresh();
}

async function act(ns, name, action, result) {
  const b = document.getElementById("action-" + action);
  b.setAttribute("aria-busy", "true");
  try {
    const r = await api(`/api/canaries/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${action}`, { method: "POST", headers: { "X-Canopy-Token": TOKEN } });
    put(result, el("p", { class: "result", text: r.message }));
  } catch (e) {
    put(result, el("p", { class: "result error", role: "alert", text: `${action} refused: ${e.message}` }));
  } finally {
    b.removeAttribute("aria-busy");
  }
}

function checks(d) {
  if (!d.checks || !d.checks.length) return el("p", { class: "muted", text: "No checks measured yet." });
  const now = table("Checks: last value against threshold", ["Name", "Outcome", "Value", "Threshold", "Measured", "Message"],
    d.checks.map((c) => el("tr", null, el("td", { text: c.name + (c.dryRun ? " (dry run)" : "") }),
      el("td", { class: c.outcome === "Failed" ? "bad" : c.outcome === "Passed" ? "ok" : "", text: c.outcome }),
      el("td", { class: "num", text: c.value || "-" }), el("td", { text: c.threshold || "-" }), el("td", { text: c.measured }), el("td", { text: c.message }))));
  const hist = (d.history.checks || []).slice(-60).reverse();
  return [now, hist.length ? el("details", { "data-key": "measurements" }, el("summary", { text: `Each measurement (${hist.length}, newest first)` }),
    table("Each check's value against its threshold per interval", ["Time", "Check", "Value", "Threshold", "Outcome"],
      hist.map((p) => el("tr", null, el("td", { text: new Date(p.t).toLocaleTimeString() }), el("td", { text: p.name }),
        el("td", { class: "num", text: p.value || "-" }), el("td", { text: p.threshold || "-" }),
        el("td", { class: p.outcome === "Failed" ? "bad" : p.outcome === "Passed" ? "ok" : "", text: p.outcome }))))) : null];
}

// weightChart is a step line of the weight over time in plain SVG, with a text alternative.
function weightChart(d) {
  const pts = (d.history.weight || []).map((p) => ({ t: new Date(p.t).getTime(), w: p.weight, phase: p.phase }));
  const now = Date.now();
  const W = 800, H = 220, L = 44, R = 12, T = 12, B = 28;
  const top = Math.max(100, ...pts.map((p) => p.w));
  const t0 = pts.length ? Math.min(pts[0].t, now - 60000) : now - 600000;
  const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, now - t0);
  const y = (w) => T + (H - T - B) * (1 - w / top);
  let path = "";
  pts.forEach((p, i) => {
    path += i === 0 ? `M${x(p.t).toFixed(1)},${y(p.w).toFixed(1)}` : `H${x(p.t).toFixed(1)}V${y(p.w).toFixed(1)}`;
  });
  if (pts.length) path += `H${x(now).toFixed(1)}`;
  const src = d.history.source === "prometheus" ? "from Prometheus (canopy_canary_weight)" : "kept by this dashboard from the watch since it started";
  const summary = pts.length ? `Canary weight over time, ${src}: now ${d.weight}%, ` +
    pts.slice(-8).map((p) => `${p.w}% from ${new Date(p.t).toLocaleTimeString()}`).join(", ") : "No weight history yet.";
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc" },
    el("title", { id: "chart-title", text: `Weight of ${d.namespace}/${d.name} over time` }),
    el("desc", { id: "chart-desc", text: summary }),
    [0, 25, 50, 75, 100].filter((v) => v <= top).map((v) => el("g", null,
      el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: v + "%" }))),
    el("text", { x: L, y: H - 8, text: new Date(t0).toLocaleTimeString() }),
    el("text", { x: W - R, y: H - 8, "text-anchor": "end", text: "now" }),
    el("path", { class: "line", d: path }));
  const rows = pts.slice(-40).reverse().map((p) => el("tr", null, el("td", { text: new Date(p.t).toLocaleTimeString() }),
    el("td", { class: "num", text: p.w + "%" }), el("td", { text: p.phase || "" })));
  return [svg, el("p", { class: "muted", text: "Source: " + src + (d.history.error ? ` (Prometheus: ${d.history.error})` : "") }),
    el("details", { "data-key": "weights" }, el("summary", { text: "The weight changes as a table" }),
      table("Weight changes, newest first", ["From", "Weight", "Phase"], rows))];
}

async function listGenerated(kind, ns, name, into) {
  put(into, el("p", { class: "muted", text: "Rendering…" }));
  try {
    const r = await api(`/api/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/generated`);
    put(into, table("Objects canopy generates", ["Kind", "Namespace", "Name", "YAML", "Note"],
      r.objects.map((o) => el("tr", null, el("td", { text: o.kind }), el("td", { text: o.namespace }), el("td", { text: o.name }),
        el("td", null, el("a", { href: `#/yaml/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${o.index}`, text: "rendered YAML" })),
        el("td", { text: o.note })))));
  } catch (e) {
    put(into, el("p", { class: "result error", role: "alert", text: e.message }));
  }
}

function showYAML(kind, ns, name, index) {
  document.title = `${name} YAML · canopy`;
  const back = kind === "canaries" ? `#/canary/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` : "#/policies";
  const pre = el("pre", { class: "yaml", tabindex: "0", "aria-label": "Rendered YAML" });
  main.append(el("p", null, el("a", { href: back, text: "← back" })),
    el("h2", { text: `Generated for ${kind === "canaries" ? "Canary" : "MeshPolicy"} ${ns}/${name}, as kubectl canopy render prints it` }), pre);
  state.refresh = null;
  api(`/api/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/generated/${encodeURIComponent(index)}`)
    .then((t) => { pre.textContent = t; }, (e) => { pre.textContent = e.message; });
}

// ---- MeshPolicies

function showPolicies() {
  document.getElementById("nav-policies").setAttribute("aria-current", "page");
  document.title = "MeshPolicies · canopy";
  const search = el("input", { type: "search", id: "p-q", value: state.q, placeholder: "service or policy", oninput: (e) => { state.q = e.target.value; draw(); } });
  const body = el("div", { id: "policies" });
  main.append(el("h2", { text: "MeshPolicies by service" }), el("div", { class: "filters", role: "search" }, el("label", null, "Search", search)), body);
  let data = { policies: [], errors: {} };
  const list = (items) => el("ul", { class: "plain" }, (items || []).map((i) => el("li", { text: i })));
  function draw() {
    const q = state.q.toLowerCase();
    const ps = data.policies.filter((p) => !q || p.name.toLowerCase().includes(q) || p.service.toLowerCase().includes(q));
    put(body,
      ...Object.entries(data.errors || {}).filter(([k]) => k === "MeshPolicy").map(([k, m]) => el("p", { class: "result error", role: "alert", text: `${k}: ${m}` })),
      ...(ps.length ? [] : [el("p", { class: "muted", text: "No MeshPolicies (or none you may read)." })]),
      ...ps.map((p) => {
        const gen = el("div");
        return el("section", { class: "card", "data-policy": `${p.namespace}/${p.name}`, "aria-labelledby": `p-${p.namespace}-${p.name}` },
          el("h3", { id: `p-${p.namespace}-${p.name}` }, `Service ${p.namespace}/${p.service} `, el("span", { class: "muted", text: `(MeshPolicy ${p.name})` })),
          el("dl", { class: "facts" },
            el("dt", { text: "Ready" }), el("dd", { class: p.ready === "True" ? "ok" : "bad", text: `${p.ready || "Unknown"} ${p.reason ? "(" + p.reason + ")" : ""} ${p.message || ""}` }),
            el("dt", { text: "mTLS" }), el("dd", { text: p.mtls }),
            el("dt", { text: "Who may call it" }), el("dd", null, list(p.callers)),
            el("dt", { text: "Timeouts, retries, circuit breaking" }), el("dd", null, list(p.resilience)),
            el("dt", { text: "External services" }), el("dd", null, p.external && p.external.length ? list(p.external) : "none"),
            el("dt", { text: "Ingress" }), el("dd", null, p.ingress && p.ingress.length ? el("ul", { class: "plain" }, p.ingress.map((h) =>
              el("li", null, `${h.host}: certificate ${h.certificate}, `, el("span", { class: h.ready ? "ok" : "warn", text: h.ready ? "ready" : "not ready" }),
                h.expires ? `, expires ${h.expires}` : "", h.message ? ` (${h.message})` : ""))) : "none"),
            el("dt", { text: "Generated" }), el("dd", null, list(p.objects)),
            p.rollout ? [el("dt", { text: "Policy rollout" }), el("dd", { class: "rollout" }, policyRollout(p))] : []),
          el("button", { type: "button", text: "List the generated objects", onclick: () => listGenerated("meshpolicies", p.namespace, p.name, gen) }), gen);
      }));
  }
  // A request's answer, kept across redraws (the live update that follows redraws the cards).
  const results = new Map();
  function policyRollout(p) {
    const r = p.rollout, key = `${p.namespace}/${p.name}`;
    const result = el("div", { class: "policy-result", role: "status", "aria-live": "polite" }, results.get(key) || []);
    const press = async (action) => {
      try {
        const res = await api(`/api/meshpolicies/${encodeURIComponent(p.namespace)}/${encodeURIComponent(p.name)}/${action}`, { method: "POST", headers: { "X-Canopy-Token": TOKEN } });
        results.set(key, el("p", { class: "result", text: res.message }));
      } catch (e) {
        results.set(key, el("p", { class: "result error", role: "alert", text: `${action} refused: ${e.message}` }));
      }
      // A live update may have redrawn the card while the request was out: show the answer
      // on the card on the page.
      const shown = [...main.querySelectorAll("section[data-policy]")].find((s) => s.dataset.policy === key);
      put(shown ? shown.querySelector(".policy-result") : result, results.get(key));
    };
    return [
      el("p", null, el("span", { class: "phase " + (r.phase === "Enforced" ? "ok" : r.phase === "Held" ? "warn" : ""), text: r.phase }),
        r.reason ? ` (${r.reason})` : "", r.message ? `: ${r.message}` : ""),
      r.since ? el("p", { text: `window started ${r.since}` }) : [],
      r.calls && r.calls.length ? list(r.calls) : [],
      r.waiting ? el("div", { class: "actions", role: "group", "aria-label": `Manual controls of MeshPolicy ${key}` },
        el("button", { type: "button", "data-action": "promote", title: "Enforce the change now, without the rest of its window", onclick: () => press("promote"), text: "promote" }),
        el("button", { type: "button", "data-action": "abort", class: "danger", title: "Drop the change in dry-run; the rules in force stay", onclick: () => press("abort"), text: "abort" })) : [],
      result];
  }
  state.refresh = async () => { data = await api("/api/meshpolicies"); draw(); };
  refresh();
}

// ---- live updates

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", () => { live.textContent = "live"; refresh(); });
  es.addEventListener("changed", () => { live.textContent = "live, updated " + new Date().toLocaleTimeString(); refresh(); });
  es.onerror = () => { live.textContent = "reconnecting…"; };
}

window.addEventListener("hashchange", () => { route(); main.focus(); });
route();
connect();
