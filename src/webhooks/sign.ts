/**
 * Standard Webhooks signatures (standardwebhooks.com, "Signature scheme"): headers
 * `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature` =
 * `v1,` + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), where the key is the
 * base64-decoded part of the `whsec_…` secret.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

function keyOf(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
}

export function sign(secret: string, id: string, timestampS: number, body: string): string {
  const mac = createHmac('sha256', keyOf(secret)).update(`${id}.${timestampS}.${body}`).digest('base64');
  return `v1,${mac}`;
}

export function signedHeaders(secret: string, id: string, body: string, nowMs = Date.now()): Record<string, string> {
  const ts = Math.floor(nowMs / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sign(secret, id, ts, body) };
}

/** Verifies as a receiver would (any of the space-separated signatures; 5-minute tolerance). */
export function verify(secret: string, headers: Record<string, string | undefined>, body: string, nowMs = Date.now()): boolean {
  const id = headers['webhook-id'];
  const ts = Number(headers['webhook-timestamp']);
  const sigs = (headers['webhook-signature'] ?? '').split(' ');
  if (!id || !Number.isFinite(ts) || Math.abs(nowMs / 1000 - ts) > 300) return false;
  const want = Buffer.from(sign(secret, id, ts, body));
  return sigs.some((s) => {
    const got = Buffer.from(s);
    return got.length === want.length && timingSafeEqual(got, want);
  });
}
