// forkjoin serve, driven by the official `openai` npm client (4.x) as any application would drive it.
//   node openai_client_test.mjs <path to forkjoin> <countdown eval set .jsonl>
// Starts the server on an ephemeral 127.0.0.1 port with an API key, runs every check, and stops the
// server whatever the outcome. Exit status: the number of failed checks (0: all passed).
import { loadOpenAI, startServer } from './forkjoin_server.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import assert from 'node:assert/strict';

const OpenAI = await loadOpenAI();

const [forkjoin, evalSet] = process.argv.slice(2);
const KEY = 'test-key-' + process.pid;
const problems = readFileSync(evalSet, 'utf8').trim().split('\n').slice(0, 8);
const SOLVED = '{"nums":[84,88,17],"target":21}';  // the shipped model solves it greedily (see the CLI test)
const GREEDY_ANSWER = '88-(84-17)';  // its greedy answer (cd-v6): the clean path through the first goal in its join

// ---- the server ----------------------------------------------------------------------------------
const server = await startServer(forkjoin, ['--api-key', KEY, '--max-queue', '32', '--sequences', '64', '--ctx-per-sequence', '1024']);
const port = server.port;
const base = `http://127.0.0.1:${port}`;
const client = new OpenAI({ apiKey: KEY, baseURL: base + '/v1', maxRetries: 0, timeout: 120000 });

// ---- helpers -------------------------------------------------------------------------------------
async function metrics() {
  const text = await (await fetch(base + '/metrics', { headers: { Authorization: 'Bearer ' + KEY } })).text();
  const values = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+(?:\{[^}]*\})?) (\S+)$/);
    if (m) values[m[1]] = Number(m[2]);
  }
  return values;
}

// The tree is one tree: ids 0..n-1, every parent an earlier thread, and its tokens add up to the usage.
function checkTree(fj, usage) {
  assert.ok(Array.isArray(fj.tree) && fj.tree.length >= 1, 'a thread tree');
  assert.equal(fj.threads, fj.tree.length);
  fj.tree.forEach((t, i) => {
    assert.equal(t.id, i);
    if (t.parent !== null) assert.ok(t.parent >= 0 && t.parent < fj.tree.length, `thread ${i}'s parent ${t.parent}`);
    assert.ok(['done', 'failed', 'cancelled'].includes(t.state), `thread ${i} ended: ${t.state}`);
  });
  assert.equal(fj.tree[0].parent, null);
  const generated = fj.tree.reduce((s, t) => s + t.generated_tokens, 0);
  assert.equal(usage.completion_tokens, generated, 'usage.completion_tokens = the tree\'s generated tokens');
  assert.equal(usage.prompt_tokens, fj.tree[0].prompt_tokens);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.ok(fj.sequential_tokens <= generated);
}

async function expectError(promise, status, param) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.status, status, `status ${e.status}: ${e.message}`);
    if (param !== undefined) assert.equal(e.param, param, `param of: ${e.message}`);
    return e;
  }
  assert.fail(`expected HTTP ${status}`);
}

// ---- checks --------------------------------------------------------------------------------------
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

check('completion: the answer, the usage and the tree agree', async () => {
  const r = await client.completions.create({ model: 'forkjoin-countdown', prompt: SOLVED, max_tokens: 512 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.forkjoin.answer, GREEDY_ANSWER);
  assert.equal(r.forkjoin.strategy, 'native');
  assert.ok(r.forkjoin.threads > 1, 'the model spawned');
  checkTree(r.forkjoin, r.usage);
});

check('a request picks its controller policies; their decisions are in the tree', async () => {
  const r = await client.completions.create({ prompt: SOLVED, forkjoin: { controller: 'early-stop' } });
  assert.equal(r.forkjoin.controller, 'early-stop');
  assert.equal(r.forkjoin.answer, '17+(88-84)');  // the first child to end verified: its siblings join as not run
  const stops = r.forkjoin.tree.flatMap((t) => (t.decisions ?? []).filter((d) => d.kind === 'stop'));
  assert.ok(stops.length >= 1 && /verified/.test(stops[0].reason), JSON.stringify(r.forkjoin.tree[0].decisions));
  assert.ok(r.forkjoin.tree.some((t) => t.state === 'cancelled' && t.end_reason.startsWith('stopped early')));
});

check('chat: the last user message is the problem', async () => {
  const r = await client.chat.completions.create({
    model: 'forkjoin-countdown',
    messages: [{ role: 'system', content: 'solve it' }, { role: 'user', content: SOLVED }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.forkjoin.answer, GREEDY_ANSWER);
  checkTree(r.forkjoin, r.usage);
});

check('streaming completion: text as it is produced, tree events, usage, [DONE]', async () => {
  const stream = await client.completions.create({ prompt: SOLVED, stream: true, stream_options: { include_usage: true } });
  let text = '', events = [], finish = null, usage = null, last = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) { finish = chunk.choices[0].finish_reason; last = chunk; }
    }
    if (chunk.forkjoin?.events) events.push(...chunk.forkjoin.events);
  }
  assert.equal(finish, 'stop');
  assert.ok(text.includes('Goal Reached'), text);
  const spawned = events.find((e) => e.type === 'spawned' && e.thread === 0);
  assert.ok(spawned && spawned.children.length > 0, JSON.stringify(events));
  for (const c of spawned.children) assert.equal(last.forkjoin.tree[c].parent, 0, `child ${c} of the spawn is in the tree under 0`);
  assert.ok(events.some((e) => e.type === 'joined' && e.thread === 0));
  assert.ok(events.filter((e) => e.type === 'thread_ended').length >= last.forkjoin.threads - 1);
  assert.ok(usage, 'a usage chunk');
  checkTree(last.forkjoin, usage);
});

