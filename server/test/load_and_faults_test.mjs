// forkjoin serve under load and abuse, on 127.0.0.1 only, bounded in time:
//   node load_and_faults_test.mjs <forkjoin> <countdown eval set .jsonl> [seconds of load, default 30]
//                                 [RSS growth allowed in MB, default 256; a sanitizer build holds freed
//                                  memory in its quarantine (ASan: 256 MB) and needs more]
// - 64 concurrent OpenAI clients with a mix of strategies (Countdown native / sequential /
//   self-consistency, streamed or not, text requests) for the given time against a server that holds
//   48 requests at once: every request is answered or refused with 503 (Retry-After), nothing else;
//   p50 / p95 latency; the server's RSS at the start and the end of the load.
// - KV exhaustion: the server has fewer sequences than the load wants, so threads wait for cells.
// - Beside the load: clients that disconnect mid-stream, send a 10 MB body (413), send their body
//   slowly, and open connections that say nothing; deliberate bad requests (400), an oversize prompt.
// - Then graceful shutdown: SIGTERM with requests in flight; new requests get 503, in-flight ones end
//   (answered, or cancelled at the deadline), the process exits 0 within the deadline.
// Exit status: the number of failed checks.
import { loadOpenAI, startServer } from './forkjoin_server.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import assert from 'node:assert/strict';

const OpenAI = await loadOpenAI();
const [forkjoin, evalSet, secondsArg, rssSlackArg] = process.argv.slice(2);
const SECONDS = Number(secondsArg ?? 30);
const RSS_SLACK_MB = Number(rssSlackArg ?? 256);
const problems = readFileSync(evalSet, 'utf8').trim().split('\n');
const server = await startServer(forkjoin, ['--max-queue', '48', '--sequences', '48', '--ctx-per-sequence', '512',
  '--max-threads', '48', '--shutdown-timeout', '3']);
const base = `http://127.0.0.1:${server.port}`;
const client = new OpenAI({ apiKey: 'x', baseURL: base + '/v1', maxRetries: 0, timeout: 120000 });

