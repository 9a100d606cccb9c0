// Renders the benchmark report as a PNG: one grouped horizontal bar chart of
// requests per second for the largest data size, one group per workload and
// one bar per side (ours, the baseline build, the peers, and pgbench).
//
// Headless pipeline: vega-lite spec → vega View → SVG → resvg → PNG. Nothing
// here touches a browser or node-canvas; resvg does the text with the system's
// DejaVu Sans.

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { SIDE_ORDER, sideLabel, type BenchReport, type Side, type SizeRun, type WorkloadResult } from "./lib/report.ts";

/** One strong color for ours; the others muted, but still distinct. */
const SIDE_COLOR: Record<Side, string> = {
  ours: "#1f5fd1",
  baseline: "#9fb9e3",
  handwritten: "#b4b4b4",
  v4: "#d8b48a",
  pgbench: "#6f6f6f",
};

/** The workloads the chart shows, in order (login/refresh only exist for ours). */
const CHART_WORKLOADS = ["Q1", "Q2", "Q3", "Q4a", "Q4b", "M1"];

/** Use a log x scale when the values span more than this factor. */
const LOG_SCALE_RATIO = 30;

const FONT = "DejaVu Sans";
/** Width of the plot area; the labels, legend and padding bring the image to about 1000 px. */
const PLOT_WIDTH = 670;


interface Row {
  workload: string;
  side: string;
  rps: number;
  lo: number;
  hi: number;
  /** Where the value label goes: just right of the bar or its whisker. */
  end: number;
  label: string;
}

// Text metrics. Headless vega has no canvas to measure text with, so it
// guesses 0.8 em a character, which badly overestimates DejaVu Sans: layout
// gets lopsided and labels truncate early. These are DejaVu Sans (and Bold)
// advance widths for ASCII 32..126, in 1/2048 em, read from the TTFs.
// prettier-ignore
const DEJAVU_REGULAR = [651,821,942,1716,1303,1946,1597,563,799,799,1024,1716,651,739,651,690,1303,1303,1303,1303,1303,1303,1303,1303,1303,1303,690,690,1716,1716,1716,1087,2048,1401,1405,1430,1577,1294,1178,1587,1540,604,604,1343,1141,1767,1532,1612,1235,1612,1423,1300,1251,1499,1401,2025,1403,1251,1403,799,690,799,1716,1024,1024,1255,1300,1126,1300,1260,721,1300,1298,569,569,1186,569,1995,1298,1253,1300,1300,842,1067,803,1298,1212,1675,1212,1212,1075,1303,690,1303,1716];
// prettier-ignore
const DEJAVU_BOLD = [713,934,1067,1716,1425,2052,1786,627,936,936,1071,1716,778,850,778,748,1425,1425,1425,1425,1425,1425,1425,1425,1425,1425,819,819,1716,1716,1716,1188,2048,1585,1561,1503,1700,1399,1399,1681,1714,762,762,1587,1305,2038,1714,1741,1501,1741,1577,1475,1397,1663,1585,2259,1579,1483,1485,936,748,936,1716,1024,1024,1382,1466,1214,1466,1389,891,1466,1458,702,702,1362,702,2134,1458,1407,1466,1466,1010,1219,979,1458,1335,1892,1321,1335,1192,1458,748,1458,1716];
const DEJAVU_OTHER: Record<string, number> = { "→": 1716, "–": 1024, "—": 2048, "…": 2048, "×": 1716, "≈": 1716, "·": 700 };

function textWidth(text: string, fontSize: number, bold = false): number {
  const table = bold ? DEJAVU_BOLD : DEJAVU_REGULAR;
  let units = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    units += (code >= 32 && code <= 126 ? table[code - 32] : DEJAVU_OTHER[ch]) ?? 1300;
  }
  return (units / 2048) * fontSize;
}

interface TextItem {
  text?: unknown;
  fontSize?: number;
  fontWeight?: string | number;
  limit?: number;
}

/**
 * Replacement for vega's textMetrics.width (vega calls it for bounds and for
 * truncation; see widthGetter in vega-scenegraph). Clamping to the item's
 * limit makes bounds match the truncated text vega will draw.
 */
function vegaTextWidth(item: TextItem, text?: unknown): number {
  const s = String(text ?? item.text ?? "").trim();
  const size = item.fontSize != null ? Number(item.fontSize) || 0 : 11;
  const weight = item.fontWeight;
  const bold = weight === "bold" || weight === "bolder" || (typeof weight === "number" && weight >= 600) || (typeof weight === "string" && Number(weight) >= 600);
  const w = textWidth(s, size, bold);
  const limit = Number(item.limit);
  return limit > 0 ? Math.min(w, limit) : w;
}

type TextMetrics = { width: (item: TextItem, text?: unknown) => number };