// The raw SSE bytes, with a heartbeat short enough that keep-alives fall between the chunks (the root
// waits on its children for many decode steps): every line is a data line, a comment or blank, no
// stray byte (a keep-alive once carried its C string's NUL, and parsers then dropped the next chunk as
// an unknown field), and every thread's end reaches the client. A non-streaming answer padded with
// heartbeat whitespace still parses as one JSON object.
check('keep-alives between SSE chunks lose nothing (heartbeat 1 ms)', async () => {
  const fast = await startServer(forkjoin, ['--heartbeat-ms', '1', '--sequences', '16', '--ctx-per-sequence', '1024']);
  try {
    const url = `http://127.0.0.1:${fast.port}/v1/completions`;
    const body = await (await fetch(url, { method: 'POST', body: JSON.stringify({ prompt: SOLVED, stream: true }) })).text();
    assert.ok(!body.includes('\0'), 'no NUL byte in the stream');
    const lines = body.split('\n');
    const keepAlives = lines.filter((l) => l.startsWith(':')).length;
    assert.ok(keepAlives > 0, 'the heartbeat fired between chunks');
    const chunks = [];
    for (const l of lines) {
      if (l === '' || l === ': keep-alive' || l === 'data: [DONE]') continue;
      assert.ok(l.startsWith('data: {'), `a line that is neither data, a comment nor blank: ${JSON.stringify(l.slice(0, 80))}`);
      chunks.push(JSON.parse(l.slice(6)));
    }
    const events = chunks.flatMap((c) => c.forkjoin?.events ?? []);
    const last = chunks.find((c) => c.choices[0]?.finish_reason);
    const ended = new Set(events.filter((e) => e.type === 'thread_ended').map((e) => e.thread));
    assert.ok(last.forkjoin.threads > 1, 'the model spawned');
    for (const t of last.forkjoin.tree) assert.ok(ended.has(t.id), `thread ${t.id}'s end reached the client (${keepAlives} keep-alives)`);
    const whole = await (await fetch(url, { method: 'POST', body: JSON.stringify({ prompt: SOLVED }) })).text();
    assert.ok(whole.startsWith(' '), 'the heartbeat padded the wait');
    assert.equal(JSON.parse(whole).forkjoin.answer, GREEDY_ANSWER);
  } finally {
    const exit = await fast.stop();
    assert.equal(exit, null, exit);
  }
});

check('streaming chat: role first, then content deltas', async () => {
  const stream = await client.chat.completions.create({ messages: [{ role: 'user', content: SOLVED }], stream: true });
  let text = '', role = null, finish = null;
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta ?? {};
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(finish, 'stop');
  assert.ok(text.length > 0);
});

check('8 concurrent clients share the decode batches', async () => {
  const answers = await Promise.all(problems.map((p) => client.completions.create({ prompt: p, max_tokens: 512, forkjoin: { max_context: 512 } })));
  for (const r of answers) {
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    checkTree(r.forkjoin, r.usage);
  }
  assert.ok(Math.max(...answers.map((r) => r.forkjoin.mean_batch)) > 2, 'requests rode the same steps');
});

