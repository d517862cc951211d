/** Turns a spec's topic entry into the log's {@link TopicConfig}. */
import type { TopicConfig } from '../log/types.ts';
import type { TopicSpec } from './schema.ts';
import { parseDuration, parseSize } from './units.ts';

/**
 * The settings a topic entry sets, in the log's terms; the log's defaults fill the rest. Throws
 * `INVALID_ARGUMENT` for a duration or size out of range (validation reports those first).
 */
export function topicConfigOf(topic: TopicSpec): Partial<TopicConfig> {
  const config: Partial<TopicConfig> = {};
  if (topic.partitions !== undefined) config.partitions = topic.partitions;
  const time = topic.retention?.time;
  if (time !== undefined) config.retentionMs = time === 'none' ? null : parseDuration(time);
  const bytes = topic.retention?.bytes;
  if (bytes !== undefined) config.retentionBytes = bytes === 'none' ? null : parseSize(bytes);
  if (topic.cleanup !== undefined) config.cleanup = topic.cleanup;
  if (topic.fsync !== undefined) config.fsync = topic.fsync;
  if (topic.fsync_interval !== undefined) config.fsyncIntervalMs = parseDuration(topic.fsync_interval);
  if (topic.segment_bytes !== undefined) config.segmentBytes = parseSize(topic.segment_bytes);
  if (topic.segment_time !== undefined) config.segmentMs = parseDuration(topic.segment_time);
  if (topic.tombstone_retention !== undefined) config.tombstoneRetentionMs = parseDuration(topic.tombstone_retention);
  return config;
}
