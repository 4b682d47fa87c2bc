/**
 * The model this server serves, by the slug of its routes (`/v1/<slug>`, `/v2/<slug>`), the
 * `model` of the OpenAI routes, and the generation metadata written into PNG outputs.
 */
export const MODEL_SLUG = 'flux-2-klein-4b';
