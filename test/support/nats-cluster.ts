/**
 * A private, throwaway NATS JetStream cluster on loopback ports, for the JetStream log backend and
 * worker-group tests. Killing a node of the machine's own NATS would break every other test using
 * it, so each test file gets its own nodes: the machine's `nats-server` binary, each node with a
 * store in a temp directory, client and cluster (route) ports picked free on 127.0.0.1.
 *
 * Failing to start throws, so `beforeAll` fails every test of the file: under CI=true nothing may be
 * skipped, and outside CI a loud failure is clearer than a skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.ts';

const NATS_SERVER = process.env['NATS_SERVER'] ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');

export interface NatsNode {
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number;
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly running: boolean;
}

export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  /** Every node's client URL, for `servers`. */
  readonly servers: string[];
  /** SIGKILLs node `i` (its store is kept, as after a machine crash). */
  kill(i: number): Promise<void>;
  /** Starts node `i` again with the same ports and store, and waits until its JetStream is healthy. */
  start(i: number): Promise<void>;
  /** Stops every node and removes the stores. Safe to call twice. */
  destroy(): Promise<void>;
  /** The last lines of node `i`'s log, for failure messages. */
  log(i: number): string;
}

/** Nodes still running; killed when the test process exits, so a crashed test leaves no server behind. */
const ORPHANS = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of ORPHANS) child.kill('SIGKILL');
});

async function waitForPort(port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`nats-server on port ${port} exited during start-up`);
    if (Date.now() > deadline) throw new Error(`nats-server on port ${port} did not accept connections within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `size` nodes (default 3) forming one JetStream cluster, and waits until JetStream is
 * healthy on every node (its meta leader elected). With `size: 1` the node runs JetStream without
 * clustering.
 */
export async function startNatsCluster(options: { size?: number; name?: string } = {}): Promise<NatsCluster> {
  // Ports are picked free, then bound by the nodes a moment later; in between, a node's outgoing
  // route connection can take one of them as its ephemeral source port (seen in CI: "bind: address
  // already in use"). Such a start is retried with fresh ports; any other failure is not.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNatsClusterOnce(options);
    } catch (err) {
      if (attempt >= PORT_RACE_ATTEMPTS || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

const PORT_RACE_ATTEMPTS = 3;

async function startNatsClusterOnce(options: { size?: number; name?: string }): Promise<NatsCluster> {
  const size = options.size ?? 3;
  if (NATS_SERVER.startsWith('/') && !existsSync(NATS_SERVER)) {
    throw new Error(`no nats-server at ${NATS_SERVER} (install Debian's nats-server package, or set NATS_SERVER)`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sluice-nats-'));
  const clusterName = options.name ?? `sluice-test-${process.pid}`;
  const specs: Array<{ name: string; port: number; clusterPort: number; httpPort: number; store: string; conf: string; logFile: string }> = [];
  for (let i = 0; i < size; i++) {
    const name = `n${i}`;
    const store = path.join(dir, name);
    mkdirSync(store, { recursive: true });
    specs.push({ name, port: await freePort(), clusterPort: await freePort(), httpPort: await freePort(), store, conf: path.join(dir, `${name}.conf`), logFile: path.join(dir, `${name}.log`) });
  }
  for (const s of specs) {
    const routes = specs.filter((o) => o !== s).map((o) => `"nats-route://127.0.0.1:${o.clusterPort}"`);
    const conf = [
      `server_name: ${s.name}`,
      `listen: "127.0.0.1:${s.port}"`,
      `http: "127.0.0.1:${s.httpPort}"`,
      `jetstream { store_dir: ${JSON.stringify(s.store)} }`,
      ...(size > 1 ? [`cluster { name: ${JSON.stringify(clusterName)}, listen: "127.0.0.1:${s.clusterPort}", routes: [${routes.join(', ')}] }`] : []),
    ].join('\n');
    writeFileSync(s.conf, `${conf}\n`);
  }

  const processes: Array<ChildProcess | null> = specs.map(() => null);
  const alive = (i: number): boolean => {
    const p = processes[i];
    return p !== null && p !== undefined && p.exitCode === null && p.signalCode === null;
  };
  const exited = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const p = processes[i];
      if (!p || !alive(i)) return resolve();
      p.once('exit', () => resolve());
    });

  const startNode = async (i: number): Promise<void> => {
    const s = specs[i]!;
    if (alive(i)) return;
    const child = spawn(NATS_SERVER, ['-c', s.conf, '-l', s.logFile], { stdio: 'ignore' });
    child.on('error', () => undefined);
    processes[i] = child;
    ORPHANS.add(child);
    child.once('exit', () => ORPHANS.delete(child));
    await waitForPort(s.port, 15_000, () => alive(i));
  };

  // A node accepts clients before JetStream has a meta leader; /healthz answers 200 only once
  // JetStream on that node is usable, so tests start with a cluster that takes requests.
  const waitHealthy = async (i: number, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${specs[i]!.httpPort}/healthz`);
        last = await res.text();
        if (res.ok) return;
      } catch (err) {
        last = (err as Error).message;
      }
      if (!alive(i)) throw new Error(`nats-server ${specs[i]!.name} exited during start-up`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nats-server ${specs[i]!.name} not healthy within ${timeoutMs} ms: ${last}`);
  };

  const cluster: NatsCluster = {
    get nodes() {
      return specs.map((s, i) => ({ name: s.name, port: s.port, clusterPort: s.clusterPort, url: `nats://127.0.0.1:${s.port}`, running: alive(i) }));
    },
    servers: specs.map((s) => `nats://127.0.0.1:${s.port}`),
    async kill(i) {
      const p = processes[i];
      if (!p || !alive(i)) return;
      const done = exited(i);
      p.kill('SIGKILL');
      await done;
    },
    async start(i) {
      await startNode(i);
      await waitHealthy(i, 30_000);
    },
    async destroy() {
      await Promise.all(specs.map((_, i) => cluster.kill(i)));
      rmSync(dir, { recursive: true, force: true });
    },
    log(i) {
      try {
        return readFileSync(specs[i]!.logFile, 'utf8').split('\n').slice(-40).join('\n');
      } catch {
        return '';
      }
    },
  };
  try {
    await Promise.all(specs.map((_, i) => startNode(i)));
    await Promise.all(specs.map((_, i) => waitHealthy(i, 30_000)));
  } catch (err) {
    const logs = specs.map((_, i) => cluster.log(i)).join('\n---\n');
    await cluster.destroy();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return cluster;
}
