// Video exports: the PNG-frames zip (www/zip.js) checked in Node with an independent CRC-32 and
// zlib's inflate, and the WebM (www/webm.js: WebCodecs VP8/VP9 + our EBML muxer, or the
// MediaRecorder fallback) made in headless Chromium, parsed here element by element and played
// back by Chromium's own demuxer/decoder.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { openBrowser } from './harness.mjs';
import { createZip, encodePng, framesToPngZip } from '../../www/zip.js';

// Test frames: a gradient that moves with the frame index, so frames differ.
function makeFrames(count, width, height) {
  const frames = [];
  for (let f = 0; f < count; f++) {
    const px = new Uint8ClampedArray(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 4;
        px[i] = (x * 255) / (width - 1);
        px[i + 1] = (y * 255) / (height - 1);
        px[i + 2] = (f * 255) / Math.max(1, count - 1);
        px[i + 3] = 255;
      }
    }
    frames.push(px);
  }
  return frames;
}

// Bitwise CRC-32 (no table): independent of zip.js's table-driven one.
function crc32Bitwise(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// PNG → { width, height, rgb } with every chunk CRC checked and all five row filters undone.
function decodePng(buf) {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...buf.subarray(0, 8)], sig, 'PNG signature');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 8, width, height;
  const idat = [];
  const types = [];
  while (o < buf.length) {
    const len = dv.getUint32(o);
    const type = String.fromCharCode(...buf.subarray(o + 4, o + 8));
    const data = buf.subarray(o + 8, o + 8 + len);
    assert.equal(dv.getUint32(o + 8 + len), crc32Bitwise(buf.subarray(o + 4, o + 8 + len)), `CRC of ${type}`);
    types.push(type);
    if (type === 'IHDR') {
      width = dv.getUint32(o + 8);
      height = dv.getUint32(o + 12);
      assert.deepEqual([...data.subarray(8)], [8, 2, 0, 0, 0], 'IHDR: 8-bit RGB, not interlaced');
    }
    if (type === 'IDAT') idat.push(data);
    o += 12 + len;
  }
  assert.equal(types[0], 'IHDR');
  assert.equal(types.at(-1), 'IEND');
  const raw = inflateSync(Buffer.concat(idat)); // also checks zlib's Adler-32
  const stride = width * 3;
  assert.equal(raw.length, (stride + 1) * height);
  const rgb = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const ft = raw[y * (stride + 1)];
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i];
      const a = i >= 3 ? rgb[y * stride + i - 3] : 0;
      const b = y > 0 ? rgb[(y - 1) * stride + i] : 0;
      const c = i >= 3 && y > 0 ? rgb[(y - 1) * stride + i - 3] : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const paeth = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      rgb[y * stride + i] = (x + [0, a, b, (a + b) >> 1, paeth][ft]) & 0xff;
    }
  }
  return { width, height, rgb };
}

// Zip → [{ name, data }] from the central directory, with local headers and CRCs checked.
function readZip(buf) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const e = buf.length - 22;
  assert.equal(dv.getUint32(e, true), 0x06054b50, 'end of central directory');
  const count = dv.getUint16(e + 10, true);
  let o = dv.getUint32(e + 16, true);
  assert.equal(o + dv.getUint32(e + 12, true), e, 'central directory ends at the EOCD');
  const files = [];
  for (let i = 0; i < count; i++) {
    assert.equal(dv.getUint32(o, true), 0x02014b50, 'central header');
    const method = dv.getUint16(o + 10, true);
    const crc = dv.getUint32(o + 16, true);
    const size = dv.getUint32(o + 20, true);
    assert.equal(dv.getUint32(o + 24, true), size, 'stored: sizes equal');
    const nameLen = dv.getUint16(o + 28, true);
    const extra = dv.getUint16(o + 30, true) + dv.getUint16(o + 32, true);
    const local = dv.getUint32(o + 42, true);
    const name = new TextDecoder().decode(buf.subarray(o + 46, o + 46 + nameLen));
    assert.equal(method, 0, 'store method');
    assert.equal(dv.getUint32(local, true), 0x04034b50, `local header of ${name}`);
    assert.equal(dv.getUint32(local + 14, true), crc, 'local CRC = central CRC');
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    const data = buf.subarray(start, start + size);
    assert.equal(crc32Bitwise(data), crc, `CRC of ${name}`);
    files.push({ name, data });
    o += 46 + nameLen + extra;
  }
  return files;
}

