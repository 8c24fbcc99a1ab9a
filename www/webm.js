// WebM export without dependencies: frames are encoded with WebCodecs' VideoEncoder (VP9, or
// VP8 where VP9 is not offered) and muxed by the small EBML/Matroska writer below; browsers
// without WebCodecs fall back to MediaRecorder on a canvas stream (real time: F/fps seconds).
//
//   import { encodeWebM } from './webm.js';
//   const blob = await encodeWebM(result, { fps: 8 });   // video/webm
//
// Matroska element IDs and layout: https://www.matroska.org/technical/elements.html and the
// WebM container guidelines (https://www.webmproject.org/docs/container/).

const ID = {
  EBML: 0x1a45dfa3, EBMLVersion: 0x4286, EBMLReadVersion: 0x42f7, EBMLMaxIDLength: 0x42f2, EBMLMaxSizeLength: 0x42f3,
  DocType: 0x4282, DocTypeVersion: 0x4287, DocTypeReadVersion: 0x4285,
  Segment: 0x18538067, Info: 0x1549a966, TimecodeScale: 0x2ad7b1, Duration: 0x4489, MuxingApp: 0x4d80, WritingApp: 0x5741,
  Tracks: 0x1654ae6b, TrackEntry: 0xae, TrackNumber: 0xd7, TrackUID: 0x73c5, TrackType: 0x83, FlagLacing: 0x9c,
  CodecID: 0x86, DefaultDuration: 0x23e383, Video: 0xe0, PixelWidth: 0xb0, PixelHeight: 0xba,
  Cluster: 0x1f43b675, Timecode: 0xe7, SimpleBlock: 0xa3,
};

function idBytes(id) {
  const out = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return Uint8Array.from(out);
}

// EBML variable-length size: the shortest of 1–8 bytes (all-ones values are reserved).
function vint(n) {
  let len = 1;
  while (len < 8 && n >= 2 ** (7 * len) - 1) len++;
  const out = new Uint8Array(len);
  let v = n;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  out[0] |= 0x80 >> (len - 1);
  return out;
}

function uint(n) {
  const out = [];
  let v = n;
  do {
    out.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  return Uint8Array.from(out);
}

function float64(x) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setFloat64(0, x);
  return out;
}

