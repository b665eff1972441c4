// The window: wires the panels, the list and the live updates together.
import * as api from './api.js';
import { FileList } from './list.js';
import { ServerGrid } from './grid.js';
import { drawRate } from './chart.js';
import { bytes } from './format.js';
import { S } from './strings.js';

const $ = (id) => document.getElementById(id);
let current = null; // the last overview

// The page's own words come from strings.js, like every other word the window shows.
function fillPage() {
  const word = (key) => S.page[key] ?? S[key];
  for (const el of document.querySelectorAll('[data-s]')) {
    // `text` in backticks is a command: shown as code, never as markup.
    el.replaceChildren(...word(el.dataset.s).split('`').map((part, i) =>
      (i % 2 ? Object.assign(document.createElement('code'), { textContent: part }) : part)));
  }
  const attrs = { sPlaceholder: 'placeholder', sTitle: 'title', sLabel: 'aria-label' };
  for (const [data, attr] of Object.entries(attrs)) {
    const name = data.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    for (const el of document.querySelectorAll(`[data-${name}]`)) el.setAttribute(attr, word(el.dataset[data]));
  }
}
fillPage();

const fileList = new FileList($('list'), $('spacer'), (n) => { $('list-count').textContent = S.files(n); });

// WebKit's own menu (Back, Forward, Reload) means nothing here; inputs keep theirs.
document.addEventListener('contextmenu', (e) => {
  if (!e.target.closest('input, textarea')) e.preventDefault();
});

// ---- Banners: over the bottom edge, each with a close button; details one click away.

function showProblem(text, more) {
  // During the first-run steps the dialog covers the window: the message goes there.
  if ($('setup').open && text) { connectionMessage(text, false, more); return; }
  $('problem-text').textContent = text || '';
  $('problem-detail').textContent = more || '';
  $('problem-detail').classList.add('hidden');
  $('problem-more').classList.toggle('hidden', !more);
  $('problem').classList.toggle('hidden', !text);
}
window.addEventListener('problem', (e) => showProblem(e.detail));
$('problem-more').addEventListener('click', () => $('problem-detail').classList.toggle('hidden'));

let offlineDismissed = false;
for (const b of document.querySelectorAll('[data-close]')) {
  b.addEventListener('click', () => {
    $(b.dataset.close).classList.add('hidden');
    if (b.dataset.close === 'offline') offlineDismissed = true;
  });
}

// ---- The overview: header, filters, what is live.

function renderOverview(o) {
  current = o;
  $('status-line').textContent = o.status_line;
  const t = o.totals;
  // While the walk is under way the total is not known: say how many were found so far.
  let count = t.walking == null ? S.doneOf(t.done, t.all) : S.foundSoFar(t.done, t.walking);
  if (t.failed) count += ` · ${S.failedCount(t.failed)}`;
  $('overall-count').textContent = count;
  $('overall-rate').textContent = o.paused ? S.paused : S.perSecond(bytes(t.rate));
  $('overall-bar').style.width = t.all ? `${(100 * t.done) / t.all}%` : '0';
  $('pause').textContent = o.paused ? S.resume : S.pause;
  $('connection').textContent = o.configured ? S.connectedAs(o.user, o.server_url) : S.notConnected;
  if (!o.offline) offlineDismissed = false;
  $('offline').classList.toggle('hidden', !o.offline || offlineDismissed);
  setLive(o.configured);
  drawRate($('rate-chart'), o.rate_series, t.rate);
  renderFilters(t);
  renderRestore(o.restore);
}

// Before a server is set, nothing but the first-run steps can be used.
function setLive(configured) {
  document.body.classList.toggle('unconfigured', !configured);
  $('main').inert = !configured;
  for (const id of ['pause', 'sync-now', 'open-settings']) $(id).disabled = !configured;
  if (!configured && !$('setup').open) openSetup('first');
}

