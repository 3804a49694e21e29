// Starts and stops the real `ferrocast` binary for one test.
//
// Each test gets its own server on an ephemeral port (`--port 0`), with a TOML config written
// to a temporary directory when the test needs special settings. The server is killed when the
// test ends, whatever its outcome.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The repository root (spec/clients/lib → ../../..). */
export const REPO_ROOT = path.resolve(here, '..', '..', '..');

/** The binary under test: `$FERROCAST_BIN`, else the release build of the workspace. */
export const BIN = process.env.FERROCAST_BIN
  ? path.resolve(process.env.FERROCAST_BIN)
  : path.join(REPO_ROOT, 'target', 'release', 'ferrocast');

/** The app the server serves when it is started without a config. */
export const DEFAULT_APP = Object.freeze({ id: 'app-id', key: 'app-key', secret: 'app-secret' });

/** How long the binary may take to print its listening line. */
const STARTUP_TIMEOUT_MS = 15_000;

const LISTENING = /ferrocast listening on (\S+):(\d+)/;

/** Every server still running, so a crashed test run cannot leave one behind. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function tomlValue(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`config numbers must be integers: ${value}`);
    return String(value);
  }
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    // An inline table, e.g. one of an app's `webhooks`.
    const pairs = Object.entries(value).filter(([, v]) => v !== undefined && v !== null);
    return `{ ${pairs.map(([k, v]) => `${k} = ${tomlValue(v)}`).join(', ')} }`;
  }
  throw new Error(`unsupported config value ${JSON.stringify(value)}`);
}

/**
 * Renders `{ activity_timeout_secs, ..., server: { ... }, apps: [{ id, key, secret, ... }] }` as
 * TOML: scalars at the top, plain objects as `[table]`s, arrays of objects as `[[table]]`s.
 */
export function toToml(config) {
  const lines = [];
  const tables = [];
  const isTable = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined || value === null) continue;
    if (isTable(value) || (Array.isArray(value) && value.every(isTable))) tables.push([key, value]);
    else lines.push(`${key} = ${tomlValue(value)}`);
  }
  const body = (table) =>
    Object.entries(table)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => `${k} = ${tomlValue(v)}`);
  for (const [key, value] of tables) {
    for (const table of Array.isArray(value) ? value : [value]) {
      lines.push('', Array.isArray(value) ? `[[${key}]]` : `[${key}]`, ...body(table));
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * One app's settings: the default credentials unless overridden, plus any per-app keys
 * (`max_connections`, `client_event_rate_per_sec`, `enabled`, ...).
 */
export function app(overrides = {}) {
  return { ...DEFAULT_APP, ...overrides };
}

/**
 * Starts `ferrocast --host 127.0.0.1 --port 0 [--config FILE]` and resolves once it prints its
 * listening line. `config` is an object rendered by `toToml`; omit it to run with the defaults.
 */
export async function startServer(config) {
  if (!existsSync(BIN)) {
    throw new Error(
      `the ferrocast binary is missing at ${BIN}: run \`cargo build --release\` or set FERROCAST_BIN`,
    );
  }
  const args = ['--host', '127.0.0.1', '--port', '0'];
  let dir = null;
  if (config) {
    dir = mkdtempSync(path.join(tmpdir(), 'ferrocast-e2e-'));
    const file = path.join(dir, 'ferrocast.toml');
    writeFileSync(file, toToml(config));
    args.push('--config', file);
  }
  const child = spawn(BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The binary reads FERROCAST_* variables as settings; only the test's own config counts.
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERROCAST_'))),
      RUST_BACKTRACE: '1',
    },
  });
  running.add(child);
  let output = '';
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`ferrocast printed no listening line within ${STARTUP_TIMEOUT_MS} ms; output:\n${output}`));
    }, STARTUP_TIMEOUT_MS);
    const onData = (chunk) => {
      output += chunk.toString();
      const match = LISTENING.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ host: match[1], port: Number(match[2]) });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`ferrocast exited (code ${code}, signal ${signal}) before listening; output:\n${output}`));
    });
  }).catch(async (err) => {
    child.kill('SIGKILL');
    await exited;
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw err;
  });

  let stopped = null;
  return {
    ...address,
    /** The server's combined stdout and stderr so far, for failure messages. */
    output: () => output,
    /** Whether the process is still running. */
    alive: () => running.has(child),
    /** The process id. */
    pid: child.pid,
    /** Kills the process with SIGKILL (no goodbye to anyone) and resolves once it has exited. */
    async kill() {
      if (running.has(child)) child.kill('SIGKILL');
      await exited;
    },
    /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its temp config. */
    stop() {
      stopped ??= (async () => {
        if (running.has(child)) {
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(killer);
        }
        if (dir) rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
