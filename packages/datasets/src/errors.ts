import type { Problem } from './types.js';

/**
 * A dataset error naming the file at fault and the fix. `problems` holds every problem when
 * several were found at once (e.g. all defective images without a mask in a class).
 */
export class DatasetError extends Error {
  readonly problems: readonly Problem[];

  constructor(problems: readonly Problem[]) {
    super(formatProblems(problems));
    this.name = 'DatasetError';
    this.problems = problems;
  }

  /** Shorthand for a single problem. */
  static of(file: string, message: string, fix: string): DatasetError {
    return new DatasetError([{ file, message, fix }]);
  }
}

/** Human-readable lines `file: message (fix: ...)`, at most `limit` (default 10) plus a count of the rest. */
export function formatProblems(problems: readonly Problem[], limit = 10): string {
  const lines = problems.slice(0, limit).map((p) => `${p.file}: ${p.message} (fix: ${p.fix})`);
  if (problems.length > limit) lines.push(`... and ${problems.length - limit} more problems`);
  return lines.join('\n');
}
