// Draws the operator pages' charts (utilisation, the training/inference split, revenue) from
// the JSON the server put in data-ops-chart: {type, stacked, labels, datasets: [{label, data,
// color, dashed}]}. No inline scripts: the console's CSP allows scripts from this server only.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  if (typeof Chart === "undefined") { return; }
  document.querySelectorAll("canvas[data-ops-chart]").forEach(function (canvas) {
    const spec = JSON.parse(canvas.dataset.opsChart);
    const line = spec.type === "line";
    const datasets = spec.datasets.map(function (d) {
      return {
        label: d.label, data: d.data, borderColor: d.color,
        backgroundColor: line ? d.color + "55" : d.color,
        borderDash: d.dashed ? [6, 4] : [], fill: line && spec.stacked,
        pointRadius: 0, borderWidth: line ? 1.5 : 0, maxBarThickness: 56,
      };
    });
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: spec.stacked, ticks: { maxTicksLimit: 12 } },
                  y: { stacked: spec.stacked, beginAtZero: true } },
        plugins: { legend: { display: line || datasets.length > 1 } },
      },
    });
  });
});
