import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { resizeLanczos } from './lanczos.js';

const root = new URL('../..', import.meta.url).pathname;
const python = process.env.KLEIN_ENGINE_PYTHON ?? join(root, 'engine/.venv/bin/python');

function noise(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < px.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    px[i] = s >>> 24;
  }
  return px;
}

describe("Pillow's LANCZOS", () => {
  it('equals Pillow byte for byte: both pass orders, one axis, upscaling, odd sizes', async () => {
    // [in w, in h, out w, out h]: wide and tall downscales (the tall ones run the vertical pass
    // first in Pillow 13), one axis only, an upscale, a mix.
    const sizes = [[1600, 1200, 1182, 886], [900, 2500, 614, 1706], [400, 600, 300, 300], [777, 333, 777, 101], [333, 777, 101, 777], [90, 70, 250, 170], [300, 300, 500, 200]];
    const dir = mkdtempSync(join(tmpdir(), 'klein-lanczos-'));
    try {
      const ours: Buffer[] = [];
      for (const [i, [w, h, ow, oh]] of sizes.entries()) {
        const src = noise(w!, h!, i + 1);
        writeFileSync(join(dir, `${i}`), src);
        ours.push(await resizeLanczos(src, w!, h!, ow!, oh!));
      }
      const script = `
import sys, numpy as np
from PIL import Image
for arg in sys.argv[1:]:
    path, w, h, ow, oh = arg.split(",")
    a = np.fromfile(path, np.uint8).reshape(int(h), int(w), 3)
    open(path + ".pil", "wb").write(np.asarray(Image.fromarray(a).resize((int(ow), int(oh)), Image.Resampling.LANCZOS)).tobytes())
`;
      const r = spawnSync(python, ['-c', script, ...sizes.map((s, i) => [join(dir, `${i}`), ...s].join(','))], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      for (const [i, s] of sizes.entries()) assert.ok(readFileSync(join(dir, `${i}.pil`)).equals(ours[i]!), `${s.join('×')} differs from Pillow`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets the event loop run during a large resize, and stops when aborted', async () => {
    const src = noise(3000, 2000, 9);
    let ran = false;
    setImmediate(() => {
      ran = true;
    });
    const pending = resizeLanczos(src, 3000, 2000, 1254, 836);
    assert.equal(ran, false);
    await pending;
    assert.equal(ran, true, 'a callback queued before the resize ran before it ended');

    const controller = new AbortController();
    controller.abort(new Error('client gone'));
    await assert.rejects(resizeLanczos(src, 3000, 2000, 1254, 836, controller.signal), /client gone/);
  });
});
