/**
 * Typed errors. Every error a user can trigger with bad input names the file or
 * setting at fault, so a 500-image run can report and skip instead of dying.
 */

/** Base class for all errors raised by musc-ts. `code` is stable for programs. */
export class MuscError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MuscError';
    this.code = code;
  }
}

/** An image file could not be read or decoded. */
export class ImageDecodeError extends MuscError {
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super('IMAGE_DECODE', `cannot read image ${JSON.stringify(file)}: ${reason}`, options);
    this.name = 'ImageDecodeError';
    this.file = file;
  }
}

/** The backbone model is missing, corrupt, or lacks the tensors we need. */
export class ModelError extends MuscError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MODEL', message, options);
    this.name = 'ModelError';
  }
}

/** A dataset folder does not have the expected layout (missing/mismatched masks, no images). */
export class DatasetError extends MuscError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DATASET', message, options);
    this.name = 'DatasetError';
  }
}

/** A configuration value is out of range or inconsistent (e.g. fewer than 5 images). */
export class ConfigError extends MuscError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

/** Text of any thrown value, for reports. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
