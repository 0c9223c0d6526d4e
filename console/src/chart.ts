// chart.ts: a live line chart in SVG, one line per series (per node),
// keeping the last `points` values. No library: a polyline per series.
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 300;
const H = 80;

/** Chart is one live chart: push values by series, it redraws. */
export class Chart {
  readonly el: HTMLElement;
  private readonly svg: SVGSVGElement;
  private readonly value: HTMLElement;
  private readonly series = new Map<string, number[]>();

  constructor(
    readonly title: string,
    private readonly unit = '',
    private readonly points = 60,
  ) {
    this.svg = document.createElementNS(NS, 'svg');
    this.svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    this.svg.setAttribute('preserveAspectRatio', 'none');
    this.svg.setAttribute('aria-hidden', 'true');
    this.value = h('span', { class: 'chart-value' }, '–');
    this.el = h('figure', { class: 'chart', role: 'group', 'aria-label': title }, h('figcaption', {}, h('span', {}, title), this.value));
    this.el.appendChild(this.svg);
    this.el.dataset.chart = title;
  }

  /** push adds a value to series name (a node id, or a line such as p99). */
  push(name: string, v: number): void {
    let s = this.series.get(name);
    if (!s) this.series.set(name, (s = []));
    s.push(Number.isFinite(v) ? v : 0);
    if (s.length > this.points) s.shift();
    this.draw();
  }

  private draw(): void {
    while (this.svg.firstChild) this.svg.removeChild(this.svg.firstChild);
    let max = 0;
    for (const s of this.series.values()) for (const v of s) max = Math.max(max, v);
    const top = max > 0 ? max * 1.1 : 1;
    let i = 0;
    const latest: string[] = [];
    for (const [name, s] of this.series) {
      const line = document.createElementNS(NS, 'polyline');
      const step = W / Math.max(1, this.points - 1);
      const x0 = W - (s.length - 1) * step;
      line.setAttribute('points', s.map((v, j) => `${(x0 + j * step).toFixed(1)},${(H - (v / top) * (H - 4) - 2).toFixed(1)}`).join(' '));
      line.setAttribute('class', `line line-${i++ % 4}`);
      line.setAttribute('vector-effect', 'non-scaling-stroke');
      this.svg.appendChild(line);
      const last = s[s.length - 1] ?? 0;
      // The latest value as a dot: also what shows of a series with one point.
      const dot = document.createElementNS(NS, 'circle');
      dot.setAttribute('cx', String(W - 2));
      dot.setAttribute('cy', (H - (last / top) * (H - 4) - 2).toFixed(1));
      dot.setAttribute('r', '2.5');
      dot.setAttribute('class', `dot line-${(i - 1) % 4}`);
      this.svg.appendChild(dot);
      latest.push(this.series.size > 1 ? `${name} ${fmt(last)}` : fmt(last));
    }
    this.value.textContent = latest.join(' · ') + (this.unit ? ` ${this.unit}` : '');
  }
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
}
