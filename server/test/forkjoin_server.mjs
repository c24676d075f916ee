// Starts `forkjoin serve` on an ephemeral 127.0.0.1 port for a test or a benchmark, and stops it when
// asked, when the process exits or on Ctrl-C, whatever the outcome.
//   const server = await startServer(forkjoinPath, ['--api-key', KEY, ...]);
//   server.port, server.log() (its stderr so far), await server.stop()
import { spawn } from 'node:child_process';

export async function startServer(forkjoin, args, { timeoutMs = 60000 } = {}) {
  const child = spawn(forkjoin, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const kill = () => { if (child.exitCode === null) child.kill('SIGTERM'); };
  process.on('exit', kill);
  process.on('SIGINT', () => { kill(); process.exit(130); });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in ${timeoutMs / 1000} s: ${out}${log}`)), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}) before listening: ${out}${log}`)); });
  });
  return {
    port,
    pid: child.pid,
    log: () => log,
    // Resolves with the exit code (signal name if killed) once the server exits.
    exited: () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode ?? child.signalCode);
      child.on('exit', (code, signal) => resolve(code ?? signal));
    }),
    signal: (sig) => child.kill(sig),
    // Stops the server and waits for it to exit.
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.on('exit', () => resolve());
      kill();
    }),
  };
}

// The official `openai` client, installed in server/test by scripts/setup.sh (npm ci); exits with 100
// and says so when it is not there.
export async function loadOpenAI() {
  try {
    return (await import('openai')).default;
  } catch (e) {
    console.error('the openai package is not installed in server/test (scripts/setup.sh runs npm ci there): ' + e.message);
    process.exit(100);
  }
}
