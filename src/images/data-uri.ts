/** Strict `data:image/(png|jpeg|webp);base64,…` parsing, with the size cap checked first. */
import { ApiError } from '../contract/errors.js';

const PREFIX = /^data:image\/(png|jpeg|webp);base64,/;

export function parseDataUri(uri: string, options: { maxBytes: number; field: string }): Buffer {
  const m = PREFIX.exec(uri);
  if (!m) {
    throw new ApiError('image_invalid', `${options.field}: must be a data:image/(png|jpeg|webp);base64, URI`, {
      details: [{ field: options.field, message: 'must be a data:image/(png|jpeg|webp);base64, URI' }],
    });
  }
  const b64 = uri.slice(m[0].length);
  if (Math.floor((b64.length * 3) / 4) > options.maxBytes + 3) {
    throw new ApiError('image_too_large', `${options.field}: the image is larger than ${options.maxBytes} bytes`, {
      details: [{ field: options.field, message: `is larger than ${options.maxBytes} bytes` }],
    });
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 === 1) {
    throw new ApiError('image_invalid', `${options.field}: the base64 data is malformed`, { details: [{ field: options.field, message: 'has malformed base64 data' }] });
  }
  return Buffer.from(b64, 'base64');
}
