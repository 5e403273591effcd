import type { Command } from 'commander';
import { join } from 'node:path';
import { mergeShards, metricsMarkdown, RunDir } from '@diad/pipeline';

/**
 * `diad merge --run R --out DIR SHARD_DIR...`: the shards of one sharded `diad test` combined into
 * its metrics and report, equal to an unsharded test's; mismatched, duplicated or missing shards
 * are refused by folder.
 */
export function register(program: Command): void {
  program
    .command('merge')
    .description('combine the shards of a sharded diad test (diad test --shard K/N) into one metrics table and report')
    .requiredOption('--run <dir>', 'run folder the shards were tested from')
    .requiredOption('--out <dir>', 'output folder of the merged test')
    .option('--overwrite', 'replace a test result already in the output folder')
    .argument('<shards...>', 'shard folders (each with shard.json and shard.safetensors)')
    .action(async (shards: string[], f: { run: string; out: string; overwrite?: boolean }) => {
      const run = await RunDir.load(f.run);
      const { out, report } = await mergeShards(run, shards, { out: f.out, overwrite: f.overwrite });
      process.stdout.write(`${metricsMarkdown(report)}\n`);
      process.stderr.write(`report: ${join(out, 'report.html')}\n`);
    });
}
