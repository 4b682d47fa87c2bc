/**
 * A request's inputs read back from its row and storage: the resolved parameters (the row
 * holds them without image bytes) and the reference pixels written at submission
 * (`inputs/<id>/<i>.png`). Used where the pixels are not in memory: after a restart, or
 * on a worker of the fleet. Null when a stored reference is gone.
 */
import sharp from 'sharp';
import type { ResolvedParams, RgbImage } from '../contract/types.js';
import { inputKey } from './storage-keys.js';
import type { RequestRow } from '../store/requests.js';
import type { OutputStorage } from '../storage/types.js';

export interface JobInputs {
  params: ResolvedParams;
  images: RgbImage[];
  priceMicro: number;
  enqueuedAt: number;
}

/** The parameters a row holds; rows written before LoRAs existed have none. */
export function paramsOfRow(row: Pick<RequestRow, 'params'>): ResolvedParams {
  const p = JSON.parse(row.params) as ResolvedParams;
  return { ...p, loras: p.loras ?? [] };
}

/** The inputs of `row` with reference pixels already at hand. */
export function inputsFromRow(row: RequestRow, images: RgbImage[]): JobInputs {
  return { params: paramsOfRow(row), images, priceMicro: Number(row.price_micro), enqueuedAt: Number(row.created_at) };
}

export async function loadJobInputs(row: RequestRow, storage: OutputStorage): Promise<JobInputs | null> {
  const params = paramsOfRow(row);
  const images: RgbImage[] = [];
  for (let i = 0; i < params.image_urls.length; i++) {
    const png = await storage.get(inputKey(row.id, i));
    if (!png) return null;
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    images.push({ width: info.width, height: info.height, data });
  }
  return inputsFromRow(row, images);
}

/** Writes the reference pixels where `loadJobInputs` finds them (PNG, fast compression). */
export async function storeJobInputs(id: string, images: RgbImage[], storage: OutputStorage): Promise<void> {
  await Promise.all(
    images.map(async (img, i) => {
      const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
      await storage.put(inputKey(id, i), png, 'image/png');
    }),
  );
}
