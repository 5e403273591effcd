import type { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import { formatProblems, inspect, type ClassReport, type InspectReport } from '@diad/datasets';

interface InspectFlags {
  data: string[];
  classes?: string;
  json?: boolean;
  verify: boolean;
  prefixClasses?: boolean;
}

/**
 * `diad inspect --data DIR [--data DIR2 ...] [--classes a,b] [--json] [--no-verify]`: per class,
 * train images, good and defective test images (per defect type), masks, and the problems found.
 * Exit code 1 when a problem is found.
 */
export function register(program: Command): void {
  program
    .command('inspect')
    .description('count images and masks per class and list problems (missing masks, orphan masks, unreadable images, ...)')
    .requiredOption('--data <dir>', 'dataset root: MVTec-layout class folders, one class folder, or a VisA root (repeatable)', collect, [])
    .option('--classes <list>', 'only these classes, comma-separated')
    .option('--prefix-classes', 'name classes <root folder>/<class>, so equal names in two roots stay apart')
    .option('--no-verify', 'skip decoding every image and mask (faster; finds structural problems only)')
    .option('--json', 'print the report as JSON')
    .action(async (flags: InspectFlags) => {
      const classes = flags.classes
        ?.split(',')
        .map((c) => c.trim())
        .filter(Boolean);
      const bar = flags.verify && process.stderr.isTTY ? new SingleBar({ format: 'verifying {bar} {value}/{total} files', stream: process.stderr }) : null;
      const report = await inspect(flags.data, {
        classes,
        prefixClasses: flags.prefixClasses,
        verify: flags.verify,
        onProgress: bar
          ? (done, total) => {
              if (done === 1) bar.start(total, 0);
              bar.update(done);
            }
          : undefined,
      });
      bar?.stop();
      process.stdout.write(flags.json ? JSON.stringify({ roots: flags.data, ...report }, null, 2) + '\n' : formatReport(report));
      if (report.problemCount > 0) process.exitCode = 1;
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The report as an aligned table, defect types per class, then the problems. */
export function formatReport(report: InspectReport): string {
  const head = ['class', 'format', 'train', 'test good', 'test defective', 'masks', 'problems'];
  const rows = report.classes.map((c: ClassReport) => [c.name, c.format, c.train, c.testGood, c.testDefective, c.masks, c.problems.length].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((s, i) => (i < 2 ? s.padEnd(widths[i]) : s.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [line(head), ...rows.map(line), ''];
  for (const c of report.classes) {
    const d = Object.entries(c.defects)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    out.push(`${c.name} (${c.root}): ${d || 'no defective test images'}`);
  }
  out.push('');
  const problems = report.classes.flatMap((c) => c.problems);
  out.push(problems.length === 0 ? 'no problems found' : `${problems.length} problem(s):\n${formatProblems(problems, Infinity)}`);
  return out.join('\n') + '\n';
}
