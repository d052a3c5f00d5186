// The console's only way to the server: the public REST API, with the
// user's token (sessionStorage only, gone when the tab closes).

const TOKEN_KEY = "palisade.token";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public position?: number,
  ) {
    super(message);
  }
}

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set(t: string) {
    sessionStorage.setItem(TOKEN_KEY, t);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

type Listener = () => void;
const unauthorized = new Set<Listener>();
export function onUnauthorized(l: Listener): () => void {
  unauthorized.add(l);
  return () => unauthorized.delete(l);
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const tok = session.token();
  if (tok) headers.set("Authorization", "Bearer " + tok);
  if (init.body) headers.set("Content-Type", "application/json");
  headers.set("Accept", "application/json");
  let r: Response;
  try {
    r = await fetch(path, { ...init, headers, credentials: "omit", cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "the server did not answer: " + (e as Error).message);
  }
  const text = await r.text();
  let body: any = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON: reported below */
  }
  if (r.status === 401) {
    unauthorized.forEach((l) => l());
    throw new ApiError(401, body?.error ?? "sign in with an API token");
  }
  if (!r.ok) {
    throw new ApiError(r.status, body?.error ?? (text.trim() || r.statusText), body?.position);
  }
  if (body === undefined && text) throw new ApiError(r.status, "the server answered with something other than JSON");
  return body as T;
}

export const q = (params: Record<string, string | number | undefined | null>): string => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? "?" + s : "";
};

// --- wire types (internal/inventory, internal/flow, internal/vuln) ---------

export interface Owner {
  kind: string;
  name: string;
}
export interface Container {
  name: string;
  image: string;
  imageDigest?: string;
}
export interface ServicePort {
  name?: string;
  protocol: string;
  port: number;
  targetPort?: string;
  nodePort?: number;
}
export interface Workload {
  id: string;
  cluster: string;
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
  ips?: string[];
  cidrs?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  node?: string;
  hostIP?: string;
  phase?: string;
  owner?: Owner;
  containers?: Container[];
  serviceAccount?: string;
  serviceType?: string;
  clusterIP?: string;
  ports?: ServicePort[];
  selector?: Record<string, string>;
  endpoints?: { ip: string; ports?: number[]; pod?: string; node?: string; ready: boolean }[];
  attrs?: Record<string, string[]>;
  created: string;
  deleted?: string;
  updated: string;
}
export interface WorkloadEvent {
  time: string;
  type: string;
  changes?: string[];
}
export interface Endpoint {
  ip: string;
  port?: number;
  workload?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  owner?: Owner;
  service?: string;
  node?: string;
}
export interface ObservationPoint {
  node: string;
  iface: string;
  kind: string;
  pod?: string;
}
export interface Flow {
  id: string;
  mode: string;
  proto: string;
  src: Endpoint;
  dst: Endpoint;
  start: string;
  end: string;
  fwdPackets: number;
  fwdBytes: number;
  revPackets: number;
  revBytes: number;
  flags?: string[];
  conns: number;
  replied: boolean;
  points: ObservationPoint[];
  related?: { id: string; reason: string }[];
  tunnel?: string;
}
export interface FlowDetail extends Flow {
  relatedFlows?: Flow[];
}
export interface TopEntry {
  key: string;
  flows: number;
  conns: number;
  bytes: number;
}
export interface AgentStatus {
  node: string;
  config: { mode: string };
  lastSeen?: string;
  batches: number;
  health: { agent: string; flowsSeen: number; flowsSent: number; flowsDropped: number; spooled: number; mode?: string };
}
export interface Finding {
  id: string;
  aliases?: string[];
  summary?: string;
  package: string;
  installed: string;
  fixed?: string;
  severity: string;
  score?: number;
  ecosystem: string;
  type: string;
  sourcePackage?: string;
  image?: string;
  workloads?: string[];
}
export interface VulnSummary {
  maxScore: number;
  critical: number;
  high: number;
  medium: number;
  low: number;
  unknown: number;
  cves?: string[];
}
export interface ImageSummary {
  image: string;
  digest?: string;
  registry: string;
  workloads: string[];
  scanned: boolean;
  error?: string;
  summary: VulnSummary;
}
export interface Registry {
  name: string;
  images: number;
  needsCredentials: boolean;
  hasCredentials: boolean;
  lastError?: string;
  lastScan?: string;
}
export interface Status {
  version: string;
  started: string;
  workloads: number;
  connectors: { cluster?: string; name?: string; state: string; [k: string]: unknown }[];
}
export interface FieldSet {
  fields: string[];
  prefixes: string[];
}
export type Schemas = Record<"inventory" | "flows" | "vulnerabilities", FieldSet>;