// EBML → a tree of { id, size, start, data, children? } for the master elements we need.
const MASTERS = new Set([0x1a45dfa3, 0x18538067, 0x1654ae6b, 0xae, 0xe0, 0x1f43b675, 0x1549a966]);
function readVint(buf, o, keepMarker) {
  const first = buf[o];
  let len = 1;
  while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
  assert.ok(len <= 8, `bad vint at ${o}`);
  let v = keepMarker ? first : first & (0xff >> len);
  for (let i = 1; i < len; i++) v = v * 256 + buf[o + i];
  return [v, len];
}
function parseEbml(buf, start = 0, end = buf.length) {
  const out = [];
  let o = start;
  while (o < end) {
    const [id, il] = readVint(buf, o, true);
    const [size, sl] = readVint(buf, o + il, false);
    const dataStart = o + il + sl;
    assert.ok(dataStart + size <= end, `element 0x${id.toString(16)} overruns its parent`);
    const node = { id, size, data: buf.subarray(dataStart, dataStart + size) };
    if (MASTERS.has(id)) node.children = parseEbml(buf, dataStart, dataStart + size);
    out.push(node);
    o = dataStart + size;
  }
  return out;
}
const find = (nodes, id) => nodes.find((n) => n.id === id);
const uintOf = (n) => n.data.reduce((v, b) => v * 256 + b, 0);

let b;
before(async () => {
  b = await openBrowser();
  await b.page.goto(b.url);
});
after(async () => {
  await b?.close();
});

test('PNG zip (Node): F valid PNGs whose pixels are the frames, stored entries with correct CRCs', async () => {
  const [F, W, H] = [5, 40, 24];
  const frames = makeFrames(F, W, H);
  const blob = await framesToPngZip({ rgba: frames, width: W, height: H });
  assert.equal(blob.type, 'application/zip');
  const files = readZip(new Uint8Array(await blob.arrayBuffer()));
  assert.deepEqual(files.map((f) => f.name), ['frame_0001.png', 'frame_0002.png', 'frame_0003.png', 'frame_0004.png', 'frame_0005.png']);
  for (let f = 0; f < F; f++) {
    const png = decodePng(files[f].data);
    assert.equal(png.width, W);
    assert.equal(png.height, H);
    for (let i = 0; i < W * H; i++) {
      for (let c = 0; c < 3; c++) assert.equal(png.rgb[i * 3 + c], frames[f][i * 4 + c], `frame ${f} pixel ${i} channel ${c}`);
    }
  }
  // Stored zlib (no CompressionStream) decodes too, over several 64 KiB blocks.
  const big = makeFrames(1, 200, 120)[0];
  const png = decodePng(await encodePng(big, 200, 120, { compress: false }));
  assert.equal(png.rgb[(119 * 200 + 199) * 3], 255);
  // An empty name list is a valid (empty) zip; non-ASCII names are UTF-8.
  assert.deepEqual(readZip(createZip([])), []);
  assert.equal(readZip(createZip([{ name: 'é.txt', data: new Uint8Array([1]) }]))[0].name, 'é.txt');
});

