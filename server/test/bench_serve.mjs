// Benchmark: the same Countdown problems through `forkjoin serve` (16 concurrent OpenAI clients) and
// through `forkjoin bench countdown` in-process, one run each, side by side; then a mixed load.
//   node server/test/bench_serve.mjs <path to forkjoin> <eval set .jsonl> [--limit N] [--clients 16] [--context 512] [--threads N]
// Prints one JSON object: accuracy of both (greedy: they must be equal), wall time of both and their
// ratio (server / in-process), and for the mixed load (8 Countdown + 8 text clients at once): every
// request answered, mean batch, p50/p95 latency. Both runs use the same backend shape: per-sequence
// KV, clients x (1 + max_children) sequences of `context` cells, max_threads 32.
import { execFileSync } from 'node:child_process';
import { startServer } from './forkjoin_server.mjs';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';

const args = process.argv.slice(2);
const [forkjoin, evalSet] = args;
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const limit = opt('--limit', 0), clients = opt('--clients', 16), context = opt('--context', 512), threads = opt('--threads', 0);
let lines = readFileSync(evalSet, 'utf8').trim().split('\n');
if (limit > 0) lines = lines.slice(0, limit);
const sequences = Math.min(256, clients * 9);

// ---- in-process -----------------------------------------------------------------------------------
const inproc = JSON.parse(execFileSync(forkjoin, ['bench', 'countdown', '--problems', evalSet, '--limit', String(lines.length),
  '--strategy', 'native', '--context', String(context), '--concurrency', String(clients), '--threads', String(threads), '--json'], { encoding: 'utf8' }).trim().split('\n').pop());
const inprocWall = inproc.run_wall_seconds_per_problem * inproc.n;

// ---- through the server ----------------------------------------------------------------------------
const server = await startServer(forkjoin, ['--sequences', String(sequences), '--ctx-per-sequence', String(context),
  '--kv-layout', 'per-sequence', '--max-threads', '32', '--max-queue', '64', '--threads', String(threads)]);
const port = server.port;
const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 600000 });

async function pool(jobs, width) {
  const results = new Array(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) { const i = next++; results[i] = await jobs[i](); }
  }));
  return results;
}
const timed = (fn) => async () => { const t0 = performance.now(); const r = await fn(); return { r, s: (performance.now() - t0) / 1000 }; };
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

const cpu0 = process.cpuUsage();
const t0 = performance.now();
const served = await pool(lines.map((p) => timed(() => client.completions.create({ prompt: p, temperature: 0, forkjoin: { max_context: context } }))), clients);
const servedWall = (performance.now() - t0) / 1000;
const clientCpu = process.cpuUsage(cpu0);
const clientCores = (clientCpu.user + clientCpu.system) / 1e6 / servedWall;  // what the clients took from the machine
const servedAccuracy = served.filter((x) => x.r.forkjoin.ok).length / served.length;

// ---- mixed load: 8 Countdown clients and 8 text clients at once --------------------------------------
const mixedJobs = [];
for (let i = 0; i < 8; ++i) mixedJobs.push(timed(() => client.completions.create({ prompt: lines[i % lines.length], temperature: 0, forkjoin: { max_context: context } })));
const textStrategies = ['sequential', 'plan-execute', 'self-consistency', 'native'];
for (let i = 0; i < 8; ++i) {
  const strategy = textStrategies[i % textStrategies.length];
  mixedJobs.push(timed(() => client.chat.completions.create({
    messages: [{ role: 'user', content: `Moving to Node #${i}\nCurrent State: 24:[3, 7, 9, 5], Operations: []\n` }],
    max_tokens: 96, temperature: strategy === 'self-consistency' ? 0.8 : 0,
    forkjoin: { task: 'text', strategy, dialect: 'apr', samples: 3, max_items: 3 } })));
}
const tm = performance.now();
const mixed = await pool(mixedJobs, 16);
const mixedWall = (performance.now() - tm) / 1000;
const latencies = mixed.map((x) => x.s);
const batches = mixed.map((x) => x.r.forkjoin.mean_batch);
await server.stop();

console.log(JSON.stringify({
  problems: lines.length, clients, context,
  accuracy_in_process: inproc.accuracy, accuracy_served: servedAccuracy, accuracy_equal: Math.abs(inproc.accuracy - servedAccuracy) < 1e-9,
  wall_in_process_s: inprocWall, wall_served_s: servedWall, served_over_in_process: servedWall / inprocWall,
  client_cores_while_served: clientCores,
  served_p50_s: pct(served.map((x) => x.s), 0.5), served_p95_s: pct(served.map((x) => x.s), 0.95),
  mixed: {
    requests: mixed.length, answered: mixed.filter((x) => x.r.choices?.length === 1).length, wall_s: mixedWall,
    mean_batch_median: pct(batches, 0.5), latency_p50_s: pct(latencies, 0.5), latency_p95_s: pct(latencies, 0.95),
    countdown_solved: mixed.slice(0, 8).filter((x) => x.r.forkjoin.ok).length,
  },
}));
process.exit(0);
