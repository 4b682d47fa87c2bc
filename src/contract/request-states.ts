/**
 * Request states, in one place (design: "Request states"). A request is created QUEUED,
 * and every later status change is one conditional UPDATE built by `statusUpdate` in
 * store/requests.ts, which refuses a move this table does not allow; the test beside this
 * file mirrors the table. The list is the one the OpenAPI document, the typed client and
 * the playground show.
 *
 *   QUEUED ──▶ PROCESSING ──▶ COMPLETED
 *     │  │         │  └─────▶ FAILED | CANCELLED
 *     │  │         ├────────▶ QUEUED      (requeued after the worker died mid-job)
 *     │  │         └────────▶ PROCESSING  (taken over by another worker after its holder
 *     │  │                                 was presumed dead: a new attempt)
 *     │  └──────────────────▶ FAILED      (e.g. its inputs were lost in a restart)
 *     └─────────────────────▶ CANCELLED
 *
 * COMPLETED, FAILED and CANCELLED are final: a replayed event cannot reopen a request,
 * so a request is charged (COMPLETED) or refunded (FAILED/CANCELLED) exactly once.
 */
export const REQUEST_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

export const TERMINAL: ReadonlySet<RequestStatus> = new Set<RequestStatus>(['COMPLETED', 'FAILED', 'CANCELLED']);

const ALLOWED: Readonly<Record<RequestStatus, readonly RequestStatus[]>> = {
  QUEUED: ['PROCESSING', 'CANCELLED', 'FAILED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'CANCELLED', 'QUEUED', 'PROCESSING'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

export function isTerminal(s: RequestStatus): boolean {
  return TERMINAL.has(s);
}

export function canTransition(from: RequestStatus, to: RequestStatus): boolean {
  return ALLOWED[from].includes(to);
}

export function isRequestStatus(s: string): s is RequestStatus {
  return (REQUEST_STATUSES as readonly string[]).includes(s);
}
