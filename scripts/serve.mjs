// A small static file server for www/ (used by scripts/serve and the browser tests).
// Binds to 127.0.0.1 only: WebGPU needs a secure context, which localhost is.
// Also serves the bundled tiny test model under /fixtures/tiny/ (the page's offline preset;
// not copied into www/) and answers HTTP Range requests, as model hosts do.
import { createServer } from 'node:http';
import { createReadStream, promises as fs } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.ts': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
  '.ckpt': 'application/octet-stream',
  '.gif': 'image/gif',
};

// URL prefix → folder, served next to the root.
export const FIXTURES = fileURLToPath(new URL('../tests/fixtures/tiny', import.meta.url));
const DEFAULT_MOUNTS = { '/fixtures/tiny/': FIXTURES };

// "bytes=a-b" | "bytes=a-" | "bytes=-n" → [start, end] (inclusive), null = unsatisfiable,
// undefined = no/ignored Range header (multi-range requests get the whole file).
function parseRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start, end;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return null;
  return [start, end];
}

// The page works under this policy (no eval; wasm compilation allowed).
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
  "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' https://huggingface.co https://*.hf.co; worker-src 'self' blob:";

// `onRequest(req, url)`, when given, sees every request first (tests count requests with it,
// or hold one back by returning a promise).
export function startServer({ root, port = 0, host = '127.0.0.1', mounts = DEFAULT_MOUNTS, onRequest } = {}) {
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://localhost');
      if (onRequest) await onRequest(req, url);
      const mount = Object.keys(mounts).find((p) => url.pathname.startsWith(p));
      const base = resolve(mount ? mounts[mount] : root);
      const rel = mount ? url.pathname.slice(mount.length) : url.pathname;
      let path = normalize(join(base, decodeURIComponent(rel)));
      if (path !== base && !path.startsWith(base + sep)) {
        res.writeHead(403).end('forbidden');
        return;
      }
      let st = await fs.stat(path).catch(() => null);
      if (st && st.isDirectory()) {
        path = join(path, 'index.html');
        st = await fs.stat(path).catch(() => null);
      }
      if (!st || !st.isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const headers = {
        'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
        'cache-control': 'no-cache',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
        'accept-ranges': 'bytes',
        // A validator, as model hosts send (the model cache ties cached chunks to it).
        'last-modified': st.mtime.toUTCString(),
      };
      const range = parseRange(req.headers.range, st.size);
      if (range === null) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${st.size}` }).end();
        return;
      }
      const [start, end] = range ?? [0, st.size - 1];
      if (range) headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
      res.writeHead(range ? 206 : 200, { ...headers, 'content-length': Math.max(0, end - start + 1) });
      if (req.method === 'HEAD' || st.size === 0) {
        res.end();
        return;
      }
      createReadStream(path, { start, end }).pipe(res);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => ok({ server, url: `http://${host}:${server.address().port}/` }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = process.argv[2] ?? fileURLToPath(new URL('../www', import.meta.url));
  const port = Number(process.env.PORT ?? 8080);
  const { url } = await startServer({ root, port });
  console.log(`serving ${root} at ${url}  (Ctrl-C to stop)`);
}
