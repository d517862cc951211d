/** Pipeline specs: loading, validation, the composed schema and the helpers the runtime needs. */
export { loadSpec, loadSpecs, validateSpecFiles, validateSpecTexts, type LoadedSpec, type SpecInput, type SpecOptions, type ValidationResult } from './load.ts';
export { formatProblem, type Problem } from './problem.ts';
export {
  SPEC_SCHEMA,
  composeSpecSchema,
  type ErrorsSpec,
  type JsonSchemaObject,
  type LogSpec,
  type PipelineSpec,
  type SinkSpec,
  type SourceSpec,
  type TopicSpec,
} from './schema.ts';
export { REDACTED, redactSecrets, scrubSecrets, type SpecSecrets } from './secrets.ts';
export { fillTopicTemplate, parseTopicTemplate } from './topic-template.ts';
export { topicConfigOf } from './topics.ts';
export { parseDuration, parseSize } from './units.ts';
export type { Env } from './interpolate.ts';