// The filter buttons are made once; updates change their counts and which is pressed, so a
// button is never replaced under the pointer or the keyboard focus.
function makeFilters() {
  const statuses = ['', ...Object.keys(S.status)];
  $('filters').replaceChildren(...statuses.map((s) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.id = `filter-${s || 'all'}`;
    b.dataset.status = s;
    b.append(Object.assign(document.createElement('span'), { textContent: s ? S.status[s] : S.all }),
      Object.assign(document.createElement('span'), { className: 'n', textContent: '0' }));
    b.addEventListener('click', () => {
      showActivity(false);
      fileList.setFilter({ status: s || null });
      if (current) renderFilters(current.totals);
    });
    li.appendChild(b);
    return li;
  }));
}
makeFilters();

function renderFilters(t) {
  const active = fileList.filter.status || '';
  for (const b of $('filters').querySelectorAll('button')) {
    const s = b.dataset.status;
    const n = String(s ? t.by_status[s] || 0 : t.all);
    const count = b.querySelector('.n');
    if (count.textContent !== n) count.textContent = n;
    b.setAttribute('aria-pressed', String(active === s));
    b.classList.toggle('active', active === s);
  }
}

// ---- Folders.

// A path as a person reads it: the folder's own name always shows, its parents give way.
function pathLabel(path) {
  const cut = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  const el = Object.assign(document.createElement('span'), { className: 'path', title: path });
  el.append(
    Object.assign(document.createElement('span'), { className: 'dir', textContent: path.slice(0, cut + 1) }),
    Object.assign(document.createElement('span'), { className: 'leaf', textContent: path.slice(cut + 1) }),
  );
  return el;
}

async function renderFolders() {
  const list = await api.folders();
  const items = (withCounts) => list.map((f) => {
    const li = document.createElement('li');
    li.dataset.path = f.path;
    li.appendChild(pathLabel(f.path));
    if (withCounts) li.appendChild(Object.assign(document.createElement('span'), { className: 'count', textContent: `${f.done}/${f.files}` }));
    const rm = Object.assign(document.createElement('button'), { type: 'button', textContent: '×', className: 'remove', title: S.stopBackingUp });
    rm.setAttribute('aria-label', `${S.stopBackingUp}: ${f.path}`);
    rm.addEventListener('click', () => confirmRemove(f.path));
    li.appendChild(rm);
    return li;
  });
  $('folders').replaceChildren(...items(true));
  $('setup-folders').replaceChildren(...items(false));
  if (!list.length) $('setup-folders').appendChild(Object.assign(document.createElement('li'), { className: 'empty', textContent: S.noFolders }));
}

function confirmRemove(path) {
  const d = $('confirm-remove');
  $('confirm-remove-title').textContent = S.removeFolder(path);
  $('confirm-remove-note').textContent = S.removeFolderNote;
  d.returnValue = '';
  d.onclose = () => {
    if (d.returnValue !== 'remove') return;
    api.removeFolder(path).then(renderFolders).then(() => fileList.refresh()).catch((e) => showProblem(String(e)));
  };
  d.showModal();
  $('confirm-remove-yes').focus();
}

async function addFolder(path, report) {
  if (!path) return false;
  try {
    await api.addFolder(path);
    report('');
    await renderFolders();
    fileList.refresh();
    return true;
  } catch (e) {
    report(String(e));
    return false;
  }
}

$('add-folder').addEventListener('click', async () => addFolder(await api.pickFolder(), showProblem));
$('add-folder-path').addEventListener('click', async () => {
  if (await addFolder($('folder-path').value.trim(), showProblem)) $('folder-path').value = '';
});
$('folder-path').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('add-folder-path').click(); });
$('search').addEventListener('input', (e) => fileList.setFilter({ search: e.target.value }));

// ---- First run and "Change server…": address, token, folders, what happens next.

let setupMode = null; // 'first' or 'change'

function connectionMessage(text, ok, more) {
  const m = $('connection-message');
  m.textContent = text;
  m.className = `message ${ok ? 'ok' : 'error'}`;
  $('connection-detail').textContent = more || '';
  $('connection-detail').classList.add('hidden');
  $('connection-more').classList.toggle('hidden', !more);
}
$('connection-more').addEventListener('click', () => $('connection-detail').classList.toggle('hidden'));

