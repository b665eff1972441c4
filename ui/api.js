// The app's commands and events: the only place that talks to Rust.
const tauri = window.__TAURI__;

export const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
export const listen = (event, handler) => tauri.event.listen(event, (e) => handler(e.payload));

export const overview = () => invoke('overview');
export const list = (query) => invoke('list', { query });
export const testConnection = (url, token) => invoke('test_connection', { url, token });
export const configure = (url, token) => invoke('configure', { url, token });
export const folders = () => invoke('folders');
export const addFolder = (path) => invoke('add_folder', { path });
export const removeFolder = (path) => invoke('remove_folder', { path });
export const syncPaths = (paths) => invoke('sync_paths', { paths });
export const forceUpload = (path) => invoke('force_upload', { path });
export const retry = (path) => invoke('retry', { path });
export const recheck = () => invoke('recheck');
export const reveal = (id) => invoke('reveal', { id });
export const activity = () => invoke('activity');
export const openFile = (id) => invoke('open_file', { id });
export const syncNow = () => invoke('sync_now');
export const setPaused = (paused) => invoke('set_paused', { paused });
export const getSettings = () => invoke('get_settings');
export const updateSettings = (settings) => invoke('update_settings', { settings });

// The folder dialog is native; tests use addFolder with a path instead.
export const pickFolder = () => tauri.dialog.open({ directory: true, multiple: false });

// A row's thumbnail: JPEG bytes in an ArrayBuffer.
export const thumbnail = (id) => invoke('thumbnail', { id });

// The server's side: what the account holds, and restores.
export const remoteLoad = () => invoke('remote_load');
export const remotePage = (offset, limit) => invoke('remote_page', { offset, limit });
export const remoteThumbnail = (id) => invoke('remote_thumbnail', { id });
export const remoteFull = (id) => invoke('remote_full', { id });
export const account = () => invoke('account');
export const about = () => invoke('about');
export const restore = (to, ids, watch) => invoke('restore', { to, ids, watch });
export const restorePause = (paused) => invoke('restore_pause', { paused });
export const restoreCancel = () => invoke('restore_cancel');
