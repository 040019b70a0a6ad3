/**
 * Typed HTTP errors with a stable JSON body `{ error: { code, message, field? } }`.
 * `toHttpError` maps everything the request path can throw (PurifyError, body-parser, multer, our own)
 * to one; anything unrecognised becomes a 500 whose message says nothing about internals.
 */
import type { ErrorRequestHandler } from 'express';

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

export class HttpError extends Error {
  readonly headers: Record<string, string>;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.headers = headers;
  }

  get body(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.field ? { field: this.field } : {}) } };
  }
}

/** 503 with Retry-After (seconds): load shedding and overload. */
export function overloaded(code: string, message: string, retryAfterS: number): HttpError {
  return new HttpError(503, code, message, undefined, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterS))) });
}

const BODY_PARSER: Record<string, [number, string]> = {
  'entity.parse.failed': [400, 'MALFORMED_JSON'],
  'entity.too.large': [413, 'PAYLOAD_TOO_LARGE'],
  'entity.verify.failed': [400, 'BAD_REQUEST'],
  'encoding.unsupported': [415, 'UNSUPPORTED_ENCODING'],
  'charset.unsupported': [415, 'UNSUPPORTED_CHARSET'],
  'request.aborted': [400, 'REQUEST_ABORTED'],
  'request.size.invalid': [400, 'BAD_REQUEST'],
  'stream.encoding.set': [500, 'INTERNAL'],
  'parameters.too.many': [413, 'TOO_MANY_PARAMETERS'],
};

const MULTER: Record<string, [number, string, string]> = {
  LIMIT_FILE_SIZE: [413, 'PAYLOAD_TOO_LARGE', 'image file is larger than the upload limit'],
  LIMIT_PART_COUNT: [413, 'TOO_MANY_PARTS', 'too many parts in the multipart form'],
  LIMIT_FILE_COUNT: [413, 'TOO_MANY_FILES', 'too many files in the multipart form (send one, field "image")'],
  LIMIT_FIELD_COUNT: [413, 'TOO_MANY_FIELDS', 'too many fields in the multipart form'],
  LIMIT_FIELD_KEY: [413, 'FIELD_NAME_TOO_LONG', 'a multipart field name is too long'],
  LIMIT_FIELD_VALUE: [413, 'FIELD_TOO_LONG', 'a multipart field value is too long'],
  LIMIT_UNEXPECTED_FILE: [400, 'UNEXPECTED_FILE', 'unexpected file field (send the image in field "image")'],
  MISSING_FIELD_NAME: [400, 'BAD_MULTIPART', 'a multipart part has no field name'],
};

interface Tagged {
  name?: unknown;
  code?: unknown;
  type?: unknown;
  status?: unknown;
  statusCode?: unknown;
  expose?: unknown;
  field?: unknown;
  message?: unknown;
}

/** Map anything thrown on the request path to an HttpError. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as Tagged;
  const field = typeof e.field === 'string' ? e.field : undefined;
  if (e.name === 'PurifyError' && typeof e.code === 'string' && typeof e.status === 'number') {
    return new HttpError(e.status, e.code, String(e.message), field);
  }
  if (e.name === 'MulterError' && typeof e.code === 'string') {
    const [status, code, message] = MULTER[e.code] ?? [400, 'BAD_MULTIPART', 'malformed multipart form'];
    return new HttpError(status, code, message, field);
  }
  if (typeof e.type === 'string' && BODY_PARSER[e.type]) {
    const [status, code] = BODY_PARSER[e.type];
    const message = status === 413 ? 'request body is larger than the limit' : status >= 500 ? 'internal error' : String(e.message);
    return new HttpError(status, code, message);
  }
  const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500 && e.expose !== false) {
    // multipart parse errors from busboy ("Unexpected end of form", "Malformed part header") land here
    return new HttpError(status, 'BAD_REQUEST', typeof e.message === 'string' ? e.message : 'bad request');
  }
  if (/^(Unexpected end of form|Malformed part header|Multipart: Boundary not found)/.test(String(e.message))) {
    return new HttpError(400, 'BAD_MULTIPART', String(e.message));
  }
  return new HttpError(500, 'INTERNAL', 'internal error');
}

export interface ErrorHandlerOptions {
  /** Called for every error before it is rendered (logging, metrics). `original` is what was thrown. */
  onError?: (err: HttpError, original: unknown, req: Parameters<ErrorRequestHandler>[1]) => void;
}

/** Render errors as `{ error: { code, message, field? } }` with the right status and headers; never a stack. */
export function errorHandler(o: ErrorHandlerOptions = {}): ErrorRequestHandler {
  return (err, req, res, next) => {
    const h = toHttpError(err);
    o.onError?.(h, err, req);
    if (res.headersSent) return next(err);
    res.status(h.status).set(h.headers).json(h.body);
  };
}
