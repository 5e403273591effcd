/** Parsers of command-line flag values shared by the commands; each error names the flag and the fix. */

/**
 * An integer flag of at least `min`; absent (`undefined`) stays absent (the preset's or the default).
 * @param flag the flag as typed, e.g. `--batch-size`.
 * @throws Error naming the flag and the bound (an empty value, a fraction or a number below `min`).
 */
export function intFlag(flag: string, v: string, min?: number): number;
export function intFlag(flag: string, v: string | undefined, min?: number): number | undefined;
export function intFlag(flag: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer of at least ${min}, got "${v}"`);
  return n;
}

/**
 * A `--levels` value: `all`, or comma-separated feature-map indices, distinct and ascending.
 * @throws Error naming `--levels` and the fix.
 */
export function parseLevels(v: string): number[] | 'all' {
  if (v.trim() === 'all') return 'all';
  const parts = v.split(',').map((x) => x.trim());
  if (!parts.every((x) => /^\d+$/.test(x))) throw new Error(`--levels ${v}: expected comma-separated indices such as 1 or 1,2 (or all)`);
  if (!parts.every((x, i) => i === 0 || Number(x) > Number(parts[i - 1]))) throw new Error(`--levels ${v}: give distinct indices in ascending order, e.g. 1,2`);
  return parts.map(Number);
}
