/**
 * The API's one error mapping: whatever a route, hook or body parser
 * throws becomes a status and the body
 * `{"error":{"code","message","issues"?}}` with a stable code
 * (docs/HTTP-API.md lists them all). Library errors map by class and
 * code, the service's by its code, fastify's own by theirs; anything else
 * is a 500 `internal`, logged with its stack, its message not sent.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  ClosedError,
  ConfigError,
  ConflictError,
  EngineError,
  EngineFailedError,
  InvalidArgumentError,
  NotSupportedError,
  PolicyValidationError,
  SluiceError,
  SyscallError,
  type PolicyIssue,
} from '../../index.js';
import { ServiceError, type ServiceErrorCode } from '../service-error.js';
import { StoreError } from '../../cluster/store.js';

export type ApiErrorCode =
  | ServiceErrorCode
  | 'invalid_json'
  | 'invalid_policy'
  | 'unauthorized'
  | 'address_in_use'
  | 'body_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'engine_failed'
  | 'store_unavailable'
  | 'internal';

export interface ApiErrorBody {
  readonly error: { readonly code: ApiErrorCode; readonly message: string; readonly issues?: readonly PolicyIssue[] };
}

export interface ApiError {
  readonly status: number;
  readonly body: ApiErrorBody;
}

const SERVICE_STATUS: Record<ServiceErrorCode, number> = {
  not_found: 404,
  flow_not_found: 404,
  subscriber_not_found: 404,
  gateway_not_found: 404,
  send_not_found: 404,
  peer_not_found: 404,
  entry_not_found: 404,
  conflict: 409,
  flow_exists: 409,
  subscriber_exists: 409,
  not_cancellable: 409,
  too_many_sends: 409,
  invalid_request: 400,
  not_supported: 400,
  stopping: 503,
};

export function apiError(status: number, code: ApiErrorCode, message: string, issues?: readonly PolicyIssue[]): ApiError {
  return { status, body: { error: { code, message, ...(issues?.length ? { issues } : {}) } } };
}

/** A fastify error of `code` (FST_ERR_*), if `err` is one. */
function fastifyCode(err: unknown): string | undefined {
  const code = (err as FastifyError | undefined)?.code;
  return typeof code === 'string' && code.startsWith('FST_') ? code : undefined;
}

/** The status and body for `err`; `internal` when nothing more specific applies (the caller logs it). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ServiceError) return apiError(SERVICE_STATUS[err.code], err.code, err.message);
  if (err instanceof PolicyValidationError) return apiError(400, 'invalid_policy', err.message, err.issues);
  if (err instanceof ConfigError)
    return apiError(
      400,
      'invalid_policy',
      err.message,
      err.issues.map((m) => ({ path: '', message: m })),
    );
  if (err instanceof InvalidArgumentError) return apiError(400, 'invalid_request', err.message);
  if (err instanceof NotSupportedError) return apiError(400, 'not_supported', err.message);
  if (err instanceof ConflictError) return apiError(409, 'address_in_use', err.message);
  if (err instanceof SyscallError && err.errno === 'EADDRINUSE') return apiError(409, 'address_in_use', `${err.message}: another socket on this host holds it`);
  if (err instanceof SyscallError && err.op === 'bind') return apiError(400, 'invalid_request', `cannot listen there: ${err.message}`);
  if (err instanceof EngineFailedError) return apiError(503, 'engine_failed', err.message);
  if (err instanceof ClosedError) return apiError(503, 'stopping', err.message);
  if (err instanceof EngineError) return apiError(500, 'internal', err.message);
  switch (fastifyCode(err)) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return apiError(413, 'body_too_large', 'request body too large');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return apiError(400, 'invalid_json', (err as Error).message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return apiError(415, 'unsupported_media_type', 'send the body as JSON, with Content-Type: application/json');
    default:
  }
  const status = (err as { statusCode?: unknown } | undefined)?.statusCode;
  if (status === 429) return apiError(429, 'rate_limited', (err as Error).message);
  if (typeof status === 'number' && status >= 400 && status < 500) return apiError(status, 'invalid_request', (err as Error).message);
  if (err instanceof StoreError) return apiError(503, 'store_unavailable', `the cluster store: ${err.message}`);
  if (err instanceof SluiceError) return apiError(500, 'internal', err.message);
  return apiError(500, 'internal', 'internal error (logged by the server)');
}

/** Sends `e`; a request whose body was not read whole gets its connection closed (no reading a 100 MB body to throw it away). */
export function sendApiError(request: FastifyRequest, reply: FastifyReply, e: ApiError): FastifyReply {
  const h = request.headers;
  const bodyPending = !request.raw.complete && (h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0'));
  if (bodyPending) reply.header('connection', 'close');
  if (e.status === 401) reply.header('www-authenticate', 'Bearer realm="sluice"');
  return reply.code(e.status).type('application/json; charset=utf-8').send(e.body);
}