const text = (s) => new TextEncoder().encode(s);

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** One element: ID, size, payload (bytes, or child elements' bytes). */
function el(id, payload) {
  const body = Array.isArray(payload) ? concat(payload) : payload;
  return concat([idBytes(id), vint(body.length), body]);
}

function simpleBlock(track, relTimecode, key, data) {
  const head = new Uint8Array(4);
  head[0] = 0x80 | track; // track number as a 1-byte vint
  new DataView(head.buffer).setInt16(1, relTimecode);
  head[3] = key ? 0x80 : 0;
  return el(ID.SimpleBlock, concat([head, data]));
}

/**
 * A WebM file of encoded VP8/VP9 frames.
 * @param {{ codec: 'vp8'|'vp9', width: number, height: number, fps: number,
 *           frames: { data: Uint8Array, timestampUs: number, key: boolean }[] }} v
 * @returns {Uint8Array}
 */
export function muxWebM({ codec, width, height, fps, frames }) {
  const header = el(ID.EBML, [
    el(ID.EBMLVersion, uint(1)), el(ID.EBMLReadVersion, uint(1)), el(ID.EBMLMaxIDLength, uint(4)),
    el(ID.EBMLMaxSizeLength, uint(8)), el(ID.DocType, text('webm')), el(ID.DocTypeVersion, uint(2)),
    el(ID.DocTypeReadVersion, uint(2)),
  ]);
  const frameMs = 1000 / fps;
  const durationMs = frames.length ? frames[frames.length - 1].timestampUs / 1000 + frameMs : 0;
  const info = el(ID.Info, [
    el(ID.TimecodeScale, uint(1e6)), // timecodes in milliseconds
    el(ID.Duration, float64(durationMs)),
    el(ID.MuxingApp, text('animatediff-wgpu webm.js')), el(ID.WritingApp, text('animatediff-wgpu')),
  ]);
  const tracks = el(ID.Tracks, [
    el(ID.TrackEntry, [
      el(ID.TrackNumber, uint(1)), el(ID.TrackUID, uint(1)), el(ID.TrackType, uint(1)), el(ID.FlagLacing, uint(0)),
      el(ID.CodecID, text(codec === 'vp9' ? 'V_VP9' : 'V_VP8')),
      el(ID.DefaultDuration, uint(Math.round(1e9 / fps))),
      el(ID.Video, [el(ID.PixelWidth, uint(width)), el(ID.PixelHeight, uint(height))]),
    ]),
  ]);
  // A cluster starts at each key frame, and before a block's offset would overflow int16 ms.
  const clusters = [];
  let blocks = null;
  let clusterMs = 0;
  for (const f of frames) {
    const ms = Math.round(f.timestampUs / 1000);
    if (!blocks || f.key || ms - clusterMs > 30000) {
      if (blocks) clusters.push(el(ID.Cluster, blocks));
      clusterMs = ms;
      blocks = [el(ID.Timecode, uint(ms))];
    }
    blocks.push(simpleBlock(1, ms - clusterMs, f.key, f.data));
  }
  if (blocks) clusters.push(el(ID.Cluster, blocks));
  return concat([header, el(ID.Segment, [info, tracks, ...clusters])]);
}

const CODECS = { vp9: 'vp09.00.10.08', vp8: 'vp8' };

/** Which of VP9 / VP8 this browser's VideoEncoder takes for `width`×`height` (null: neither). */
export async function webCodecsSupport(width, height, codec = 'auto') {
  if (typeof VideoEncoder === 'undefined' || typeof VideoFrame === 'undefined') return null;
  for (const c of codec === 'auto' ? ['vp9', 'vp8'] : [codec]) {
    const config = { codec: CODECS[c], width, height };
    try {
      if ((await VideoEncoder.isConfigSupported(config)).supported) return c;
    } catch {
      // an unknown codec string: try the next
    }
  }
  return null;
}

async function encodeWithWebCodecs(rgba, width, height, fps, codec, bitrate, keyInterval) {
  const frames = [];
  let failure = null;
  const encoder = new VideoEncoder({
    output: (chunk) => {
      const data = new Uint8Array(chunk.byteLength);
      chunk.copyTo(data);
      frames.push({ data, timestampUs: chunk.timestamp, key: chunk.type === 'key' });
    },
    error: (e) => {
      failure = e;
    },
  });
  encoder.configure({ codec: CODECS[codec], width, height, bitrate, framerate: fps, latencyMode: 'quality' });
  for (let i = 0; i < rgba.length; i++) {
    const timestamp = Math.round((i * 1e6) / fps);
    const frame = new VideoFrame(rgba[i], { format: 'RGBA', codedWidth: width, codedHeight: height, timestamp, duration: Math.round(1e6 / fps) });
    encoder.encode(frame, { keyFrame: i % keyInterval === 0 });
    frame.close();
  }
  await encoder.flush();
  encoder.close();
  if (failure) throw failure;
  frames.sort((a, b) => a.timestampUs - b.timestampUs);
  return muxWebM({ codec, width, height, fps, frames });
}

// Fallback: play the frames into a canvas and record its stream (needs a document).
async function encodeWithMediaRecorder(rgba, width, height, fps) {
  if (typeof document === 'undefined' || typeof MediaRecorder === 'undefined') {
    const e = new Error('this browser can encode WebM neither with WebCodecs (VideoEncoder) nor with MediaRecorder; export a GIF or PNG frames instead');
    e.name = 'NotSupportedError';
    throw e;
  }
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(0);
  const [track] = stream.getVideoTracks();
  const type = MediaRecorder.isTypeSupported('video/webm;codecs=vp9') ? 'video/webm;codecs=vp9' : 'video/webm';
  const recorder = new MediaRecorder(stream, { mimeType: type });
  const parts = [];
  recorder.ondataavailable = (ev) => ev.data.size && parts.push(ev.data);
  const stopped = new Promise((resolve) => {
    recorder.onstop = resolve;
  });
  recorder.start();
  for (const f of rgba) {
    ctx.putImageData(new ImageData(new Uint8ClampedArray(f), width, height), 0, 0);
    track.requestFrame?.();
    await new Promise((r) => setTimeout(r, 1000 / fps));
  }
  recorder.stop();
  await stopped;
  track.stop();
  return new Blob(parts, { type: 'video/webm' });
}

/**
 * A WebM video (VP9 or VP8) of a generate() result's `rgba` frames.
 * @param {{ rgba: ArrayLike<number>[], width: number, height: number }} result
 * @param {{ fps?: number, codec?: 'auto'|'vp9'|'vp8', bitrate?: number, keyInterval?: number, mediaRecorder?: boolean }} [options]
 *   `mediaRecorder: true` forces the fallback.
 * @returns {Promise<Blob>} video/webm
 */
export async function encodeWebM(result, { fps = 8, codec = 'auto', bitrate, keyInterval, mediaRecorder = false } = {}) {
  const { rgba, width, height } = result;
  if (!(fps > 0) || !rgba?.length) throw new RangeError('encodeWebM: needs frames (result.rgba) and fps > 0');
  const c = mediaRecorder ? null : await webCodecsSupport(width, height, codec);
  if (!c) return encodeWithMediaRecorder(rgba, width, height, fps);
  // ~0.3 bits a pixel: visually clean for short generated clips, a few hundred kB a second at 512².
  const bits = bitrate ?? Math.max(250_000, Math.round(width * height * fps * 0.3));
  const bytes = await encodeWithWebCodecs(rgba, width, height, fps, c, bits, keyInterval ?? Math.max(1, Math.round(fps * 2)));
  return new Blob([bytes], { type: 'video/webm' });
}