function showStep(step) {
  for (const f of document.querySelectorAll('#setup .step')) f.classList.toggle('hidden', f.dataset.step !== step);
  for (const li of document.querySelectorAll('#setup .steps li')) {
    if (li.dataset.step === step) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
  }
  $('setup').dataset.step = step;
  const first = document.querySelector(`#step-${step} input, #step-${step} button.primary`);
  if (first) first.focus();
}

function openSetup(mode) {
  setupMode = mode;
  const d = $('setup');
  d.classList.toggle('changing', mode === 'change');
  for (const b of document.querySelectorAll('.cancel-setup')) b.classList.toggle('hidden', mode !== 'change');
  connectionMessage('', true);
  if (current && current.server_url) $('server-url').value = current.server_url;
  $('token').value = '';
  if (!d.open) d.showModal();
  showStep('address');
}

function closeSetup() {
  setupMode = null;
  if ($('setup').open) $('setup').close();
}

// Escape leaves "Change server…"; on the first run there is nowhere to go back to. Should the
// dialog close anyway (a browser engine that lets a second Escape through), it opens again.
$('setup').addEventListener('cancel', (e) => { if (setupMode !== 'change') e.preventDefault(); else setupMode = null; });
$('setup').addEventListener('close', () => {
  if (current && !current.configured) setTimeout(() => openSetup('first'), 0);
});
for (const b of document.querySelectorAll('.cancel-setup')) b.addEventListener('click', closeSetup);
for (const b of document.querySelectorAll('#setup .back')) b.addEventListener('click', () => showStep(b.dataset.to));

// With no scheme typed, http:// is meant (the service does the same).
function typedAddress() {
  const v = $('server-url').value.trim();
  return v && !v.includes('://') ? `http://${v}` : v;
}

$('step-address').addEventListener('submit', (e) => {
  e.preventDefault();
  const url = typedAddress();
  if (!url) { connectionMessage(S.addressNeeded, false); return; }
  $('server-url').value = url;
  connectionMessage('', true);
  showStep('token');
});

$('token-show').addEventListener('click', () => {
  const shown = $('token').type === 'text';
  $('token').type = shown ? 'password' : 'text';
  $('token-show').textContent = shown ? S.show : S.hide;
  $('token-show').setAttribute('aria-pressed', String(!shown));
});

$('test-connection').addEventListener('click', async () => {
  connectionMessage(S.testing, true);
  const r = await api.testConnection(typedAddress(), $('token').value);
  connectionMessage(r.message, r.ok, r.detail);
});

$('step-token').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!$('token').value.trim()) { connectionMessage(S.tokenNeeded, false); return; }
  connectionMessage(S.connecting, true);
  const r = await api.configure(typedAddress(), $('token').value);
  if (!r.ok) { connectionMessage(r.message, false, r.detail); return; }
  connectionMessage(S.connected, true);
  $('token').value = '';
  await refreshOverview();
  if (setupMode === 'change') { closeSetup(); return; }
  // A new computer: the account holds photos already. Offer to bring them here first.
  const holds = await api.account().catch(() => null);
  if (holds && holds.images > 0) {
    $('restore-offer').textContent = S.restoreOffer(holds.images, bytes(holds.bytes));
    showStep('restore');
    return;
  }
  await renderFolders();
  showStep('folders');
});

$('step-restore').addEventListener('submit', async (e) => {
  e.preventDefault();
  const to = $('first-restore-path').value.trim();
  if (!to) { connectionMessage(S.folderNeeded, false); return; }
  try {
    await api.restore(to, null, true);
  } catch (err) {
    connectionMessage(String(err), false);
    return;
  }
  connectionMessage('', true);
  await renderFolders();
  showStep('folders');
});
$('first-backup-only').addEventListener('click', async () => {
  connectionMessage('', true);
  await renderFolders();
  showStep('folders');
});

