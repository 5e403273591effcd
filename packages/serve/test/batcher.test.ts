import { describe, expect, it } from 'vitest';
import { Batcher, QueueFullError, RequestTimeoutError } from '../src/batcher.js';

/** A run whose batches stay open until released, recording their items. */
function gated() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const run = (items: number[]) => {
    batches.push(items);
    return new Promise<number[]>((resolve) => gates.push(() => resolve(items.map((x) => x * 10))));
  };
  const release = async () => {
    while (gates.length === 0) await new Promise((r) => setTimeout(r, 1));
    gates.shift()!();
  };
  return { batches, run, release };
}

describe('Batcher', () => {
  it('runs full batches at once and a partial one after maxWaitMs, answering each item in order', async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>(
      async (xs) => xs.map((x) => x * 2),
      { maxBatch: 2, maxWaitMs: 20, maxQueue: 10, timeoutMs: 5000 },
      (n) => sizes.push(n),
    );
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    expect(out).toEqual([2, 4, 6, 8, 10]);
    expect(sizes).toEqual([2, 2, 1]);
  });

  it('refuses when maxQueue items wait, with a Retry-After of at least 1 s, and takes new work once the queue moves', async () => {
    const g = gated();
    const b = new Batcher<number, number>(g.run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 2, timeoutMs: 5000 });
    const first = b.submit(1); // runs
    await new Promise((r) => setTimeout(r, 5));
    const waiting = [b.submit(2), b.submit(3)]; // queue full
    expect(b.full).toBe(true);
    const refused = await b.submit(4).catch((e) => e);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 3; i++) await g.release();
    expect(await Promise.all([first, ...waiting])).toEqual([10, 20, 30]);
    expect(g.batches).toEqual([[1], [2], [3]]);
    g.release();
    expect(await b.submit(5)).toBe(50);
  });

  it('times out an item that waits too long, without stopping its batch or the next', async () => {
    const g = gated();
    const b = new Batcher<number, number>(g.run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 4, timeoutMs: 30 });
    const slow = b.submit(1);
    const queued = b.submit(2);
    await expect(slow).rejects.toBeInstanceOf(RequestTimeoutError);
    await expect(queued).rejects.toBeInstanceOf(RequestTimeoutError);
    expect(b.depth).toBe(0); // the timed-out waiting item left the queue
    await g.release(); // the first batch finishes; its answer is dropped
    const later = b.submit(3);
    await g.release();
    expect(await later).toBe(30);
  });

  it("a failing batch rejects each of its items with the run's error; drain waits for the work", async () => {
    let calls = 0;
    const b = new Batcher<number, number>(
      async (xs) => {
        calls++;
        if (xs.includes(13)) throw new Error('bad batch');
        return xs;
      },
      { maxBatch: 2, maxWaitMs: 5, maxQueue: 8, timeoutMs: 1000 },
    );
    const r = await Promise.allSettled([b.submit(13), b.submit(14), b.submit(15)]);
    expect(r.map((x) => (x.status === 'fulfilled' ? x.value : (x.reason as Error).message))).toEqual(['bad batch', 'bad batch', 15]);
    const p = b.submit(16);
    await b.drain();
    expect(await p).toBe(16);
    expect(calls).toBe(3);
  });

  it('refuses options out of range', () => {
    const run = async (xs: number[]) => xs;
    expect(() => new Batcher(run, { maxBatch: 0, maxWaitMs: 0, maxQueue: 1, timeoutMs: 1 })).toThrow(/maxBatch 0/);
    expect(() => new Batcher(run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 0, timeoutMs: 1 })).toThrow(/maxQueue 0/);
    expect(() => new Batcher(run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 1, timeoutMs: 0 })).toThrow(/timeoutMs 0/);
  });
});
