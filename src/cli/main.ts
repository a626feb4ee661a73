/**
 * The `musc` command line: `run`, `eval`, `demo`, `bank build`, `score`, `serve`,
 * `models inspect` and `worker` (one file per command in commands/). Actions only map flags to the
 * library's calls (src/api); this file builds the program and turns errors into one
 * line on stderr and an exit code: 0 ok, 2 user error, 130 interrupted, 1 internal error.
 */
import { Command, CommanderError } from 'commander';
import { MuscError, errorText } from '../errors.js';
import { addBankCommands } from './commands/bank.js';
import { addDemoCommand } from './commands/demo.js';
import { addEvalCommand } from './commands/eval.js';
import { addModelsCommand } from './commands/models.js';
import { addRunCommand } from './commands/run.js';
import { addWorkerCommand } from './commands/worker.js';
import { addServeCommand } from './serve.js';

/** Builds the CLI program (exported for tests). */
export function buildProgram(): Command {
  const program = new Command();
  program.name('musc').description('Zero-shot anomaly classification and segmentation by mutual scoring of unlabeled images (MuSc)');
  addEvalCommand(program);
  addRunCommand(program);
  addDemoCommand(program);
  addBankCommands(program);
  addServeCommand(program);
  addModelsCommand(program);
  addWorkerCommand(program);
  return program;
}

/** Node's errors about the user's files (missing, not allowed, wrong kind): user errors, not bugs. */
function fileSystemError(err: unknown): string | null {
  const e = err as { code?: unknown; path?: unknown; syscall?: unknown } | null;
  if (!e || typeof e.code !== 'string' || !/^E[A-Z]+$/.test(e.code) || typeof e.syscall !== 'string') return null;
  return errorText(err);
}

/** Entry point: parses argv and maps errors to exit codes (2 for user errors). */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    const program = buildProgram();
    // Usage errors exit 2 like every other user error (commander would exit 1); help/version exit 0.
    const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
    for (const c of all(program)) c.exitOverride();
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof MuscError) {
      process.stderr.write(`musc: ${err.message}\n`);
      return err.code === 'INTERRUPTED' ? 130 : 2;
    }
    const fsMessage = fileSystemError(err);
    if (fsMessage) {
      process.stderr.write(`musc: ${fsMessage}\n`);
      return 2;
    }
    process.stderr.write(`musc: internal error (please report it): ${err instanceof Error ? (err.stack ?? err.message) : errorText(err)}\n`);
    return 1;
  }
}