test('PNG zip (browser): the page-side encoder gives the same valid PNGs', async () => {
  // The page runs under a CSP without eval: the frames are built in the page.
  const got = await b.page.evaluate(async () => {
    const { framesToPngZip } = await import('./zip.js');
    const rgba = [0, 1, 2].map((f) => Uint8ClampedArray.from({ length: 16 * 8 * 4 }, (_, i) => (i % 4 === 3 ? 255 : (i * 7 + f * 31) & 255)));
    const blob = await framesToPngZip({ rgba, width: 16, height: 8 });
    return [...new Uint8Array(await blob.arrayBuffer())];
  });
  const files = readZip(Uint8Array.from(got));
  assert.equal(files.length, 3);
  files.forEach((f, n) => {
    const png = decodePng(f.data);
    assert.equal(png.width, 16);
    assert.equal(png.height, 8);
    for (let i = 0; i < 16 * 8 * 4; i++) {
      if (i % 4 !== 3) assert.equal(png.rgb[(i >> 2) * 3 + (i % 4)], (i * 7 + n * 31) & 255);
    }
  });
});

// Encodes in the page; returns the file's bytes and what Chromium's <video> makes of it.
async function webmInPage(opts) {
  return b.page.evaluate(async ({ F, W, H, fps, codec, mediaRecorder }) => {
    const { encodeWebM, webCodecsSupport } = await import('./webm.js');
    const frames = [];
    for (let f = 0; f < F; f++) {
      const px = new Uint8ClampedArray(W * H * 4);
      for (let i = 0; i < W * H; i++) {
        // Left half red, right half blue; a green bar moves down with the frame.
        const x = i % W, y = Math.floor(i / W);
        const bar = Math.floor((y * F) / H) === f;
        px.set(bar ? [0, 200, 0, 255] : x < W / 2 ? [220, 30, 30, 255] : [30, 30, 220, 255], i * 4);
      }
      frames.push(px);
    }
    const supported = await webCodecsSupport(W, H, codec);
    const t0 = performance.now();
    const blob = await encodeWebM({ rgba: frames, width: W, height: H }, { fps, codec, mediaRecorder });
    const encodeMs = performance.now() - t0;
    // Play it back: Chromium's demuxer must accept the file.
    const video = document.createElement('video');
    video.muted = true;
    video.src = URL.createObjectURL(blob);
    const playback = await new Promise((resolve) => {
      video.onloadeddata = () => resolve({ ok: true });
      video.onerror = () => resolve({ ok: false, error: video.error?.message ?? String(video.error?.code) });
      setTimeout(() => resolve({ ok: false, error: 'timeout' }), 10000);
    });
    let firstFrame = null;
    if (playback.ok) {
      // Make sure a decoded frame is presented before reading it back.
      await new Promise((resolve) => {
        video.requestVideoFrameCallback?.(() => resolve());
        video.play().catch(() => resolve());
        setTimeout(resolve, 3000);
      });
      video.pause();
      video.currentTime = 0;
      await new Promise((resolve) => {
        video.onseeked = resolve;
        setTimeout(resolve, 3000);
      });
      const c = document.createElement('canvas');
      c.width = W;
      c.height = H;
      const ctx = c.getContext('2d');
      ctx.drawImage(video, 0, 0);
      const d = ctx.getImageData(0, 0, W, H).data;
      // Mean colour of the left and right halves of frame 0 away from the bar.
      const mean = (x0, x1) => {
        const s = [0, 0, 0];
        let n = 0;
        for (let y = Math.ceil(H / F) + 2; y < H; y++) for (let x = x0; x < x1; x++) {
          for (let c2 = 0; c2 < 3; c2++) s[c2] += d[(y * W + x) * 4 + c2];
          n++;
        }
        return s.map((v) => v / n);
      };
      firstFrame = { left: mean(2, W / 2 - 2), right: mean(W / 2 + 2, W - 2) };
    }
    return {
      supported, encodeMs, type: blob.type, bytes: [...new Uint8Array(await blob.arrayBuffer())],
      playback, width: video.videoWidth, height: video.videoHeight, duration: video.duration, firstFrame,
    };
  }, opts);
}

