/** The tests' Server-Sent Events parser (sse-parser.ts) on the stream shapes of the HTML spec. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SseParser } from './sse-parser.js';

const STREAM =
  ': keep-alive\n\n' +
  'id: 1\nevent: queued\ndata: {"position":2}\n\n' +
  'id: 2\r\nevent: progress\r\ndata: {"step":1,\r\ndata: "total":2}\r\n\r\n' +
  'event: ignored-without-data\n\n' +
  'data:no space\rid: 3\r\r' +
  'event: completed\ndata: {"status":"COMPLETED"}\n\n';

const EXPECTED = [
  { event: 'queued', data: '{"position":2}', id: '1' },
  { event: 'progress', data: '{"step":1,\n"total":2}', id: '2' },
  { event: 'message', data: 'no space', id: '3' },
  { event: 'completed', data: '{"status":"COMPLETED"}', id: '3' },
];

it('parses comments, ids, multi-line data, CRLF and CR line ends; drops events without data', () => {
  assert.deepEqual(new SseParser().push(STREAM), EXPECTED);
});

it('gives the same events however the stream is cut into chunks (CRLF split included)', () => {
  for (let size = 1; size <= 7; size++) {
    const p = new SseParser();
    const out = [];
    for (let i = 0; i < STREAM.length; i += size) out.push(...p.push(STREAM.slice(i, i + size)));
    assert.deepEqual(out, EXPECTED, `chunks of ${size}`);
  }
  // Every two-way split, so each CR LF pair is cut at least once.
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const p = new SseParser();
    assert.deepEqual([...p.push(STREAM.slice(0, cut)), ...p.push(STREAM.slice(cut))], EXPECTED, `cut at ${cut}`);
  }
});

it('holds back an event until its blank line arrives, and skips a leading byte-order mark', () => {
  const p = new SseParser();
  assert.deepEqual(p.push('\uFEFFevent: progress\ndata: 1\n'), []);
  assert.deepEqual(p.push('\n'), [{ event: 'progress', data: '1', id: '' }]);
});