$('setup-add-folder').addEventListener('click', async () => addFolder(await api.pickFolder(), (m) => connectionMessage(m, !m)));
$('setup-add-folder-path').addEventListener('click', async () => {
  if (await addFolder($('setup-folder-path').value.trim(), (m) => connectionMessage(m, !m))) $('setup-folder-path').value = '';
});
$('setup-folder-path').addEventListener('keydown', (e) => {
  // Enter in the path box adds the path; the form's own Enter goes on to the next step.
  if (e.key === 'Enter' && e.target.value.trim()) { e.preventDefault(); $('setup-add-folder-path').click(); }
});
$('step-folders').addEventListener('submit', (e) => { e.preventDefault(); connectionMessage('', true); showStep('next'); });
$('step-next').addEventListener('submit', (e) => { e.preventDefault(); closeSetup(); fileList.refresh(); });

// ---- Settings: shows what was stored, including values clamped on the way.

function fillSettings(s) {
  $('token-store').textContent = S.tokenStore[s.token_store] || '';
  $('start-at-login').checked = s.start_at_login;
  $('bandwidth').value = Math.round(s.bandwidth_limit / 1000);
  $('concurrency').value = s.concurrency;
  $('same-picture').value = s.upload_all_copies ? 'upload' : 'skip';
  $('all-files').checked = s.all_files;
}

$('open-settings').addEventListener('click', async () => {
  fillSettings(await api.getSettings());
  $('settings-server').textContent = current ? S.connectedTo(S.connectedAs(current.user, current.server_url)) : '';
  $('settings-message').textContent = '';
  api.about().then((a) => { $('about').textContent = S.about(a.version, a.commit); }, () => {});
  $('settings').showModal();
});
$('close-settings').addEventListener('click', () => $('settings').close());
$('change-server').addEventListener('click', () => { $('settings').close(); openSetup('change'); });
$('recheck').addEventListener('click', () => api.recheck().catch((e) => showProblem(String(e))));
$('settings-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const s = await api.getSettings();
  const typed = Number($('concurrency').value) || 3;
  s.start_at_login = $('start-at-login').checked;
  s.bandwidth_limit = Math.max(0, Number($('bandwidth').value) || 0) * 1000;
  s.concurrency = Math.max(1, typed);
  s.upload_all_copies = $('same-picture').value === 'upload';
  s.all_files = $('all-files').checked;
  const m = $('settings-message');
  try {
    const stored = await api.updateSettings(s);
    fillSettings(stored);
    m.textContent = stored.concurrency !== typed ? S.savedClamped(S.clampedTo(S.uploadsAtOnce, stored.concurrency)) : S.saved;
    m.className = 'message ok';
  } catch (err) {
    m.textContent = String(err);
    m.className = 'message error';
  }
});

// ---- Activity: what was uploaded, found, skipped or failed, by day.

function dayLabel(date) {
  const start = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((start(new Date()) - start(date)) / 86400000);
  if (days === 0) return S.today;
  if (days === 1) return S.yesterday;
  return date.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
}

async function renderActivity() {
  const entries = await api.activity();
  const list = $('activity-list');
  const out = [];
  let day = null;
  for (const e of entries) {
    const when = new Date(e.at * 1000);
    const label = dayLabel(when);
    if (label !== day) {
      day = label;
      out.push(Object.assign(document.createElement('h3'), { textContent: label }));
    }
    const row = document.createElement('div');
    row.className = `entry ${e.what}`;
    const name = e.path.split(/[\\/]/).pop();
    row.append(
      Object.assign(document.createElement('time'), { textContent: when.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }), dateTime: when.toISOString() }),
      Object.assign(document.createElement('span'), { className: `badge ${e.what === 'uploaded' || e.what === 'on_server' ? 'backed_up' : e.what}`, textContent: S.happened[e.what] }),
      Object.assign(document.createElement('span'), { className: 'name', textContent: name, title: e.path }),
      Object.assign(document.createElement('span'), { className: 'why', textContent: e.detail || '' }),
    );
    out.push(row);
  }
  if (!out.length) out.push(Object.assign(document.createElement('p'), { className: 'empty', textContent: S.noActivity }));
  list.replaceChildren(...out);
}

