// The usage page's daily chart (tokens, card-hours, amount), from the data-chart attribute
// the server wrote (no inline scripts: the console's Content-Security-Policy forbids them).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const canvas = document.getElementById("usage-chart");
  if (!canvas || typeof Chart === "undefined") { return; }
  const data = JSON.parse(canvas.dataset.chart);
  const labels = JSON.parse(canvas.dataset.labels);
  new Chart(canvas, {
    data: {
      labels: data.days,
      datasets: [
        { type: "bar", label: labels.tokens, data: data.tokens, yAxisID: "tokens", backgroundColor: "#2f6fde" },
        { type: "bar", label: labels.card_hours, data: data.card_hours, yAxisID: "hours", backgroundColor: "#b45309" },
        { type: "line", label: labels.amount, data: data.amount, yAxisID: "amount", borderColor: "#1e7d32", backgroundColor: "#1e7d32" },
      ],
    },
    options: {
      maintainAspectRatio: false, animation: false,
      scales: {
        tokens: { type: "linear", position: "left", beginAtZero: true },
        hours: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
        amount: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false } },
      },
    },
  });
});
