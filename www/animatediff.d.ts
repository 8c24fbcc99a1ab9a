// Types of animatediff.js (the option and result types come from the wasm package's
// generated typings, pkg/animatediff_wgpu.d.ts).
import type {
  GeneratorOptions, GenerateOptions, GeneratePreview, GenerateProgress, GenerateResult, GpuInfo, GpuMemory, LoadInfo, LoadProgress,
  ModelSources, Precision,
} from './pkg/animatediff_wgpu.js';

export type {
  GeneratorOptions, GenerateOptions, GeneratePreview, GenerateProgress, GenerateResult, GpuInfo, GpuMemory, LoadInfo, LoadProgress,
  ModelSources, Precision,
};

/**
 * `error.name` of a rejected call: AbortError (cancelled), InputError (a bad option),
 * LoadError (a bad or unsupported model file: the message names it), NetworkError (a download
 * failed), QuotaError (not enough browser storage for the model cache), OutOfMemoryError
 * (retry with fewer frames / smaller size / f16 / q4), DeviceLostError (the worker makes a new
 * device and reloads the models: `recovered` says whether that worked; then generate again),
 * NotSupportedError (no WebGPU), InvalidStateError (not loaded, disposed), EngineCrashedError
 * (reload the page).
 */
export type GeneratorErrorName =
  | 'AbortError' | 'InputError' | 'LoadError' | 'NetworkError' | 'QuotaError' | 'OutOfMemoryError' | 'DeviceLostError'
  | 'NotSupportedError' | 'InvalidStateError' | 'EngineCrashedError' | 'GpuError' | 'Error';

export interface CreateOptions extends GeneratorOptions {
  /** Where worker.js is (default: next to animatediff.js). */
  workerURL?: string | URL;
}

export interface AnimateDiffGenerator {
  /** Adapter name, shader-f16, limits. */
  readonly info: GpuInfo;
  /** Load models (replacing loaded ones). */
  load(sources: ModelSources, options?: {
    onProgress?: (p: LoadProgress) => void; signal?: AbortSignal; precision?: Precision;
    /**
     * GEMM weight format (default 'dense'). 'auto': after the model configs are read and before upload, the first of
     * dense → q8 → q4 whose memory plan for `plan` (default 16 frames 512×512, CFG on) fits the adapter's buffer limits
     * and `memoryBudget`; q4 when none does. LoadInfo.weightsReason says why, plannedPeakBytes gives each peak.
     */
    weights?: 'dense' | 'q8' | 'q4' | 'auto';
    /**
     * GPU memory to plan within, in bytes (a positive number; else an InputError): weights 'auto' picks the format
     * for it, and every generate() pulls the memory levers that fit it (split CFG, text encoder / VAE off the GPU
     * between uses, f16 VAE, chunked feed-forwards…) or fails with an OutOfMemoryError saying what would fit.
     */
    memoryBudget?: number;
    /** For weights 'auto': the request to plan for. */
    plan?: { frames?: number; width?: number; height?: number };
    /** Keep downloads in the model cache (default true): a second load downloads nothing, an interrupted one resumes. */
    cache?: boolean;
    /** Bytes per ranged request / cached chunk (default 32 MiB). */
    chunkBytes?: number;
  }): Promise<LoadInfo>;
  /** The initial latents generate({ seed }) starts from: torch.randn([1, 4, frames, height/8, width/8]) for that seed. */
  initialLatents(options: { seed: number | bigint | string; frames?: number; width?: number; height?: number }): Promise<Float32Array>;
  /** Generate a video (calls on one generator run one after another). */
  generate(options: GenerateOptions): Promise<GenerateResult>;
  /** A looping GIF (image/gif Blob) of a result. */
  encodeGif(result: Pick<GenerateResult, 'frames' | 'frameCount' | 'height' | 'width'>, options?: { fps?: number }): Promise<Blob>;
  /** GPU memory held by the generator's buffers. */
  memory(): Promise<GpuMemory>;
  /** Free the models' GPU memory; the device stays. */
  unload(): Promise<GpuMemory | null>;
  /** Free the GPU device and stop the worker. */
  dispose(): Promise<void>;
}

export function createGenerator(options?: CreateOptions): Promise<AnimateDiffGenerator>;

/** One cached model file. */
export interface CacheEntry {
  url: string; size: number; cachedBytes: number; chunks: number; cachedChunks: number;
  /** Every chunk is there: loading it makes no request. */
  complete: boolean;
  /** ETag or Last-Modified the chunks were downloaded with. */
  validator: string; cachedAt: number;
}

/** The model cache (Cache API, chunked, SHA-256 checked), usable without a generator. */
export const cache: {
  /** Cached bytes and files, and the room left for this site (Infinity where unknown). */
  usage(): Promise<{ bytes: number; files: number; available: number }>;
  entries(): Promise<CacheEntry[]>;
  /** Delete everything, or the given URLs' files. */
  clear(urls?: string | string[]): Promise<void>;
  /** Ask the browser not to evict the cache (load() asks on its own). */
  persist(): Promise<boolean>;
};
