/**
 * What the service refuses on its own account (an unknown name, a name
 * taken, a job that cannot be cancelled), with the stable code the HTTP
 * API puts in its error body. Errors of the library (SluiceError and its
 * codes) pass through the service unchanged; src/server/http/errors.ts
 * maps both to statuses.
 */
export type ServiceErrorCode =
  | 'not_found'
  | 'flow_not_found'
  | 'subscriber_not_found'
  | 'gateway_not_found'
  | 'send_not_found'
  | 'peer_not_found'
  | 'entry_not_found'
  | 'conflict'
  | 'flow_exists'
  | 'subscriber_exists'
  | 'not_cancellable'
  | 'too_many_sends'
  | 'invalid_request'
  | 'not_supported'
  | 'stopping';

export class ServiceError extends Error {
  override name = 'ServiceError';
  constructor(
    readonly code: ServiceErrorCode,
    message: string,
  ) {
    super(message);
  }
}
