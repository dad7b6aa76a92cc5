/*
 * interactive.js: the kit of the book's interactive figures (see _ext/interactive.py).
 *
 * A figure made by the {interactive-figure} directive holds a static image (the fallback shown without
 * JavaScript and in print) and an empty <div class="fd-live" data-widget="NAME">. This script finds each
 * such div, builds the controls its widget declares, draws on a canvas, and hides the static image.
 * Widgets are defined in interactive-figures.js with FlowDiffFigures.define(NAME, {...}):
 *
 *   controls: [{key, label, min, max, step, value, format}            a slider
 *              {key, label, options: [[value, label], ...], value}]    a drop-down
 *             or a function of the figure's payload returning them
 *   setup(figure): once, before the first draw (figure: {payload, redraw, canvas, ...}, one per figure)
 *   aspect:   height / width of the canvas (or a function of the payload)
 *   draw(canvas, state, figure) -> {text, values}: draw, and return the read-out shown under the canvas
 *     (text) and its numbers (values, kept unrounded in data-values, which the browser tests compare with
 *     flowdiff).
 *
 * Every text a reader sees (labels included) is written tr('...') in the definitions, so the Chinese edition shows Chinese controls: the build
 * collects the tr('...') literals into the figures' catalogue and gives each page its translations in
 * <script id="flowdiff-figure-strings">.
 */
