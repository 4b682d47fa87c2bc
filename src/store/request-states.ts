/**
 * Request states, in one place. QUEUED → PROCESSING → COMPLETED | FAILED | CANCELLED;
 * PROCESSING may go back to QUEUED when a worker dies and the job is retried. Terminal
 * states are final. Every state change in the store goes through `canTransition`.
 */
export const REQUEST_STATUSES = ['QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

export const TERMINAL: ReadonlySet<RequestStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

const ALLOWED: Record<RequestStatus, readonly RequestStatus[]> = {
  QUEUED: ['PROCESSING', 'CANCELLED', 'FAILED'],
  PROCESSING: ['COMPLETED', 'FAILED', 'CANCELLED', 'QUEUED'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: [],
};

export function canTransition(from: RequestStatus, to: RequestStatus): boolean {
  return ALLOWED[from].includes(to);
}
