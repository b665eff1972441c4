// A small line chart of the upload rate over the last 5 minutes, with its scale (the top of
// the axis), the time axis, and the same facts in words for screen readers.
import { bytes } from './format.js';
import { S } from './strings.js';

// A round top for the axis: 1, 2 or 5 times a power of ten, at least the highest value.
function niceTop(max) {
  if (max <= 0) return 1000;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export function drawRate(canvas, series, now) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  const style = getComputedStyle(canvas);
  const ink = style.color || '#fff';
  ctx.clearRect(0, 0, w, h);
  const peak = Math.max(0, ...series);
  const top = niceTop(peak);
  const left = 44; // room for the scale
  const bottom = h - 12; // room for the time axis
  const plotW = w - left - 2;
  const plotH = bottom - 4;

  ctx.font = '10px system-ui, sans-serif';
  ctx.fillStyle = ink;
  ctx.strokeStyle = ink;
  ctx.globalAlpha = 0.55;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, 2);
  ctx.lineTo(left, bottom);
  ctx.lineTo(w - 2, bottom);
  ctx.stroke();
  ctx.globalAlpha = 0.9;
  ctx.textBaseline = 'top';
  ctx.fillText(`${bytes(top)}/s`.replace(' ', '\u202f'), 0, 0);
  ctx.textBaseline = 'bottom';
  ctx.fillText('0', left - 10, bottom + 2);
  ctx.fillText(S.chartStart, left + 2, h);
  const nowW = ctx.measureText(S.chartNow).width;
  ctx.fillText(S.chartNow, w - 2 - nowW, h);
  ctx.globalAlpha = 1;

  ctx.strokeStyle = '#8fe3a7';
  ctx.fillStyle = 'rgba(143, 227, 167, 0.25)';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  series.forEach((v, i) => {
    const x = left + (i / Math.max(1, series.length - 1)) * plotW;
    const y = bottom - (v / top) * plotH;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.lineTo(left + plotW, bottom);
  ctx.lineTo(left, bottom);
  ctx.closePath();
  ctx.fill();

  const words = S.chartLabel(bytes(now), bytes(peak));
  canvas.setAttribute('aria-label', words);
  canvas.title = words;
  canvas.textContent = words; // fallback content
}
