// Loads revguard's dashboard in Debian's headless Chromium (driven by playwright-core) and
// checks it against the operator API: no console error and no request leaving the server,
// every chart drawn from the counters /api/metrics serves (each point where its value
// puts it), and every open alert of /api/alerts shown. Writes a screenshot.
// Usage: node check-dashboard.mjs <base URL> <screenshot.png>. Prints a JSON summary;
// exits 1 listing what failed.
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error("usage: node check-dashboard.mjs <base URL> <screenshot.png>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
const consoleErrors = [];
const outside = [];
try {
  const page = await browser.newPage({ viewport: { width: 1240, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("request", (r) => { if (!r.url().startsWith(base)) outside.push(r.url()); });
  const response = await page.goto(`${base}/dashboard`, { waitUntil: "load" });
  if (response.status() !== 200) failures.push(`GET /dashboard answered ${response.status()}`);

  const charts = await page.evaluate(() => {
    const section = document.querySelector("#charts");
    const out = { from: Number(section.dataset.from), to: Number(section.dataset.to), charts: {} };
    for (const svg of document.querySelectorAll("svg.chart")) {
      const box = svg.getBoundingClientRect();
      out.charts[svg.id] = {
        max: Number(svg.dataset.max),
        visible: box.width > 0 && box.height > 0,
        series: [...svg.querySelectorAll("polyline.series")].map((p) => ({
          name: p.dataset.series,
          values: p.dataset.values.split(",").map(Number),
          points: p.getAttribute("points").trim().split(/\s+/).map((xy) => xy.split(",").map(Number)),
        })),
      };
    }
    return out;
  });

  // The counters behind the charts, from the API, for the same window and mode.
  const metrics = await (await page.request.get(`${base}/api/metrics?from=${charts.from}&to=${charts.to}`)).json();
  const hours = (charts.to - charts.from) / 3600;
  const hourly = (name) => {
    const v = new Array(hours).fill(0);
    for (const h of metrics) {
      if (h.livemode && h.hour >= charts.from && h.hour < charts.to) v[(h.hour - charts.from) / 3600] += h.metrics[name] || 0;
    }
    return v;
  };
  const expected = {
    payments: { succeeded: hourly("payments_succeeded"), failed: hourly("payments_failed") },
    "refunds-disputes": { refunds: hourly("refunds"), disputes: hourly("disputes") },
  };
  const gauges = metrics.find((h) => h.hour === 0 && h.livemode) || { metrics: {} };
  const mrrTotals = Object.entries(gauges.metrics).filter(([k]) => k.startsWith("mrr_total."));
  const [TOP, PLOT_H] = [12, 160 - 12 - 24];
  for (const [id, chart] of Object.entries(charts.charts)) {
    if (!chart.visible) failures.push(`chart ${id} is not drawn`);
    const max = Math.max(1, ...chart.series.flatMap((s) => s.values));
    if (max !== chart.max) failures.push(`chart ${id}: axis max ${chart.max}, data max ${max}`);
    for (const s of chart.series) {
      if (s.points.length !== s.values.length) failures.push(`${id}/${s.name}: ${s.points.length} points for ${s.values.length} values`);
      s.points.forEach(([, y], i) => {
        const want = TOP + PLOT_H * (1 - s.values[i] / max);
        if (Math.abs(y - want) > 0.01) failures.push(`${id}/${s.name}: point ${i} at y=${y}, its value ${s.values[i]} puts it at ${want.toFixed(2)}`);
      });
      const api = expected[id]?.[s.name];
      if (api && JSON.stringify(api) !== JSON.stringify(s.values)) failures.push(`${id}/${s.name}: drawn values differ from /api/metrics`);
    }
  }
  for (const id of Object.keys(expected)) if (!charts.charts[id]) failures.push(`no chart ${id}`);
  if (mrrTotals.length) {
    const mrr = charts.charts.mrr;
    const [, total] = mrrTotals.sort((a, b) => b[1] - a[1])[0];
    if (!mrr) failures.push("no MRR chart though MRR is known");
    else if (mrr.series[0].values.at(-1) !== total) failures.push(`MRR ends at ${mrr.series[0].values.at(-1)}, /api/metrics says ${total}`);
  }

  const alerts = await (await page.request.get(`${base}/api/alerts`)).json();
  const open = alerts.filter((a) => a.open && a.livemode);
  for (const a of open) {
    const row = page.locator(`tr.alert.open[data-alert-id="${a.id}"]`);
    if ((await row.count()) !== 1 || !(await row.isVisible())) failures.push(`open alert ${a.id} is not shown`);
    else if (!(await row.innerText()).includes(a.finding.explanation)) failures.push(`alert ${a.id} lacks its explanation`);
  }

  await page.screenshot({ path: screenshot, fullPage: true });
  if (consoleErrors.length) failures.push(`console errors: ${consoleErrors.join(" | ")}`);
  if (outside.length) failures.push(`requests leaving the server: ${outside.join(" ")}`);
  console.log(JSON.stringify({
    charts: Object.fromEntries(Object.entries(charts.charts).map(([id, c]) => [id, { max: c.max, series: c.series.map((s) => `${s.name}:${s.values.length}`) }])),
    open_alerts: open.length,
    console_errors: consoleErrors.length,
    requests_outside: outside.length,
    failures,
  }));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