check('a text request, a stop string, a timeout', async () => {
  const t = await client.completions.create({ prompt: 'Moving to Node #0\n', max_tokens: 16, forkjoin: { task: 'text', strategy: 'sequential' } });
  assert.ok(t.usage.completion_tokens <= 16);
  assert.ok(['stop', 'length'].includes(t.choices[0].finish_reason));
  const s = await client.completions.create({ prompt: SOLVED, stop: ['Generated Node'] });
  assert.equal(s.choices[0].finish_reason, 'stop');
  assert.ok(!s.choices[0].text.includes('Generated Node'), s.choices[0].text);
  assert.ok(s.choices[0].text.startsWith('Exploring Operation'), s.choices[0].text);
  const slow = await client.completions.create({ prompt: '{"nums":[3,7,9,5],"target":24}', forkjoin: { timeout: 0.001 } });
  assert.equal(slow.choices[0].finish_reason, 'timeout');
  assert.match(slow.forkjoin.error, /timeout/);
});

check('a client that aborts mid-stream frees its sequences', async () => {
  const controller = new AbortController();
  const stream = await client.completions.create({ prompt: '{"nums":[3,7,9,5,4],"target":97}', stream: true, max_tokens: 4096 },
                                                 { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      if (++chunks === 3) controller.abort();
    }
  } catch (e) {
    assert.ok(e.name === 'APIUserAbortError' || e.name === 'AbortError', e.name + ': ' + e.message);
  }
  let m;
  for (let i = 0; i < 50; ++i) {
    m = await metrics();
    if (m['forkjoin_sequences_live'] === 0 && m['forkjoin_errors_total{kind="client_disconnected"}'] >= 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(m['forkjoin_sequences_live'], 0, 'no live sequence after the abort');
  assert.ok(m['forkjoin_errors_total{kind="client_disconnected"}'] >= 1, 'the disconnect was counted');
  assert.equal(m['forkjoin_requests_running'], 0);
});

check('bad requests: 400 naming the field', async () => {
  await expectError(client.completions.create({ prompt: SOLVED, temperature: 'hot' }), 400, 'temperature');
  await expectError(client.completions.create({ prompt: SOLVED, max_tokens: -3 }), 400, 'max_tokens');
  await expectError(client.completions.create({ prompt: SOLVED, forkjoin: { strategy: 'telepathy' } }), 400, 'forkjoin.strategy');
  await expectError(client.completions.create({ prompt: SOLVED, forkjoin: { dialect: 'klingon' } }), 400, 'forkjoin.dialect');
  await expectError(client.completions.create({ prompt: SOLVED, forkjoin: { sampels: 3 } }), 400, 'forkjoin.sampels');
  await expectError(client.completions.create({ prompt: SOLVED, forkjoin: { controller: 'clairvoyant' } }), 400, 'forkjoin.controller');
  await expectError(client.completions.create({ prompt: '{"nums": [3, 7], ' }), 400, 'prompt');
  await expectError(client.chat.completions.create({ messages: [] }), 400, 'messages');
  await expectError(client.completions.create({ prompt: 'x'.repeat(5000), forkjoin: { task: 'text' } }), 400, 'prompt');
  // Not JSON at all: the client cannot send that, so plain fetch does.
  const r = await fetch(base + '/v1/completions', { method: 'POST', body: '{bad', headers: { Authorization: 'Bearer ' + KEY } });
  assert.equal(r.status, 400);
  assert.match((await r.json()).error.message, /not valid JSON/);
});

check('401 without the key; /health and /v1/models', async () => {
  const stranger = new OpenAI({ apiKey: 'wrong', baseURL: base + '/v1', maxRetries: 0 });
  await expectError(stranger.completions.create({ prompt: SOLVED }), 401);
  const none = await fetch(base + '/v1/models');
  assert.equal(none.status, 401);
  assert.equal((await fetch(base + '/health')).status, 200);
  const models = await client.models.list();
  assert.equal(models.data[0].id, 'forkjoin-countdown');
});

let failed = 0;
let exitProblem = null;
try {
  for (const [name, fn] of checks) {
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      ++failed;
      console.log(`FAIL ${name}: ${e.stack || e}`);
    }
  }
} finally {
  exitProblem = await server.stop();
}
if (failed) console.log('server log:\n' + server.log().split('\n').slice(-30).join('\n'));
// The whole server log (e.g. a ThreadSanitizer run's reports) where FORKJOIN_SERVER_LOG names a file.
if (process.env.FORKJOIN_SERVER_LOG) writeFileSync(process.env.FORKJOIN_SERVER_LOG, server.log());
console.log(`${checks.length - failed}/${checks.length} checks passed`);
if (exitProblem) console.log(`FAIL the server's exit: ${exitProblem}`);
process.exit(failed + (exitProblem ? 1 : 0));
