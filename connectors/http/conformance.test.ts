/**
 * The http sink against the connector conformance suite: its examples and docs, a restart
 * mid-stream, and a timely stop, in a real runtime on a real log, posting to a local receiver.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeSinkConformance } from '../../test/conformance/suite.ts';
import { http as httpSink } from './index.ts';

/** A receiver on 127.0.0.1 that keeps every request body and answers 200. */
interface Receiver {
  readonly url: string;
  readonly bodies: string[];
  readonly server: http.Server;
}

describeSinkConformance(httpSink, {
  setup: async (): Promise<Receiver> => {
    const bodies: string[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks).toString('utf8'));
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`, bodies, server };
  },
  teardown: async ({ fixture }) => {
    fixture.server.closeAllConnections();
    await new Promise<void>((resolve) => fixture.server.close(() => resolve()));
  },
  configFor: ({ fixture }) => ({ url: fixture.url, format: 'ndjson', max_batch_records: 50 }),
  // Each body holds several records; the suite counts the ids in them.
  readBack: async ({ fixture }) => [...fixture.bodies],
});
