/**
 * Who should hold how many tasks: the worker group's balancing rule, kept free of I/O so it can be
 * tested on its own.
 *
 * Every worker computes the same answer from the same view (the live members and who holds which
 * lease), then acts only on itself: a worker above its target releases its excess, a worker below
 * it takes free tasks. Nobody stops a task it may keep, so rebalancing moves only the tasks that
 * must move. When views differ for a moment (a member key seen by one worker and not yet by
 * another), the next round corrects it.
 */

/** How many tasks each live worker should hold, for `taskCount` tasks. */
export function targets(workers: ReadonlyMap<string, number>, taskCount: number): Map<string, number> {
  const ids = [...workers.keys()];
  const out = new Map<string, number>();
  if (ids.length === 0) return out;
  const base = Math.floor(taskCount / ids.length);
  let extra = taskCount % ids.length;
  // The workers that hold the most already get the extra task each, so reaching the targets moves
  // as few tasks as possible; ties go by id, so every worker picks the same ones.
  const order = ids.sort((a, b) => workers.get(b)! - workers.get(a)! || (a < b ? -1 : a > b ? 1 : 0));
  for (const id of order) {
    out.set(id, base + (extra > 0 ? 1 : 0));
    if (extra > 0) extra--;
  }
  return out;
}

/** A task as the balancer sees it. */
export interface BalanceTask {
  id: string;
  /** Tasks of one connector are spread first, so one worker's death takes no connector whole. */
  connector: string;
}

export interface BalanceView {
  self: string;
  /** Live workers (self included). */
  workers: readonly string[];
  /** Every task of the group, in the same order on every worker. */
  tasks: readonly BalanceTask[];
  /** Task id → holder, for the tasks someone holds (a holder may be a worker no longer live). */
  owners: ReadonlyMap<string, string>;
}

export interface BalancePlan {
  target: number;
  /** Held tasks to stop and release, in order. */
  release: string[];
  /** Free tasks to try to take, best first; take at most `take` of them. */
  candidates: string[];
  take: number;
}

/** What `view.self` should do this round. */
export function plan(view: BalanceView): BalancePlan {
  const counts = new Map<string, number>(view.workers.map((w) => [w, 0]));
  counts.set(view.self, counts.get(view.self) ?? 0);
  for (const owner of view.owners.values()) if (counts.has(owner)) counts.set(owner, counts.get(owner)! + 1);
  const target = targets(counts, view.tasks.length).get(view.self) ?? 0;
  const mine = view.tasks.filter((t) => view.owners.get(t.id) === view.self);

  // How many of each connector's tasks this worker holds: release from the connector it holds most
  // of, take from the connector it holds fewest of.
  const perConnector = new Map<string, number>();
  for (const t of mine) perConnector.set(t.connector, (perConnector.get(t.connector) ?? 0) + 1);
  const held = (t: BalanceTask): number => perConnector.get(t.connector) ?? 0;

  const release: string[] = [];
  if (mine.length > target) {
    const ranked = [...mine].sort((a, b) => held(b) - held(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    release.push(...ranked.slice(0, mine.length - target).map((t) => t.id));
  }
  const free = view.tasks.filter((t) => !view.owners.has(t.id));
  // Workers start their search at different places, so they rarely race for the same key.
  const offset = free.length === 0 ? 0 : hash(view.self) % free.length;
  const rotated = [...free.slice(offset), ...free.slice(0, offset)];
  const candidates = rotated
    .map((t, i) => ({ t, i }))
    .sort((a, b) => held(a.t) - held(b.t) || a.i - b.i)
    .map(({ t }) => t.id);
  return { target, release, candidates, take: Math.max(0, target - mine.length) };
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}
