// A real browser for the end-to-end tests: Debian's Chromium driven by playwright-core, and a
// small static HTTP server on 127.0.0.1 that serves the test page, the browser bundles of
// pusher-js and Laravel Echo straight from node_modules (no build step), and the channel
// authorization endpoint a web app would have, signed with the `pusher` Node SDK.
//
// Pages record what happens in them into `window.seen` (see PAGE_HELPERS); the Node side waits
// for an entry with `seen()`, bounded, and a timeout names everything the page recorded and
// logged so far.

import http from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.resolve(here, '..', 'node_modules');

/** The Chromium under test: Debian's package (test.sh installs it when it is missing). */
export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/**
 * Chromium's flags. The machines running the tests have no outside network: without the
 * background-networking flags Chromium's own connections (updates, sync, QUIC probes) are
 * refused and clutter or slow the run. No sandbox: CI runs as root.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Bound on waiting for something to happen in a page (Chromium shares two cores). */
export const PAGE_WAIT_MS = 10_000;

/** The browser bundles a page may load, by the name it loads them under. */
const BUNDLES = {
  'pusher.js': path.join(MODULES, 'pusher-js', 'dist', 'web', 'pusher.js'),
  'pusher-with-encryption.js': path.join(MODULES, 'pusher-js', 'dist', 'web', 'pusher-with-encryption.js'),
  // The IIFE build assigns the module object to a global `Echo`; the class is `Echo.default`.
  'echo.js': path.join(MODULES, 'laravel-echo', 'dist', 'echo.iife.js'),
};

/** In-page helpers: `note(kind, fields)` records an entry in `window.seen`. */
const PAGE_HELPERS = `
window.seen = [];
window.note = (kind, fields = {}) => { window.seen.push({ kind, ...fields }); };
window.addEventListener('error', (e) => note('page_error', { message: String(e.message) }));
`;

