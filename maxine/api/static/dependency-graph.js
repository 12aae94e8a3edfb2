/* The call graph from /record-call as layered SVG: callers on the left, the
   services they call to the right (column = longest call chain leading to it). */
"use strict";

(() => {
  const el = Charts.el;
  const COL_W = 220, ROW_H = 56, BOX_W = 160, BOX_H = 30, PAD = 20;

  function layers(nodes, edges) {
    const depth = Object.fromEntries(nodes.map((n) => [n, 0]));
    for (let pass = 0; pass < nodes.length; pass++) {  // longest path; cycles stop after |V| passes
      let moved = false;
      for (const e of edges) {
        if (e.caller !== e.called && depth[e.called] < depth[e.caller] + 1 && depth[e.caller] + 1 < nodes.length) {
          depth[e.called] = depth[e.caller] + 1;
          moved = true;
        }
      }
      if (!moved) break;
    }
    return depth;
  }

  function draw(graph) {
    const root = document.getElementById("graph");
    if (!graph.nodes.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No calls recorded yet. Report them with POST /record-call {callerService, calledService}.";
      root.replaceChildren(p);
      return;
    }
    const depth = layers(graph.nodes, graph.edges);
    const columns = [];
    for (const n of graph.nodes) (columns[depth[n]] ||= []).push(n);
    const pos = {};
    columns.forEach((col, c) => col.forEach((n, r) => { pos[n] = {x: PAD + c * COL_W, y: PAD + r * ROW_H}; }));
    const width = PAD * 2 + (columns.length - 1) * COL_W + BOX_W;
    const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * ROW_H;
    const svg = el("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", "data-chart": "dependency-graph"});
    const defs = el("defs", {}, svg);
    const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
                                 markerHeight: 7, orient: "auto-start-reverse"}, defs);
    el("path", {d: "M0,0L10,5L0,10Z", fill: "#8a93a6"}, marker);
    const maxCalls = Math.max(1, ...graph.edges.map((e) => e.calls));
    for (const e of graph.edges) {
      const a = pos[e.caller], b = pos[e.called];
      let d;
      if (e.caller === e.called) {
        d = `M${a.x + BOX_W - 20},${a.y}c20,-24 40,-8 20,${BOX_H / 2}`;
      } else {
        const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2;
        const backwards = b.x <= a.x;
        const x2 = backwards ? b.x + BOX_W / 2 : b.x, y2 = backwards ? b.y + (b.y > a.y ? 0 : BOX_H) : b.y + BOX_H / 2;
        const mid = (x1 + x2) / 2;
        d = `M${x1},${y1}C${mid + 40},${y1} ${mid - 40},${y2} ${x2},${y2}`;
      }
      const path = el("path", {d, class: "edge", "marker-end": "url(#arrow)",
                               "stroke-width": 1 + 3 * e.calls / maxCalls, "data-edge": `${e.caller}->${e.called}`}, svg);
      const tip = el("title", {}, path);
      tip.textContent = `${e.caller} → ${e.called}: ${e.calls} calls, last ${new Date(e.lastSeen).toLocaleString()}`;
      const label = el("text", {x: (a.x + BOX_W + b.x) / 2, y: (a.y + b.y) / 2 + BOX_H / 2 - 4, class: "count",
                                "text-anchor": "middle"}, svg);
      label.textContent = String(e.calls);
    }
    for (const n of graph.nodes) {
      const g = el("g", {class: "node", "data-service": n}, svg);
      el("rect", {x: pos[n].x, y: pos[n].y, width: BOX_W, height: BOX_H, rx: 6}, g);
      const t = el("text", {x: pos[n].x + BOX_W / 2, y: pos[n].y + BOX_H / 2 + 4, "text-anchor": "middle"}, g);
      t.textContent = n.length > 24 ? `${n.slice(0, 23)}…` : n;
      const tip = el("title", {}, g);
      tip.textContent = n;
    }
    root.replaceChildren(svg);
  }

  async function load() {
    const status = document.getElementById("status");
    try {
      const res = await fetch("/dependency-graph/data", {cache: "no-store"});
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const graph = await res.json();
      draw(graph);
      status.textContent = `${graph.nodes.length} services · ${graph.edges.length} edges · ${new Date().toTimeString().slice(0, 8)}`;
      status.className = "status ok";
      document.body.dataset.loaded = "true";
    } catch (err) {
      status.textContent = `error: ${err.message}`;
      status.className = "status bad";
    }
    setTimeout(load, 5000);
  }
  load();
})();
