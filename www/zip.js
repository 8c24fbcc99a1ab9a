// PNG frames and a zip of them, without dependencies: CRC-32, a PNG encoder (IDAT deflated by
// the platform's CompressionStream when there is one, stored zlib blocks otherwise) and a
// "store" (uncompressed) zip writer — PNGs are already compressed, so deflating them again
// would gain nothing. Runs in pages, workers and Node ≥ 18.
//
//   import { framesToPngZip } from './zip.js';
//   const zip = await framesToPngZip(result);   // Blob (application/zip): frame_0001.png …

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as zip and PNG use) of `bytes`, continuing from `crc`. */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function adler32(bytes) {
  let a = 1, b = 0;
  // 5552: the largest run before the sums could overflow 2^32 (zlib's NMAX).
  for (let i = 0; i < bytes.length; ) {
    const end = Math.min(i + 5552, bytes.length);
    for (; i < end; i++) {
      a += bytes[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** zlib stream (RFC 1950) of stored deflate blocks: valid everywhere, no compression. */
export function zlibStored(data) {
  const blocks = Math.max(1, Math.ceil(data.length / 65535));
  const out = new Uint8Array(2 + data.length + blocks * 5 + 4);
  out[0] = 0x78;
  out[1] = 0x01;
  let o = 2;
  for (let b = 0; b < blocks; b++) {
    const chunk = data.subarray(b * 65535, Math.min(data.length, (b + 1) * 65535));
    out[o] = b === blocks - 1 ? 1 : 0; // BFINAL, BTYPE = 00 (stored)
    out[o + 1] = chunk.length & 0xff;
    out[o + 2] = chunk.length >>> 8;
    out[o + 3] = ~chunk.length & 0xff;
    out[o + 4] = (~chunk.length >>> 8) & 0xff;
    out.set(chunk, o + 5);
    o += 5 + chunk.length;
  }
  new DataView(out.buffer).setUint32(o, adler32(data));
  return out;
}

async function zlibDeflate(data) {
  if (typeof CompressionStream === 'undefined') return zlibStored(data);
  // 'deflate' is the zlib format (RFC 1950), which is what PNG's IDAT holds.
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * An 8-bit RGB PNG of one RGBA frame (alpha dropped: the frames are opaque). Rows use the
 * "Up" filter, which helps deflate on smooth video frames.
 * @param {Uint8Array|Uint8ClampedArray} rgba width × height × 4
 * @returns {Promise<Uint8Array>}
 */
export async function encodePng(rgba, width, height, { compress = true } = {}) {
  if (!(width > 0 && height > 0) || rgba.length < width * height * 4) {
    throw new RangeError(`encodePng: ${rgba.length} bytes is not a ${width}×${height} RGBA image`);
  }
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height);
  let prev = new Uint8Array(stride);
  const row = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 4;
      row[x * 3] = rgba[s];
      row[x * 3 + 1] = rgba[s + 1];
      row[x * 3 + 2] = rgba[s + 2];
    }
    const o = y * (stride + 1);
    raw[o] = 2; // Up
    for (let i = 0; i < stride; i++) raw[o + 1 + i] = (row[i] - prev[i]) & 0xff;
    prev = row.slice();
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
  const idat = compress ? await zlibDeflate(raw) : zlibStored(raw);
  return concat([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]);
}

// MS-DOS date/time as zip stores them (local time, 2-second resolution, from 1980).
function dosDateTime(date) {
  const y = Math.max(1980, date.getFullYear());
  return {
    time: (date.getHours() << 11) | (date.getMinutes() << 5) | (date.getSeconds() >> 1),
    date: ((y - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
  };
}

/**
 * A zip archive (method 0 = stored, UTF-8 names) of `entries`.
 * @param {{ name: string, data: Uint8Array }[]} entries
 * @returns {Uint8Array}
 */
export function createZip(entries, { date = new Date() } = {}) {
  if (entries.length > 0xffff) throw new RangeError(`createZip: ${entries.length} entries need zip64, which this writer does not do`);
  const enc = new TextEncoder();
  const { time, date: day } = dosDateTime(date);
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const n = enc.encode(name);
    const crc = crc32(data);
    const local = new Uint8Array(30 + n.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true); // version needed: 2.0
    lv.setUint16(6, 0x0800, true); // flags: UTF-8 name
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(10, time, true);
    lv.setUint16(12, day, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, n.length, true);
    lv.setUint16(28, 0, true);
    local.set(n, 30);
    const central = new Uint8Array(46 + n.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true); // made by: 2.0, MS-DOS attributes
    cv.setUint16(6, 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, time, true);
    cv.setUint16(14, day, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, n.length, true);
    // extra, comment, disk, internal and external attributes: 0
    cv.setUint32(42, offset, true);
    central.set(n, 46);
    locals.push(local, data);
    centrals.push(central);
    offset += local.length + data.length;
    if (offset > 0xffffffff) throw new RangeError('createZip: the archive exceeds 4 GiB (zip64 is not supported)');
  }
  const cdSize = centrals.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return concat([...locals, ...centrals, end]);
}

/**
 * A zip of one PNG per frame (`frame_0001.png` …) of a generate() result (its `rgba` frames).
 * @param {{ rgba: ArrayLike<number>[], width: number, height: number }} result
 * @returns {Promise<Blob>} application/zip
 */
export async function framesToPngZip(result, { prefix = 'frame' } = {}) {
  const { rgba, width, height } = result;
  const digits = Math.max(4, String(rgba.length).length);
  const entries = [];
  for (let i = 0; i < rgba.length; i++) {
    entries.push({ name: `${prefix}_${String(i + 1).padStart(digits, '0')}.png`, data: await encodePng(rgba[i], width, height) });
  }
  return new Blob([createZip(entries)], { type: 'application/zip' });
}
