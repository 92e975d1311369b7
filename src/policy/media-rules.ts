/**
 * The checks across a flow's media fields (payload, rtcp,
 * subscriberTimeoutMs) that no single field's schema can make. Paths are
 * relative to the flow, as in flow-set.ts.
 */
import type { PolicyIssue } from '../errors.js';
import type { FlowPolicySpec } from './schema.js';

/** RTCP on port+1 needs the port above each RTP port to exist. */
const MAX_RTP_PORT = 65_534;

export function mediaIssues(spec: FlowPolicySpec, where = ''): PolicyIssue[] {
  const at = (field: string) => (where ? `${where}.${field}` : field);
  const issues: PolicyIssue[] = [];
  const rtp = spec.payload === 'rtp' || spec.payload === 'rtp-mpegts';
  if (spec.rtcp === 'port+1') {
    if (!rtp) issues.push({ path: at('rtcp'), message: `RTCP pairing needs payload 'rtp' or 'rtp-mpegts' (payload is '${spec.payload}')` });
    if (spec.listen.port === 0) issues.push({ path: at('rtcp'), message: 'RTCP on port+1 needs an explicit listen port (not 0)' });
    else if (spec.listen.port > MAX_RTP_PORT) issues.push({ path: at('listen'), message: `RTCP on port+1 needs a listen port up to ${MAX_RTP_PORT}` });
    const subs = spec.type === 'redirect' ? [spec.to] : spec.to;
    subs.forEach((d, i) => {
      if (d.port > MAX_RTP_PORT)
        issues.push({ path: at(spec.type === 'redirect' ? 'to' : `to[${i}]`), message: `RTCP on port+1 needs subscriber ports up to ${MAX_RTP_PORT}` });
    });
  }
  if (spec.subscriberTimeoutMs !== undefined && spec.rtcp !== 'port+1') {
    issues.push({ path: at('subscriberTimeoutMs'), message: "a subscriber's liveness is read from its RTCP reports: set rtcp: 'port+1'" });
  }
  return issues;
}