let failed = 0;
function check(name, ok, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ': ' + detail : ''}`);
  if (!ok) ++failed;
}
const rssKb = () => Number(readFileSync(`/proc/${server.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

// ---- one client's request, by kind ---------------------------------------------------------------
const kinds = [
  (p) => client.completions.create({ prompt: p, max_tokens: 512, forkjoin: { max_context: 512 } }),
  (p) => client.completions.create({ prompt: p, max_tokens: 512, forkjoin: { strategy: 'sequential', max_context: 512 } }),
  (p) => client.completions.create({ prompt: p, max_tokens: 256, temperature: 0.8, forkjoin: { strategy: 'self-consistency', samples: 3, max_context: 512 } }),
  async (p) => {
    const s = await client.chat.completions.create({ messages: [{ role: 'user', content: p }], max_tokens: 512, stream: true, forkjoin: { max_context: 512 } });
    let finish = null;
    for await (const c of s) if (c.choices?.length) finish = c.choices[0].finish_reason ?? finish;
    return { finish };
  },
  (p) => client.completions.create({ prompt: 'Say something about ' + p, max_tokens: 48, forkjoin: { task: 'text', strategy: 'sequential' } }),
];

const latencies = [];
const outcomes = {};
const unexpected = [];
let stopLoad = false;
async function loadClient(i) {
  let n = i;
  while (!stopLoad) {
    const p = problems[n++ % problems.length];
    const t0 = performance.now();
    try {
      await kinds[n % kinds.length](p);
      latencies.push(performance.now() - t0);
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (e) {
      const key = String(e.status ?? e.code ?? e.message);
      outcomes[key] = (outcomes[key] ?? 0) + 1;
      if (e.status !== 503) unexpected.push(`${key}: ${e.message}`);
      else await new Promise((r) => setTimeout(r, 200));  // Retry-After, shortened
    }
  }
}

// ---- abuse beside the load -----------------------------------------------------------------------
const deliberate = [];
async function abuse() {
  // Bad fields and an oversize prompt: 400 naming the field; a 10 MB body: 413.
  for (const [body, want] of [[{ prompt: 'x', temperature: 'hot' }, 400], [{ prompt: 'x'.repeat(100000), forkjoin: { task: 'text' } }, 400]]) {
    const r = await fetch(base + '/v1/completions', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
    deliberate.push([`${JSON.stringify(body).slice(0, 40)}... -> ${r.status}`, r.status === want]);
  }
  const big = await fetch(base + '/v1/completions', { method: 'POST', body: 'x'.repeat(10 << 20), headers: { 'Content-Type': 'application/json' } })
    .then((r) => r.status, (e) => 'error ' + e.message);
  deliberate.push([`10 MB body -> ${big}`, big === 413 || String(big).startsWith('error')]);
  // Clients that disconnect mid-stream.
  for (let k = 0; k < 8; ++k) {
    const ctl = new AbortController();
    try {
      const s = await client.completions.create({ prompt: problems[k], max_tokens: 512, stream: true }, { signal: ctl.signal });
      let chunks = 0;
      for await (const _ of s) if (++chunks === 3) ctl.abort();
    } catch { /* aborted: expected */ }
  }
  // A slow sender: the body arrives over ~2 s in small pieces; it is still answered.
  const slow = await new Promise((resolve) => {
    const body = JSON.stringify({ prompt: problems[1], max_tokens: 512 });
    const sock = net.connect(server.port, '127.0.0.1', async () => {
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      for (let i = 0; i < body.length; i += 8) { sock.write(body.slice(i, i + 8)); await new Promise((r) => setTimeout(r, 2000 * 8 / body.length)); }
    });
    let got = '';
    sock.on('data', (d) => { got += d; });
    sock.on('close', () => resolve(got.split('\r\n')[0]));
    sock.on('error', (e) => resolve('error ' + e.message));
  });
  deliberate.push([`slow sender -> ${slow}`, /^HTTP\/1\.1 (200|503)/.test(slow)]);
}
// Connections that say nothing: they must not keep others from being served.
const idle = Array.from({ length: 8 }, () => net.connect(server.port, '127.0.0.1'));
idle.forEach((s) => s.on('error', () => {}));

// ---- run -----------------------------------------------------------------------------------------
// One request before the crowd. It also makes the ThreadSanitizer run meaningful: the first request
// initializes libcpp-httplib's function-local statics (its request-line regex), and in that
// uninstrumented library the guard's fast path is an inline atomic TSan cannot see, so 64 first
// requests at once read as a race between two pool workers inside httplib (no forkjoin frame). After
// one request the workers meet through the pool's mutex, which TSan does see.
await client.completions.create({ prompt: problems[0], max_tokens: 16, forkjoin: { strategy: 'sequential', max_context: 512 } });
const rssStart = rssKb();
const t0 = performance.now();
const clients = Array.from({ length: 64 }, (_, i) => loadClient(i));
const abuseDone = abuse();
await new Promise((r) => setTimeout(r, SECONDS * 1000));
stopLoad = true;
await Promise.all([...clients, abuseDone]);
const rssEnd = rssKb();
const wall = (performance.now() - t0) / 1000;
idle.forEach((s) => s.destroy());

const answered = outcomes.ok ?? 0;
console.log(`load: 64 clients, ${wall.toFixed(1)} s: ${JSON.stringify(outcomes)}; latency p50 ${(pct(latencies, 0.5) / 1000).toFixed(2)} s, ` +
            `p95 ${(pct(latencies, 0.95) / 1000).toFixed(2)} s; RSS ${(rssStart / 1024).toFixed(0)} MB -> ${(rssEnd / 1024).toFixed(0)} MB`);
check('every request answered or refused with 503', unexpected.length === 0, unexpected.slice(0, 3).join('; '));
check('requests were answered', answered > 0, `${answered}`);
check(`RSS bounded (end < start + ${RSS_SLACK_MB} MB)`, rssEnd < rssStart + RSS_SLACK_MB * 1024, `${rssStart} -> ${rssEnd} kB`);
for (const [what, ok] of deliberate) check(`deliberate: ${what}`, ok);
const metrics = await (await fetch(base + '/metrics')).text();
const live = Number(metrics.match(/^forkjoin_sequences_live (\S+)$/m)?.[1] ?? NaN);
check('nothing held after the load (0 live sequences)', live === 0, `${live}`);

// ---- graceful shutdown ---------------------------------------------------------------------------
const inflight = problems.slice(0, 6).map((p) => client.completions.create({ prompt: p, max_tokens: 512, forkjoin: { strategy: 'self-consistency', samples: 4, max_context: 512 }, temperature: 0.8 })
  .then((r) => r.choices[0].finish_reason, (e) => 'error ' + (e.status ?? e.message)));
await new Promise((r) => setTimeout(r, 300));
const tStop = performance.now();
server.signal('SIGTERM');
await new Promise((r) => setTimeout(r, 100));
const during = await fetch(base + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: problems[0] }) })
  .then((r) => r.status, () => 'refused');
const code = await server.exited();
const stopS = (performance.now() - tStop) / 1000;
const ends = await Promise.all(inflight);
check('SIGTERM: a new request is refused (503 or connection refused)', during === 503 || during === 'refused', `${during}`);
check('SIGTERM: in-flight requests end answered or cancelled', ends.every((e) => e === 'stop' || e === 'length' || e === 'cancelled'), ends.join(','));
// The deadline, then up to 1 s for idle keep-alive connections to close (and margin for a busy machine).
check('SIGTERM: exit 0 within the 3 s deadline (+2.5 s)', code === 0 && stopS < 5.5, `code ${code}, ${stopS.toFixed(2)} s`);
// The whole server log (e.g. a ThreadSanitizer run's reports) where FORKJOIN_SERVER_LOG names a file.
if (process.env.FORKJOIN_SERVER_LOG) writeFileSync(process.env.FORKJOIN_SERVER_LOG, server.log());
process.exit(failed);
