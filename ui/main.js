// The window: wires the panels, the list and the live updates together.
import * as api from './api.js';
import { FileList } from './list.js';
import { drawRate } from './chart.js';
import { STATUS_LABELS, bytes } from './format.js';

const $ = (id) => document.getElementById(id);
let current = null; // the last overview

const fileList = new FileList($('list'), $('spacer'), (n) => { $('list-count').textContent = `${n} files`; });

function showProblem(text) {
  const el = $('problem');
  el.textContent = text;
  el.classList.toggle('hidden', !text);
}
window.addEventListener('problem', (e) => showProblem(e.detail));

function renderOverview(o) {
  current = o;
  $('status-line').textContent = o.status_line;
  const t = o.totals;
  // While the walk is under way the total is not known: say how many were found so far.
  $('overall-count').textContent =
    t.walking == null ? `${t.done} of ${t.all}` : `${t.done} · found ${t.walking} so far`;
  $('overall-rate').textContent = `${bytes(t.rate)}/s`;
  $('overall-bar').style.width = t.all ? `${(100 * t.done) / t.all}%` : '0';
  $('pause').textContent = o.paused ? 'Resume' : 'Pause';
  $('offline').classList.toggle('hidden', !o.offline);
  $('setup').classList.toggle('hidden', o.configured && !$('setup').dataset.forced);
  drawRate($('rate-chart'), o.rate_series);
  renderFilters(t);
}

function renderFilters(t) {
  const ul = $('filters');
  const items = [['', 'All', t.all], ...Object.keys(STATUS_LABELS).map((s) => [s, STATUS_LABELS[s], t.by_status[s] || 0])];
  ul.replaceChildren(...items.map(([s, label, n]) => {
    const li = document.createElement('li');
    li.id = `filter-${s || 'all'}`;
    li.dataset.status = s;
    li.classList.toggle('active', (fileList.filter.status || '') === s);
    li.append(Object.assign(document.createElement('span'), { textContent: label }),
      Object.assign(document.createElement('span'), { className: 'n', textContent: String(n) }));
    li.addEventListener('click', () => { fileList.setFilter({ status: s || null }); renderFilters(t); });
    return li;
  }));
}

async function renderFolders() {
  const list = await api.folders();
  $('folders').replaceChildren(...list.map((f) => {
    const li = document.createElement('li');
    li.dataset.path = f.path;
    const path = Object.assign(document.createElement('span'), { className: 'path', textContent: f.path, title: f.path });
    const count = Object.assign(document.createElement('span'), { className: 'count', textContent: `${f.done}/${f.files}` });
    const rm = Object.assign(document.createElement('button'), { type: 'button', textContent: '×', title: 'Stop backing up this folder' });
    rm.addEventListener('click', () => api.removeFolder(f.path).then(renderFolders).catch((e) => showProblem(String(e))));
    li.append(path, count, rm);
    return li;
  }));
}

async function addFolder(path) {
  if (!path) return;
  try {
    await api.addFolder(path);
    showProblem('');
    await renderFolders();
    fileList.refresh();
  } catch (e) {
    showProblem(String(e));
  }
}

function connectionMessage(text, ok) {
  const m = $('connection-message');
  m.textContent = text;
  m.className = `message ${ok ? 'ok' : 'error'}`;
}

$('test-connection').addEventListener('click', async () => {
  connectionMessage('Testing…', true);
  const r = await api.testConnection($('server-url').value, $('token').value);
  connectionMessage(r.ok ? 'Connected: this is a Photosync server and it accepts the token.' : r.message, r.ok);
});
$('connect').addEventListener('click', async () => {
  try {
    await api.configure($('server-url').value, $('token').value);
    connectionMessage('Connected.', true);
    delete $('setup').dataset.forced;
    renderOverview(await api.overview());
  } catch (e) {
    connectionMessage(String(e), false);
  }
});

// The click does what the button says, whatever overview arrives meanwhile.
$('pause').addEventListener('click', () => api.setPaused($('pause').textContent !== 'Resume').then(refreshOverview));
$('sync-now').addEventListener('click', () => api.syncNow().catch((e) => showProblem(String(e))));
$('hide').addEventListener('click', () => window.__TAURI__.window.getCurrentWindow().hide());
$('recheck').addEventListener('click', () => api.recheck().catch((e) => showProblem(String(e))));
$('add-folder').addEventListener('click', async () => addFolder(await api.pickFolder()));
$('add-folder-path').addEventListener('click', () => addFolder($('folder-path').value.trim()));
$('search').addEventListener('input', (e) => fileList.setFilter({ search: e.target.value }));

$('open-settings').addEventListener('click', async () => {
  const s = await api.getSettings();
  $('start-at-login').checked = s.start_at_login;
  $('bandwidth').value = Math.round(s.bandwidth_limit / 1000);
  $('concurrency').value = s.concurrency;
  $('same-picture').value = s.upload_all_copies ? 'upload' : 'skip';
  $('all-files').checked = s.all_files;
  $('settings').classList.remove('hidden');
});
$('close-settings').addEventListener('click', () => $('settings').classList.add('hidden'));
$('change-server').addEventListener('click', () => {
  $('settings').classList.add('hidden');
  $('setup').dataset.forced = '1';
  $('setup').classList.remove('hidden');
  if (current) $('server-url').value = current.server_url;
});
$('save-settings').addEventListener('click', async () => {
  const s = await api.getSettings();
  s.start_at_login = $('start-at-login').checked;
  s.bandwidth_limit = Math.max(0, Number($('bandwidth').value) || 0) * 1000;
  s.concurrency = Math.max(1, Number($('concurrency').value) || 3);
  s.upload_all_copies = $('same-picture').value === 'upload';
  s.all_files = $('all-files').checked;
  const m = $('settings-message');
  try {
    await api.updateSettings(s);
    m.textContent = 'Saved.';
    m.className = 'message ok';
  } catch (e) {
    m.textContent = String(e);
    m.className = 'message error';
  }
});

// Drag and drop: the Rust side syncs what was dropped; here we only show that it is coming.
api.listen('tauri://drag-enter', () => document.body.classList.add('dragging'));
api.listen('tauri://drag-leave', () => document.body.classList.remove('dragging'));
api.listen('tauri://drag-drop', () => { document.body.classList.remove('dragging'); fileList.setFilter({}); });

async function refreshOverview() {
  renderOverview(await api.overview());
}

let foldersDue = false;
api.listen('board', (update) => {
  renderOverview(update.overview);
  fileList.changed(update.changed, update.overview.totals.all);
  if (!foldersDue) {
    foldersDue = true;
    setTimeout(() => { foldersDue = false; renderFolders(); }, 1000);
  }
});
api.listen('problem', (text) => showProblem(String(text)));

refreshOverview().then(() => { renderFolders(); fileList.refresh(); });
