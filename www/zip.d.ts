// Types of zip.js.
import type { FramesLike } from './webm.js';
/** A zip (stored entries) of one PNG per frame: frame_0001.png … */
export function framesToPngZip(frames: FramesLike, options?: { prefix?: string }): Promise<Blob>;
/** An 8-bit RGB PNG of one RGBA image. */
export function encodePng(rgba: ArrayLike<number>, width: number, height: number, options?: { compress?: boolean }): Promise<Uint8Array>;
/** A zip archive (store method, UTF-8 names). */
export function createZip(entries: { name: string; data: Uint8Array }[], options?: { date?: Date }): Uint8Array;
/** CRC-32 (as zip and PNG use). */
export function crc32(bytes: ArrayLike<number>, crc?: number): number;
/** A zlib stream of stored (uncompressed) deflate blocks. */
export function zlibStored(data: Uint8Array): Uint8Array;
