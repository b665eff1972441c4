// The file list, rendered virtually: only the rows in view exist in the page, so 10,000 files
// cost what a screenful does. Rows come from Rust one page at a time.
import * as api from './api.js';
import { STATUS_LABELS, detail } from './format.js';
import { S } from './strings.js';
import { showMenu } from './menu.js';

export const ROW_HEIGHT = 64;
const OVERSCAN = 6;

export class FileList {
  constructor(container, spacer, onCount) {
    this.container = container;
    this.spacer = spacer;
    this.onCount = onCount;
    this.filter = { status: null, search: '' };
    this.rendered = []; // the row elements in the page
    this.shownIds = new Set();
    this.lastAll = -1;
    this.pending = false;
    this.again = false;
    container.addEventListener('scroll', () => this.refresh());
    window.addEventListener('resize', () => this.refresh());
  }

  // After a batch of changes: fetch again if a row in view changed or files were added, and
  // under a filter or a search after any change, since a row out of view may have just
  // entered (or left) what is shown. `ids` is null when too many changed to list.
  changed(ids, all) {
    const filtered = Boolean(this.filter.status || this.filter.search);
    const many = ids === null;
    if (many || all !== this.lastAll || (filtered && ids.length > 0) || ids.some((id) => this.shownIds.has(id))) {
      this.lastAll = all;
      this.refresh();
    }
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    this.container.scrollTop = 0;
    this.refresh();
  }

  // Fetches and draws the rows in view; calls made while one is in flight fold into one more.
  refresh() {
    if (this.pending) { this.again = true; return; }
    this.pending = true;
    requestAnimationFrame(() => this.load().finally(() => {
      this.pending = false;
      if (this.again) { this.again = false; this.refresh(); }
    }));
  }

