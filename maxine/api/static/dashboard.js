/* The live dashboard: polls /dashboard/data and redraws. Every value from the
   server is inserted with textContent, never as markup. */
"use strict";

(() => {
  const POLL_MS = 2000;
  const MAX_SHARE_CHARTS = 4;

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  const fmt = {
    ms: (v) => (v == null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1)),
    pct: (v) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`),
    num: (v) => (v == null ? "–" : Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1)),
    dur: (s) => {
      s = Math.floor(s);
      const d = Math.floor(s / 86400), hr = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
      return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
    },
  };

  function scoreClass(score) {
    return score >= 80 ? "good" : score >= 50 ? "warn" : "bad";
  }

  function renderTotals(data) {
    const t = data.totals, lat = data.discoveryLatency;
    const items = [
      ["uptime", fmt.dur(data.uptime)], ["services", fmt.num(t.services)], ["instances", fmt.num(t.instances)],
      ["requests", fmt.num(t.requests)], ["errors", fmt.num(t.errors)], ["discoveries", fmt.num(t.discoveries)],
      ["heartbeats", fmt.num(t.heartbeats)], ["registrations", fmt.num(t.registrations)],
      ["expiries", fmt.num(t.expiries)], ["events", fmt.num(t.eventsPublished)],
      ["discover p50", lat ? `≤ ${fmt.num(lat.p50UpperUs)} µs` : "–"],
      ["discover p99", lat ? `≤ ${fmt.num(lat.p99UpperUs)} µs` : "–"],
    ];
    document.getElementById("totals").replaceChildren(
      ...items.map(([k, v]) => h("div", {class: "stat"}, h("span", {class: "v", text: v}), h("span", {class: "k", text: k}))));
  }

  function instanceTable(service, prediction) {
    const head = ["", "instance", "version", "health", "predicted", "in-flight", "latency ewma ms",
                  "last ms", "error rate", "picks", "heartbeat"];
    const rows = service.instances.map((inst) => {
      const pred = prediction[inst.nodeId];
      return h("tr", {class: "instance", "data-node-id": inst.nodeId},
        h("td", {}, h("span", {class: `dot ${inst.healthy ? scoreClass(inst.healthScore) : "bad"}`,
                               title: inst.healthy ? "lease live" : "lease passed"})),
        h("td", {class: "node", title: inst.nodeId, text: inst.address}),
        h("td", {text: inst.version ?? "–"}),
        h("td", {}, h("span", {class: `score ${scoreClass(inst.healthScore)}`, text: inst.healthScore.toFixed(0)})),
        h("td", {class: pred == null ? "muted" : "", text: pred == null ? "no model yet" : pred.toFixed(0)}),
        h("td", {class: "r", text: fmt.num(inst.inFlight)}),
        h("td", {class: "r", text: fmt.ms(inst.latencyEwmaMs)}),
        h("td", {class: "r", text: fmt.ms(inst.lastLatencyMs)}),
        h("td", {class: "r", text: fmt.pct(inst.errorRate)}),
        h("td", {class: "r", text: fmt.num(inst.dispatches)}),
        h("td", {class: "r", text: `${inst.lastHeartbeatAgoS.toFixed(1)}s ago`}));
    });
    return h("table", {class: "instances"},
      h("thead", {}, h("tr", {}, ...head.map((c) => h("th", {text: c})))), h("tbody", {}, ...rows));
  }

  function legend(nodes) {
    return h("div", {class: "legend"}, ...nodes.map((n, i) =>
      h("span", {}, h("i", {class: "swatch", "data-color": Charts.color(i)}), document.createTextNode(n.address))));
  }

  function paintSwatches(root) {  // CSSOM, not inline style attributes (the CSP forbids those)
    for (const s of root.querySelectorAll(".swatch[data-color]")) s.style.background = s.dataset.color;
  }

  function serviceCard(service, history, source) {
    const nodes = service.instances;
    const hist = nodes.map((n) => history[n.nodeId]).filter(Boolean);
    const prediction = {};
    for (const n of nodes) {
      const hs = history[n.nodeId];
      const last = hs && hs.predicted.length ? hs.predicted[hs.predicted.length - 1] : null;
      if (last != null) prediction[n.nodeId] = last;
    }
    const hasPred = Object.keys(prediction).length > 0;

    const healthSeries = [];
    nodes.forEach((n, i) => {
      const hs = history[n.nodeId];
      if (!hs) return;
      healthSeries.push({name: `${n.address} health`, color: Charts.color(i), t: hs.t, values: hs.score});
      if (hs.predicted.some((v) => v != null)) {
        healthSeries.push({name: `${n.address} predicted`, color: Charts.color(i), t: hs.t, values: hs.predicted,
                           lower: hs.lower, upper: hs.upper, dashed: true});
      }
    });
    const healthChart = h("figure", {class: "chart-box"},
      h("figcaption", {}, document.createTextNode(source === "model" ? "Health score (model)" : "Health score"),
        h("span", {class: "muted", text: hasPred ? " · predicted (dashed) with forecast band" : " · predicted: no model yet"})),
      Charts.lines("health", `${service.name}: health score per instance`, healthSeries, {yMin: 0, yMax: 100}));

    const latencySeries = nodes.map((n, i) => {
      const hs = history[n.nodeId];
      return hs ? {name: `${n.address} latency`, color: Charts.color(i), t: hs.t, values: hs.latencyMs} : null;
    }).filter(Boolean);
    const maxLat = Math.max(1, ...latencySeries.flatMap((s) => s.values.filter((v) => v != null)));
    const top = niceCeil(maxLat);
    const latencyChart = h("figure", {class: "chart-box"},
      h("figcaption", {text: "Latency (peak EWMA, ms)"}),
      Charts.lines("latency", `${service.name}: latency per instance`, latencySeries,
                   {yMin: 0, yMax: top, yTicks: [0, top / 2, top], yFormat: (v) => fmt.num(v)}));

    // each strategy's share of this service's traffic per node, over time
    const times = [...new Set(hist.flatMap((hs) => hs.t))].sort((a, b) => a - b);
    const strategies = {};
    for (const hs of hist) {
      for (const [s, values] of Object.entries(hs.dispatches)) {
        strategies[s] = (strategies[s] || 0) + values.reduce((a, b) => a + b, 0);
      }
    }
    const active = Object.entries(strategies).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1])
      .slice(0, MAX_SHARE_CHARTS).map(([s]) => s);
    const shareCharts = active.map((strategy) => {
      const series = nodes.map((n, i) => {
        const hs = history[n.nodeId];
        const byT = new Map();
        if (hs && hs.dispatches[strategy]) hs.t.forEach((t, k) => byT.set(t, hs.dispatches[strategy][k] || 0));
        return {name: n.address, color: Charts.color(i), values: times.map((t) => byT.get(t) || 0)};
      });
      return h("figure", {class: "chart-box"},
        h("figcaption", {}, document.createTextNode("Traffic share per instance: "), h("b", {text: strategy})),
        Charts.shares("share", `${service.name}: ${strategy} share per instance`, times, series));
    });
    if (!shareCharts.length) {
      shareCharts.push(h("figure", {class: "chart-box"}, h("figcaption", {text: "Traffic share per instance"}),
        Charts.shares("share", `${service.name}: no traffic`, times, [])));
    }

    const card = h("section", {class: "service", "data-service": service.name},
      h("h2", {}, document.createTextNode(service.name),
        h("span", {class: "muted", text: ` · ${nodes.length} instance${nodes.length === 1 ? "" : "s"}`})),
      instanceTable(service, prediction),
      legend(nodes),
      h("div", {class: "charts"}, healthChart, latencyChart, ...shareCharts));
    paintSwatches(card);
    return card;
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function renderServices(data) {
    const root = document.getElementById("services");
    if (!data.services.length) {
      root.replaceChildren(h("p", {class: "empty", text: "No services registered yet."}));
      return;
    }
    root.replaceChildren(...data.services.map((s) => serviceCard(s, data.history, data.healthScoreSource)));
  }

  function renderModels(data) {
    const root = document.getElementById("models");
    if (!data.models.length) {
      root.replaceChildren(h("p", {class: "muted", "data-state": "no-model", text: "no model yet"}),
        h("p", {class: "hint", text: "Routing uses the classic strategies; health scores come from telemetry."}));
      return;
    }
    const rows = data.models.map((m) => h("tr", {},
      h("td", {title: m.kind || "", text: m.name ?? m.kind ?? "model"}),
      h("td", {text: m.version ?? "–"}),
      h("td", {text: m.freshnessSeconds != null ? fmt.dur(m.freshnessSeconds) : "–"}),
      h("td", {class: m.lastError ? "bad" : m.fallbackActive ? "warn" : "good",
               title: m.lastError || "", text: m.lastError ? "error" : m.fallbackActive ? "fallback" : "active"})));
    root.replaceChildren(h("table", {class: "small models"},
      h("thead", {}, h("tr", {}, ...["model", "version", "age", "state"].map((c) => h("th", {text: c})))),
      h("tbody", {}, ...rows)));
  }

  function renderAnomalies(data) {
    const root = document.getElementById("anomalies");
    if (!data.anomalies.length) {
      root.replaceChildren(h("p", {class: "muted",
        text: data.anomalyDetector ? "none" : "none (no anomaly detector yet)"}));
      return;
    }
    root.replaceChildren(h("ul", {class: "anomalies"}, ...data.anomalies.slice(0, 50).map((a) =>
      h("li", {class: `sev-${String(a.severity || "info").toLowerCase()}`},
        h("b", {text: a.type || "anomaly"}),
        document.createTextNode(` ${a.serviceName || ""} ${a.nodeId || ""}`),
        h("span", {class: "muted", text: a.value != null ? ` value ${a.value}${a.threshold != null ? ` > ${a.threshold}` : ""}` : ""})))));
  }

  function renderStrategies(data) {
    const rows = Object.entries(data.totals.discoveriesByStrategy).map(([name, value]) => ({name, value}));
    const root = document.getElementById("strategies");
    root.replaceChildren(rows.length ? Charts.bars("strategies", "discoveries by strategy", rows)
                                     : h("p", {class: "muted", text: "no discoveries yet"}));
  }

  let failures = 0;
  async function poll() {
    const status = document.getElementById("status");
    try {
      const res = await fetch("/dashboard/data", {cache: "no-store"});
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const data = await res.json();
      renderTotals(data);
      renderServices(data);
      renderModels(data);
      renderAnomalies(data);
      renderStrategies(data);
      failures = 0;
      status.textContent = `live · updated ${Charts.clock(data.now)}`;
      status.className = "status ok";
      document.body.dataset.loaded = "true";
    } catch (err) {
      failures += 1;
      status.textContent = `disconnected (${err.message}); retrying`;
      status.className = "status bad";
    }
    setTimeout(poll, Math.min(POLL_MS * (1 + failures), 15000));
  }
  poll();
})();
