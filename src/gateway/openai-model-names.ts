/**
 * The names the OpenAI routes' `model` takes (contract §6, §8): every served slug, and the
 * aliases of KLEIN_OPENAI_MODEL_ALIASES (config.ts), e.g. gpt-image-1, so that code written
 * for OpenAI runs unchanged. The image routes resolve `model` with it; GET /v1/models lists it.
 */
import type { Config } from '../config.js';

/**
 * The served slug a `model` names: itself, or the slug of its alias; undefined for any other
 * name. Absent means the first served model.
 */
export function servedModel(config: Pick<Config, 'openAiModelAliases' | 'models'>, model: string | undefined): string | undefined {
  if (model === undefined) return config.models.first.slug;
  if (config.models.get(model)) return model;
  return config.openAiModelAliases.get(model);
}

/** Every name `model` takes: the slugs first, in their configured order, then the aliases in theirs. */
export function modelNames(config: Pick<Config, 'openAiModelAliases' | 'models'>): string[] {
  return [...config.models.slugs, ...config.openAiModelAliases.keys()];
}
