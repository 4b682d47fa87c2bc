import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from '../metrics/metrics.js';
import { buildWorkerMonitor, processState, type MonitoredWorker } from './worker-monitor.js';

const w = (id: string, state: MonitoredWorker['state'], reason: string | null = null): MonitoredWorker => ({ id, state, reason });

describe('worker monitor', () => {
  it('reports the most useful state of its workers', () => {
    assert.deepEqual(processState([w('a', 'BUSY'), w('b', 'READY')]), { status: 'READY' });
    assert.deepEqual(processState([w('a', 'BUSY'), w('b', 'STARTING')]), { status: 'BUSY' });
    assert.deepEqual(processState([w('a', 'UNHEALTHY', 'CUDA error'), w('b', 'STARTING')]), { status: 'STARTING' });
    assert.deepEqual(processState([w('a', 'DRAINING'), w('b', 'DRAINING')]), { status: 'DRAINING', reason: 'the worker is shutting down' });
    assert.deepEqual(processState([w('a', 'UNHEALTHY', 'CUDA error'), w('b', 'DRAINING')]), { status: 'UNHEALTHY', reason: 'a: CUDA error' });
    assert.equal(processState([]).status, 'UNHEALTHY');
  });

  it('answers /health always with 200, /health/ready with 503 unless it can work, and unknown paths in the error envelope', async () => {
    let workers = [w('gpu0', 'STARTING')];
    const app = buildWorkerMonitor(createMetrics(), () => workers);
    const health = await app.inject('/health');
    assert.equal(health.statusCode, 200);
    assert.deepEqual(health.json(), { status: 'STARTING', workers: [{ id: 'gpu0', state: 'STARTING' }] });
    assert.equal((await app.inject('/health/ready')).statusCode, 503);
    workers = [w('gpu0', 'UNHEALTHY', 'the model could not load')];
    assert.deepEqual((await app.inject('/health')).json(), {
      status: 'UNHEALTHY',
      reason: 'gpu0: the model could not load',
      workers: [{ id: 'gpu0', state: 'UNHEALTHY', reason: 'the model could not load' }],
    });
    workers = [w('gpu0', 'BUSY')];
    assert.equal((await app.inject('/health/ready')).statusCode, 200);
    const metrics = await app.inject('/metrics');
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /^# HELP /m);
    const missing = await app.inject('/nope?x=1');
    assert.equal(missing.statusCode, 404);
    assert.deepEqual({ ...(missing.json() as object), request_id: 'x' }, { error: 'No route GET /nope', code: 'not_found', request_id: 'x' });
    await app.close();
  });
});
