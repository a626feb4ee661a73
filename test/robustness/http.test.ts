/**
 * Robustness table: hostile HTTP clients against `musc serve` (a 6-image synthetic bank).
 * One row per case; see http-runner.ts for the fields. Timeouts are small here so the
 * table stays fast; the defaults are in README ("Serving over HTTP").
 */
import assert from 'node:assert/strict';
import { httpCases } from './harness.js';

/** Slow clients are cut after these (seconds), so the rows below finish quickly. */
const TIMEOUTS = ['--body-timeout', '5', '--headers-timeout', '1', '--idle-timeout', '1'];

httpCases('http', [
  // Uploads that are not what /score takes: a clear 4xx, never a silent partial answer.
  {
    name: 'a form with two image files is refused (400) naming the problem, not scored as the first',
    request: { path: '/score', form: [{ field: 'image', image: 0 }, { field: 'image', image: 1 }] },
    expect: { status: 400, code: 'TOO_MANY_FILES', error: /one image per request/ },
  },
  {
    name: 'one image and a text field is scored',
    request: { path: '/score', form: [{ field: 'note', value: 'line 3' }, { field: 'image', image: 0, filename: 'cam1.png' }] },
    expect: { status: 200, check: (a) => assert.equal((a.json as { name: string }).name, 'cam1.png') },
  },
  {
    name: 'the file in another field than "image"',
    request: { path: '/score', form: [{ field: 'photo', image: 0 }] },
    expect: { status: 400, code: 'MISSING_FILE', error: /field "image"/ },
  },
  {
    name: 'a JSON body',
    request: { path: '/score', headers: { 'content-type': 'application/json' }, body: '{"image":"aGVsbG8="}' },
    expect: { status: 400, code: 'BAD_CONTENT_TYPE' },
  },
  {
    name: 'a body without a content type',
    request: { method: 'POST', path: '/score', body: (fx) => fx.image(0) },
    expect: { status: 400, code: 'BAD_CONTENT_TYPE' },
  },
  {
    name: 'bytes that are not an image',
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: 'GIF89a but not really' },
    expect: { status: 400, code: 'IMAGE_DECODE', error: /cannot read image/ },
  },
  {
    name: 'a truncated PNG in a form',
    request: { path: '/score', form: [{ field: 'image', bytes: new Uint8Array(Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')) }] },
    expect: { status: 400, code: 'IMAGE_DECODE' },
  },
  {
    name: 'an upload over --max-upload-mb',
    serve: ['--max-upload-mb', '0.05'],
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(0) },
    expect: { status: 413, code: 'TOO_LARGE', error: /0\.05 MiB/ },
  },
  {
    name: 'an image over --max-megapixels is refused (413) from its header, before it is decoded',
    serve: ['--max-megapixels', '0.05'],
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(0) },
    expect: { status: 413, code: 'TOO_MANY_PIXELS', error: /0\.07 megapixels, more than the server's limit of 0\.05 megapixels/ },
  },
  {
    name: 'a form over --max-upload-mb',
    serve: ['--max-upload-mb', '0.05'],
    request: { path: '/score', form: [{ field: 'image', image: 1 }] },
    expect: { status: 413, code: 'TOO_LARGE' },
  },
  // Paths that try to leave the heatmap cache.
  {
    name: 'path traversal in a heatmap URL (encoded slashes)',
    request: { path: '/heatmaps/..%2F..%2F..%2Fetc%2Fpasswd' },
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'path traversal in a heatmap URL (dot segments)',
    request: { path: '/heatmaps/../../package.json' },
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  {
    name: 'an unknown heatmap id of the right shape',
    request: { path: '/heatmaps/AAAAAAAAAAAAAAAAAAAAAA.png' },
    expect: { status: 404, code: 'NOT_FOUND', error: /evicted|unknown/ },
  },
  {
    name: 'GET on /score',
    request: { path: '/score' },
    expect: { status: 404, code: 'NOT_FOUND' },
  },
  // Slow and idle clients: they are cut by timeouts and never hold a scoring slot.
  {
    name: 'three slow-body uploads (1 byte / 200 ms) do not hold --queue 3: a real upload is scored while they trickle',
    serve: ['--queue', '3', ...TIMEOUTS],
    hostile: { kind: 'slow-body', count: 3, closedWithin: 5000 + 1500 },
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(0) },
    expect: { status: 200, hostileStillOpen: true, body: /"decision"/ },
    timeout: 30_000,
  },
  {
    name: 'three slow multipart uploads do not hold --queue 3 either',
    serve: ['--queue', '3', ...TIMEOUTS],
    hostile: { kind: 'slow-body', count: 3, contentType: 'multipart/form-data; boundary=x', closedWithin: 5000 + 1500 },
    request: { path: '/score', form: [{ field: 'image', image: 1 }] },
    expect: { status: 200, hostileStillOpen: true },
    timeout: 30_000,
  },
  {
    name: '64 sockets that send POST headers and then nothing do not hold the default queue (64), and are cut at the body timeout',
    serve: TIMEOUTS,
    hostile: { kind: 'headers-only', count: 64, closedWithin: 5000 + 1500 },
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(2) },
    expect: { status: 200, hostileStillOpen: true },
    timeout: 30_000,
  },
  {
    name: 'slowloris headers (one header line / 200 ms) are cut at the headers timeout; requests are served meanwhile',
    serve: ['--queue', '3', ...TIMEOUTS],
    hostile: { kind: 'slow-headers', count: 8, closedWithin: 1000 + 1500 },
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(1) },
    expect: { status: 200 },
    timeout: 30_000,
  },
  {
    name: 'connections that never send a byte are closed at the headers timeout',
    serve: ['--queue', '3', ...TIMEOUTS],
    hostile: { kind: 'idle', count: 16, closedWithin: 1000 + 1500 },
    request: { path: '/health' },
    expect: { status: 200 },
  },
  {
    name: 'clients that never read a large heatmap are cut at --send-timeout and do not hold --max-connections',
    serve: ['--max-connections', '4', '--send-timeout', '2', ...TIMEOUTS],
    // Freed within the render of the 2400² heatmap (a few seconds on 2 cores) plus the send timeout;
    // without the send timeout the four sockets hold every connection and /health is never answered.
    hostile: { kind: 'non-reader', count: 4, retryFor: 30_000 },
    request: { path: '/health' },
    expect: { status: 200 },
    timeout: 90_000,
  },
  {
    name: 'over --max-connections a new connection is closed at once (no unbounded sockets)',
    serve: ['--max-connections', '4', ...TIMEOUTS],
    hostile: { kind: 'idle', count: 4 },
    request: { path: '/health' },
    expect: { status: 'closed', within: 2000 },
  },
  {
    name: 'once idle connections are cut, --max-connections admits requests again',
    serve: ['--max-connections', '4', ...TIMEOUTS],
    hostile: { kind: 'idle', count: 4, waitClosed: true, closedWithin: 1000 + 1500 },
    request: { path: '/score', headers: { 'content-type': 'image/png' }, body: (fx) => fx.image(0) },
    expect: { status: 200 },
  },
]);
