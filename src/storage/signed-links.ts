/**
 * Links to outputs that work without the API key, as S3's presigned URLs, OpenAI's `url`
 * answers and Segmind's output links do: the path, an expiry (Unix seconds) and an
 * HMAC-SHA256 of both under the server's link secret,
 *
 *   /v2/requests/<id>/output?expires=1796001803&sig=<base64url>
 *
 * so a link cannot be moved to another request or made to live longer. Rotation: several
 * secrets may be configured; the first signs, every one verifies, so links signed before
 * a rotation stay valid until they expire (put the new secret first, drop the old one
 * after the longest link lifetime). Secrets come from KLEIN_LINK_SECRET, else one is
 * generated once and kept in the data directory, so a restart keeps links valid.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a presented link is. */
export type LinkCheck = 'valid' | 'expired' | 'invalid';

export class LinkSigner {
  private readonly secrets: readonly Buffer[];

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0 || secrets.some((s) => s.length < 32)) throw new Error('link secrets must be at least 32 characters each');
    this.secrets = secrets.map((s) => Buffer.from(s, 'utf8'));
  }

  /** `path` with `expires` and `sig` added (its own query, if any, is kept and signed). */
  sign(path: string, expiresInS: number, now = Date.now()): string {
    const expires = Math.floor(now / 1000) + Math.max(1, Math.round(expiresInS));
    const sep = path.includes('?') ? '&' : '?';
    return `${path}${sep}expires=${expires}&sig=${this.mac(this.secrets[0]!, path, expires)}`;
  }

  /**
   * Checks the `expires` and `sig` presented for `path` (the path without those two).
   * Expired is told apart from invalid only for a link whose signature is right.
   */
  check(path: string, expires: unknown, sig: unknown, now = Date.now()): LinkCheck {
    if (typeof expires !== 'string' || typeof sig !== 'string' || !/^\d{1,12}$/.test(expires) || !/^[A-Za-z0-9_-]{43}$/.test(sig)) return 'invalid';
    const presented = Buffer.from(sig, 'base64url');
    const ok = this.secrets.some((secret) => {
      const want = Buffer.from(this.mac(secret, path, Number(expires)), 'base64url');
      return want.length === presented.length && timingSafeEqual(want, presented);
    });
    if (!ok) return 'invalid';
    return Number(expires) * 1000 <= now ? 'expired' : 'valid';
  }

  private mac(secret: Buffer, path: string, expires: number): string {
    return createHmac('sha256', secret).update(`${path}\n${expires}`).digest('base64url');
  }
}

const SECRET_FILE = 'link-secret';

/**
 * The configured secrets (KLEIN_LINK_SECRET, comma-separated, first signs), or the one kept
 * in `dataDir` (made on first use, readable by this user only). A fleet must configure
 * KLEIN_LINK_SECRET: gateways do not share a data directory.
 */
export function linkSecrets(configured: readonly string[], dataDir: string): string[] {
  if (configured.length > 0) return [...configured];
  const file = join(dataDir, SECRET_FILE);
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    // 'wx': two processes starting at once cannot overwrite each other's secret.
    try {
      writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    chmodSync(file, 0o600);
  }
  const secret = readFileSync(file, 'utf8').trim();
  if (secret.length < 32) throw new Error(`${file} holds no usable link secret (at least 32 characters); delete it to make a new one`);
  return [secret];
}