/**
 * Launches Chromium with a fresh user data directory (a persistent context, so the directory is
 * ours and removed on close). Throws when Chromium is missing: the browser tests never skip.
 */
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: install Debian's chromium package ` +
        '(apt-get install chromium; test.sh does) or set CHROMIUM_BIN',
    );
  }
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'ferrocast-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
  } catch (err) {
    rmSync(userDataDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(PAGE_WAIT_MS);
  return {
    context,
    /**
     * Closes Chromium, bounded: a browser that does not exit within CLOSE_MS is killed (its
     * processes are the ones naming our user data directory), so it cannot hold up the run.
     */
    async close() {
      let timer;
      const closed = await Promise.race([
        context.close().then(() => true),
        new Promise((resolve) => (timer = setTimeout(() => resolve(false), CLOSE_MS))),
      ]);
      clearTimeout(timer);
      if (!closed) killProcessesNaming(`--user-data-dir=${userDataDir}`);
      rmSync(userDataDir, { recursive: true, force: true });
      if (!closed) throw new Error(`Chromium did not close within ${CLOSE_MS} ms and was killed`);
    },
  };
}

/** How long Chromium may take to close. */
const CLOSE_MS = 15_000;

/**
 * SIGKILLs every process whose command line has the argument `arg` (Linux /proc). Chromium's
 * child processes rewrite their command line into one string, hence the split on spaces too.
 */
function killProcessesNaming(arg) {
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    let cmdline;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/);
    } catch {
      continue; // gone already
    }
    if (cmdline.includes(arg)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function page(bundles) {
  const scripts = bundles.map((name) => `<script src="/js/${name}"></script>`).join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>ferrocast browser test</title>
<script>${PAGE_HELPERS}</script>
${scripts}
</head><body></body></html>
`;
}

/**
 * Starts the page server on 127.0.0.1 (an ephemeral port). `signer` is a `pusher` SDK instance
 * (with an encryption master key when pages use encrypted channels).
 *
 * - `GET /page.html?js=pusher.js,echo.js`: an empty page loading those bundles after the helpers;
 * - `GET /js/{bundle}`: one of BUNDLES;
 * - `POST /auth`: pusher-js's channel authorization request (`socket_id`, `channel_name`, and
 *   the page's `params`: `user_id` and `user_name` make presence channel data), answered with
 *   `signer.authorizeChannel`;
 * - `POST /user-auth`: pusher-js's sign-in request (`socket_id`, `user_id`, `user_name`),
 *   answered with `signer.authenticateUser`.
 *
 * Every auth request is kept in `authRequests`.
 */
export async function startPageServer(signer) {
  const authRequests = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    try {
      if (req.method === 'GET' && url.pathname === '/page.html') {
        const wanted = (url.searchParams.get('js') ?? '').split(',').filter(Boolean);
        const unknown = wanted.filter((name) => !(name in BUNDLES));
        if (unknown.length) return send(404, 'text/plain', `unknown bundles ${unknown}`);
        return send(200, 'text/html; charset=utf-8', page(wanted));
      }
      if (req.method === 'GET' && url.pathname.startsWith('/js/')) {
        const file = BUNDLES[url.pathname.slice('/js/'.length)];
        if (!file) return send(404, 'text/plain', 'no such bundle');
        return send(200, 'text/javascript; charset=utf-8', readFileSync(file));
      }
      if (req.method === 'POST' && url.pathname === '/auth') {
        const form = new URLSearchParams(await readBody(req));
        const request = Object.fromEntries(form);
        authRequests.push(request);
        const { socket_id: socketId, channel_name: channel, user_id: userId, user_name: name } = request;
        let presence;
        if (channel?.startsWith('presence-')) {
          if (!userId) return send(403, 'application/json', JSON.stringify({ error: 'no user' }));
          presence = { user_id: userId, user_info: { name } };
        }
        const auth = signer.authorizeChannel(socketId, channel, presence);
        return send(200, 'application/json', JSON.stringify(auth));
      }
      if (req.method === 'POST' && url.pathname === '/user-auth') {
        const request = Object.fromEntries(new URLSearchParams(await readBody(req)));
        authRequests.push(request);
        const { socket_id: socketId, user_id: id, user_name: name } = request;
        if (!id) return send(403, 'application/json', JSON.stringify({ error: 'no user' }));
        return send(200, 'application/json', JSON.stringify(signer.authenticateUser(socketId, { id, user_info: { name } })));
      }
      // Chromium asks for one on every page; an answer keeps its 404 out of the page's console.
      if (url.pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
      send(404, 'text/plain', 'not found');
    } catch (err) {
      send(500, 'text/plain', String(err?.stack ?? err));
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    authRequests,
    /** The page URL loading `bundles` (names of BUNDLES). */
    pageUrl: (...bundles) => `${origin}/page.html?js=${bundles.join(',')}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Opens a page of `context` at `url` and keeps its console output, so a failed wait can show
 * it. Returns the Playwright page with a `logs` array.
 */
export async function openPage(context, url) {
  const p = await context.newPage();
  p.logs = [];
  p.on('console', (msg) => p.logs.push(`${msg.type()}: ${msg.text()}`));
  p.on('pageerror', (err) => p.logs.push(`pageerror: ${err.message}`));
  await p.goto(url, { waitUntil: 'load' });
  return p;
}

/**
 * Waits until the page has recorded an entry whose fields equal every field of `match`
 * (compared as JSON) and returns it; rejects after `timeout` ms naming `what`, every entry the
 * page recorded and its console output.
 */
export async function seen(p, match, { what = JSON.stringify(match), timeout = PAGE_WAIT_MS } = {}) {
  const find = (m) =>
    window.seen.find((e) => Object.entries(m).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v))) ?? null;
  try {
    await p.waitForFunction(find, match, { timeout, polling: 50 });
  } catch (err) {
    const entries = await p.evaluate(() => window.seen).catch(() => '(page gone)');
    throw new Error(
      `timed out after ${timeout} ms waiting in the page for ${what}\n` +
        `recorded: ${JSON.stringify(entries)}\nconsole:\n${p.logs.join('\n')}\n(${err.message.split('\n')[0]})`,
    );
  }
  return p.evaluate(find, match);
}

/** Every entry of kind `kind` the page has recorded so far. */
export function recorded(p, kind) {
  return p.evaluate((k) => window.seen.filter((e) => e.kind === k), kind);
}
