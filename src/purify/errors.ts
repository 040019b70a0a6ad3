/** Typed errors for everything a caller can get wrong. `code` is stable; `status` is the HTTP status a server should use. */
export type PurifyErrorCode =
  | 'DECODE_FAILED' // bytes are not an image sharp can decode
  | 'TOO_MANY_PIXELS' // decompression-bomb guard
  | 'BAD_SHAPE' // wrong rank / size / channels for the model
  | 'BAD_VALUES' // NaN, Inf or outside [0, 1]
  | 'BAD_INPUT' // wrong type altogether
  | 'UNKNOWN_MODEL'
  | 'UNKNOWN_MODE'
  | 'BAD_OPTION'; // option out of range / wrong type

const STATUS: Record<PurifyErrorCode, number> = {
  DECODE_FAILED: 400,
  TOO_MANY_PIXELS: 413,
  BAD_SHAPE: 400,
  BAD_VALUES: 400,
  BAD_INPUT: 400,
  UNKNOWN_MODEL: 400,
  UNKNOWN_MODE: 400,
  BAD_OPTION: 400,
};

export class PurifyError extends Error {
  readonly status: number;
  constructor(
    readonly code: PurifyErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'PurifyError';
    this.status = STATUS[code];
  }
}
