/**
 * A rate chart per flow (uPlot): bits per second in and out over the last
 * five minutes, one point per `stats` event. With a hundred flows most charts
 * are off screen: a chart's uPlot is created the first time it is seen and
 * redrawn only while it is visible (one shared IntersectionObserver); its
 * points are kept either way, so scrolling back shows the whole window.
 */
// Served beside this file by the daemon, from node_modules/uplot/dist/.
import uPlot from './uPlot.esm.js';
import { clock, scale, withUnit } from './format.js';

/** Points kept: five minutes at one stats event a second. */
export const WINDOW_POINTS = 300;
const HEIGHT = 130;

/** @type {Map<Element, RateChart>} */
const charts = new Map();

const visibility = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) charts.get(entry.target)?.setVisible(entry.isIntersecting);
  },
  { rootMargin: '200px' },
);
const sizes = new ResizeObserver((entries) => {
  for (const entry of entries) charts.get(entry.target)?.resize(entry.contentRect.width);
});

/** @param {number[]} splits */
const rateValues = (/** @type {uPlot} */ _u, splits) =>
  splits.map((v) => {
    const [text, prefix] = scale(v);
    return `${text}${prefix}`;
  });
/** Tick spacings on the time axis, s: whole seconds only. */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300];
/** Time of day on one line (uPlot's default adds the date on a second). @param {number[]} splits */
const timeValues = (/** @type {uPlot} */ _u, splits) => splits.map((t) => clock(t * 1000));

export class RateChart {
  #container;
  /** @type {uPlot | null} */
  #plot = null;
  #visible = false;
  #dirty = false;
  /** @type {number[]} */
  #t = [];
  /** @type {(number | null)[]} */
  #in = [];
  /** @type {(number | null)[]} */
  #out = [];

  /** @param {HTMLElement} container an empty element the chart fills */
  constructor(container) {
    this.#container = container;
    charts.set(container, this);
    visibility.observe(container);
    sizes.observe(container);
  }

  /**
   * @param {number} tSeconds
   * @param {number | null} inBytesPerSecond
   * @param {number | null} outBytesPerSecond
   */
  push(tSeconds, inBytesPerSecond, outBytesPerSecond) {
    this.#t.push(tSeconds);
    this.#in.push(inBytesPerSecond === null ? null : inBytesPerSecond * 8);
    this.#out.push(outBytesPerSecond === null ? null : outBytesPerSecond * 8);
    if (this.#t.length > WINDOW_POINTS) {
      this.#t.shift();
      this.#in.shift();
      this.#out.shift();
    }
    this.#dirty = true;
    if (this.#visible) this.#draw();
  }

  /** @param {boolean} visible */
  setVisible(visible) {
    this.#visible = visible;
    if (visible && this.#dirty) this.#draw();
  }

  /** @param {number} width */
  resize(width) {
    if (this.#plot && width > 0 && Math.abs(this.#plot.width - width) >= 1) this.#plot.setSize({ width: Math.floor(width), height: HEIGHT });
  }

  destroy() {
    visibility.unobserve(this.#container);
    sizes.unobserve(this.#container);
    charts.delete(this.#container);
    this.#plot?.destroy();
    this.#plot = null;
  }

  #draw() {
    this.#dirty = false;
    const data = /** @type {uPlot.AlignedData} */ ([this.#t, this.#in, this.#out]);
    if (this.#plot) {
      this.#plot.setData(data);
      return;
    }
    const width = Math.max(200, Math.floor(this.#container.clientWidth));
    this.#plot = new uPlot(
      {
        width,
        height: HEIGHT,
        // The card shows the current rates in the series' colours above the chart: no legend.
        legend: { show: false },
        cursor: { drag: { x: false, y: false }, points: { show: false } },
        scales: {
          // At least a minute wide, so a new flow's first points do not fill the chart; y from 0.
          x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
          y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1000] },
        },
        axes: [
          { values: timeValues, space: 70, incrs: TIME_STEPS },
          { values: rateValues, size: 56, label: 'bit/s', labelSize: 14 },
        ],
        series: [
          {},
          { label: 'in', stroke: '#2b7bb9', fill: 'rgba(43,123,185,0.12)', width: 1.5, points: { show: false }, value: (_u, v) => withUnit(v, 'bit/s') },
          { label: 'out', stroke: '#2e9d49', width: 1.5, points: { show: false }, value: (_u, v) => withUnit(v, 'bit/s') },
        ],
      },
      data,
      this.#container,
    );
  }
}
