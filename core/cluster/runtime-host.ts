/**
 * The bridge between a worker group and the {@link Runtime}: which connectors are leased, and the
 * {@link TaskHost} that starts and stops their tasks on this worker.
 */
import type { Runtime } from '../runtime/runtime.ts';
import type { GroupTask, HostedTaskStatus, TaskHost } from './worker-group.ts';

/**
 * For {@link RuntimeOptions.leased}: whether a connector's tasks are placed by the group. Every
 * connector is, except sources whose definition asks to run on every worker (`everyWorker`, the
 * webhook); the runtime checks that flag itself.
 */
export function isLeasedConnector(): boolean {
  return true;
}

/** A {@link TaskHost} over a runtime started with `leased: isLeasedConnector`. */
export function runtimeHost(runtime: Runtime): TaskHost {
  return {
    async tasks(): Promise<GroupTask[]> {
      const out: GroupTask[] = [];
      for (const name of runtime.names()) {
        if (!runtime.isLeased(name)) continue;
        const { pipeline, type } = runtime.status(name);
        for (let task = 0; task < runtime.taskCount(name); task++) out.push({ id: `${pipeline}.${name}.${task}`, pipeline, connector: name, task, kind: type });
      }
      return out;
    },
    start: (task, signal) => runtime.startTask(task.connector, task.task, signal),
    stop: (task, timeoutMs) => runtime.stopTask(task.connector, task.task, timeoutMs),
    status(task): HostedTaskStatus | null {
      const s = runtime.taskStatus(task.connector, task.task);
      if (!s) return null;
      return { state: s.state, recordsIn: s.recordsIn, recordsOut: s.recordsOut, ...(s.error ? { error: s.error.message, retriable: s.error.code === 'RETRIABLE' } : {}) };
    },
  };
}