function checkPlayback(r, W, H) {
  assert.ok(r.playback.ok, `Chromium could not play the WebM: ${r.playback.error}`);
  assert.equal(r.width, W);
  assert.equal(r.height, H);
  // Lossy 4:2:0 video and a YUV↔RGB round trip: within 45 of each channel (red vs blue differ by 190).
  const near = (got, want) => got.every((v, i) => Math.abs(v - want[i]) < 45);
  assert.ok(near(r.firstFrame.left, [220, 30, 30]), `left half ${r.firstFrame.left}`);
  assert.ok(near(r.firstFrame.right, [30, 30, 220]), `right half ${r.firstFrame.right}`);
}

for (const codec of ['vp8', 'vp9']) {
  test(`WebM (WebCodecs ${codec}): EBML header, track size, F SimpleBlocks, key frame first; Chromium plays it`, async (t) => {
    const [F, W, H, fps] = [6, 64, 48, 8];
    const r = await webmInPage({ F, W, H, fps, codec, mediaRecorder: false });
    if (r.supported !== codec) {
      t.skip(`this Chromium's VideoEncoder does not offer ${codec}`);
      return;
    }
    console.log(`${codec}: ${F} frames ${W}×${H} → ${r.bytes.length} B in ${r.encodeMs.toFixed(0)} ms`);
    const buf = Uint8Array.from(r.bytes);
    assert.equal(r.type, 'video/webm');
    const [ebml, segment, ...rest] = parseEbml(buf);
    assert.equal(rest.length, 0);
    assert.equal(ebml.id, 0x1a45dfa3);
    assert.equal(new TextDecoder().decode(find(ebml.children, 0x4282).data), 'webm');
    assert.equal(segment.id, 0x18538067);
    const entry = find(find(segment.children, 0x1654ae6b).children, 0xae);
    assert.equal(new TextDecoder().decode(find(entry.children, 0x86).data), codec === 'vp8' ? 'V_VP8' : 'V_VP9');
    const video = find(entry.children, 0xe0);
    assert.equal(uintOf(find(video.children, 0xb0)), W);
    assert.equal(uintOf(find(video.children, 0xba)), H);
    const info = find(segment.children, 0x1549a966);
    assert.equal(new DataView(find(info.children, 0x4489).data.buffer.slice(find(info.children, 0x4489).data.byteOffset)).getFloat64(0), (F * 1000) / fps);
    const blocks = [];
    for (const cluster of segment.children.filter((n) => n.id === 0x1f43b675)) {
      const tc = uintOf(find(cluster.children, 0xe7));
      for (const sb of cluster.children.filter((n) => n.id === 0xa3)) {
        const d = sb.data;
        assert.equal(d[0], 0x81, 'track 1');
        blocks.push({ t: tc + new DataView(d.buffer, d.byteOffset + 1, 2).getInt16(0), key: !!(d[3] & 0x80), frame: d.subarray(4) });
      }
    }
    assert.equal(blocks.length, F);
    assert.deepEqual(blocks.map((x) => x.t), [...Array(F).keys()].map((i) => Math.round((i * 1000) / fps)));
    assert.ok(blocks[0].key, 'first block is a key frame');
    if (codec === 'vp8') {
      // RFC 6386 §9.1: key frame tag bit 0 clear, start code 9d 01 2a, 14-bit width/height.
      const k = blocks[0].frame;
      assert.equal(k[0] & 1, 0);
      assert.deepEqual([...k.subarray(3, 6)], [0x9d, 0x01, 0x2a]);
      assert.equal((k[6] | (k[7] << 8)) & 0x3fff, W);
      assert.equal((k[8] | (k[9] << 8)) & 0x3fff, H);
    }
    checkPlayback(r, W, H);
    assert.ok(Math.abs(r.duration - F / fps) < 0.2, `duration ${r.duration}`);
  });
}

