/**
 * The answers of GET /health and GET /health/ready (cog style: health always answers, the
 * state is in the body), as the routes' schemas and OpenAPI components.
 */
import Type, { type Static } from 'typebox';
import { Choice } from './string-schemas.js';

/** The states of a server, an engine and a fleet worker (the queues' readiness and /health). */
export const HEALTH_STATUSES = ['STARTING', 'READY', 'BUSY', 'UNHEALTHY', 'DRAINING'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

const HealthStatus = Choice(HEALTH_STATUSES, { description: 'READY or BUSY take work; STARTING and DRAINING answer 503, UNHEALTHY 502 or 503' });
const reason = Type.Optional(Type.String({ description: 'Why, when not READY or BUSY' }));

export const Health = Type.Object(
  {
    status: HealthStatus,
    reason,
    model: Type.String({ description: 'The model served (KLEIN_MODEL)' }),
    queue: Type.Object({
      waiting: Type.Integer(),
      running: Type.Integer(),
      oldest_age_s: Type.Number({ description: 'Age of the oldest waiting request, in seconds' }),
    }),
  },
  { additionalProperties: true, $id: 'Health', description: 'The state, the model and the queue, plus what the queue describes (the engine, or the fleet of workers)' },
);

export const ReadyCheck = Type.Object({ status: HealthStatus, reason }, { $id: 'ReadyCheck', description: 'The state alone: 200 when work can be taken, else 503' });

export type Health = Static<typeof Health>;
export type ReadyCheck = Static<typeof ReadyCheck>;
