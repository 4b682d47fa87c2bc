/**
 * Outputs in any S3-compatible store (AWS S3, MinIO, R2, …): S3_BUCKET, S3_ENDPOINT
 * (omit for AWS), S3_REGION, credentials from the usual AWS variables (the SDK's default
 * provider chain). Responses link outputs with presigned GET URLs.
 */
import { DeleteObjectCommand, GetObjectCommand, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { OutputStorage } from './types.js';

export interface S3Options {
  bucket: string;
  endpoint?: string;
  region: string;
  /** Key prefix inside the bucket, e.g. `klein/`. */
  prefix: string;
  forcePathStyle: boolean;
}

export class S3Storage implements OutputStorage {
  private readonly client: S3Client;

  constructor(private readonly options: S3Options) {
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle,
    });
  }

  private key(k: string): string {
    return `${this.options.prefix}${k}`;
  }

  async put(key: string, bytes: Buffer, contentType: string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: this.key(key), Body: bytes, ContentType: contentType }));
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }));
      return r.Body ? Buffer.from(await r.Body.transformToByteArray()) : null;
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }));
  }

  async directUrl(key: string, expiresInS: number): Promise<string | null> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }), { expiresIn: expiresInS });
  }

  destroy(): void {
    this.client.destroy();
  }
}