// One view at a time: the files, the activity, or what the server holds.
let view = 'files';
function showView(next) {
  view = next;
  $('activity').classList.toggle('hidden', next !== 'activity');
  $('server').classList.toggle('hidden', next !== 'server');
  document.querySelector('.files').classList.toggle('hidden', next !== 'files');
  $('show-activity').setAttribute('aria-pressed', String(next === 'activity'));
  $('show-server').setAttribute('aria-pressed', String(next === 'server'));
  if (next === 'activity') renderActivity().then(() => $('activity-list').focus());
  else if (next === 'server') loadServer();
  else fileList.refresh();
}

let activityDue = false;
function showActivity(on) { showView(on ? 'activity' : 'files'); }
$('show-activity').addEventListener('click', () => showActivity(view !== 'activity'));
$('close-activity').addEventListener('click', () => showActivity(false));

// ---- On the server: the account's pictures, and restores.

let serverSummary = { total: 0, bytes: 0 };
const grid = new ServerGrid($('grid'), $('grid-spacer'), {
  onSelection: (n) => {
    $('download-selected').disabled = n === 0;
    $('download-selected').textContent = n ? S.selectedCount(n) : S.page.downloadSelected;
  },
  onOpen: (item) => openViewer(item),
});

async function loadServer() {
  try {
    const page = await grid.reload();
    serverSummary = page;
    $('server-count').textContent = S.serverCount(page.total, bytes(page.bytes));
    const months = $('server-month');
    months.replaceChildren(
      Object.assign(document.createElement('option'), { value: '', textContent: S.jumpTo }),
      ...page.months.map((m) => Object.assign(document.createElement('option'), { value: String(m.first), textContent: S.month(m.month, m.count) })),
    );
    $('grid').focus();
  } catch (e) {
    showProblem(String(e));
  }
}
$('show-server').addEventListener('click', () => showView(view === 'server' ? 'files' : 'server'));
$('close-server').addEventListener('click', () => showView('files'));
$('server-refresh').addEventListener('click', loadServer);
$('server-month').addEventListener('change', (e) => {
  if (e.target.value !== '') grid.scrollToIndex(Number(e.target.value));
});

// Where a restore goes: the dialog asks, then the service runs it; progress comes with the
// overview.
let restoreIds = null;
function askRestore(ids) {
  restoreIds = ids;
  $('restore-title').textContent = ids ? S.downloadTitle : S.restoreAllTitle;
  $('restore-note').textContent = ids ? S.downloadNote(ids.length) : S.restoreAllNote(serverSummary.total, bytes(serverSummary.bytes));
  $('restore-message').textContent = '';
  $('restore-dialog').showModal();
  $('restore-path').focus();
}
$('restore-all').addEventListener('click', () => askRestore(null));
$('download-selected').addEventListener('click', () => askRestore([...grid.selected]));
$('restore-choose').addEventListener('click', async () => {
  const dir = await api.pickFolder();
  if (dir) $('restore-path').value = dir;
});
$('restore-dialog-cancel').addEventListener('click', () => $('restore-dialog').close());
$('restore-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const to = $('restore-path').value.trim();
  const m = $('restore-message');
  if (!to) { m.textContent = S.folderNeeded; m.className = 'message error'; return; }
  try {
    await api.restore(to, restoreIds, false);
    $('restore-dialog').close();
    refreshOverview();
  } catch (err) {
    m.textContent = String(err);
    m.className = 'message error';
  }
});
$('restore-pause').addEventListener('click', () => api.restorePause($('restore-pause').textContent !== S.resume));
$('restore-cancel').addEventListener('click', () => api.restoreCancel());

