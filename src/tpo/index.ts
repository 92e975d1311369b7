/**
 * 'sluice/tpo': the TPO gateway as a library (docs/TPO.md, *Library*).
 * TpoGateway starts what `sluice tpo` runs from a config (a file or a
 * parsed object), changes its peers and table while it runs, and closes
 * it; fetchStatus reads a running gateway's status from its control
 * socket, as `sluice status` does.
 */
export { TpoGateway, type TpoGatewayOptions, type TpoGatewayStatus } from './tpo-gateway.js';
export type {
  TpoFlowFailReason,
  TpoFlowFailure,
  TpoFlowInfo,
  TpoGatewayEvents,
  TpoHandshakeFailure,
  TpoHandshakeFailureReason,
  TpoPeerFlowsReset,
  TpoPeerFlowsResetCause,
  TpoPeerRemoval,
  TpoPeerUnreachable,
  TpoTableEntryRemoval,
} from './tpo-events.js';
export type { TpoPeerView, TpoTableEntryView } from './config/changes.js';
export { parseTpoConfig, parseTpoConfigText, TpoConfigError, type PeerConfig, type TpoConfig } from './config/config.js';
export { loadTpoConfig } from './config/load.js';
/** The schemas of one `peers[]` and one `table[]` item, as the config file and the run-time changes validate them (e.g. for an API document). */
export { peerSchema as tpoPeerSchema, tableEntrySchema as tpoTableEntrySchema } from './config/entries.js';
export { DEFAULT_MARK } from './gateway/transparent.js';
export type { GatewayCounters, PeerStatus } from './gateway/status.js';
export type { HostPort } from './intercept/interception.js';
export { ControlSocketError, defaultControlPath, fetchStatus } from './control-socket.js';
