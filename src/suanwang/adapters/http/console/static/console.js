// Draws the charts whose data the server put in a data-chart attribute (no inline scripts:
// the console's Content-Security-Policy allows scripts from this server only).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const canvas = document.getElementById("pflops-chart");
  if (!canvas || typeof Chart === "undefined") { return; }
  const data = JSON.parse(canvas.dataset.chart);
  new Chart(canvas, {
    type: "bar",
    data: { labels: data.labels,
            datasets: [{ label: canvas.dataset.label, data: data.pflops, backgroundColor: "#2f6fde" }] },
    options: { maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } } },
  });
});
