// "On the server": the account's pictures as a virtual grid, newest first. Only the tiles in
// view exist in the page, each with one canvas its thumbnail is drawn into and freed, so
// 10,000 server images cost what a screenful does. Items come from Rust a page at a time.
import * as api from './api.js';
import { S } from './strings.js';

export const TILE = 128; // CSS pixels: a 120 px picture and its gap, as .tile in style.css
const SIDE = 120;
const OVERSCAN_ROWS = 2;
// Thumbnails asked of the server at once: fast scrolling queues the rest, and tiles that
// left the view meanwhile are dropped before their request is sent.
const AT_ONCE = 6;

export class ServerGrid {
  constructor(container, spacer, { onSelection, onOpen }) {
    this.container = container;
    this.spacer = spacer;
    this.onSelection = onSelection;
    this.onOpen = onOpen;
    this.total = 0;
    this.tiles = new Map(); // index → tile element
    this.selected = new Set(); // image ids
    this.pending = false;
    this.again = false;
    this.generation = 0; // a reload makes every index mean another picture
    this.queue = []; // thumbnails waiting: [tile, ticket, item], newest last
    this.asking = 0;
    container.addEventListener('scroll', () => this.refresh());
    window.addEventListener('resize', () => this.refresh());
    container.addEventListener('keydown', (e) => {
      const tile = document.activeElement && document.activeElement.closest('.tile');
      if (!tile || !tile.item) return;
      if (e.key === ' ') { e.preventDefault(); this.toggle(tile); }
      if (e.key === 'Enter') { e.preventDefault(); this.onOpen(tile.item); }
    });
  }

  get columns() {
    return Math.max(1, Math.floor(this.container.clientWidth / TILE));
  }

  // Reads the account's list from the server again; answers its size, months and bytes.
  async reload() {
    const page = await api.remoteLoad();
    this.generation += 1;
    this.total = page.total;
    this.selected.clear();
    this.onSelection(0);
    for (const tile of this.tiles.values()) tile.remove();
    this.tiles.clear();
    this.queue = [];
    this.refresh();
    return page;
  }

  // Scrolls so that the picture at `index` is in the top row.
  scrollToIndex(index) {
    this.container.scrollTop = Math.floor(index / this.columns) * TILE;
    this.refresh();
  }

  refresh() {
    if (this.pending) { this.again = true; return; }
    this.pending = true;
    requestAnimationFrame(() => this.load().finally(() => {
      this.pending = false;
      if (this.again) { this.again = false; this.refresh(); }
    }));
  }

  async load() {
    const cols = this.columns;
    const rows = Math.ceil(this.total / cols);
    this.spacer.style.height = `${rows * TILE}px`;
    const firstRow = Math.max(0, Math.floor(this.container.scrollTop / TILE) - OVERSCAN_ROWS);
    const lastRow = Math.min(rows, Math.ceil((this.container.scrollTop + this.container.clientHeight) / TILE) + OVERSCAN_ROWS);
    const first = firstRow * cols;
    const count = Math.max(0, Math.min(this.total, lastRow * cols) - first);
    const generation = this.generation;
    const page = count ? await api.remotePage(first, count) : { items: [] };
    if (generation !== this.generation) return;
    // Tiles still in view keep their element and picture; the others are reused.
    const spare = [];
    for (const [index, tile] of this.tiles) {
      if (index < first || index >= first + page.items.length) { spare.push(tile); this.tiles.delete(index); }
    }
    page.items.forEach((item, i) => {
      const index = first + i;
      let tile = this.tiles.get(index);
      if (!tile || tile.item.id !== item.id) {
        tile = tile || spare.pop() || this.newTile();
        this.tiles.set(index, tile);
        this.fill(tile, item);
      }
      const left = `${(index % cols) * TILE}px`;
      const top = `${Math.floor(index / cols) * TILE}px`;
      if (tile.style.left !== left) tile.style.left = left;
      if (tile.style.top !== top) tile.style.top = top;
    });
    spare.forEach((tile) => tile.remove());
  }

  newTile() {
    const tile = Object.assign(document.createElement('div'), { className: 'tile', tabIndex: 0 });
    tile.setAttribute('role', 'option');
    tile.canvas = Object.assign(document.createElement('canvas'), { className: 'pic' });
    tile.canvas.width = tile.canvas.height = Math.round(SIDE * (window.devicePixelRatio || 1));
    tile.append(tile.canvas, Object.assign(document.createElement('span'), { className: 'check', textContent: '✓' }));
    tile.addEventListener('click', () => this.toggle(tile));
    tile.addEventListener('dblclick', () => tile.item && this.onOpen(tile.item));
    this.spacer.appendChild(tile);
    return tile;
  }

  toggle(tile) {
    if (!tile.item) return;
    const id = tile.item.id;
    if (this.selected.has(id)) this.selected.delete(id); else this.selected.add(id);
    this.mark(tile);
    this.onSelection(this.selected.size);
  }

  mark(tile) {
    const on = this.selected.has(tile.item.id);
    tile.classList.toggle('selected', on);
    tile.setAttribute('aria-selected', String(on));
  }

  fill(tile, item) {
    tile.item = item;
    tile.dataset.id = item.id;
    tile.dataset.name = item.name;
    tile.title = S.serverTile(item.name, item.day, item.folder);
    tile.setAttribute('aria-label', tile.title);
    this.mark(tile);
    const noimg = tile.querySelector('.noimg');
    if (noimg) noimg.remove();
    const ticket = (tile.ticket = (tile.ticket || 0) + 1);
    const canvas = tile.canvas;
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    delete canvas.dataset.drawn;
    if (item.width == null) { this.noPicture(tile, item); return; }
    this.queue.push([tile, ticket, item]);
    this.pump();
  }

  // Sends the newest waiting requests whose tiles still show their picture.
  pump() {
    while (this.asking < AT_ONCE && this.queue.length) {
      const [tile, ticket, item] = this.queue.pop();
      if (tile.ticket !== ticket || !tile.isConnected) continue;
      this.asking += 1;
      this.draw(tile, ticket, item).finally(() => { this.asking -= 1; this.pump(); });
    }
  }

  draw(tile, ticket, item) {
    const canvas = tile.canvas;
    const side = canvas.width;
    return api.remoteThumbnail(item.id)
      .then((bytes) => createImageBitmap(new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' })))
      .then((bitmap) => {
        if (tile.ticket === ticket) {
          const scale = Math.min(side / bitmap.width, side / bitmap.height);
          const w = bitmap.width * scale;
          const h = bitmap.height * scale;
          canvas.getContext('2d').drawImage(bitmap, (side - w) / 2, (side - h) / 2, w, h);
          canvas.dataset.drawn = 'yes';
        }
        bitmap.close();
      })
      .catch(() => { if (tile.ticket === ticket) this.noPicture(tile, item); });
  }

  // A video, or a file the server cannot draw: its type instead of a picture.
  noPicture(tile, item) {
    const dot = item.name.lastIndexOf('.');
    const ext = dot > 0 ? item.name.slice(dot + 1, dot + 5).toUpperCase() : '?';
    tile.appendChild(Object.assign(document.createElement('div'), { className: 'noimg', textContent: ext }));
  }
}
