/**
 * Types shared by the gateway, the queue and the worker. The request schema in
 * `request-schema.ts` is the single source of validation; these are the shapes that
 * flow past the HTTP edge once a request has been parsed and resolved.
 */

export const SAMPLERS = ['euler', 'res_2s'] as const;
export type Sampler = (typeof SAMPLERS)[number];

export const IMAGE_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** A generation request after validation, defaults and size resolution (contract §1, §3). */
export interface ResolvedParams {
  prompt: string;
  negative_prompt: string;
  /** The seed that will be used: `-1` has already been replaced by a random seed. */
  seed: number;
  cfg: number;
  sampler: Sampler;
  steps: number;
  /** `aspect_ratio` as given (kept for records and metadata); width/height are what counts. */
  aspect_ratio: string;
  width: number;
  height: number;
  go_fast: boolean;
  image_format: ImageFormat;
  quality: number;
  /** Reference image URLs as given (http(s) or data:). Never stored with image bytes. */
  image_urls: string[];
  base64: boolean;
  /** LoRA adapters as given, each with its scale (default 1): empty for none (contract §7). */
  loras: LoraSpec[];
}

/** One LoRA of a request: where it comes from, and how strongly it applies. */
export interface LoraSpec {
  path: string;
  weight_name?: string;
  scale: number;
}

/** A reference image after fetch, decode and preprocessing (contract §3): packed RGB. */
export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, row-major, top row first. */
  data: Buffer;
}
