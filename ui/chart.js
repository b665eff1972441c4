// A small line chart of the upload rate over the last minutes.
export function drawRate(canvas, series) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series);
  ctx.strokeStyle = '#8fe3a7';
  ctx.fillStyle = 'rgba(143, 227, 167, 0.25)';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  series.forEach((v, i) => {
    const x = (i / Math.max(1, series.length - 1)) * w;
    const y = h - 2 - (v / max) * (h - 6);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.lineTo(w, h);
  ctx.lineTo(0, h);
  ctx.closePath();
  ctx.fill();
}