(function () {
  "use strict";

  const definitions = {};
  let strings = null;

  /** The reader's language version of an English text (itself when there is no translation). */
  function tr(text) {
    if (strings === null) {
      const element = document.getElementById("flowdiff-figure-strings");
      strings = element ? JSON.parse(element.textContent) : {};
    }
    return strings[text] || text;
  }

  // The book's palette (flowdiff.plotting.PALETTE), readable on light and dark backgrounds.
  const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"];

  function themeColour(name, fallback) {
    const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  /** One panel of a canvas: data coordinates in [x0, x1] x [y0, y1] mapped into a pixel rectangle. */
  class Panel {
    constructor(context, rect, options) {
      this.context = context;
      this.rect = rect;  // {left, top, width, height} in CSS pixels
      this.x = options.x;
      this.y = options.y;
      this.options = options;
      this.ink = themeColour("--pst-color-text-base", "#222");
      this.faint = themeColour("--pst-color-border", "#ccc");
    }
    px(x) { return this.rect.left + ((x - this.x[0]) / (this.x[1] - this.x[0])) * this.rect.width; }
    py(y) { return this.rect.top + (1 - (y - this.y[0]) / (this.y[1] - this.y[0])) * this.rect.height; }

    /** The frame, ticks at `ticks` per axis, labels and a title. */
    axes() {
      const c = this.context, r = this.rect, o = this.options;
      c.save();
      c.strokeStyle = this.faint;
      c.lineWidth = 1;
      c.strokeRect(r.left, r.top, r.width, r.height);
      c.fillStyle = this.ink;
      c.font = "11px sans-serif";
      const ticks = (range) => {
        const span = range[1] - range[0], raw = span / 4, power = 10 ** Math.floor(Math.log10(raw));
        const unit = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw);
        const first = Math.ceil(range[0] / unit - 1e-9) * unit, out = [];
        for (let v = first; v <= range[1] + 1e-9 * span; v += unit) out.push(Math.abs(v) < 1e-12 ? 0 : v);
        return out;
      };
      const label = (v) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(0) : String(+v.toFixed(3)));
      if (!o.hideXTicks) {
        c.textAlign = "center"; c.textBaseline = "top";
        for (const v of (o.xTicks || ticks(this.x))) {
          const p = this.px(v);
          c.fillRect(p, r.top + r.height, 1, 4);
          c.fillText(label(v), p, r.top + r.height + 5);
        }
      }
      if (!o.hideYTicks) {
        c.textAlign = "right"; c.textBaseline = "middle";
        for (const v of (o.yTicks || ticks(this.y))) {
          const p = this.py(v);
          c.fillRect(r.left - 4, p, 4, 1);
          c.fillText(label(v), r.left - 6, p);
        }
      }
      c.font = "12px sans-serif";
      if (o.xLabel) { c.textAlign = "center"; c.textBaseline = "top"; c.fillText(o.xLabel, r.left + r.width / 2, r.top + r.height + 20); }
      if (o.yLabel) {
        c.save(); c.translate(r.left - 34, r.top + r.height / 2); c.rotate(-Math.PI / 2);
        c.textAlign = "center"; c.textBaseline = "bottom"; c.fillText(o.yLabel, 0, 0); c.restore();
      }
      if (o.title) { c.textAlign = "center"; c.textBaseline = "bottom"; c.fillText(o.title, r.left + r.width / 2, r.top - 4); }
      c.restore();
    }

    clip(draw) {
      const c = this.context, r = this.rect;
      c.save(); c.beginPath(); c.rect(r.left, r.top, r.width, r.height); c.clip();
      draw(c); c.restore();
    }

    /** A polyline through points [[x, y], ...]. */
    line(points, colour, width = 1.5, dash = []) {
      this.clip((c) => {
        c.strokeStyle = colour; c.lineWidth = width; c.setLineDash(dash);
        c.beginPath();
        points.forEach(([x, y], i) => (i ? c.lineTo(this.px(x), this.py(y)) : c.moveTo(this.px(x), this.py(y))));
        c.stroke();
      });
    }

    /** Dots of radius `radius` pixels at points [[x, y], ...]. */
    dots(points, colour, radius = 2, alpha = 1) {
      this.clip((c) => {
        c.fillStyle = colour; c.globalAlpha = alpha;
        for (const [x, y] of points) { c.beginPath(); c.arc(this.px(x), this.py(y), radius, 0, 2 * Math.PI); c.fill(); }
      });
    }

    /** Arrows of a field f(x) -> [u, v] on an n x n grid, scaled so the longest is one cell. */
    arrows(field, n, colour) {
      const cells = [];
      let longest = 1e-12;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        const x = this.x[0] + ((i + 0.5) / n) * (this.x[1] - this.x[0]);
        const y = this.y[0] + ((j + 0.5) / n) * (this.y[1] - this.y[0]);
        const v = field([x, y]);
        const length = Math.hypot(v[0] * this.rect.width / (this.x[1] - this.x[0]), v[1] * this.rect.height / (this.y[1] - this.y[0]));
        longest = Math.max(longest, length);
        cells.push([x, y, v]);
      }
      const scale = (0.9 * Math.min(this.rect.width, this.rect.height)) / n / longest;
      this.clip((c) => {
        c.strokeStyle = colour; c.fillStyle = colour; c.lineWidth = 1;
        for (const [x, y, v] of cells) {
          const x0 = this.px(x), y0 = this.py(y);
          const dx = v[0] * scale * this.rect.width / (this.x[1] - this.x[0]);
          const dy = -v[1] * scale * this.rect.height / (this.y[1] - this.y[0]);
          c.beginPath(); c.moveTo(x0, y0); c.lineTo(x0 + dx, y0 + dy); c.stroke();
          const angle = Math.atan2(dy, dx), head = Math.min(4, 0.4 * Math.hypot(dx, dy));
          c.beginPath(); c.moveTo(x0 + dx, y0 + dy);
          c.lineTo(x0 + dx - head * Math.cos(angle - 0.5), y0 + dy - head * Math.sin(angle - 0.5));
          c.lineTo(x0 + dx - head * Math.cos(angle + 0.5), y0 + dy - head * Math.sin(angle + 0.5));
          c.fill();
        }
      });
    }

    /** A heat map of f(x, y) >= 0 on a grid of `resolution` cells per side, in shades of `colour`. */
    heat(f, resolution, colour = [0, 114, 178]) {
      const values = [];
      let top = 1e-300;
      for (let j = 0; j < resolution; j++) for (let i = 0; i < resolution; i++) {
        const x = this.x[0] + ((i + 0.5) / resolution) * (this.x[1] - this.x[0]);
        const y = this.y[1] - ((j + 0.5) / resolution) * (this.y[1] - this.y[0]);
        const v = f(x, y);
        values.push(v);
        top = Math.max(top, v);
      }
      const image = this.context.createImageData(resolution, resolution);
      values.forEach((v, k) => {
        // A square root keeps wide, low components visible beside narrow, tall ones.
        image.data.set([...colour, Math.round(220 * Math.sqrt(Math.min(1, v / top)))], 4 * k);
      });
      const buffer = document.createElement("canvas");
      buffer.width = resolution; buffer.height = resolution;
      buffer.getContext("2d").putImageData(image, 0, 0);
      this.clip((c) => {
        c.imageSmoothingEnabled = true;
        c.drawImage(buffer, this.rect.left, this.rect.top, this.rect.width, this.rect.height);
      });
    }

    /** A text at data coordinates. */
    text(text, x, y, colour = this.ink, align = "left") {
      const c = this.context;
      c.save(); c.fillStyle = colour; c.font = "12px sans-serif"; c.textAlign = align; c.textBaseline = "middle";
      c.fillText(text, this.px(x), this.py(y)); c.restore();
    }

    /** A legend of [label, colour] rows in the panel's top-left (or top-right) corner. */
    legend(entries, corner = "left") {
      const c = this.context;
      c.save(); c.font = "11px sans-serif"; c.textBaseline = "middle";
      const width = Math.max(...entries.map(([label]) => c.measureText(label).width)) + 28;
      c.fillStyle = themeColour("--pst-color-background", "#fff");
      c.globalAlpha = 0.85;
      const left = corner === "left" ? this.rect.left + 4 : this.rect.left + this.rect.width - width - 4;
      c.fillRect(left, this.rect.top + 4, width, 16 * entries.length + 4);
      c.globalAlpha = 1;
      entries.forEach(([label, colour], i) => {
        const y = this.rect.top + 14 + 16 * i;
        c.fillStyle = colour; c.fillRect(left + 5, y - 2, 14, 4);
        c.fillStyle = this.ink; c.fillText(label, left + 23, y);
      });
      c.restore();
    }
  }

  /**
   * Split a canvas into panels: `layout` is an array of panel options ({x, y, xLabel, ...}), laid out in one
   * row (or `columns` per row). Clears the canvas first and returns the panels.
   */
  function panels(canvas, layout, columns = layout.length) {
    const c = canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    }
    c.setTransform(ratio, 0, 0, ratio, 0, 0);
    c.clearRect(0, 0, width, height);
    const rows = Math.ceil(layout.length / columns);
    const cellWidth = width / columns, cellHeight = height / rows;
    return layout.map((options, i) => {
      const column = i % columns, row = Math.floor(i / columns);
      const left = column * cellWidth + (options.yLabel || !options.hideYTicks ? 46 : 8);
      const top = row * cellHeight + (options.title ? 20 : 8);
      const rect = { left, top, width: (column + 1) * cellWidth - left - 10, height: (row + 1) * cellHeight - top - (options.xLabel ? 36 : 22) };
      const panel = new Panel(c, rect, options);
      return panel;
    });
  }

  /** Frames cut from one sprite image of `rows` x `columns` equal tiles (learned models' precomputed frames). */
  function sprite(source, rows, columns, onload) {
    const image = new Image();
    image.onload = onload;
    image.src = source;
    return {
      image,
      draw(canvas, row, column) {
        const c = canvas.getContext("2d"), ratio = window.devicePixelRatio || 1;
        const width = canvas.clientWidth, height = canvas.clientHeight;
        canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
        c.setTransform(ratio, 0, 0, ratio, 0, 0);
        c.imageSmoothingEnabled = false;
        const tileWidth = image.naturalWidth / columns, tileHeight = image.naturalHeight / rows;
        const scale = Math.min(width / tileWidth, height / tileHeight);
        c.clearRect(0, 0, width, height);
        c.drawImage(image, column * tileWidth, row * tileHeight, tileWidth, tileHeight,
          (width - scale * tileWidth) / 2, (height - scale * tileHeight) / 2, scale * tileWidth, scale * tileHeight);
      },
    };
  }

  function format(value, control) {
    return control.format ? control.format(value) : String(value);
  }

  /** Build one widget into its <div class="fd-live">. */
  function mount(host) {
    const name = host.dataset.widget;
    const definition = definitions[name];
    if (!definition) {
      console.error(`interactive figure: no widget named ${name}`);
      return;
    }
    const figure = host.closest("figure");
    const payload = host.dataset.payload ? JSON.parse(host.dataset.payload) : {};
    const state = {};
    // A widget whose controls depend on its payload (a sprite's frames) declares them as a function of it.
    const declared = typeof definition.controls === "function" ? definition.controls(payload) : definition.controls;
    const controls = document.createElement("div");
    controls.className = "fd-controls";
    declared.forEach((control) => {
      const id = `${host.id || name}-${control.key}`;
      const wrapper = document.createElement("div");
      wrapper.className = "fd-control";
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = control.label;
      wrapper.appendChild(label);
      let input;
      if (control.options) {
        input = document.createElement("select");
        for (const [value, text] of control.options) {
          const option = document.createElement("option");
          option.value = String(value);
          option.textContent = text;
          input.appendChild(option);
        }
        input.value = String(control.value);
        state[control.key] = control.value;
      } else {
        input = document.createElement("input");
        input.type = "range";
        for (const key of ["min", "max", "step"]) input[key] = String(control[key]);
        input.value = String(control.value);
        state[control.key] = control.value;
      }
      input.id = id;
      input.dataset.key = control.key;
      const shown = document.createElement("output");
      shown.htmlFor = id;
      shown.className = "fd-value";
      const update = () => {
        const raw = input.value;
        state[control.key] = control.options ? (typeof control.value === "number" ? Number(raw) : raw) : Number(raw);
        if (!control.options) {
          shown.textContent = format(state[control.key], control);
          input.setAttribute("aria-valuetext", shown.textContent);
        }
        redraw();
      };
      input.addEventListener("input", update);
      wrapper.appendChild(input);
      if (!control.options) wrapper.appendChild(shown);
      controls.appendChild(wrapper);
      control.update = () => { shown.textContent = format(state[control.key], control); };
    });
    const canvas = document.createElement("canvas");
    canvas.className = "fd-canvas";
    canvas.setAttribute("role", "img");
    const fallbackImage = figure ? figure.querySelector(".fd-fallback img") : null;
    canvas.setAttribute("aria-label", fallbackImage && fallbackImage.alt ? fallbackImage.alt : tr("Interactive figure"));
    const aspect = typeof definition.aspect === "function" ? definition.aspect(payload) : definition.aspect;
    canvas.style.aspectRatio = String(1 / (aspect || 0.6));
    const readout = document.createElement("p");
    readout.className = "fd-readout";
    readout.setAttribute("aria-live", "polite");
    host.append(controls, canvas, readout);
    host.hidden = false;
    if (figure) figure.classList.add("fd-running");

    const context = { payload, tr, panels, sprite, palette: PALETTE, redraw: () => redraw(), canvas };
    if (definition.setup) definition.setup(context);

    function redraw() {
      for (const control of declared) if (!control.options) control.update();
      let result;
      try {
        result = definition.draw(canvas, state, context) || {};
      } catch (error) {
        console.error(`interactive figure ${name}:`, error);
        throw error;
      }
      readout.textContent = result.text || "";
      host.dataset.values = JSON.stringify(result.values || {});
      host.dataset.state = JSON.stringify(state);
    }
    redraw();
    // Redraw when the theme (light/dark) or the width changes.
    new MutationObserver(redraw).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    if (window.ResizeObserver) {
      let width = canvas.clientWidth;
      new ResizeObserver(() => { if (canvas.clientWidth !== width) { width = canvas.clientWidth; redraw(); } }).observe(canvas);
    }
    host.dataset.ready = "true";
  }

  function start() {
    for (const host of document.querySelectorAll("div.fd-live[data-widget]")) mount(host);
  }

  window.FlowDiffFigures = {
    define(name, definition) { definitions[name] = definition; },
    tr, panels, sprite, PALETTE,
  };
  // The widgets' definitions load after this script (deferred, in order): start once all have run.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
