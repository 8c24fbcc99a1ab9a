// Types of element.js: the <animatediff-generator> custom element.
import type { AnimateDiffGenerator, GeneratePreview, GenerateProgress, GenerateResult, LoadProgress, ModelSources } from './animatediff.js';

export interface AnimateDiffDoneDetail {
  /** One RGBA image (width × height × 4) per frame. */
  frames: Uint8ClampedArray[];
  result: GenerateResult;
  /** The exported video: image/gif (default) or video/webm (attribute format="webm"). */
  blob: Blob;
}

export type AnimateDiffProgressDetail = LoadProgress | GenerateProgress | { phase: 'export'; format: 'gif' | 'webm' };

export class AnimateDiffGeneratorElement extends HTMLElement {
  /** load() sources; when set, overrides the model/motion/vae/config URL attributes. */
  sources: ModelSources | null;
  /** The last result and its exported Blob. */
  result: GenerateResult | null;
  blob: Blob | null;
  /** The underlying generator (created by the first generate()). */
  readonly generator: AnimateDiffGenerator | null;
  /** Load the models when needed, then generate; resolves with the `done` event's detail. */
  generate(): Promise<AnimateDiffDoneDetail>;
  /** Cancel a running load or generation. */
  cancel(): void;
  /** Free the GPU (models and device). */
  dispose(): void;
}

export interface AnimateDiffGeneratorEventMap extends HTMLElementEventMap {
  progress: CustomEvent<AnimateDiffProgressDetail>;
  preview: CustomEvent<GeneratePreview>;
  done: CustomEvent<AnimateDiffDoneDetail>;
  error: CustomEvent<{ error: Error }>;
}

declare global {
  interface HTMLElementTagNameMap {
    'animatediff-generator': AnimateDiffGeneratorElement;
  }
}
