/** Strict `data:image/(png|jpeg|webp);base64,…` parsing, with the size cap checked first. */
import { ApiError } from '../contract/errors.js';

const PREFIX = /^data:image\/(png|jpeg|webp);base64,/;

export function parseDataUri(uri: string, o: { maxBytes: number; field: string }): Buffer {
  const m = PREFIX.exec(uri);
  if (!m) {
    throw new ApiError('image_invalid', `${o.field}: must be a data:image/(png|jpeg|webp);base64, URI`, {
      details: [{ field: o.field, message: 'must be a data:image/(png|jpeg|webp);base64, URI' }],
    });
  }
  const b64 = uri.slice(m[0].length);
  if (Math.floor((b64.length * 3) / 4) > o.maxBytes + 3) {
    throw new ApiError('image_too_large', `${o.field}: the image is larger than ${o.maxBytes} bytes`, {
      details: [{ field: o.field, message: `is larger than ${o.maxBytes} bytes` }],
    });
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 === 1) {
    throw new ApiError('image_invalid', `${o.field}: the base64 data is malformed`, { details: [{ field: o.field, message: 'has malformed base64 data' }] });
  }
  return Buffer.from(b64, 'base64');
}
