// dbx web UI: charts (uPlot) filled from the plot page's JSON twin, kept live over
// server-sent events; the compare button's count. No other client-side state: every view
// is a URL.
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

// Tick labels with as many decimals as the tick spacing needs (uPlot's default can print
// the same rounded label on every tick of a narrow range, e.g. a loss near 0.0100).
function tickLabels(u, splits, axis) {
  if (axis === 1 && u.scales.y.distr === 3) {  // log scale: ticks are powers of ten and steps
    return splits.map((v) => (v == null ? "" : String(Number(v.toPrecision(3)))));
  }
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
  const decimals = step > 0 ? Math.max(0, Math.ceil(-Math.log10(step))) : 0;
  return splits.map((v) => {
    if (v == null) return "";
    if (decimals > 8 || Math.abs(v) >= 1e9) return v.toExponential(2);
    return v.toLocaleString(undefined, {minimumFractionDigits: decimals, maximumFractionDigits: decimals});
  });
}

function integerSteps(data) {
  return data.series.every((s) => s.x.every(Number.isInteger));
}

function positive(data) {
  return data.series.every((s) => s.lo.every((v) => v == null || v > 0));
}

function chartOptions(data, width, logy) {
  const series = [{label: data.x}];
  const bands = [];
  data.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const base = series.length;
    series.push({label: s.label, stroke: color, width: 2, points: {show: false}, spanGaps: true});
    series.push({label: "lo", stroke: "transparent", points: {show: false}, spanGaps: true});
    series.push({label: "hi", stroke: "transparent", points: {show: false}, spanGaps: true});
    bands.push({series: [base + 2, base + 1], fill: alpha(color, 0.18)});
  });
  return {
    width: width,
    height: 360,
    series: series,
    bands: bands,
    scales: {x: {time: false}, y: logy ? {distr: 3} : {}},
    axes: [
      // whole-number x (epochs, steps) gets whole-number ticks
      {label: data.x, stroke: "#444", values: tickLabels, incrs: integerSteps(data) ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 1e5, 2e5, 5e5, 1e6] : undefined},
      {label: data.y, stroke: "#444", size: 76, values: tickLabels},
    ],
    cursor: {drag: {x: true, y: false}},
  };
}

function chartData(data) {
  const tables = data.series.map((s) => [s.x, s.mean, s.lo, s.hi]);
  if (tables.length === 0) return [[]];
  return tables.length === 1 ? tables[0] : uPlot.join(tables);
}

function hideBandLegend(plot) {
  plot.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
    if (i > 0 && (i - 1) % 3 !== 0) row.style.display = "none";
  });
}

function describe(figure, data) {
  const note = figure.querySelector(".chart-note");
  if (!data.series.length) {
    note.textContent = data.q ? "Nothing to draw: no numeric x and y in the result." : "";
    return;
  }
  const live = figure.dataset.live ? " · live" : "";
  const down = data.downsampled ? ", averaged for drawing" : "";
  const log = figure.dataset.logy ? (positive(data) ? " · log y" : " · linear y (values ≤ 0)") : "";
  note.textContent = `${data.y} against ${data.x}: ${data.points.toLocaleString()} points${down}` +
    ` · mean ± s.e.${log}${live} · drag to zoom, double-click to reset`;
  figure.dataset.points = String(data.points);
  const stats = document.querySelector(".plot-stats");
  if (stats) {
    stats.textContent = `${data.rows.toLocaleString()} rows · ${data.points.toLocaleString()} points` +
      (data.truncated ? ` · ${data.truncated} more groups not drawn` : "");
  }
}

function draw(figure, data) {
  const area = figure.querySelector(".chart-area");
  const width = Math.max(320, area.clientWidth || figure.clientWidth || 800);
  const shape = data.series.map((s) => s.label).join("\u0000") + "|" + data.x + "|" + data.y;
  if (figure._plot && figure._shape === shape) {
    figure._plot.setData(chartData(data));
  } else {
    if (figure._plot) figure._plot.destroy();
    area.textContent = "";
    if (data.series.length) {
      const logy = Boolean(figure.dataset.logy) && positive(data);
      figure._plot = new uPlot(chartOptions(data, width, logy), chartData(data), area);
      hideBandLegend(figure._plot);
    } else {
      figure._plot = null;
    }
    figure._shape = shape;
  }
  describe(figure, data);
  figure.dataset.ready = "1";
}

function problem(figure, message) {
  const note = figure.querySelector(".chart-note");
  note.textContent = message;
  note.classList.add("problem");
  figure.dataset.ready = "1";
}

async function loadChart(figure) {
  try {
    const response = await fetch(figure.dataset.plot, {credentials: "same-origin"});
    const data = await response.json();
    if (!response.ok) return problem(figure, data.error || `error ${response.status}`);
    draw(figure, data);
  } catch (err) {
    return problem(figure, `could not load the chart: ${err}`);
  }
  if (figure.dataset.live) {
    const events = new EventSource(figure.dataset.live);
    events.onmessage = (message) => draw(figure, JSON.parse(message.data));
    events.addEventListener("problem", (message) => problem(figure, JSON.parse(message.data).error));
  }
}

function resizeCharts() {
  document.querySelectorAll("figure.chart").forEach((figure) => {
    if (figure._plot) {
      const width = Math.max(320, figure.querySelector(".chart-area").clientWidth);
      figure._plot.setSize({width: width, height: 360});
    }
  });
}

function compareCount() {
  const form = document.getElementById("compare-form");
  if (!form) return;
  const button = document.getElementById("compare-button");
  const update = () => {
    const n = form.querySelectorAll("input[name=id]:checked").length;
    button.textContent = n ? `Compare ${n} selected` : "Compare selected";
    button.disabled = n < 2;
  };
  form.addEventListener("change", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("figure.chart").forEach(loadChart);
  window.addEventListener("resize", resizeCharts);
  compareCount();
});

// A refused htmx request (saving notes with a read-only token, a lost login): show the
// error page's one-line message under the form instead of failing silently.
document.addEventListener("htmx:responseError", (event) => {
  const form = event.detail.elt;
  const page = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
  const message = page.querySelector(".message");
  let box = form.querySelector(".form-error");
  if (!box) {
    box = document.createElement("p");
    box.className = "form-error";
    box.setAttribute("role", "alert");
    form.append(box);
  }
  box.textContent = message ? message.textContent : `error ${event.detail.xhr.status}`;
});