test('WebM (MediaRecorder fallback): a playable WebM of the right size', async () => {
  const [F, W, H, fps] = [4, 64, 48, 8];
  const r = await webmInPage({ F, W, H, fps, codec: 'auto', mediaRecorder: true });
  const buf = Uint8Array.from(r.bytes);
  assert.deepEqual([...buf.subarray(0, 4)], [0x1a, 0x45, 0xdf, 0xa3], 'EBML magic');
  assert.ok(new TextDecoder().decode(buf.subarray(0, 64)).includes('webm'), 'DocType webm');
  assert.ok(r.playback.ok, `Chromium could not play the recording: ${r.playback.error}`);
  assert.equal(r.width, W);
  assert.equal(r.height, H);
});

test('the page: live preview while generating, then Export WebM and Export PNG frames give F-frame files', async () => {
  const p = b.page;
  await p.goto(`${b.url}?preset=tiny&prompt=a%20corgi&seed=5&fps=8&precision=f32&frames=2&width=64&height=64&steps=2`);
  await p.waitForFunction(() => window.animatediffApp?.ready);
  await p.evaluate(() => {
    window.previewShown = [];
    const c = document.getElementById('live-preview');
    new MutationObserver(() => window.previewShown.push({ hidden: c.hidden, w: c.width, h: c.height, label: c.getAttribute('aria-label') }))
      .observe(c, { attributes: true, attributeFilter: ['hidden', 'aria-label'] });
  });
  assert.equal(await p.isChecked('#preview-on'), true, 'live preview is on by default');
  await p.click('#generate');
  await p.waitForFunction(() => /^Done/.test(document.getElementById('gen-status').textContent) || !document.getElementById('app-error').hidden, null, { timeout: 300_000 });
  assert.equal(await p.$eval('#app-error', (e) => (e.hidden ? '' : e.textContent)), '');
  const shown = await p.evaluate(() => window.previewShown);
  assert.ok(shown.some((s) => !s.hidden && s.w === 64 && s.h === 64 && /after step 2 of 2/.test(s.label)), `preview states: ${JSON.stringify(shown)}`);
  assert.equal(await p.$eval('#live-preview', (c) => c.hidden), true, 'the preview hides when the video is ready');

  // The links download (the page's CSP keeps fetch() away from blob: URLs).
  const fetchLink = async (sel) => {
    const [download] = await Promise.all([p.waitForEvent('download'), p.click(sel)]);
    return readFile(await download.path());
  };
  await p.click('#export-webm');
  await p.waitForSelector('#webm-link:not([hidden])', { timeout: 60_000 });
  const webm = Uint8Array.from(await fetchLink('#webm-link'));
  const [ebml, segment] = parseEbml(webm);
  assert.equal(new TextDecoder().decode(find(ebml.children, 0x4282).data), 'webm');
  const video = find(find(find(segment.children, 0x1654ae6b).children, 0xae).children, 0xe0);
  assert.deepEqual([uintOf(find(video.children, 0xb0)), uintOf(find(video.children, 0xba))], [64, 64]);
  const blocks = segment.children.filter((n) => n.id === 0x1f43b675).flatMap((c) => c.children.filter((n) => n.id === 0xa3));
  assert.equal(blocks.length, 2, 'one SimpleBlock per frame');

  await p.click('#export-png');
  await p.waitForSelector('#png-link:not([hidden])', { timeout: 60_000 });
  const files = readZip(Uint8Array.from(await fetchLink('#png-link')));
  assert.deepEqual(files.map((f) => f.name), ['frame_0001.png', 'frame_0002.png']);
  for (const f of files) {
    const png = decodePng(f.data);
    assert.deepEqual([png.width, png.height], [64, 64]);
    const colours = new Set();
    for (let i = 0; i < 64 * 64; i++) colours.add((png.rgb[i * 3] << 16) | (png.rgb[i * 3 + 1] << 8) | png.rgb[i * 3 + 2]);
    assert.ok(colours.size > 16, `${f.name} has ${colours.size} colours (blank?)`);
  }
  console.log(`page exports: WebM ${webm.length} B, zip of ${files.length} PNGs`);
});
