/** `--lora PATH[:SCALE]`: where the scale is taken from, and what is refused before any request. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLora } from './generate.js';

describe('klein generate --lora', () => {
  it('takes a scale only from a trailing :<decimal>, leaving the colons of URLs in the path', () => {
    assert.deepEqual(parseLora('https://host/x.safetensors:0.8'), { path: 'https://host/x.safetensors', scale: 0.8 });
    assert.deepEqual(parseLora('https://host/x.safetensors'), { path: 'https://host/x.safetensors' });
    assert.deepEqual(parseLora('http://127.0.0.1:8080/a/x.safetensors'), { path: 'http://127.0.0.1:8080/a/x.safetensors' });
    assert.deepEqual(parseLora('http://127.0.0.1:8080/x.safetensors:-1.5'), { path: 'http://127.0.0.1:8080/x.safetensors', scale: -1.5 });
    assert.deepEqual(parseLora('owner/repo'), { path: 'owner/repo' });
    assert.deepEqual(parseLora('owner/repo@v2:.5'), { path: 'owner/repo@v2', scale: 0.5 });
    assert.deepEqual(parseLora('file.safetensors:1.5'), { path: 'file.safetensors', scale: 1.5 });
    assert.deepEqual(parseLora('file.safetensors:+4'), { path: 'file.safetensors', scale: 4 });
    assert.deepEqual(parseLora('file.safetensors:0'), { path: 'file.safetensors', scale: 0 });
  });

  it('refuses a scale that is not a decimal, or outside -4 to 4', () => {
    for (const [arg, why] of [
      ['file.safetensors:abc', /must be a number from -4 to 4, not 'abc'/],
      ['file.safetensors:', /not ''/],
      ['file.safetensors:1e1', /not '1e1'/],
      ['file.safetensors:0x1', /not '0x1'/],
      ['owner/repo:4.01', /scale 4.01 is outside -4 to 4/],
      ['https://host/x.safetensors:-5', /scale -5 is outside/],
    ] as const) {
      assert.throws(() => parseLora(arg), (e: unknown) => e instanceof Error && e.message.startsWith(`--lora ${arg}:`) && why.test(e.message), arg);
    }
  });
});
