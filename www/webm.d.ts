// Types of webm.js.
export interface FramesLike { rgba: ArrayLike<number>[] | Uint8ClampedArray[]; width: number; height: number }
/** A WebM (VP9 or VP8 via WebCodecs, MediaRecorder as fallback) of the RGBA frames. */
export function encodeWebM(frames: FramesLike, options?: { fps?: number; codec?: 'auto' | 'vp9' | 'vp8'; bitrate?: number; keyInterval?: number; mediaRecorder?: boolean }): Promise<Blob>;
/** Which codec VideoEncoder accepts for this size (null: no WebCodecs / neither). */
export function webCodecsSupport(width: number, height: number, codec?: 'auto' | 'vp9' | 'vp8'): Promise<'vp9' | 'vp8' | null>;
/** Mux already-encoded VP8/VP9 frames into a WebM file. */
export function muxWebM(v: { codec: 'vp8' | 'vp9'; width: number; height: number; fps: number; frames: { data: Uint8Array; timestampUs: number; key: boolean }[] }): Uint8Array;
