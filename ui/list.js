// The file list, rendered virtually: only the rows in view exist in the page, so 10,000 files
// cost what a screenful does. Rows come from Rust one page at a time.
import * as api from './api.js';
import { STATUS_LABELS, detail } from './format.js';

export const ROW_HEIGHT = 64;
const OVERSCAN = 6;

export class FileList {
  constructor(container, spacer, onCount) {
    this.container = container;
    this.spacer = spacer;
    this.onCount = onCount;
    this.filter = { status: null, search: '' };
    this.rendered = new Map(); // row position -> element
    this.shownIds = new Set();
    this.lastAll = -1;
    this.pending = false;
    this.again = false;
    container.addEventListener('scroll', () => this.refresh());
    window.addEventListener('resize', () => this.refresh());
  }

  // After a batch of changes: fetch again only if a row in view changed or files were added.
  changed(ids, all) {
    if (all !== this.lastAll || ids.some((id) => this.shownIds.has(id))) {
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
    const keep = new Set();
    this.shownIds = new Set(page.rows.map((r) => r.id));
    page.rows.forEach((row, i) => {
      const top = (first + i) * ROW_HEIGHT;
      const key = `${top}`;
      keep.add(key);
      let el = this.rendered.get(key);
      if (!el) {
        el = document.createElement('div');
        el.className = 'row';
        el.style.top = `${top}px`;
        this.spacer.appendChild(el);
        this.rendered.set(key, el);
      }
      draw(el, row);
    });
    for (const [key, el] of this.rendered) {
      if (!keep.has(key)) { el.remove(); this.rendered.delete(key); }
    }
  }
}

function draw(el, row) {
  const sig = JSON.stringify([row.id, row.status, row.reason, row.matched, row.upload, row.next_retry, row.dropped]);
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.dataset.status = row.status;
  el.dataset.name = row.name;
  el.dataset.path = row.path;
  el.classList.toggle('dropped', row.dropped);
  el.replaceChildren();

  const img = document.createElement('img');
  img.alt = '';
  img.loading = 'lazy';
  img.src = api.thumbUrl(row);
  img.addEventListener('error', () => img.replaceWith(Object.assign(document.createElement('div'), { className: 'noimg' })));

  const main = document.createElement('div');
  main.className = 'main';
  const name = Object.assign(document.createElement('div'), { className: 'name', textContent: row.name, title: row.path });
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

  if (row.status === 'on_server' && row.matched && row.matched.kind === 'same_picture') {
    el.appendChild(button('Upload anyway', 'force', () => api.forceUpload(row.path)));
  }
  if (row.status === 'failed') {
    el.appendChild(button('Retry', 'retry', () => api.retry(row.path)));
  }
}

function button(text, action, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.dataset.action = action;
  b.addEventListener('click', () => { b.disabled = true; onClick().catch((e) => { b.disabled = false; window.dispatchEvent(new CustomEvent('problem', { detail: String(e) })); }); });
  return b;
}
