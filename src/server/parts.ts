/** Builds the server's parts from its options: one place, used by `serve` and by the tests. */
import type { AppParts } from "./app.ts";
import { TokenSet, type Role } from "./auth.ts";
import { SqliteHistory } from "./history.ts";
import { BuildHub, type HubLimits } from "./hub.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { Metrics } from "./metrics.ts";
import { MountStore } from "./mounts.ts";
import { Sessions } from "./sessions.ts";
import { Storage, type StorageOptions } from "./storage.ts";
import { Webhooks, type WebhookTarget } from "./webhooks.ts";
import { JobQueue } from "./jobs.ts";

export interface PartsOptions extends StorageOptions {
  tokens: { token: string; role: Role }[];
  log?: Logger;
  /** Bytes each shared cache mount may keep (mounts.ts). */
  mountBudget?: number;
  webhooks?: { targets: WebhookTarget[]; key: Buffer; retryBaseMs?: number; maxAttempts?: number; pollMs?: number };
  /** The build hub's report quotas and history size (defaults: quotas.ts). */
  hubLimits?: HubLimits;
  /** Remote execution's queue: how long a worker's lease lasts without a heartbeat. */
  jobLeaseMs?: number;
}

export interface ServerParts extends AppParts {
  history: SqliteHistory;
  webhooks?: Webhooks;
  close(): Promise<void>;
}

export function createParts(options: PartsOptions): ServerParts {
  const { tokens: entries, log = createLogger(), webhooks: hooks, hubLimits, jobLeaseMs, mountBudget, ...storageOptions } = options;
  const tokens = new TokenSet(entries); // a bad token is an error before anything is created
  const storage = new Storage(storageOptions);
  const metrics = new Metrics();
  const history = new SqliteHistory(options.dataDir);
  const webhooks = hooks?.targets.length ? new Webhooks({ ...hooks, store: history, metrics, log }) : undefined;
  const hub = new BuildHub(history, metrics, webhooks, hubLimits);
  const jobs = new JobQueue(options.dataDir, { leaseMs: jobLeaseMs });
  return {
    storage,
    tokens,
    metrics,
    log,
    hub,
    sessions: new Sessions(),
    mounts: new MountStore(storage, mountBudget),
    history,
    webhooks,
    jobs,
    async close() {
      hub.disconnectAll();
      webhooks?.stop();
      await webhooks?.settle();
      storage.close();
      history.close();
      jobs.close();
    },
  };
}
