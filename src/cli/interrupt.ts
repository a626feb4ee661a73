/** Ctrl-C and SIGTERM as an AbortSignal for the long-running commands. */
import { MuscError } from '../errors.js';

/**
 * An AbortSignal that fires on the first Ctrl-C (a second one exits at once). `kept` says
 * what the command leaves behind when stopped, so the message is true for that command.
 */
export function interruptSignal(kept: string): AbortSignal {
  const ctrl = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\ninterrupted: stopping after the current step (Ctrl-C again to quit now)\n');
    ctrl.abort(new MuscError('INTERRUPTED', `interrupted by the user; ${kept}`));
    process.once('SIGINT', () => process.exit(130));
  });
  process.once('SIGTERM', () => ctrl.abort(new MuscError('INTERRUPTED', `terminated; ${kept}`)));
  return ctrl.signal;
}