function renderRestore(p) {
  const box = $('restore-progress');
  const live = p && (p.state === 'running' || p.state === 'paused');
  if (live) restoreDismissed = '';
  box.classList.toggle('hidden', !p);
  if (!p) return;
  let text = {
    running: () => S.restoring(p.files_done, p.files_total, bytes(p.bytes_done), bytes(p.bytes_total)),
    paused: () => S.restorePaused(p.files_done, p.files_total),
    done: () => S.restoreDone(p.files_done, p.to),
    cancelled: () => S.restoreCancelled(p.files_done, p.files_total),
    stopped: () => S.restoreStopped(p.message || ''),
    failed: () => S.restoreFailed(p.message || ''),
  }[p.state]();
  if (p.failed) text += S.restoreProblems(p.failed);
  if ($('restore-text').textContent !== text) $('restore-text').textContent = text;
  if (!live && text === restoreDismissed) { box.classList.add('hidden'); return; }
  box.dataset.state = p.state;
  $('restore-bar').style.width = p.bytes_total ? `${(100 * p.bytes_done) / p.bytes_total}%` : '0';
  $('restore-pause').classList.toggle('hidden', !live);
  $('restore-cancel').classList.toggle('hidden', !live);
  $('restore-pause').textContent = p.state === 'paused' ? S.resume : S.pause;
  $('restore-dismiss').classList.toggle('hidden', live);
}
// A finished restore's line stays until closed (or the next restore starts).
let restoreDismissed = '';
$('restore-dismiss').addEventListener('click', () => {
  restoreDismissed = $('restore-text').textContent;
  $('restore-progress').classList.add('hidden');
});

// A picture at full size: its file's bytes, decoded here; the server's thumbnail where the
// engine of this page cannot decode the format (RAW, HEIC).
let viewerTicket = 0;
async function openViewer(item) {
  const canvas = $('viewer-canvas');
  const ticket = ++viewerTicket;
  $('viewer-caption').textContent = S.serverTile(item.name, item.day, item.folder);
  if (!$('viewer').open) $('viewer').showModal();
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.drawn;
  const decode = (bytes) => createImageBitmap(new Blob([new Uint8Array(bytes)]));
  try {
    // A file the server has no picture of (a video) is not fetched whole to be shown.
    if (item.width == null) throw new Error(S.noPicture);
    const bitmap = await api.remoteFull(item.id).then(decode)
      .catch(() => api.remoteThumbnail(item.id).then(decode));
    // Another picture was asked for meanwhile: this one is not shown over it.
    if (ticket !== viewerTicket) { bitmap.close(); return; }
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    // Shown whole: as large as the window allows, never larger than the picture.
    const fit = Math.min(1, (window.innerWidth * 0.86) / bitmap.width, (window.innerHeight * 0.76) / bitmap.height);
    canvas.style.width = `${Math.round(bitmap.width * fit)}px`;
    canvas.style.height = `${Math.round(bitmap.height * fit)}px`;
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    canvas.dataset.drawn = 'yes';
  } catch (e) {
    if (ticket === viewerTicket) $('viewer-caption').textContent = S.openFailed(e.message || String(e));
  }
}
$('viewer-close').addEventListener('click', () => $('viewer').close());

// ---- Header actions.

// The click does what the button says, whatever overview arrives meanwhile.
$('pause').addEventListener('click', () => api.setPaused($('pause').textContent !== S.resume).then(refreshOverview, (e) => showProblem(String(e))));
$('sync-now').addEventListener('click', () => api.syncNow().catch((e) => showProblem(String(e))));
$('hide').addEventListener('click', () => window.__TAURI__.window.getCurrentWindow().hide());

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
  if ((update.changed === null || update.changed.length) && !activityDue && !$('activity').classList.contains('hidden')) {
    activityDue = true;
    setTimeout(() => { activityDue = false; renderActivity(); }, 2000);
  }
});
api.listen('problem', (text) => showProblem(String(text)));
// A notification was clicked: the window opens on the files it was about.
api.listen('show-files', (status) => {
  if (!status) return;
  $('search').value = '';
  fileList.setFilter({ search: '' });
  $(`filter-${status}`).click();
});

refreshOverview().then(() => { renderFolders(); fileList.refresh(); });
