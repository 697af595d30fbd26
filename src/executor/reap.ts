/**
 * What a killed build (kill -9, power loss) leaves of the executor: its RUN's container, the
 * private tmpfs that held its secrets, and its RUN's network. Every command that opens the cache calls this first.
 */
import { processAlive } from "../util/process.ts";
import { removeAbandonedTmpfs } from "./private-tmpfs.ts";
import { reapAbandonedContainers } from "./runtime.ts";
import { reapAbandonedNetworks } from "./network.ts";

export function reapAbandoned() {
  reapAbandonedContainers(processAlive); // a killed build's RUN
  removeAbandonedTmpfs(processAlive); // and its secrets
  reapAbandonedNetworks(processAlive); // and its network (slirp4netns, the namespace)
}
