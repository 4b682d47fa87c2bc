/**
 * Output encoding with sharp: png (zlib level 6), jpeg and webp (lossy, `quality`). The
 * generation parameters go into the file when asked: a PNG `tEXt` chunk with keyword
 * `parameters` (written here, after IHDR), EXIF ImageDescription for jpeg and webp.
 */
import sharp from 'sharp';
import type { ImageFormat, RgbImage } from '../contract/types.js';

export interface EncodeOptions {
  format: ImageFormat;
  quality: number;
  /** `parameters` (JSON text) and `software`; null for none. */
  metadata?: Record<string, string> | null;
}

export async function encodeImage(img: RgbImage, options: EncodeOptions): Promise<Buffer> {
  let pipe = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
  const meta = options.metadata ?? null;
  if (options.format === 'png') {
    const png = await pipe.png({ compressionLevel: 6, adaptiveFiltering: false }).toBuffer();
    return meta ? insertPngText(png, meta) : png;
  }
  if (meta) {
    pipe = pipe.withExif({
      IFD0: {
        ...(meta.parameters ? { ImageDescription: meta.parameters } : {}),
        ...(meta.software ? { Software: meta.software } : {}),
      },
    });
  }
  if (options.format === 'jpeg') return pipe.jpeg({ quality: options.quality, chromaSubsampling: '4:2:0' }).toBuffer();
  return pipe.webp({ quality: options.quality }).toBuffer();
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** tEXt chunks (PNG spec 11.3.4.3): Latin-1 keyword, NUL, text. Non-Latin-1 text is
 * escaped as JSON \u sequences so the chunk stays valid. */
function textChunk(keyword: string, text: string): Buffer {
  const latin1 = text.replace(/[^\x20-\x7e\n]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const data = Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(latin1, 'latin1')]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write('tEXt', 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

function insertPngText(png: Buffer, meta: Record<string, string>): Buffer {
  const ihdrEnd = 8 + 8 + png.readUInt32BE(8) + 4;
  const chunks = Object.entries(meta).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** Reads the metadata back (tests, and users checking provenance). */
export async function readMetadata(buf: Buffer): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (buf.readUInt32BE(0) === 0x89504e47) {
    let off = 8;
    while (off + 8 <= buf.length) {
      const len = buf.readUInt32BE(off);
      const type = buf.toString('latin1', off + 4, off + 8);
      if (type === 'tEXt') {
        const data = buf.subarray(off + 8, off + 8 + len);
        const nul = data.indexOf(0);
        out[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
      }
      if (type === 'IEND') break;
      off += 12 + len;
    }
    return out;
  }
  const m = await sharp(buf).metadata();
  if (m.exif) {
    const s = m.exif.toString('latin1');
    const i = s.indexOf('{"model"');
    if (i >= 0) out.parameters = s.slice(i, s.indexOf('\0', i) >= 0 ? s.indexOf('\0', i) : undefined);
    if (s.includes('klein-serve')) out.software = 'klein-serve';
  }
  return out;
}