let schemas: Promise<Schemas> | null = null;
export function getSchemas(): Promise<Schemas> {
  if (!schemas) {
    schemas = api<Schemas>("/api/v1/schema").catch((e) => {
      schemas = null;
      throw e;
    });
  }
  return schemas;
}

export const cves = (f: Finding): string[] => [f.id, ...(f.aliases ?? [])].filter((x) => x.startsWith("CVE-"));

// --- policy (internal/policy, internal/server/policy.go) --------------------

export interface VersionSummary {
  version: string;
  state: string;
  policies: number;
  created: string;
  createdBy: string;
  updated: string;
  updatedBy: string;
}
export interface ScopeView {
  name: string;
  parent?: string;
  filter: string;
  catchAll?: string;
  description?: string;
  enforced?: string;
  lastVersion?: number;
  created: string;
  createdBy: string;
  versions: VersionSummary[];
}
export interface Intent {
  name?: string;
  scope: string;
  consumer: string;
  provider: string;
  action: string;
  ports?: string[];
  class: string;
  priority?: number;
  direction?: string;
}
export interface RuleRef {
  scope: string;
  version?: string;
  index: number;
  key: string;
}
export interface Counts {
  permitted: number;
  escaped: number;
  rejected: number;
  misdropped: number;
  unscoped: number;
}
export interface AnalysisReport {
  scope?: string;
  versions: Record<string, string>;
  from: string;
  to: string;
  flows: number;
  counts: Counts;
  translated: number;
  byRule: (Counts & { rule: RuleRef; action: string; intent?: string })[];
  byScope: (Counts & { scope: string })[];
  byMinute: (Counts & { minute: string })[];
  truncated?: boolean;
}
export interface FlowVerdict {
  flow: Flow;
  verdict: string;
  rule: RuleRef;
  translated?: boolean;
}
export interface Alert {
  id: string;
  scope: string;
  version: string;
  rule: RuleRef;
  verdict: string;
  edge: string;
  count: number;
  first: string;
  last: string;
  sampleFlow: string;
  acked: boolean;
  ackedBy?: string;
  ackedAt?: string;
}

// ruleString is the server's RuleRef.String(): "SCOPE@VERSION#INDEX" or
// "SCOPE@VERSION catch-all" (what analysis/flows?rule= takes).
export function ruleString(r: RuleRef): string {
  if (!r.scope) return "";
  const s = r.scope + (r.version ? "@" + r.version : "");
  return r.index < 0 ? s + " catch-all" : s + "#" + r.index;
}

// --- enforcement (internal/ruleset, GET /api/v1/enforcement) ---------------

export interface ScopeMode {
  scope: string;
  mode: "analyze" | "enforce";
  version?: string;
  failOpen?: boolean;
  updated: string;
  updatedBy?: string;
}
export interface NamespaceStatus {
  target: string;
  netns?: string;
  scope?: string;
  version?: string;
  hash?: string;
  rules: number;
  sets: number;
  members: number;
  programmed?: string;
  pending?: boolean;
}
export interface EnforcementAgent {
  node: string;
  hash: string;
  versions?: string[];
  programmed?: string;
  namespaces: NamespaceStatus[] | null;
  drift?: { time: string; target: string; what: string; repairedNs?: number }[];
  errors?: string[];
  serverLost?: boolean;
  reported: string;
  wanted: string;
  inSync: boolean;
}
export interface Enforcement {
  scopes: ScopeMode[];
  agents: EnforcementAgent[];
  compiled?: string;
  error?: string;
  rules: number;
  members: number;
}
