/**
 * Where outputs (and the reference pixels of queued asynchronous requests) live. Local
 * disk is the embedded default; an S3-compatible store implements the same interface.
 */
export interface OutputStorage {
  put(key: string, bytes: Buffer, contentType: string): Promise<void>;
  /** null when the object does not exist (expired or never written). */
  get(key: string): Promise<Buffer | null>;
  delete(key: string): Promise<void>;
  /** A URL that serves the object directly (presigned), or null to serve it through the API. */
  directUrl(key: string, expiresInS: number): Promise<string | null>;
}
