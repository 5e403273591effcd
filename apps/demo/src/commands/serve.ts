import type { Command } from 'commander';

/** Parses a whole-number flag in [min, max]. @throws Error naming the flag. */
function count(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new Error(`${flag} ${JSON.stringify(v)}: give a whole number from ${min} to ${max}`);
  return n;
}

/**
 * `diad serve --bundle DIR [--port P]`: serves a bundle made by `diad export` over HTTP (see
 * @diad/serve): `POST /v1/score` (raw image bytes or multipart; `?class=NAME`, `?heatmap=1`),
 * `/healthz`, `/readyz`, `/metrics`. SIGINT or SIGTERM finishes the requests in flight, then exits
 * (run it with `node`, not through `pnpm`, where a process manager sends the signal: pnpm does not
 * forward SIGTERM to its child).
 */
export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a bundle made by diad export over HTTP (POST /v1/score, /healthz, /readyz, /metrics)')
    .requiredOption('--bundle <dir>', 'bundle folder made by diad export --out')
    .option('--host <host>', 'interface to listen on (0.0.0.0 for all)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one; the address is printed)', '8080')
    .option('--max-batch <n>', 'most images per model batch', '8')
    .option('--max-wait-ms <n>', 'longest wait of a request for others to join its batch, ms', '10')
    .option('--max-queue <n>', 'most images waiting; more are answered 503 with Retry-After', '64')
    .option('--timeout-ms <n>', 'longest time to answer a request, ms (then 504)', '60000')
    .option('--max-bytes <n>', 'largest request body, bytes (then 413)', String(20 * 1024 * 1024))
    .option('--max-pixels <n>', 'largest image, width x height (then 413, before decoding)', '40000000')
    .option('--decode-threads <n>', 'worker threads decoding uploads', '2')
    .action(async (f: Record<string, string>) => {
      const log = (l: string) => process.stderr.write(`${l}\n`);
      const options = {
        maxBatch: count('--max-batch', f.maxBatch, 1),
        maxWaitMs: count('--max-wait-ms', f.maxWaitMs, 0),
        maxQueue: count('--max-queue', f.maxQueue, 1),
        timeoutMs: count('--timeout-ms', f.timeoutMs, 1),
        maxBytes: count('--max-bytes', f.maxBytes, 1),
        maxPixels: count('--max-pixels', f.maxPixels, 1),
        decodeThreads: count('--decode-threads', f.decodeThreads, 1, 64),
      };
      const port = count('--port', f.port, 0, 65535);
      // Loaded here: the other commands do not need the HTTP stack.
      const { DiadBundle } = await import('@diad/core/bundle');
      const { createServer, servedBundle } = await import('@diad/serve');
      const t0 = Date.now();
      const bundle = await DiadBundle.open(f.bundle);
      const m = bundle.manifest;
      log(
        `serve: bundle ${bundle.dir} (preset ${m.preset}, config ${m.configHash}, ${m.preprocessing.size} px, threshold ${m.decision!.threshold.toPrecision(5)}) loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      );
      const server = await createServer(servedBundle(bundle), options);
      const address = await server.app.listen({ host: f.host, port });
      log(`serve: listening on ${address} (POST ${address}/v1/score; max batch ${options.maxBatch}, queue ${options.maxQueue})`);
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log(`serve: ${signal}: finishing the requests in flight`);
        await server.shutdown();
        await bundle.release();
        log('serve: stopped');
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    });
}
