/**
 * The listeners of transparent interception (see tproxy-interceptor.ts):
 * per TCP or UDP entry, one port number with a socket for each family the
 * entry needs (IPv4, IPv6 or both), so the listener a flow reaches names
 * its entry. A port free for both families is searched a few times; a
 * host without IPv6 keeps the IPv4 half and says so in the notes.
 */
import net from 'node:net';
import type { InterceptRule } from '../config/intercept-rules.js';
import type { Endpoint } from '../../wire/endpoint.js';
import { SyscallError, fromNodeError } from '../../errors.js';
import type { RawUdpSocket } from '../../sys/udp-socket.js';
import { openTransparentUdp } from '../../sys/transparent-udp.js';

/** Entries of each protocol that get a listener, and the families they need. */
function familiesOf(e: InterceptRule): (4 | 6)[] {
  const f = e.src?.family ?? e.dst?.family;
  return f === undefined ? [4, 6] : [f];
}

/** Attempts to find one port number free for both families. */
const PORT_ATTEMPTS = 8;

function listenTcp(host: string, port: number, ipv6Only: boolean): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    // Half-open: a client that finished sending (FIN) may still be owed the reply the far side is sending.
    const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    srv.once('error', reject);
    srv.listen({ host, port, ipv6Only, exclusive: true }, () => {
      srv.off('error', reject);
      resolve(srv);
    });
  });
}

export interface TcpListener {
  readonly entry: InterceptRule;
  readonly servers: net.Server[];
}

export interface UdpListener {
  readonly entry: InterceptRule;
  readonly socket: RawUdpSocket;
  readonly bound: Endpoint;
}

/**
 * Entry `e`'s TCP listener: one socket per family it needs, all on one
 * port number (tried PORT_ATTEMPTS times), paused on connect.
 * `onConnection` gets each client; a failed accept goes to `onAcceptError`.
 * What start chose to do without failing goes to `notes`.
 */
export async function openTcpListener(
  e: InterceptRule,
  notes: string[],
  onConnection: (s: net.Socket) => void,
  onAcceptError: () => void,
): Promise<TcpListener & { readonly port: number }> {
  const families = familiesOf(e);
  let lastErr: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const servers: net.Server[] = [];
    try {
      let port = 0;
      for (const f of families) {
        try {
          const srv = await listenTcp(f === 4 ? '0.0.0.0' : '::', port, f === 6);
          servers.push(srv);
          port = (srv.address() as net.AddressInfo).port;
        } catch (err) {
          // No IPv6 here: an entry that is not IPv6-only still works for IPv4.
          const code = (err as NodeJS.ErrnoException).code;
          if (f === 6 && families.length > 1 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
            notes.push(`entry ${e.name}: no IPv6 listener (${code}); IPv6 flows of this entry are refused`);
            continue;
          }
          throw err;
        }
      }
      for (const srv of servers) {
        srv.on('connection', onConnection);
        // After listen, 'error' is a failed accept (EMFILE when descriptors run out): counted; unheard it would end the process.
        srv.on('error', onAcceptError);
      }
      return { entry: e, servers, port };
    } catch (err) {
      for (const s of servers) s.close();
      lastErr = err;
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') break;
    }
  }
  throw fromNodeError('listen (transparent TCP)', lastErr, `entry ${e.name}`);
}

/** Entry `e`'s transparent UDP sockets: one per family it needs, on one port number, each marked `mark`. */
export function openUdpListeners(e: InterceptRule, mark: number, notes: string[]): { readonly listeners: UdpListener[]; readonly port: number } {
  const families = familiesOf(e);
  let lastErr: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const opened: UdpListener[] = [];
    try {
      let port = 0;
      for (const f of families) {
        try {
          const socket = openTransparentUdp({ family: f, address: f === 4 ? '0.0.0.0' : '::', port }, mark, { recvOrigDst: true });
          const bound = socket.localEndpoint();
          opened.push({ entry: e, socket, bound });
          port = bound.port;
        } catch (err) {
          if (f === 6 && families.length > 1 && err instanceof SyscallError && (err.errno === 'EAFNOSUPPORT' || err.errno === 'EADDRNOTAVAIL')) {
            notes.push(`entry ${e.name}: no IPv6 listener (${err.errno}); IPv6 datagrams of this entry are dropped`);
            continue;
          }
          throw err;
        }
      }
      return { listeners: opened, port };
    } catch (err) {
      for (const o of opened) o.socket.close();
      lastErr = err;
      if (!(err instanceof SyscallError && err.errno === 'EADDRINUSE')) break;
    }
  }
  throw lastErr;
}