let textMetricsCopies: Promise<TextMetrics[]> | undefined;

/**
 * Every loaded copy of vega-scenegraph's textMetrics. npm may install several
 * copies (vega pins ~5.1 while vega-view wants ^5.2, so vega-view gets its
 * own): the one vega re-exports does layout, vega-view's does the drawing
 * (and truncation), so patching only one makes the two disagree.
 */
function allTextMetrics(): Promise<TextMetrics[]> {
  textMetricsCopies ??= (async () => {
    // (vega's own typings leave textMetrics out, though it is exported.)
    const found = new Set<TextMetrics>([(vega as unknown as { textMetrics: TextMetrics }).textMetrics]);
    const here = createRequire(import.meta.url);
    for (const pkg of ["vega-view", "vega-view-transforms", "vega-encode", "vega-parser", "vega-label", "vega-functions"]) {
      try {
        const file = createRequire(here.resolve(pkg)).resolve("vega-scenegraph");
        const mod = (await import(pathToFileURL(file).href)) as { textMetrics?: TextMetrics };
        if (mod.textMetrics) found.add(mod.textMetrics);
      } catch {
        // Not installed, or laid out differently: estimates are only uglier.
      }
    }
    return [...found];
  })();
  return textMetricsCopies;
}

/** Greedy word wrap to a pixel width. */
function wrap(text: string, maxWidth: number, fontSize: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next, fontSize) > maxWidth) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line) lines.push(line);
  return lines;
}

const LABEL_FONT_SIZE = 11.5;
const LABEL_WIDTH = 215;

/** Axis label: the key, then the description (without a repeated key), wrapped; lines joined by "\n". */
function workloadLabel(w: WorkloadResult): string {
  const rest = w.name.startsWith(w.key) ? w.name.slice(w.key.length).trim() : w.name.trim();
  return [w.key, ...wrap(rest, LABEL_WIDTH, LABEL_FONT_SIZE)].join("\n");
}

