/** The parts a server app is made of: its own file, so the route files that take them need not import app.ts (which imports them). */
import type { TokenSet } from "./auth.ts";
import type { BuildHub } from "./hub.ts";
import type { JobQueue } from "./jobs.ts";
import type { Metrics } from "./metrics.ts";
import type { MountStore } from "./mounts.ts";
import type { AgentRelay, SecretRelay } from "./secret-relay.ts";
import type { SessionStore } from "./sessions.ts";
import type { Storage } from "./storage.ts";
import type { Logger } from "../util/log.ts";

/** What the server is made of; each part is built (and tested) on its own. */
export interface AppParts {
  storage: Storage;
  tokens: TokenSet;
  metrics: Metrics;
  log: Logger;
  hub: BuildHub;
  sessions: SessionStore;
  /** The remote-execution queue (absent: the server runs no builds). */
  jobs?: JobQueue;
  /** How a remote build's secrets reach its worker (default: in this process's memory). */
  secrets?: SecretRelay;
  /** How a remote build's messages to the submitter's ssh agents reach it (default: in memory). */
  agents?: AgentRelay;
  /** Shared cache mounts (absent in tests that build an app without them). */
  mounts?: MountStore;
  /** Whether the metadata and blob stores answer (GET /readyz); absent: always ready. */
  ready?: () => Promise<void>;
  /** Large blob GETs answered with a short-lived URL of the blob store (when it has them). */
  blobsRedirect?: boolean;
}
