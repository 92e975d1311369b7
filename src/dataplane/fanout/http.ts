/**
 * The fan-out's HTTP front, the few bytes of HTTP/1.x it needs: the request
 * line and headers read from a new connection (bounded in size and time by
 * the caller), and the responses. Everything else about the connection is
 * raw bytes: after the 200 header the response body is the stream, with
 * no length, ended by closing (as udpxy does).
 */

export type RequestHead =
  | { readonly ok: true; readonly method: string; readonly path: string; readonly version: string }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/** Offset just past the blank line ending the head, or -1 if it has not arrived yet. */
export function headEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  if (crlf >= 0) return crlf + 4;
  const lf = buf.indexOf('\n\n');
  return lf >= 0 ? lf + 2 : -1;
}

/** Parses the request line of a complete head (headers are read past, not used). */
export function parseHead(head: Buffer): RequestHead {
  const text = head.toString('latin1');
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  const m = /^([A-Z]{1,16}) (\S{1,4096}) HTTP\/(1\.[01])$/.exec(line);
  if (!m) return { ok: false, status: 400, reason: 'malformed request line' };
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) return { ok: false, status: 400, reason: 'control characters in the request' };
  return { ok: true, method: m[1]!, path: m[2]!, version: m[3]! };
}

const REASONS: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  503: 'Service Unavailable',
};

/** A complete response with a text body (errors, /status). */
export function response(status: number, body: string, contentType = 'text/plain; charset=utf-8', extra = ''): string {
  const b = Buffer.from(body, 'utf8');
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nServer: sluice\r\nContent-Type: ${contentType}\r\nContent-Length: ${b.byteLength}\r\n` +
    `Connection: close\r\nCache-Control: no-cache\r\n${extra}\r\n${body}`
  );
}

/** The stream's header: no length; the body ends when the connection does. */
export function streamHead(): string {
  return 'HTTP/1.1 200 OK\r\nServer: sluice\r\nContent-Type: application/octet-stream\r\nConnection: close\r\nCache-Control: no-cache\r\n\r\n';
}

/** What a client gets when the input cannot be opened after all: a 503 header, then the reason as the body. */
export function inputFailureHead(): string {
  return 'HTTP/1.1 503 Service Unavailable\r\nServer: sluice\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\ninput unavailable: ';
}
