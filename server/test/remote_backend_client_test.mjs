// forkjoin serve --backend remote: the whole stack with every thread's tokens made by a real
// llama-server, driven by the official `openai` npm client.
//   node remote_backend_client_test.mjs <forkjoin> <llama-server> <model.gguf>
// Starts llama-server and forkjoin serve on ephemeral 127.0.0.1 ports and stops both whatever the
// outcome. Exit status: the number of failed checks (0: all passed).
import { loadOpenAI, startServer } from './forkjoin_server.mjs';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import assert from 'node:assert/strict';

const OpenAI = await loadOpenAI();
const [forkjoin, llamaServer, model] = process.argv.slice(2);

const freePort = () => new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// ---- llama-server --------------------------------------------------------------------------------
const lsPort = await freePort();
const ls = spawn(llamaServer, ['-m', model, '--host', '127.0.0.1', '--port', String(lsPort), '-np', '8', '-kvu', '-c', '8192',
  '-t', '1', '-tb', '1', '--no-webui', '--no-warmup'], { stdio: ['ignore', 'ignore', 'pipe'] });
let lsLog = '';
ls.stderr.on('data', (d) => { lsLog += d; });
const stopLs = () => { if (ls.exitCode === null) ls.kill('SIGKILL'); };
process.on('exit', stopLs);
const lsUrl = `http://127.0.0.1:${lsPort}`;
for (let i = 0; ; ++i) {
  try { if ((await fetch(lsUrl + '/health')).status === 200) break; } catch { /* not up yet */ }
  if (i > 600 || ls.exitCode !== null) { console.error('llama-server did not start:\n' + lsLog); process.exit(101); }
  await new Promise((r) => setTimeout(r, 100));
}

// ---- forkjoin serve in front of it ---------------------------------------------------------------
const server = await startServer(forkjoin, ['--backend', 'remote', '--url', lsUrl, '--sequences', '32', '--ctx-per-sequence', '1024']);
const client = new OpenAI({ apiKey: 'unused', baseURL: `http://127.0.0.1:${server.port}/v1`, maxRetries: 0, timeout: 120000 });

let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    ++failed;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

const SOLVED = '{"nums":[84,88,17],"target":21}';  // the shipped model solves it greedily (as in process)

await check('completion through the remote backend: the verified answer and the thread tree', async () => {
  const r = await client.completions.create({ model: 'forkjoin-countdown', prompt: SOLVED, max_tokens: 512, temperature: 0 });
  assert.equal(r.forkjoin.answer, '88-(84-17)');  // the shipped model's greedy answer (cd-v6), as in process
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.forkjoin.threads > 1, `a parallel search: ${r.forkjoin.threads} threads`);
  assert.ok(r.forkjoin.tree.every((t) => t.state === 'done' || t.state === 'cancelled'), 'no thread failed');
});

await check('streamed chat, 4 concurrent clients', async () => {
  const runs = Array.from({ length: 4 }, async () => {
    const stream = await client.chat.completions.create({ model: 'forkjoin-countdown', messages: [{ role: 'user', content: SOLVED }],
      max_tokens: 512, temperature: 0, stream: true });
    let text = '';
    let finish = null;
    for await (const chunk of stream) {
      if (chunk.choices?.length) {
        text += chunk.choices[0].delta?.content ?? '';
        finish = chunk.choices[0].finish_reason ?? finish;
      }
    }
    assert.equal(finish, 'stop');
    assert.ok(text.length > 0);
  });
  await Promise.all(runs);
});

const exit = await server.stop();
if (exit) {
  ++failed;
  console.log(`FAIL the server's exit: ${exit}`);
}
stopLs();
process.exit(failed);
