/** Progress bar with ETA on stderr (cli-progress); silent when stderr is not a terminal. */
import cliProgress from 'cli-progress';

export interface Progress {
  update(stage: string, fraction: number): void;
  stop(): void;
}

/** A bar for `label`; `quiet` disables it (e.g. `--json` into a pipe still shows it on a TTY). */
export function createProgress(label: string, quiet = false): Progress {
  if (quiet || !process.stderr.isTTY) {
    return { update: () => undefined, stop: () => undefined };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {stage} |{bar}| {percentage}% | ETA {eta_formatted} | {duration_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(1000, 0, { stage: 'features' });
  let stopped = false;
  return {
    update(stage, fraction) {
      // Rough shares of the wall time: features 10 %, mutual scoring 80 %, writing outputs 10 %.
      const v = stage === 'features' ? fraction * 100 : stage === 'scoring' ? 100 + fraction * 800 : 900 + fraction * 100;
      bar.update(Math.round(v), { stage: stage.padEnd(8) });
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
