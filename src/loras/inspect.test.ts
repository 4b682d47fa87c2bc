/**
 * inspectLora reads a LoRA's header from each kind of source and checks it against the
 * model: a fitting file is described, a misfit is refused naming the tensor, and only the
 * header's bytes cross the wire.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../contract/errors.js';
import { parseAllowNetworks } from '../net/networks.js';
import { inspectLora } from './inspect.js';
import { parseLoraSource } from './source.js';
import { pair, safetensors, startFileServer, type FileServer } from '../../test/support/safetensors-files.js';

const dims = { inputs: [3072, 9216, 12288], outputs: [3072, 18432, 27648] };
const fits = safetensors({ ...pair('diffusion_model.double_blocks.0.img_attn.qkv', 'lora_A', 8, 3072, 9216), ...pair('diffusion_model.single_blocks.0.linear2', 'lora_A', 8, 12288, 3072) });
const misfit = safetensors(pair('transformer.single_transformer_blocks.0.attn.to_out', 'lora_A', 8, 4096, 3072));

describe('inspectLora', () => {
  let server: FileServer;
  let loraDir: string;
  const seen: Array<string | undefined> = [];
  before(async () => {
    server = await startFileServer({ honourRange: true, files: { '/o/n/resolve/main/pytorch_lora_weights.safetensors': fits, '/misfit.safetensors': misfit }, onRequest: (r) => seen.push(r.headers.authorization) });
    loraDir = await mkdtemp(join(tmpdir(), 'klein-inspect-'));
    await writeFile(join(loraDir, 'local.safetensors'), fits);
  });
  after(async () => {
    await server.close();
    await rm(loraDir, { recursive: true, force: true });
  });
  const options = { allow: parseAllowNetworks('127.0.0.1'), maxBytes: 2 ** 31, timeoutMs: 5000, dims, hfToken: 'hf_t' };

  it('describes a hub LoRA from its header alone, with the token', async () => {
    const r = await inspectLora(parseLoraSource({ path: 'o/n' }, 0, { hubEndpoint: server.base }), options);
    assert.deepEqual([r.format, r.rank, r.tensors, r.bytes], ['ai-toolkit', 8, 4, fits.length]);
    assert.equal(server.bytesSent(), 8 + r.header.headerBytes);
    assert.deepEqual(seen, ['Bearer hf_t', 'Bearer hf_t']);
  });

  it('describes a KLEIN_LORA_DIR file', async () => {
    const r = await inspectLora(parseLoraSource({ path: 'local.safetensors' }, 0, { loraDir }), options);
    assert.equal(r.format, 'ai-toolkit');
  });

  it('refuses a URL LoRA that does not fit, naming the entry and the tensor', async () => {
    await assert.rejects(inspectLora(parseLoraSource({ path: `${server.base}/misfit.safetensors` }, 2), options), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'invalid_lora');
      assert.deepEqual(err.details, [{ field: 'loras[2].path', message: "transformer.single_transformer_blocks.0.attn.to_out.lora_A.weight takes 4096 inputs; this model's layers take 3072, 9216, 12288" }]);
      return true;
    });
  });
});
