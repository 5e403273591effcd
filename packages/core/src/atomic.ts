import { promises as fs } from 'node:fs';
import { dirname, basename, join } from 'node:path';

/**
 * Writes a file atomically (one buffer, a string, or chunks written in order): data goes to a temporary file in the same folder, is flushed to disk,
 * then renamed over the target. A crash, kill -9 or full disk leaves either the old or the new
 * file, never a partial one; the temporary file is removed on failure.
 * @throws Error naming the path when the write fails (the previous file is untouched).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | Iterable<Uint8Array>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let fh: fs.FileHandle | undefined;
  try {
    await fs.mkdir(dirname(path), { recursive: true });
    fh = await fs.open(tmp, 'w');
    if (typeof data === 'string' || data instanceof Uint8Array) await fh.writeFile(data);
    else for (const chunk of data) await fh.write(chunk);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw new Error(`could not write ${path} (previous version kept): ${(e as Error).message}`);
  }
}
