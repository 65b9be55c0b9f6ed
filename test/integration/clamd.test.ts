/**
 * The clamd adapter (src/adapters/clamd.ts) against a real clamd (test/harness/clamd.ts: our own EICAR
 * signatures, StreamMaxLength 2M), over the unix socket and over TCP alike: clean mail, EICAR in a base64 MIME
 * attachment and inside a deflated zip attachment, chunking edge cases, StreamMaxLength exceeded (clamd's reply
 * arrives, or is lost to an EPIPE: which one varies from run to run), PING and VERSION. Then what goes wrong:
 * clamd stopped (fails fast, naming the address and the fix), restarted (scans again), hung (deadline), an abort
 * mid-message (rejects at once, the connection to clamd is closed and the spool reader stopped), an
 * already-aborted signal, a spool read error, a bad config. Last, a scripted clamd on loopback gives the replies
 * a real one gives rarely or only when broken (several matches, ERROR lines, garbage, an early OK, a reset
 * mid-message with and without clamd still answering PING).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import {
  ClamdError,
  ClamdScanner,
  type ClamdScanEvent,
  type ClamdSettings,
} from '../../src/adapters/clamd.js';
import type { MessageSource } from '../../src/core/content.js';
import { startClamd, type ClamdServer } from '../harness/clamd.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const never = new AbortController().signal;

/** A re-readable source over a buffer, in `chunkSize` pieces (the spool reads 64 KiB at a time). */
function sourceOf(data: Buffer, chunkSize = 64 * 1024): MessageSource {
  return {
    size: data.length,
    async *chunks() {
      for (let at = 0; at < data.length; at += chunkSize) yield data.subarray(at, at + chunkSize);
    },
  };
}

const CRLF = '\r\n';

