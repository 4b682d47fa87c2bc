/**
 * Where a request's files live in output storage, and their content types. Outputs are
 * always stored (an idempotent replay answers the same bytes); reference pixels of queued
 * requests are stored so that a restart, or a worker elsewhere, can run them.
 */
import type { ImageFormat } from '../contract/types.js';

export const CONTENT_TYPES: Record<ImageFormat, string> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };
export const EXTENSIONS: Record<ImageFormat, string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

export const outputKey = (id: string, f: ImageFormat): string => `outputs/${id}.${EXTENSIONS[f]}`;
export const inputKey = (id: string, i: number): string => `inputs/${id}/${i}.png`;
