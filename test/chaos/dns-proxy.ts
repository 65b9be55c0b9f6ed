/**
 * A UDP relay in front of the chaos suite's dnsmasq, so that DNS can turn slow or silent without postwarden's
 * `dns.servers` changing: postwarden asks the relay, the relay asks dnsmasq. `mode` is `pass` (relayed at once),
 * `slow` (each answer held back `delayMs`, some past postwarden's DNS deadline) or `silent` (queries read, never
 * answered: the resolver times out). The packets are relayed as they are: one upstream socket per query, its
 * answer sent back to the client that asked.
 *
 * Failure: a query dnsmasq does not answer within 5 s is dropped (the client times out, as with any resolver).
 */
import dgram from 'node:dgram';

export type DnsMode = { kind: 'pass' } | { kind: 'slow'; delayMs: number } | { kind: 'silent' };

export interface DnsRelay {
  readonly address: string;
  mode: DnsMode;
  /** Queries seen, and how many were answered. */
  readonly counts: { queries: number; answered: number };
  stop(): Promise<void>;
}

const UPSTREAM_WAIT_MS = 5000;

export async function startDnsRelay(
  port: number,
  upstream: { host: string; port: number },
): Promise<DnsRelay> {
  const socket = dgram.createSocket('udp4');
  const open = new Set<dgram.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const counts = { queries: 0, answered: 0 };
  const relay: DnsRelay = {
    address: `127.0.0.1:${port}`,
    mode: { kind: 'pass' },
    counts,
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of open) s.close();
      await new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      f();
    }, ms);
    timers.add(t);
  };
  socket.on('message', (query, from) => {
    counts.queries += 1;
    const mode = relay.mode;
    if (mode.kind === 'silent') return;
    const up = dgram.createSocket('udp4');
    open.add(up);
    const done = () => {
      if (open.delete(up)) up.close();
    };
    later(UPSTREAM_WAIT_MS, done);
    up.on('error', done);
    up.on('message', (answer) => {
      done();
      const send = () => {
        counts.answered += 1;
        socket.send(answer, from.port, from.address);
      };
      if (mode.kind === 'slow') later(mode.delayMs, send);
      else send();
    });
    up.send(query, upstream.port, upstream.host);
  });
  socket.on('error', () => undefined); // a send to a client that went away
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: '127.0.0.1', port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return relay;
}
