/**
 * The naive fan-out the bench compares against: a UDP socket and a
 * node:net server in one Node process, each datagram written to every
 * client with socket.write (a copy per client in user space). A client
 * with more than 8 MiB queued is dropped so a stuck reader cannot exhaust
 * memory. Usage: fanout-naive.ts UDP_PORT TCP_PORT
 */
import { createSocket } from 'node:dgram';
import { createServer, type Socket } from 'node:net';

const [udpPort, tcpPort] = process.argv.slice(2).map(Number) as [number, number];
const clients = new Set<Socket>();
createServer((s) => {
  s.on('error', () => {});
  s.on('close', () => clients.delete(s));
  clients.add(s);
}).listen(tcpPort, '127.0.0.1', () => process.stdout.write(`listening ${tcpPort}\n`));
const u = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
u.on('message', (m) => {
  for (const s of clients) {
    if (s.writableLength > 8 << 20) s.destroy();
    else s.write(m);
  }
});
u.bind(udpPort, '127.0.0.1');
