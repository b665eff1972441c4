// Uploads one file to a tus server with tus-js-client, the way any JavaScript app would: only
// `filename` and `filetype` in the metadata. Run by crates/cli/tests/server.rs:
//
//   node upload.mjs --modules DIR --endpoint URL --token TOKEN --file PATH
//                   [--chunk-size BYTES] [--abort-after BYTES]
//
// DIR is where `npm install tus-js-client@4` was run (the test keeps it under the target
// directory, not in the repository). With --abort-after, the upload is aborted once that many
// bytes are acknowledged, and a second tus.Upload resumes it from its URL.
//
// Prints one JSON object per line on stdout: {"event":"aborted",...}, {"event":"head",...},
// {"event":"success",...}, or {"event":"error",...} and exits 1.

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

const emit = (event, fields) => console.log(JSON.stringify({ event, ...fields }));

function fail(message, fields = {}) {
  emit('error', { message, ...fields });
  process.exit(1);
}

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    endpoint: { type: 'string' },
    token: { type: 'string' },
    file: { type: 'string' },
    filetype: { type: 'string', default: 'application/octet-stream' },
    'chunk-size': { type: 'string' },
    'abort-after': { type: 'string' },
  },
});
for (const name of ['modules', 'endpoint', 'token', 'file']) {
  if (!args[name]) fail(`--${name} is required`);
}

// ES modules do not search NODE_PATH, so tus-js-client is loaded from the install folder.
const tus = createRequire(join(args.modules, 'package.json'))('tus-js-client');

// Never hang the Rust test: give up after a minute.
setTimeout(() => fail('timed out after 60 s'), 60_000).unref();

const size = (await stat(args.file)).size;
const chunkSize = args['chunk-size'] ? Number(args['chunk-size']) : Number.POSITIVE_INFINITY;
const abortAfter = args['abort-after'] ? Number(args['abort-after']) : null;
const headers = { Authorization: `Bearer ${args.token}` };

// One tus.Upload of the file; resolves when it succeeds or is aborted by `onChunk`.
// `log` collects "METHOD STATUS" for every request it made.
function upload(extra, onChunk = () => {}) {
  const log = [];
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(createReadStream(args.file), {
      endpoint: `${args.endpoint}/files/`,
      headers,
      chunkSize,
      metadata: { filename: basename(args.file), filetype: args.filetype },
      // No retries: on loopback a failure is the server's answer, and must be seen as such.
      retryDelays: [],
      onAfterResponse: (req, res) => {
        log.push(`${req.getMethod()} ${res.getStatus()}`);
      },
      onChunkComplete: (chunk, accepted, total) => onChunk(u, chunk, accepted, total, resolve),
      onSuccess: () => resolve({ url: u.url, done: true }),
      onError: (err) => {
        const res = err.originalResponse;
        reject(
          Object.assign(new Error(err.message), {
            fields: {
              status: res ? res.getStatus() : null,
              body: res ? res.getBody() : null,
              requests: log,
            },
          }),
        );
      },
      ...extra,
    });
    u.start();
  }).then((r) => ({ ...r, log }));
}

try {
  if (abortAfter === null) {
    const r = await upload({});
    emit('success', { url: r.url, size, requests: r.log });
  } else {
    // First attempt: stopped by the client itself once some parts are acknowledged.
    let acked = 0;
    const first = await upload({}, (u, _chunk, accepted, _total, resolve) => {
      acked = accepted;
      if (accepted >= abortAfter && accepted < size) {
        u.abort().then(() => resolve({ url: u.url, done: false }));
      }
    });
    if (first.done) fail('the upload finished before it could be aborted', { size });
    emit('aborted', { url: first.url, offset: acked, size, requests: first.log });

    // Where the server stands, asked independently of tus-js-client.
    const head = await fetch(first.url, {
      method: 'HEAD',
      headers: { ...headers, 'Tus-Resumable': '1.0.0' },
    });
    emit('head', {
      status: head.status,
      offset: Number(head.headers.get('upload-offset')),
      length: Number(head.headers.get('upload-length')),
    });

    // A new tus.Upload told the URL: it must ask the server (HEAD) and go on from there.
    let resumedFrom = null;
    const second = await upload({ uploadUrl: first.url }, (_u, chunk, accepted) => {
      if (resumedFrom === null) resumedFrom = accepted - chunk;
    });
    emit('success', { url: second.url, size, resumed_from: resumedFrom, requests: second.log });
  }
} catch (e) {
  fail(e.message, e.fields);
}
