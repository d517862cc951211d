/**
 * Shared plumbing of the end-to-end tests (`test/e2e-*.test.ts`): the `sluice` CLI runs as a child
 * process through the real bin, in a fresh temp directory holding copies of the spec files, with
 * real files and real sockets on 127.0.0.1. Nothing here mocks anything.
 *
 * Every child and temp directory is tracked; {@link cleanUp} (called from `afterEach`) kills the
 * children that are still running and removes the directories.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = path.join(ROOT, 'core/cli/bin.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const dirs: string[] = [];
const children = new Set<Running>();
const servers = new Set<http.Server>();

/** Kills every child still running (SIGKILL), closes test servers and removes temp dirs. */
export async function cleanUp(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill('SIGKILL')));
  children.clear();
  await Promise.all(
    [...servers].map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
  servers.clear();
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/** A fresh directory under the OS temp dir, removed by {@link cleanUp}. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `sluice-${prefix}-`));
  dirs.push(dir);
  return dir;
}

/** The environment children get: the caller's, without sluice settings that would change what a test sees. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const name of ['SLUICE_DATA_DIR', 'SLUICE_API_TOKEN', 'SLUICE_LOG_LEVEL', 'SLUICE_DEBUG']) if (!(name in extra)) delete env[name];
  return env;
}

/** Runs `sluice ARGS` to completion in `cwd`. */
export function sluice(args: readonly string[], options: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sluice ${args.join(' ')} did not finish within ${options.timeoutMs ?? 30_000} ms; stderr: ${stderr}`));
    }, options.timeoutMs ?? 30_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a command that must exit 0, failing with its output otherwise. */
export async function sluiceOk(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): Promise<RunResult> {
  const result = await sluice(args, options);
  if (result.code !== 0) throw new Error(`sluice ${args.join(' ')} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  return result;
}

/** A log line of `sluice run` (JSON, since stdout is not a TTY). */
export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** A `sluice run` (or any long-running command) child process. */
export class Running {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(args: readonly string[], options: { cwd: string; env?: Record<string, string> }) {
    this.child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.exitInfo = { code, signal };
        children.delete(this);
        resolve(this.exitInfo);
      });
    });
    children.add(this);
  }

  get running(): boolean {
    return this.exitInfo === null;
  }

  /** The JSON log lines printed so far; other lines (the banner) are skipped. */
  logLines(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as LogLine);
      } catch {
        // A line still being written.
      }
    }
    return out;
  }

  /** Waits for a log line matching `predicate`; fails early when the process exits. */
  async waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 20_000): Promise<LogLine> {
    let found: LogLine | undefined;
    await waitFor(
      () => {
        found = this.logLines().find(predicate);
        if (found) return true;
        if (!this.running) throw new Error(`sluice exited (${JSON.stringify(this.exitInfo)}) before logging ${what}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
        return false;
      },
      { timeoutMs, what: `${what}\nstdout so far: ${this.stdout.slice(-3000)}\nstderr: ${this.stderr}` },
    );
    return found!;
  }

  /** The admin API's URL, from the "running" log line (`--api 127.0.0.1:0` picks a free port). */
  async apiUrl(): Promise<string> {
    const line = await this.waitForLog((l) => typeof l['api'] === 'string', 'the running line with the API URL');
    return line['api'] as string;
  }

  /** Sends `signal` and resolves once the process exited. */
  async kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then the exit; SIGKILL after `timeoutMs` (which fails the caller's exit-code check). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

/** Starts `sluice ARGS` in the background; {@link cleanUp} kills it if the test does not. */
export function start(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): Running {
  return new Running(args, options);
}

/** Polls `condition` until it is true; throws after `timeoutMs` naming `what`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, options: { timeoutMs?: number; intervalMs?: number; what: string }): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs ?? 20_000} ms waiting for ${options.what}`);
    await sleep(options.intervalMs ?? 50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The complete lines of a text file (a last line without its newline is left out); [] when missing. */
export function completeLines(file: string): string[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  lines.pop();
  return lines;
}

/** The `seq` of every line of a JSON-lines file; throws on a line that is not JSON (a torn line). */
export function seqs(file: string): number[] {
  return completeLines(file).map((line, i) => {
    try {
      return (JSON.parse(line) as { seq: number }).seq;
    } catch {
      throw new Error(`${file}:${i + 1} is not a JSON line: ${JSON.stringify(line.slice(0, 200))}`);
    }
  });
}

/** Where {@link datagenToFileSpec}'s sink writes, relative to the working directory of `sluice run`. */
export const DATAGEN_FILE_OUTPUT = 'out/clicks.jsonl';

/**
 * The datagen → file pipeline that the crash and cluster tests break and then check line by line:
 * source `gen` writes `count` clickstream events (`seed`, `rate` a second, `batch` a batch) to the
 * topic `clicks`, and sink `archive` writes them to {@link DATAGEN_FILE_OUTPUT}. `log` is the spec's
 * `log:` value as YAML and `tasks` the source's task count, each left out of the spec when absent.
 */
export function datagenToFileSpec(options: {
  name: string;
  count: number;
  seed: number;
  rate: number;
  batch: number;
  partitions: number;
  tasks?: number;
  log?: string;
}): string {
  const log = options.log === undefined ? '' : `log: ${options.log}\n`;
  const tasks = options.tasks === undefined ? '' : `    tasks: ${options.tasks}\n`;
  return `name: ${options.name}
${log}topics:
  - name: clicks
    partitions: ${options.partitions}
sources:
  - name: gen
    connector: datagen
    topic: clicks
${tasks}    config: { preset: clickstream, count: ${options.count}, seed: ${options.seed}, rate: ${options.rate}, batch_size: ${options.batch} }
sinks:
  - name: archive
    connector: file
    topics: [clicks]
    config: { path: ${DATAGEN_FILE_OUTPUT} }
`;
}

/** An HTTP request to the admin API (or any local server). */
export async function request(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; json(): any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {} }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A local HTTP server on 127.0.0.1 with a free port, closed by {@link cleanUp}. */
export async function startServer(handler: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => handler(req, body, res));
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
