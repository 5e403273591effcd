/**
 * Progress display for training and testing: a cli-progress bar with loss, images/s and time left
 * on a terminal; on a pipe (CI, logs) a plain line every few percent instead of escape codes.
 */
import cliProgress from 'cli-progress';

export class Progress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastLine = -1;
  private value: number;
  private readonly t0 = Date.now();

  /**
   * @param label shown before the bar.
   * @param total steps (or images) to do.
   * @param start steps already done (a resumed stage).
   * @param quiet print nothing.
   */
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly start: number,
    private readonly quiet = false,
    private readonly showLoss = true,
  ) {
    const tty = !!process.stderr.isTTY && !quiet;
    this.bar = tty
      ? new cliProgress.SingleBar(
          {
            format: `${label} [{bar}] {value}/{total}${showLoss ? ' | loss {loss} | lr {lr}' : ''} | {ips} img/s | {eta_formatted} left`,
            stream: process.stderr,
            hideCursor: true,
            etaBuffer: 20,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
    this.value = start;
    this.bar?.start(total, start, { loss: '-', lr: '-', ips: '-' });
  }

  /** Takes the bar off the terminal so other lines can be printed; {@link resume} puts it back. */
  pause(): void {
    this.bar?.stop();
  }

  resume(): void {
    this.bar?.start(this.total, this.value, { loss: '-', lr: '-', ips: '-' });
  }

  /** Reports `value` steps done; `loss`, `lr` (the learning rate of the step) and `ips` (images/s) are shown when given. */
  update(value: number, info: { loss?: number; lr?: number; ips?: number } = {}): void {
    const loss = info.loss === undefined ? '-' : info.loss.toPrecision(4);
    const lr = info.lr === undefined ? '-' : info.lr.toExponential(2);
    const ips = info.ips === undefined ? '-' : info.ips.toFixed(2);
    this.value = value;
    if (this.bar) {
      this.bar.update(value, { loss, lr, ips });
      return;
    }
    if (this.quiet) return;
    const pct = Math.floor((100 * value) / Math.max(this.total, 1) / 10);
    if (pct === this.lastLine && value !== this.total) return;
    this.lastLine = pct;
    const done = value - this.start;
    const elapsed = (Date.now() - this.t0) / 1000;
    const left = done > 0 ? ((this.total - value) * elapsed) / done : NaN;
    process.stderr.write(
      `${this.label}: ${value}/${this.total}${this.showLoss ? ` | loss ${loss} | lr ${lr}` : ''} | ${ips} img/s | ${Number.isFinite(left) ? `${left.toFixed(0)} s left` : '-'}\n`,
    );
  }

  stop(): void {
    this.bar?.stop();
  }
}
