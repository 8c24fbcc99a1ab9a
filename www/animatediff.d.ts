// Types of animatediff.js (the option and result types come from the wasm package's
// generated typings, pkg/animatediff_wgpu.d.ts).
import type {
  GeneratorOptions, GenerateOptions, GenerateProgress, GenerateResult, GpuInfo, GpuMemory, LoadInfo, LoadProgress,
  ModelSources, Precision,
} from './pkg/animatediff_wgpu.js';

export type {
  GeneratorOptions, GenerateOptions, GenerateProgress, GenerateResult, GpuInfo, GpuMemory, LoadInfo, LoadProgress,
  ModelSources, Precision,
};

/**
 * `error.name` of a rejected call: AbortError (cancelled), InputError (a bad option),
 * LoadError (a bad or unsupported model file: the message names it), NetworkError (a download
 * failed), OutOfMemoryError (retry with fewer frames / smaller size / f16), DeviceLostError
 * (create a new generator), NotSupportedError (no WebGPU), InvalidStateError (not loaded,
 * disposed), EngineCrashedError (reload the page).
 */
export type GeneratorErrorName =
  | 'AbortError' | 'InputError' | 'LoadError' | 'NetworkError' | 'OutOfMemoryError' | 'DeviceLostError'
  | 'NotSupportedError' | 'InvalidStateError' | 'EngineCrashedError' | 'GpuError' | 'Error';

export interface CreateOptions extends GeneratorOptions {
  /** Where worker.js is (default: next to animatediff.js). */
  workerURL?: string | URL;
}

export interface AnimateDiffGenerator {
  /** Adapter name, shader-f16, limits. */
  readonly info: GpuInfo;
  /** Load models (replacing loaded ones). */
  load(sources: ModelSources, options?: { onProgress?: (p: LoadProgress) => void; signal?: AbortSignal; precision?: Precision; weights?: 'dense' | 'q8' | 'q4' }): Promise<LoadInfo>;
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
