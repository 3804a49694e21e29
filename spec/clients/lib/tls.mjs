// TLS for the end-to-end tests: a CA and a server certificate for 127.0.0.1 made with the
// `openssl` tool (test.sh installs it), and a child node process that trusts the CA.
//
// pusher-js in node opens its `wss://` socket with no way to pass a CA, so the clients run in
// a child process started with `NODE_EXTRA_CA_CERTS` (read by node at start-up only), which
// both pusher-js and the `pusher` SDK's https requests honour. No verification is turned off.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function openssl(dir, args) {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`openssl ${args.join(' ')} failed (test.sh installs openssl): ${err.stderr ?? err}`);
  }
}

/**
 * Makes `ca.pem` and `server.pem` / `server.key` (for IP 127.0.0.1, signed by the CA) in a new
 * temporary directory; `remove()` deletes it.
 */
export function makeCertificates() {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferrocast-e2e-tls-'));
  writeFileSync(path.join(dir, 'server.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n');
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ferrocast e2e CA']);
  openssl(dir, ['req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  openssl(dir, [
    'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext',
  ]);
  return {
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** How long the child's whole scenario may take. */
const CHILD_TIMEOUT_MS = 20_000;

/**
 * Runs `lib/tls-clients.mjs` trusting `ca`, with `scenario` (JSON) as its argument, and
 * resolves with the JSON report it prints; rejects with its stderr if it fails or hangs.
 */
export function runTrustingClients(ca, scenario) {
  const child = spawn(process.execPath, [path.join(here, 'tls-clients.mjs'), JSON.stringify(scenario)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_EXTRA_CA_CERTS: ca, NODE_NO_WARNINGS: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the TLS clients hung for ${CHILD_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, CHILD_TIMEOUT_MS);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`the TLS clients failed (code ${code}, signal ${signal}):\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout));
      } catch {
        reject(new Error(`the TLS clients printed no JSON report:\n${stdout}\n${stderr}`));
      }
    });
  });
}
