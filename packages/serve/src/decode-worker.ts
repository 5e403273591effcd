/**
 * Worker-thread body of {@link UploadDecoder}: decodes an upload and resizes it to the model's size
 * (`@diad/datasets`, the code `diad test` uses), off the server's event loop. Errors come back as
 * values, since an error's class does not survive the thread boundary.
 */
import { decodeRgb, ImageDecodeError, resizeBilinear } from '@diad/datasets';

export interface DecodeTask {
  bytes: Uint8Array;
  size: number;
  maxPixels: number;
}

export type DecodeResult = { ok: true; data: Uint8Array } | { ok: false; reason: ImageDecodeError['reason']; message: string };

export default async function decode({ bytes, size, maxPixels }: DecodeTask): Promise<DecodeResult> {
  try {
    return { ok: true, data: resizeBilinear(await decodeRgb(bytes, maxPixels), size, size).data };
  } catch (e) {
    if (e instanceof ImageDecodeError) return { ok: false, reason: e.reason, message: e.message };
    return { ok: false, reason: 'unreadable', message: `the image could not be decoded (${(e as Error).message})` };
  }
}