const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function buildSpec(report: BenchReport): TopLevelSpec {
  const run = report.runs[report.runs.length - 1];
  if (!run) throw new Error("renderChart: the report has no runs");

  const workloads = CHART_WORKLOADS.flatMap((key) => run.workloads.filter((w) => w.key === key));
  const rows: Row[] = [];
  for (const w of workloads) {
    for (const side of SIDE_ORDER) {
      const r = w.sides[side];
      if (!r || !Number.isFinite(r.rps) || r.rps <= 0) continue;
      const lo = Math.min(r.rpsSpread[0], r.rps);
      const hi = Math.max(r.rpsSpread[1], r.rps);
      rows.push({
        workload: workloadLabel(w),
        side: sideLabel(side, report),
        rps: r.rps,
        lo: lo > 0 ? lo : r.rps,
        hi,
        end: hi,
        label: intFormat.format(r.rps),
      });
    }
  }

  if (rows.length === 0) return emptySpec(report, run);

  const presentSides = SIDE_ORDER.filter((s) => workloads.some((w) => w.sides[s]));
  const sideDomain = presentSides.map((s) => sideLabel(s, report));
  const sideRange = presentSides.map((s) => SIDE_COLOR[s]);
  const workloadDomain = workloads.map(workloadLabel);

  const min = Math.min(...rows.map((r) => r.lo));
  const max = Math.max(...rows.map((r) => r.hi));
  const log = max / min > LOG_SCALE_RATIO;

  // One band per workload: tall enough for its bars and its wrapped label.
  const barStep = 15;
  const lineHeight = 15;
  const maxLines = Math.max(1, ...workloadDomain.map((l) => l.split("\n").length));
  const groupGap = 22;
  const groupStep = Math.max(Math.max(1, sideDomain.length) * barStep, maxLines * lineHeight + 6) + groupGap;

  const title = `Requests per second, ${run.size}, ${report.connections} connections (higher is better)`;
  const subtitle = [
    `${report.machine} · ${report.date}${report.quick ? " · quick run" : ""}`,
    `bar: median of ${report.rounds} round${report.rounds === 1 ? "" : "s"} of ${report.seconds} s; whisker: slowest–fastest round${log ? "; log scale" : ""}`,
  ];

  // Linear: from zero, with ~10% headroom for the value labels. Log: from the
  // decade below the smallest value, with ~70 px of headroom for the labels.
  let scale;
  const logTicks: number[] = [];
  if (log) {
    const low = 10 ** Math.floor(Math.log10(min));
    const decades = Math.log10(max / low);
    const headroom = (70 * decades) / (PLOT_WIDTH - 70);
    const high = max * 10 ** headroom;
    scale = { type: "log" as const, domain: [low, high], nice: false };
    for (let decade = low; decade <= high; decade *= 10) {
      logTicks.push(...[1, 2, 5].map((m) => m * decade).filter((v) => v <= high));
    }
  } else {
    scale = { type: "linear" as const, domainMin: 0, domainMax: max * 1.1, nice: true, zero: true };
  }
  const x = {
    field: "rps",
    type: "quantitative" as const,
    title: "requests per second",
    stack: null,
    scale,
    axis: log ? { format: "~s", grid: true, values: logTicks } : { format: ",d", grid: true, tickCount: 8 },
  };
  const y = {
    field: "workload",
    type: "nominal" as const,
    sort: workloadDomain,
    title: null,
    scale: { paddingInner: groupGap / groupStep, paddingOuter: 0.25 },
    axis: {
      labelExpr: "split(datum.label, '\\n')",
      labelLimit: LABEL_WIDTH + 10,
      labelFontSize: LABEL_FONT_SIZE,
      labelLineHeight: lineHeight,
      labelPadding: 8,
      ticks: false,
      domain: false,
    },
  };
  const yOffset = { field: "side", type: "nominal" as const, sort: sideDomain, scale: { domain: sideDomain, paddingInner: 0.12 } };

  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: PLOT_WIDTH,
    height: { step: groupStep, for: "position" },
    padding: { left: 16, right: 24, top: 16, bottom: 12 },
    background: "white",
    title: { text: title, subtitle, anchor: "start", offset: 12 },
    data: { values: rows as unknown as Record<string, unknown>[] },
    encoding: { y, yOffset },
    layer: [
      {
        mark: { type: "bar", height: { band: 1 }, cornerRadiusEnd: 2 },
        encoding: {
          x,
          color: {
            field: "side",
            type: "nominal",
            title: null,
            scale: { domain: sideDomain, range: sideRange },
            legend: { orient: "top", direction: "horizontal", symbolType: "square", columns: Math.min(sideDomain.length, 5), labelLimit: 260 },
          },
        },
      },
      {
        mark: { type: "rule", color: "#333", strokeWidth: 1, opacity: 0.75 },
        encoding: { x: { ...x, field: "lo" }, x2: { field: "hi" } },
      },
      // Value labels; ours in bold so they are easy to pick out.
      ...(["bold", "normal"] as const).map((fontWeight) => ({
        transform: [{ filter: `${fontWeight === "bold" ? "" : "!"}(datum.side === ${JSON.stringify(sideLabel("ours", report))})` }],
        mark: { type: "text" as const, align: "left" as const, baseline: "middle" as const, dx: 5, fontSize: 10, fontWeight, color: "#333" },
        encoding: { x: { ...x, field: "end" }, text: { field: "label" } },
      })),
    ],
    config: {
      font: FONT,
      view: { stroke: null },
      title: { fontSize: 17, fontWeight: "bold", color: "#111", subtitleFontSize: 12, subtitleColor: "#555", subtitlePadding: 6 },
      axis: { labelColor: "#333", titleColor: "#333", titleFontWeight: "normal", titleFontSize: 12, labelFontSize: 11, gridColor: "#e6e6e6", domainColor: "#999", tickColor: "#999" },
      legend: { labelFontSize: 12, labelColor: "#222", symbolSize: 150, columnPadding: 18, padding: 0, offset: 14 },
    },
  };
  return spec;
}

/** What to draw when the run has none of the charted workloads (vega's layout blows up on empty band scales). */
function emptySpec(report: BenchReport, run: SizeRun): TopLevelSpec {
  return {
    width: PLOT_WIDTH,
    height: 60,
    padding: 16,
    background: "white",
    title: { text: `Requests per second, ${run.size}, ${report.connections} connections`, subtitle: `${report.machine} · ${report.date}`, anchor: "start" },
    data: { values: [{}] },
    mark: { type: "text", text: `no results for ${CHART_WORKLOADS.join(", ")} in this run`, fontSize: 13, color: "#555" },
    config: { font: FONT, view: { stroke: null }, title: { fontSize: 17, subtitleFontSize: 12, subtitleColor: "#555" } },
  };
}

/**
 * Renders the last (largest) run of the report as a PNG (about 1000 px of
 * layout, rendered at 2x for crisp text).
 *
 * Async because vega's headless renderer (View#toSVG) is.
 */
export async function renderChart(report: BenchReport): Promise<Buffer> {
  const vgSpec = compile(buildSpec(report)).spec;
  const metrics = await allTextMetrics();
  const previous = metrics.map((m) => m.width);
  for (const m of metrics) m.width = vegaTextWidth;
  const view = new vega.View(vega.parse(vgSpec), { renderer: "none" });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
    metrics.forEach((m, i) => (m.width = previous[i]!));
  }
  const resvg = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: FONT },
    fitTo: { mode: "zoom", value: 2 },
    background: "white",
  });
  return resvg.render().asPng();
}
