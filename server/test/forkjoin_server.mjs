// Starts `forkjoin serve` on an ephemeral 127.0.0.1 port for a test or a benchmark, and stops it when
// asked, when the process exits or on Ctrl-C, whatever the outcome.
//   const server = await startServer(forkjoinPath, ['--api-key', KEY, ...]);
//   server.port, server.log() (its stderr so far), await server.stop()
// stop() sends SIGTERM (a graceful shutdown, which exits 0) and resolves with what was wrong with the
// exit: null when it exited 0 and its log holds no sanitizer report (an instrumented build reports a
// leak or a race at exit, after every request was answered), else a line that says what.
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
    // Stops the server, waits for it to exit, and says what was wrong with the exit (null: nothing).
    stop: () => new Promise((resolve) => {
      const verdict = () => {
        const code = child.exitCode ?? child.signalCode;
        const report = log.match(/^.*(?:ERROR|WARNING): (?:Address|Leak|Thread|UndefinedBehavior)Sanitizer.*$/m)
          ?? log.match(/^.*runtime error: .*$/m);
        if (report) return `a sanitizer report in the server's log: ${report[0]}`;
        return code === 0 ? null : `the server exited with ${code}, not 0`;
      };
      if (child.exitCode !== null || child.signalCode !== null) return resolve(verdict());
      child.on('exit', () => resolve(verdict()));
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