/** A plain-text message with one base64 attachment, as a mail client would send it. */
function mimeMessage(attachment?: { name: string; type: string; content: Buffer }): Buffer {
  const head = [
    'From: Virus Sender <virus@remote.test>',
    'To: alice@example.test',
    'Subject: clamd adapter test',
    'Date: Sun, 22 Nov 2026 12:00:00 +0000',
    'Message-ID: <clamd-test@remote.test>',
    'MIME-Version: 1.0',
  ];
  const text = 'Hello Alice,\r\n\r\nplease find the file attached.\r\n';
  if (!attachment) {
    return Buffer.from([...head, 'Content-Type: text/plain; charset=utf-8', '', text].join(CRLF));
  }
  const boundary = '=_pw-clamd-test-boundary';
  const base64 = attachment.content.toString('base64').replace(/.{1,76}/g, `$&${CRLF}`);
  return Buffer.from(
    [
      ...head,
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      '',
      'This is a multi-part message in MIME format.',
      `--${boundary}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      text,
      `--${boundary}`,
      `Content-Type: ${attachment.type}; name="${attachment.name}"`,
      `Content-Disposition: attachment; filename="${attachment.name}"`,
      'Content-Transfer-Encoding: base64',
      '',
      base64,
      `--${boundary}--`,
      '',
    ].join(CRLF),
  );
}

/**
 * A one-file zip, deflated (method 8), so the EICAR bytes appear nowhere in it as such: clamd must unpack it to
 * find them. Local header, data, central directory, end record (APPNOTE 4.3).
 */
function zipOf(name: string, content: Buffer): Buffer {
  const data = zlib.deflateRawSync(content);
  const crc = zlib.crc32(content);
  const fileName = Buffer.from(name, 'latin1');
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4); // version needed: 2.0
  local.writeUInt16LE(8, 8); // deflate
  local.writeUInt16LE(0x5b21, 12); // date: 2025-09-01
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(fileName.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4); // made by 2.0
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10);
  central.writeUInt16LE(0x5b21, 14);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(fileName.length, 28);
  central.writeUInt32LE(0, 42); // local header at offset 0
  const centralOffset = local.length + fileName.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + fileName.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  return Buffer.concat([local, fileName, data, central, fileName, end]);
}

/** Asserts that `pending` rejects with a ClamdError of `kind` whose message matches every pattern. */
async function rejectsWith(
  pending: Promise<unknown>,
  kind: string,
  ...patterns: RegExp[]
): Promise<ClamdError> {
  let caught: unknown;
  await pending.then(
    (value) => assert.fail(`expected a ${kind} error, got ${JSON.stringify(value)}`),
    (error: unknown) => {
      caught = error;
    },
  );
  assert.ok(caught instanceof ClamdError, `not a ClamdError: ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

let clamd: ClamdServer;
before(async () => {
  clamd = await startClamd();
});
after(async () => {
  await clamd?.destroy();
});

const transports = {
  unix: (timeout_ms = 10_000): ClamdSettings => ({ socket: clamd.socket, host: '', port: 3310, timeout_ms }),
  tcp: (timeout_ms = 10_000): ClamdSettings => ({
    socket: '',
    host: clamd.host,
    port: clamd.port,
    timeout_ms,
  }),
};
const targetOf = {
  unix: () => new RegExp(`unix:${clamd.socket.replace(/[.]/g, '\\.')}`),
  tcp: () => new RegExp(`127\\.0\\.0\\.1:${clamd.port}`),
};

for (const [transport, settingsOf] of Object.entries(transports) as [
  keyof typeof transports,
  typeof transports.unix,
][]) {
  describe(`clamd over ${transport}`, () => {
    const events: ClamdScanEvent[] = [];
    const scanner = () => new ClamdScanner(settingsOf(), { onScan: (event) => events.push(event) });

    test('a clean message is clean', async () => {
      const message = mimeMessage({
        name: 'notes.txt',
        type: 'text/plain',
        content: Buffer.from('just text\n'),
      });
      assert.deepEqual(await scanner().scan(sourceOf(message), never), { clean: true });
      const event = events.at(-1);
      assert.equal(event?.outcome, 'clean');
      assert.equal(event?.bytes, message.length);
    });

    test('EICAR in a base64 MIME attachment is found and named', async () => {
      const message = mimeMessage({
        name: 'eicar.com',
        type: 'application/octet-stream',
        content: clamd.eicar,
      });
      assert.ok(!message.includes(clamd.eicar), 'the raw EICAR string must not be in the message');
      assert.deepEqual(await scanner().scan(sourceOf(message), never), {
        clean: false,
        viruses: [clamd.eicarName],
      });
      assert.equal(events.at(-1)?.outcome, 'infected');
    });

    test('EICAR inside a deflated zip attachment is found (clamd unpacks archives)', async () => {
      const zip = zipOf('invoice/eicar.com', clamd.eicar);
      assert.ok(!zip.includes(clamd.eicar), 'deflated: the EICAR bytes must not appear as such');
      const message = mimeMessage({ name: 'invoice.zip', type: 'application/zip', content: zip });
      assert.deepEqual(await scanner().scan(sourceOf(message), never), {
        clean: false,
        viruses: [clamd.eicarName],
      });
      // The same zip with a harmless file is clean: the archive itself is not what matched.
      const harmless = mimeMessage({
        name: 'invoice.zip',
        type: 'application/zip',
        content: zipOf('invoice/readme.txt', Buffer.from('nothing to see here\n'.repeat(10))),
      });
      assert.deepEqual(await scanner().scan(sourceOf(harmless), never), { clean: true });
    });

    test('chunks of one byte and empty chunks: the message still arrives whole', async () => {
      const message = Buffer.concat([Buffer.from('prefix '), clamd.eicar, Buffer.from(' suffix')]);
      const source: MessageSource = {
        size: message.length,
        async *chunks() {
          yield new Uint8Array(0); // must not end the stream before it starts
          for (let at = 0; at < message.length; at++) {
            yield message.subarray(at, at + 1);
            if (at % 10 === 0) yield new Uint8Array(0);
          }
        },
      };
      assert.deepEqual(await scanner().scan(source, never), { clean: false, viruses: [clamd.eicarName] });
    });

    test('a message of exactly StreamMaxLength bytes is scanned', async () => {
      const message = Buffer.alloc(clamd.streamMaxBytes, 'a');
      assert.deepEqual(await scanner().scan(sourceOf(message), never), { clean: true });
    });

    test('one byte over StreamMaxLength, in one 4 MiB chunk: a size_limit error', async () => {
      const message = Buffer.alloc(clamd.streamMaxBytes + 1, 'a');
      await rejectsWith(
        scanner().scan(sourceOf(message, 4 * 1024 * 1024), never),
        'size_limit',
        /larger than the StreamMaxLength/,
        /raise StreamMaxLength in clamd\.conf/,
        targetOf[transport](),
      );
      assert.deepEqual(events.at(-1)?.kind, 'size_limit');
    });

    test('three times StreamMaxLength, EICAR at the end: a size_limit error, never clean', async () => {
      const message = Buffer.concat([Buffer.alloc(3 * clamd.streamMaxBytes, 'a'), clamd.eicar]);
      const started = performance.now();
      const error = await rejectsWith(
        scanner().scan(sourceOf(message), never),
        'size_limit',
        /larger than the StreamMaxLength/,
        new RegExp(`\\(${message.length} bytes\\)`),
      );
      assert.ok(performance.now() - started < 3000, 'fails fast');
      assert.ok(error.target.length > 0);
    });

    test('PING and VERSION', async () => {
      await scanner().ping();
      const version = await scanner().version();
      assert.match(version.engine, /^\d+\.\d+/);
      assert.match(version.text, /^ClamAV /);
      // Only our local databases: no daily.cvd, so no database version or date.
      assert.equal(version.database, undefined);
    });

    test('an already-aborted signal rejects without scanning', async () => {
      const controller = new AbortController();
      controller.abort(new Error('deadline passed'));
      await rejectsWith(
        scanner().scan(sourceOf(Buffer.from('x')), controller.signal),
        'aborted',
        /deadline passed/,
      );
    });

    test('a spool that fails to read fails the scan', async () => {
      const source: MessageSource = {
        size: 100,
        async *chunks() {
          yield Buffer.from('Subject: x\r\n');
          throw new Error('EIO: read error on the spool');
        },
      };
      await rejectsWith(scanner().scan(source, never), 'source', /EIO: read error on the spool/);
    });
  });
}

describe('clamd down, restarted, hung; aborts', () => {
  test('clamd stopped: unix socket and TCP fail at once, naming the address and the fix', async () => {
    await clamd.stop();
    try {
      const message = sourceOf(mimeMessage());
      for (const [transport, settingsOf] of Object.entries(transports) as [
        keyof typeof transports,
        typeof transports.unix,
      ][]) {
        const started = performance.now();
        await rejectsWith(
          new ClamdScanner(settingsOf()).scan(message, never),
          'unreachable',
          targetOf[transport](),
          transport === 'unix'
            ? /ENOENT.*no socket file: start clamd/
            : /ECONNREFUSED.*nothing listens there/,
          transport === 'unix' ? /antivirus\.socket/ : /antivirus\.host and antivirus\.port/,
        );
        assert.ok(performance.now() - started < 1000, `${transport}: fails fast`);
        await rejectsWith(new ClamdScanner(settingsOf()).ping(), 'unreachable');
      }
    } finally {
      await clamd.start();
    }
  });

  test('clamd restarted: the same scanner scans again', async () => {
    const unix = new ClamdScanner(transports.unix());
    const tcp = new ClamdScanner(transports.tcp());
    const infected = sourceOf(
      mimeMessage({ name: 'e.com', type: 'application/octet-stream', content: clamd.eicar }),
    );
    assert.equal((await unix.scan(infected, never)).clean, false);
    await clamd.stop();
    await rejectsWith(unix.scan(infected, never), 'unreachable');
    await rejectsWith(tcp.scan(infected, never), 'unreachable');
    await clamd.start();
    assert.deepEqual(await unix.scan(infected, never), { clean: false, viruses: [clamd.eicarName] });
    assert.deepEqual(await tcp.scan(infected, never), { clean: false, viruses: [clamd.eicarName] });
    assert.deepEqual(await tcp.scan(sourceOf(mimeMessage()), never), { clean: true });
  });

  test('clamd hung (SIGSTOP): the scan fails at its deadline with a timeout, and PING too', async () => {
    clamd.pause();
    try {
      for (const settingsOf of [transports.unix, transports.tcp]) {
        const started = performance.now();
        await rejectsWith(
          new ClamdScanner(settingsOf(400)).scan(sourceOf(mimeMessage()), never),
          'timeout',
          /gave no answer within 400 ms \(the whole message was sent, no verdict came\)/,
          /raise antivirus\.timeout_ms/,
        );
        const ms = performance.now() - started;
        assert.ok(ms >= 390 && ms < 1500, `deadline kept: ${ms} ms`);
        await rejectsWith(new ClamdScanner(settingsOf(300)).ping(), 'timeout', /no reply to PING/);
      }
    } finally {
      clamd.resume();
    }
    // clamd drops the abandoned connections and serves again.
    assert.deepEqual(await new ClamdScanner(transports.unix()).scan(sourceOf(mimeMessage()), never), {
      clean: true,
    });
  });

  test('aborted mid-message: rejects at once, the connection to clamd closes, the spool reader stops', async () => {
    // A TCP relay in front of clamd shows when the adapter closes its connection.
    let closedAt: number | undefined;
    let relayed = 0;
    const relay = net.createServer((client) => {
      const upstream = net.connect({ path: clamd.socket });
      client.on('data', (chunk: Buffer) => {
        relayed += chunk.length;
      });
      client.pipe(upstream).pipe(client);
      client.on('close', () => {
        closedAt = performance.now();
        upstream.destroy();
      });
      client.on('error', () => {});
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const port = (relay.address() as net.AddressInfo).port;
    try {
      let readerStopped = false;
      const source: MessageSource = {
        size: 10 * 1024 * 1024,
        async *chunks() {
          try {
            for (;;) {
              yield Buffer.alloc(64 * 1024, 'b');
              await sleep(50); // a slow spool: the message trickles out
            }
          } finally {
            readerStopped = true;
          }
        },
      };
      const controller = new AbortController();
      const scanner = new ClamdScanner({ socket: '', host: '127.0.0.1', port, timeout_ms: 30_000 });
      const pending = scanner.scan(source, controller.signal);
      await sleep(300);
      assert.ok(relayed > 64 * 1024, 'the message was on its way');
      const abortedAt = performance.now();
      controller.abort(new Error('antivirus gave no answer within 300 ms'));
      await rejectsWith(pending, 'aborted', /gave no answer within 300 ms/);
      assert.ok(performance.now() - abortedAt < 100, 'rejects at once');
      for (let i = 0; i < 100 && (closedAt === undefined || !readerStopped); i++) await sleep(10);
      assert.ok(closedAt !== undefined && closedAt - abortedAt < 500, 'the connection to clamd is closed');
      assert.ok(readerStopped, 'the spool reader was stopped');
    } finally {
      await new Promise<void>((resolve) => relay.close(() => resolve()));
    }
  });

  test('a config with neither socket nor host is refused', () => {
    assert.throws(
      () => new ClamdScanner({ socket: '', host: '', port: 3310, timeout_ms: 1000 }),
      (error: unknown) =>
        error instanceof ClamdError && error.kind === 'config' && /antivirus\.socket/.test(error.message),
    );
  });
});

/** What the scripted clamd does with an INSTREAM connection. */
type Script =
  | { readonly reply: string } // after the zero-length chunk: this, then close
  | { readonly early: string } // after the first chunk: this, then close, the message unfinished
  | { readonly resetAfter: number }; // after this many message bytes: a TCP reset, no reply

/** A loopback stand-in for clamd that parses INSTREAM and answers PING and VERSION as told. */
async function scriptedClamd(script: Script, version = 'ClamAV 1.4.6/27466/Sun Nov 22 09:40:00 2026') {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    let command: string | undefined;
    let body = 0;
    let frames = 0;
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (command === undefined) {
        const nul = buffer.indexOf(0);
        if (nul < 0) return;
        command = buffer.subarray(0, nul).toString('latin1');
        buffer = buffer.subarray(nul + 1);
        if (command === 'zPING') socket.end('PONG\0');
        else if (command === 'zVERSION') socket.end(`${version}\0`);
        else if (command !== 'zINSTREAM') socket.end('UNKNOWN COMMAND\0');
        if (command !== 'zINSTREAM') return;
      }
      while (buffer.length >= 4 && !socket.writableEnded && !socket.destroyed) {
        const length = buffer.readUInt32BE(0);
        if (length === 0) {
          if ('reply' in script) socket.end(script.reply);
          return;
        }
        if (buffer.length < 4 + length) return;
        body += length;
        frames += 1;
        buffer = buffer.subarray(4 + length);
        if ('early' in script && frames === 1) socket.end(script.early);
        if ('resetAfter' in script && body >= script.resetAfter) socket.resetAndDestroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    scanner: (timeout_ms = 5000) => new ClamdScanner({ socket: '', host: '127.0.0.1', port, timeout_ms }),
    /** Stops accepting connections: a PING after this is refused. */
    refuseNew: () => new Promise<void>((resolve) => server.close(() => resolve())),
    close: () =>
      new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
  };
}

describe('replies a healthy clamd rarely gives (scripted clamd)', () => {
  const message = () => sourceOf(mimeMessage());
  /** Two chunks 50 ms apart, so an early reply lands while the message is unfinished. */
  const slowMessage: MessageSource = {
    size: 20_000,
    async *chunks() {
      yield Buffer.alloc(10_000, 'x');
      await sleep(50);
      yield Buffer.alloc(10_000, 'y');
    },
  };

  test('several matches (AllowAllMatchScan): every name, once', async () => {
    const fake = await scriptedClamd({
      reply: 'stream: Sig.A FOUND\0stream: Sig.B FOUND\0stream: Sig.A FOUND\0',
    });
    try {
      assert.deepEqual(await fake.scanner().scan(message(), never), {
        clean: false,
        viruses: ['Sig.A', 'Sig.B'],
      });
    } finally {
      await fake.close();
    }
  });

  test('an ERROR line is a clamd_error, quoting clamd', async () => {
    const fake = await scriptedClamd({ reply: "stream: Can't allocate memory ERROR\0" });
    try {
      await rejectsWith(fake.scanner().scan(message(), never), 'clamd_error', /Can't allocate memory ERROR/);
    } finally {
      await fake.close();
    }
  });

  test('COMMAND READ TIMED OUT is a timeout naming ReadTimeout', async () => {
    const fake = await scriptedClamd({ reply: 'COMMAND READ TIMED OUT\0' });
    try {
      await rejectsWith(fake.scanner().scan(message(), never), 'timeout', /ReadTimeout/);
    } finally {
      await fake.close();
    }
  });

  test('anything else is a protocol error, never clean', async () => {
    for (const reply of ['stream: ok\0', 'OK\0', 'stream: OK FOUNDX\0', 'PONG\0', 'x'.repeat(70_000)]) {
      const fake = await scriptedClamd({ reply });
      try {
        await rejectsWith(fake.scanner().scan(message(), never), 'protocol');
      } finally {
        await fake.close();
      }
    }
  });

  test('no reply after the whole message: connection_lost', async () => {
    const fake = await scriptedClamd({ reply: '' });
    try {
      await rejectsWith(fake.scanner().scan(message(), never), 'connection_lost', /without a verdict/);
    } finally {
      await fake.close();
    }
  });

  test('"stream: OK" before the message is complete is not a clean verdict', async () => {
    const fake = await scriptedClamd({ early: 'stream: OK\0' });
    try {
      await rejectsWith(
        fake.scanner().scan(slowMessage, never),
        'protocol',
        /before the\s+message was complete/,
      );
    } finally {
      await fake.close();
    }
  });

  test('a match reported early still counts', async () => {
    const fake = await scriptedClamd({ early: 'stream: Sig.Early FOUND\0' });
    try {
      assert.deepEqual(await fake.scanner().scan(slowMessage, never), {
        clean: false,
        viruses: ['Sig.Early'],
      });
    } finally {
      await fake.close();
    }
  });

  test('reset mid-message while clamd still answers PING: inferred size_limit', async () => {
    const fake = await scriptedClamd({ resetAfter: 1000 });
    try {
      await rejectsWith(
        fake.scanner().scan(sourceOf(Buffer.alloc(1 << 20, 'z'), 1000), never),
        'size_limit',
        /still answers PING/,
        /raise StreamMaxLength/,
      );
    } finally {
      await fake.close();
    }
  });

  test('reset mid-message and clamd gone: connection_lost', async () => {
    const fake = await scriptedClamd({ resetAfter: 1000 });
    const source: MessageSource = {
      size: 1 << 20,
      async *chunks() {
        yield Buffer.alloc(1000, 'z');
        await fake.refuseNew(); // the PING that follows the reset finds nobody
        for (let i = 0; i < 1000; i++) yield Buffer.alloc(1000, 'z');
      },
    };
    await rejectsWith(fake.scanner().scan(source, never), 'connection_lost', /no longer answers/);
  });

  test('VERSION with a daily database is parsed; a reply that is not clamd’s is refused', async () => {
    const fake = await scriptedClamd({ reply: '' });
    try {
      assert.deepEqual(await fake.scanner().version(), {
        text: 'ClamAV 1.4.6/27466/Sun Nov 22 09:40:00 2026',
        engine: '1.4.6',
        database: 27466,
        databaseTime: 'Sun Nov 22 09:40:00 2026',
      });
    } finally {
      await fake.close();
    }
    const odd = await scriptedClamd({ reply: '' }, 'SSH-2.0-OpenSSH_9.2');
    try {
      await rejectsWith(odd.scanner().version(), 'protocol', /is this clamd/);
    } finally {
      await odd.close();
    }
  });
});