  async load() {
    const first = Math.max(0, Math.floor(this.container.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const count = Math.ceil(this.container.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const page = await api.list({
      status: this.filter.status,
      search: this.filter.search || null,
      offset: first,
      limit: count,
    });
    this.spacer.style.height = `${page.total * ROW_HEIGHT}px`;
    this.onCount(page.total);
    this.shownIds = new Set(page.rows.map((r) => r.id));
    // A file already shown keeps its element (moved if rows shifted), picture and all; the
    // elements of files scrolled out of view are reused for those scrolled in, with their
    // canvases: scrolling makes no garbage for the page to collect.
    const byId = new Map(this.rendered.map((el) => [el.row.id, el]));
    const elements = page.rows.map((row) => {
      const el = byId.get(row.id);
      byId.delete(row.id);
      return el;
    });
    const spare = [...byId.values()];
    this.rendered = page.rows.map((row, i) => {
      const el = elements[i] || spare.pop() || this.newRow();
      const top = `${(first + i) * ROW_HEIGHT}px`;
      if (el.style.top !== top) el.style.top = top;
      draw(el, row);
      return el;
    });
    spare.forEach((el) => el.remove());
  }

  newRow() {
    const el = document.createElement('div');
    el.className = 'row';
    el.addEventListener('contextmenu', (e) => { e.preventDefault(); rowMenu(e.clientX, e.clientY, el.row); });
    this.spacer.appendChild(el);
    return el;
  }
}

// What can be done with one file: show it, open it, copy its path, and upload or retry it
// where that applies.
function rowMenu(x, y, row) {
  if (!row) return;
  const problem = (e) => window.dispatchEvent(new CustomEvent('problem', { detail: String(e) }));
  const items = [
    { id: 'reveal', label: S.showInFolder, action: () => api.reveal(row.id).catch(problem) },
    { id: 'open', label: S.openFile, action: () => api.openFile(row.id).catch(problem) },
    { id: 'copy', label: S.copyPath, action: () => copyText(row.path).catch(problem) },
  ];
  if (row.status === 'backed_up' && row.backed === 'same_picture') {
    items.push({ id: 'force', label: S.uploadAnyway, action: () => api.forceUpload(row.path).catch(problem) });
  }
  if (row.status === 'failed') items.push({ id: 'retry', label: S.retry, action: () => api.retry(row.path).catch(problem) });
  showMenu(x, y, items);
}

async function copyText(text) {
  if (navigator.clipboard && navigator.clipboard.writeText) {
    try { await navigator.clipboard.writeText(text); return; } catch (_) { /* fall back below */ }
  }
  const area = Object.assign(document.createElement('textarea'), { value: text });
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error(S.copyFailed);
}

function draw(el, row) {
  el.row = row;
  const sig = JSON.stringify([row.id, row.status, row.backed, row.reason, row.unidentified, row.matched, row.upload, row.next_retry, row.dropped]);
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.dataset.status = row.status;
  el.dataset.name = row.name;
  el.dataset.path = row.path;
  el.classList.toggle('dropped', row.dropped);
  el.replaceChildren();

  const img = thumbnail(el, row);

  const main = document.createElement('div');
  main.className = 'main';
  const name = cutName(row.name);
  name.title = row.path;
  const info = Object.assign(document.createElement('div'), { className: 'detail', textContent: detail(row) });
  info.title = info.textContent;
  main.append(name, info);
  if (row.status === 'uploading' && row.upload && row.upload.total) {
    const mini = document.createElement('div');
    mini.className = 'mini';
    const fill = document.createElement('div');
    fill.style.width = `${(100 * row.upload.sent) / row.upload.total}%`;
    mini.appendChild(fill);
    main.appendChild(mini);
  }

  const badge = Object.assign(document.createElement('span'), {
    className: `badge ${row.status}`,
    textContent: STATUS_LABELS[row.status] || row.status,
  });
  el.append(img, main, badge);

  if (row.status === 'backed_up' && row.backed === 'same_picture') {
    el.appendChild(button(S.uploadAnyway, 'force', () => api.forceUpload(row.path)));
  }
  if (row.status === 'failed') {
    el.appendChild(button(S.retry, 'retry', () => api.retry(row.path)));
  }
}

const THUMB_SIDE = 52; // CSS pixels, as .row .thumb in style.css

// A row's picture, whole and letterboxed, in the row element's one canvas. The bitmap is
// freed once drawn, so only the rows in view hold decoded pixels: <img> elements kept every
// picture scrolled past in WebKit's caches (hundreds of MB at 10,000 rows).
function thumbnail(el, row) {
  // Asked again only for another file, or when a file without a picture so far changed (it
  // may have been still being written).
  if (el.thumbId === row.id && !(el.thumbFailed && el.thumbStatus !== row.status)) return el.thumb;
  el.thumbId = row.id;
  el.thumbStatus = row.status;
  el.thumbFailed = false;
  const ticket = (el.thumbTicket = (el.thumbTicket || 0) + 1);
  if (!el.canvas) {
    el.canvas = Object.assign(document.createElement('canvas'), { className: 'thumb' });
    el.canvas.width = el.canvas.height = Math.round(THUMB_SIDE * (window.devicePixelRatio || 1));
  }
  const canvas = el.canvas;
  const side = canvas.width;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, side, side);
  delete canvas.dataset.drawn;
  el.thumb = canvas;
  const current = () => el.thumbTicket === ticket;
  api.thumbnail(row.id)
    // An ArrayBuffer, or an array of numbers where the bridge sends JSON.
    .then((bytes) => createImageBitmap(new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' })))
    .then((bitmap) => {
      if (current()) {
        const scale = Math.min(side / bitmap.width, side / bitmap.height);
        const w = bitmap.width * scale;
        const h = bitmap.height * scale;
        ctx.drawImage(bitmap, (side - w) / 2, (side - h) / 2, w, h);
        canvas.dataset.drawn = 'yes';
      }
      bitmap.close();
    })
    // No picture (a video, a document, an unreadable image): a file-type badge instead.
    .catch(() => {
      if (!current()) return;
      el.thumbFailed = true;
      el.thumb = typeIcon(row.name);
      canvas.replaceWith(el.thumb);
    });
  return canvas;
}

function typeIcon(name) {
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? name.slice(dot + 1, dot + 5).toUpperCase() : '?';
  return Object.assign(document.createElement('div'), { className: 'noimg', textContent: ext, title: name });
}

// A name cut in the middle when it does not fit: its end (a burst's number, the extension)
// tells files apart, so it always shows.
function cutName(text) {
  const el = document.createElement('div');
  el.className = 'name';
  const keep = Math.min(12, Math.floor(text.length / 2));
  el.append(
    Object.assign(document.createElement('span'), { className: 'head', textContent: text.slice(0, text.length - keep) }),
    Object.assign(document.createElement('span'), { className: 'tail', textContent: text.slice(text.length - keep) }),
  );
  return el;
}

// Disabled while its command runs, then live again: a retry that ends in the same state
// leaves the row as it was, and the button must still work.
function button(text, action, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.action = action;
  b.addEventListener('click', () => {
    b.disabled = true;
    onClick()
      .catch((e) => window.dispatchEvent(new CustomEvent('problem', { detail: String(e) })))
      .finally(() => { b.disabled = false; });
  });
  return b;
}
