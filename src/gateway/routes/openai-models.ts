/**
 * OpenAI-compatible model list (contract §6, §8), behind the same key as the image routes:
 *   GET /v1/models          {object: "list", data: [{id, object: "model", created, owned_by, slug, variant, defaults}]}
 *   GET /v1/models/{model}  one of them; any other name is a 404
 * It lists every served slug and every alias of KLEIN_OPENAI_MODEL_ALIASES, which is what
 * the image routes' `model` takes (openai-model-names.ts), each with the served model it
 * runs, that model's variant and defaults (OpenAI clients ignore fields they do not know).
 * Errors are in OpenAI's envelope.
 *
 * `created` is when this server started (OpenAI's is when the model was published, which
 * a self-hosted server cannot know for an alias); `owned_by` is the model's publisher.
 */
import Type from 'typebox';
import { ApiError } from '../../contract/errors.js';
import { authHook } from '../auth.js';
import type { App, AppDeps } from '../app.js';
import { openAiErrorHook } from '../openai-errors.js';
import { modelNames, servedModel } from '../openai-model-names.js';
import { openAiErrorResponses, json, ref, SECURED } from '../route-schema.js';
import { OpenAiModel, OpenAiModelList } from '../../contract/openai-schema.js';

/** FLUX.2 [klein] is published by Black Forest Labs. */
const OWNER = 'black-forest-labs';

const ModelNameParams = Type.Object({ model: Type.String({ description: 'A served slug or an alias', maxLength: 256 }) });

const tagged = { tags: ['openai'], security: SECURED };

export function registerOpenAiModelRoutes(app: App, deps: AppDeps): void {
  const auth = authHook(deps.db, { rpm: deps.config.defaultRpm, concurrency: deps.config.defaultConcurrency });
  const created = Math.floor(Date.now() / 1000);
  const describe = (id: string) => {
    const m = deps.config.models.get(servedModel(deps.config, id) ?? '');
    if (!m) throw new ApiError('internal', `${id} names no served model`);
    return { id, object: 'model' as const, created, owned_by: OWNER, slug: m.slug, variant: m.variant, defaults: { ...m.defaults } };
  };

  app.get(
    '/v1/models',
    {
      schema: { ...tagged, operationId: 'listModels', summary: 'OpenAI-compatible: the models (and aliases) model takes', response: { 200: json(ref(OpenAiModelList), '{object: "list", data: [model]}'), ...openAiErrorResponses(401, 500) } },
      onRequest: auth,
      preSerialization: openAiErrorHook,
    },
    async () => ({ object: 'list' as const, data: modelNames(deps.config).map(describe) }),
  );

  app.get(
    '/v1/models/:model',
    {
      schema: {
        ...tagged,
        operationId: 'retrieveModel',
        summary: 'OpenAI-compatible: one model or alias',
        params: ModelNameParams,
        response: { 200: json(ref(OpenAiModel), '{id, object: "model", created, owned_by}'), ...openAiErrorResponses(401, 404, 500) },
      },
      onRequest: auth,
      preSerialization: openAiErrorHook,
    },
    async (req) => {
      const { model } = req.params;
      if (servedModel(deps.config, model) === undefined) {
        throw new ApiError('not_found', `The model ${JSON.stringify(model.slice(0, 64))} does not exist here; GET /v1/models lists what is served`, { details: [{ field: 'model', message: 'unknown model' }] });
      }
      return describe(model);
    },
  );
}
