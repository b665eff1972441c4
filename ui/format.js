// Words and numbers for people.
export function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = Math.max(0, n || 0);
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return (u === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[u];
}

export const STATUS_LABELS = {
  found: 'Found',
  identifying: 'Identifying',
  synced: 'Already synced',
  on_server: 'On the server',
  queued: 'Queued',
  uploading: 'Uploading',
  uploaded: 'Uploaded',
  skipped: 'Skipped',
  failed: 'Failed',
};

// The line under a file's name: why it is in its state.
export function detail(row) {
  const up = row.upload;
  switch (row.status) {
    case 'uploading': {
      const pct = up && up.total ? Math.floor((100 * up.sent) / up.total) : 0;
      return `${pct}% · ${bytes(up ? up.rate : 0)}/s · parts of ${bytes(up ? up.part_size : 0)}`;
    }
    case 'queued': {
      const waiting = up ? `waiting to upload ${bytes(up.total)}` : 'waiting to upload';
      // Going up beside a worse server copy of the picture: the rule that decided.
      return row.matched ? `${waiting} · ${row.matched.reason}` : waiting;
    }
    case 'on_server':
    case 'synced':
      return row.matched ? row.matched.reason : 'already backed up';
    case 'skipped':
      return row.reason || 'skipped';
    case 'failed': {
      const when = row.next_retry ? ` · retrying at ${new Date(row.next_retry * 1000).toLocaleTimeString()}` : '';
      return (row.reason || 'failed') + when;
    }
    case 'identifying':
      return 'reading the picture';
    case 'uploaded':
      if (row.unidentified) return `backed up, not identified: ${row.unidentified}`;
      return row.matched ? row.matched.reason : row.path;
    default:
      return row.path;
  }
}
