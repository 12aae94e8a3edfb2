/* Small hand-written SVG charts: time series with an optional band, and
   stacked shares. No dependencies; every label is set with textContent. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f7ed8", "#e4572e", "#17a589", "#f3a712", "#8e44ad", "#c0392b",
                   "#1abc9c", "#7f8c8d", "#d35400", "#2c3e50", "#27ae60", "#e84393"];

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function color(i) { return PALETTE[i % PALETTE.length]; }

  function frame(kind, width, height, title) {
    const svg = el("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", "data-chart": kind,
                           role: "img", preserveAspectRatio: "xMidYMid meet"});
    const t = el("title", {}, svg);
    t.textContent = title;
    return svg;
  }

  function clock(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function axes(svg, box, xMin, xMax, yMin, yMax, yTicks, yFormat) {
    const g = el("g", {class: "axes"}, svg);
    for (const v of yTicks) {
      const y = box.y + box.h - (v - yMin) / (yMax - yMin) * box.h;
      el("line", {x1: box.x, x2: box.x + box.w, y1: y, y2: y, class: "grid"}, g);
      const label = el("text", {x: box.x - 4, y: y + 3, class: "tick", "text-anchor": "end"}, g);
      label.textContent = yFormat(v);
    }
    for (const [x, anchor, ms] of [[box.x, "start", xMin], [box.x + box.w, "end", xMax]]) {
      const label = el("text", {x, y: box.y + box.h + 12, class: "tick", "text-anchor": anchor}, g);
      label.textContent = clock(ms);
    }
  }

  function scale(box, xMin, xMax, yMin, yMax) {
    const xs = (t) => box.x + (xMax === xMin ? box.w : (t - xMin) / (xMax - xMin) * box.w);
    const ys = (v) => box.y + box.h - (Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin) * box.h;
    return [xs, ys];
  }

  /* series: [{name, color, t: [ms], values: [number|null], lower?, upper?, dashed?}] */
  function lines(kind, title, series, opts) {
    const width = opts.width || 420, height = opts.height || 150;
    const box = {x: 34, y: 8, w: width - 42, h: height - 28};
    const svg = frame(kind, width, height, title);
    const all = series.flatMap((s) => s.t);
    if (!all.length) {
      const msg = el("text", {x: width / 2, y: height / 2, class: "nodata", "text-anchor": "middle"}, svg);
      msg.textContent = "collecting samples…";
      return svg;
    }
    const xMin = Math.min(...all), xMax = Math.max(...all);
    const yMin = opts.yMin ?? 0, yMax = opts.yMax ?? 100;
    axes(svg, box, xMin, xMax, yMin, yMax, opts.yTicks || [0, 50, 100], opts.yFormat || String);
    const [xs, ys] = scale(box, xMin, xMax, yMin, yMax);
    for (const s of series) {
      if (s.lower && s.upper) {  // forecast band: upper edge forward, lower edge back
        const idx = s.t.map((_, i) => i).filter((i) => s.lower[i] != null && s.upper[i] != null);
        if (idx.length > 1) {
          const d = idx.map((i, k) => `${k ? "L" : "M"}${xs(s.t[i]).toFixed(1)},${ys(s.upper[i]).toFixed(1)}`).join("")
            + idx.slice().reverse().map((i) => `L${xs(s.t[i]).toFixed(1)},${ys(s.lower[i]).toFixed(1)}`).join("") + "Z";
          el("path", {d, fill: s.color, "fill-opacity": 0.15, stroke: "none", class: "band"}, svg);
        }
      }
      let d = "", pen = false;
      s.values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        d += `${pen ? "L" : "M"}${xs(s.t[i]).toFixed(1)},${ys(v).toFixed(1)}`;
        pen = true;
      });
      if (d) {
        const path = el("path", {d, fill: "none", stroke: s.color, "stroke-width": s.dashed ? 1.5 : 2,
                                 class: "series", "data-series": s.name}, svg);
        if (s.dashed) path.setAttribute("stroke-dasharray", "5 3");
        const name = el("title", {}, path);
        name.textContent = s.name;
      }
    }
    return svg;
  }

  /* Stacked shares over time: t: [ms], series: [{name, color, values: [count]}];
     each column is normalised to 100 %. */
  function shares(kind, title, t, series, opts) {
    const width = (opts && opts.width) || 420, height = (opts && opts.height) || 150;
    const box = {x: 34, y: 8, w: width - 42, h: height - 28};
    const svg = frame(kind, width, height, title);
    const totals = t.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
    const cols = t.map((_, i) => i).filter((i) => totals[i] > 0);
    if (cols.length < 1) {
      const msg = el("text", {x: width / 2, y: height / 2, class: "nodata", "text-anchor": "middle"}, svg);
      msg.textContent = "no traffic in this window";
      return svg;
    }
    const xMin = t[cols[0]], xMax = t[cols[cols.length - 1]];
    axes(svg, box, xMin, xMax, 0, 1, [0, 0.5, 1], (v) => `${Math.round(v * 100)}%`);
    const [xs, ys] = scale(box, xMin, xMax, 0, 1);
    const base = cols.map(() => 0);
    series.forEach((s) => {
      const top = cols.map((i, k) => base[k] + (s.values[i] || 0) / totals[i]);
      let d;
      if (cols.length === 1) {  // a single column: draw it as a bar across the chart
        d = `M${box.x},${ys(top[0])}L${box.x + box.w},${ys(top[0])}L${box.x + box.w},${ys(base[0])}L${box.x},${ys(base[0])}Z`;
      } else {
        d = cols.map((i, k) => `${k ? "L" : "M"}${xs(t[i]).toFixed(1)},${ys(top[k]).toFixed(1)}`).join("")
          + cols.slice().reverse().map((i, k) => {
            const j = cols.length - 1 - k;
            return `L${xs(t[i]).toFixed(1)},${ys(base[j]).toFixed(1)}`;
          }).join("") + "Z";
      }
      const area = el("path", {d, fill: s.color, "fill-opacity": 0.75, stroke: s.color, class: "series",
                               "data-series": s.name}, svg);
      const name = el("title", {}, area);
      name.textContent = s.name;
      top.forEach((v, k) => { base[k] = v; });
    });
    return svg;
  }

  /* Horizontal bars: rows [{name, value}] */
  function bars(kind, title, rows) {
    const width = 280, rowH = 20, height = Math.max(rowH, rows.length * rowH) + 4;
    const svg = frame(kind, width, height, title);
    const max = Math.max(1, ...rows.map((r) => r.value));
    rows.forEach((r, i) => {
      const y = 2 + i * rowH;
      const label = el("text", {x: 0, y: y + 13, class: "tick"}, svg);
      label.textContent = r.name;
      el("rect", {x: 110, y: y + 3, height: rowH - 7, width: Math.max(1, (width - 170) * r.value / max),
                  fill: color(i), class: "series", "data-series": r.name}, svg);
      const value = el("text", {x: width - 2, y: y + 13, class: "tick", "text-anchor": "end"}, svg);
      value.textContent = String(r.value);
    });
    return svg;
  }

  return {el, color, lines, shares, bars, clock};
})();
