/**
 * Public surface of the `sluice` package. Anything not exported here is
 * internal and may change without notice.
 */
export { Sluice, type SluiceEvents, type SluiceObserverEvents, type SluiceOptions } from './control/sluice.js';
export { Sender, type AggregateInput, type WriteEntryInput, type WriteOptions } from './control/sender.js';
export type { AggregateResult, MessageOutcome, WriteResult, WriteDestination, Percentiles, StreamCounters, SendLabel } from './sender/results.js';
export {
  StreamScheduler,
  streamTickMs,
  TICK_PACKETS,
  MIN_TICK_MS,
  MAX_TICK_MS,
  type StreamSchedulerOptions,
  type StreamSchedulerEvents,
  type StreamInput,
  type StreamHandle,
  type StreamStats,
  type StreamStatus,
  type SchedulerStats,
  type StreamWriteFn,
  type StreamWriteEntry,
  type StreamWriteOptions,
  type StreamPace,
} from './sender/stream-scheduler.js';
export { Flow, type FlowEvents, type FlowObserverEvents, type EndpointInput } from './control/flow.js';
export type { FlowMediaStats, MonitoredFlowStats } from './control/flow-taps.js';
export { MEDIA_ALARM_KINDS, TS_INDICATORS } from './media/monitor-types.js';
export type { MediaAlarm, MediaAlarmKind, MediaStats, RtpStats, TsStats, TsPidStats } from './media/monitor-types.js';
export { PAYLOAD_FORMATS, type PayloadFormat } from './wire/payload-format.js';
export { TypedEmitter, type EventMap, type ListenerErrorEvents, type WithListenerError, type SluiceWarningCode } from './events.js';
export {
  SluiceError,
  SLUICE_ERROR_CODES,
  isSluiceError,
  PolicyValidationError,
  InvalidArgumentError,
  ClosedError,
  NotSupportedError,
  ConflictError,
  SyscallError,
  EngineFailedError,
  EngineError,
  ConfigError,
  type SluiceErrorCode,
  type PolicyIssue,
} from './errors.js';
export type {
  Policy,
  FlowPolicy,
  RedirectPolicy,
  ReplicatePolicy,
  AggregatePolicy,
  SegmentPolicy,
  ConfigFile,
  PolicySpec,
  FlowPolicySpec,
  RedirectSpec,
  ReplicateSpec,
  AggregateSpec,
  SegmentSpec,
  ScheduleSpec,
  ConfigSpec,
  TierName,
  TierChoice,
  SendEngineName,
} from './policy/schema.js';
export { TIER_NAMES } from './policy/schema.js';
export { MAX_UDP_PAYLOAD } from './wire/udp.js';
export { parsePolicy, parseFlowPolicy, parseAggregate, parseSegment, parseConfig } from './policy/validate.js';
export { parseConfigText, type LoadedConfig } from './policy/config.js';
export { parseEndpoint, formatEndpoint, type Endpoint } from './wire/endpoint.js';
export { planSchedule, type SchedulePlan } from './policy/schedule.js';
export { planSegments, type PlannedSegment } from './policy/segment-plan.js';
export { probeTiers, type FlowDetail, type BatchedFlowDetail, type KernelFlowDetail } from './dataplane/tiers.js';
export type { HostDrops, TierProbe } from './dataplane/common/types.js';
export {
  FLOW_DROP_REASONS,
  DESTINATION_DROP_REASONS,
  type FlowStats,
  type DestinationStats,
  type FlowDropReason,
  type DestinationDropReason,
} from './dataplane/common/counters.js';
export { TcpRelay, type TcpRelayStats } from './control/tcp-relay.js';
export {
  Fanout,
  fanoutSpec,
  fanoutInputProblem,
  FANOUT_INPUT_NAME,
  splitFanoutInput,
  type FanoutOptions,
  type FanoutStats,
  type FanoutLimits,
} from './control/fanout.js';
export type { LoopTotals as FanoutTotals, EndReason as FanoutEndReason } from './dataplane/fanout/loop.js';
export type { InputStats as FanoutInputStats } from './dataplane/fanout/input.js';
export type { ClientStats as FanoutClientStats } from './dataplane/fanout/client.js';
export {
  tcpRedirectSchema,
  parseTcpRedirect,
  TCP_RELAY_MODES,
  type TcpRedirectPolicy,
  type TcpRedirectSpec,
  type TcpRelayMode,
  type TcpRelayPath,
} from './policy/tcp-redirect.js';
