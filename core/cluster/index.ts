/**
 * The worker group (`sluice run --cluster NAME`): leases in NATS KV, balancing, failover, and the
 * bridge to the runtime. Loaded by the CLI only when a worker joins a group.
 */
export { WorkerGroup, type GroupSnapshot, type GroupTask, type GroupTaskView, type TaskHost, type WorkerGroupOptions } from './worker-group.ts';
export { DEFAULT_LEASE_TIMINGS, LeaseBucket, type LeaseTimings } from './lease-bucket.ts';
export { isLeasedConnector, runtimeHost } from './runtime-host.ts';
