// Words and numbers for people.
import { S } from './strings.js';

export function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = Math.max(0, n || 0);
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return (u === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[u];
}

export const STATUS_LABELS = S.status;

// The line under a file's name: why it is in its state.
export function detail(row) {
  const up = row.upload;
  switch (row.status) {
    case 'uploading': {
      if (up && up.total && up.sent >= up.total) return S.finishing;
      const pct = up && up.total ? Math.floor((100 * up.sent) / up.total) : 0;
      return S.uploadingDetail(pct, bytes(up ? up.rate : 0), bytes(up ? up.part_size : 0));
    }
    case 'queued': {
      const waiting = up ? S.waitingBytes(bytes(up.total)) : S.waiting;
      // Going up beside a worse server copy of the picture: the rule that decided.
      return row.matched ? `${waiting} · ${row.matched.reason}` : waiting;
    }
    case 'backed_up': {
      if (row.unidentified) return S.notIdentified(row.unidentified);
      const how = S.backed[row.backed] || '';
      // The match says which server image and why; an upload beside a worse copy keeps it.
      return row.matched ? `${how}: ${row.matched.reason}` : how;
    }
    case 'skipped':
      return row.reason || S.skipped;
    case 'failed': {
      const when = row.next_retry ? S.retryingAt(new Date(row.next_retry * 1000).toLocaleTimeString()) : '';
      return (row.reason || S.failed) + when;
    }
    case 'identifying':
      return S.readingPicture;
    default:
      return row.path;
  }
}
