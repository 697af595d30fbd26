/**
 * Webhooks as the Standard Webhooks specification (standardwebhooks.com) has them, so a
 * receiver can check them with any of its libraries:
 *
 *   webhook-id: msg_…            the same on every retry of one message (receivers dedupe on it)
 *   webhook-timestamp: seconds   of this attempt
 *   webhook-signature: v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>
 *
 * The secret is written `whsec_<base64>`. Body: {"type", "timestamp", "data"}. Delivery is at
 * least once: every message is written down before the first attempt, retried with exponential
 * backoff until a 2xx or the last attempt, and survives a restart of the server.
 */
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import type { Logger } from "../util/log.ts";
import type { Metrics } from "./metrics.ts";
import { urlOrigin } from "../util/redact.ts";

export const WEBHOOK_EVENTS = ["build.finished", "build.failed", "cache.conflict"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookTarget {
  url: string;
  events: ReadonlySet<WebhookEvent>;
}

export interface Delivery {
  id: number;
  messageId: string;
  url: string;
  type: WebhookEvent;
  body: string;
  attempts: number;
  nextAttempt: number;
  status: "pending" | "delivered" | "failed";
  lastStatus?: number;
  lastError?: string;
  created: number;
}

/** Where deliveries are written down (the hub's metadata store). */
export interface DeliveryStore {
  queueDelivery(delivery: Omit<Delivery, "id">): Promise<void>;
  /**
   * Takes up to `limit` pending deliveries that are due at `now` and not held by anyone, and
   * holds them until `leaseUntil`: a replica delivers what it claimed, and if it dies doing so
   * the lease runs out and another claims the same message (same webhook-id) again.
   */
  claimDeliveries(now: number, limit: number, leaseUntil: number): Promise<Delivery[]>;
  updateDelivery(id: number, change: Pick<Delivery, "attempts" | "nextAttempt" | "status"> & { lastStatus?: number; lastError?: string }): Promise<void>;
  recentDeliveries(limit: number): Promise<Delivery[]>;
  pendingDeliveries(): Promise<number>;
}

export function parseWebhookSecret(text: string, origin = "--webhook-secret"): Buffer {
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(text.trim());
  const key = match ? Buffer.from(match[1], "base64") : undefined;
  if (!key || key.length < 24 || key.length > 64) throw new UserError(`${origin}: a webhook secret is whsec_ and 24 to 64 bytes in base64 (e.g. whsec_${randomBytes(32).toString("base64")})`);
  return key;
}

export function readWebhookSecret(file: string): Buffer {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UserError(`cannot read the webhook secret file ${file}: ${(error as Error).message}`);
  }
  return parseWebhookSecret(text, file);
}

export function parseWebhookEvents(text: string): Set<WebhookEvent> {
  const names = text.split(",").map((s) => s.trim()).filter(Boolean);
  for (const name of names) {
    if (!(WEBHOOK_EVENTS as readonly string[]).includes(name)) throw new UserError(`--webhook-events: unknown event "${name}" (use ${WEBHOOK_EVENTS.join(", ")})`);
  }
  if (names.length === 0) throw new UserError("--webhook-events: name at least one event");
  return new Set(names as WebhookEvent[]);
}

export function signWebhook(key: Buffer, messageId: string, timestamp: number, body: string): string {
  return `v1,${createHmac("sha256", key).update(`${messageId}.${timestamp}.${body}`).digest("base64")}`;
}

export interface WebhookOptions {
  targets: WebhookTarget[];
  key: Buffer;
  store: DeliveryStore;
  metrics: Metrics;
  log: Logger;
  /** The first retry waits this long, each next one twice as long (capped at an hour). */
  retryBaseMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  pollMs?: number;
}

export class Webhooks {
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly sending = new Set<number>();
  private polling = false;
  private pollAgain = false;

  constructor(private readonly options: WebhookOptions) {
    this.timer = setInterval(() => this.deliverDue(), options.pollMs ?? 500);
  }

  /** Writes the message down for every target that wants it; delivery follows. */
  async publish(type: WebhookEvent, data: unknown) {
    await this.queue(this.options.targets.filter((t) => t.events.has(type)).map((target) => ({ target, type })), data);
  }

  /**
   * A build's end: one message per target, never two. A failed build is `build.failed` to a
   * target that takes those, else `build.finished`; a successful one is `build.finished`.
   */
  async publishBuildEnd(failed: boolean, data: unknown) {
    const typeFor = (target: WebhookTarget): WebhookEvent | undefined =>
      failed && target.events.has("build.failed") ? "build.failed" : target.events.has("build.finished") ? "build.finished" : undefined;
    await this.queue(this.options.targets.flatMap((target) => (typeFor(target) ? [{ target, type: typeFor(target)! }] : [])), data);
  }

  private async queue(messages: { target: WebhookTarget; type: WebhookEvent }[], data: unknown) {
    if (messages.length === 0) return;
    const timestamp = new Date().toISOString();
    for (const { target, type } of messages) {
      const messageId = `msg_${randomBytes(16).toString("hex")}`;
      const body = JSON.stringify({ type, timestamp, data });
      await this.options.store.queueDelivery({ messageId, url: target.url, type, body, attempts: 0, nextAttempt: 0, status: "pending", created: Date.now() });
    }
    this.deliverDue();
  }

  /** Claims what is due and sends it; one pass at a time (a pass still running is not doubled). */
  private deliverDue() {
    if (this.polling) return void (this.pollAgain = true);
    this.polling = true;
    void this.claimAndSend()
      .catch((cause) => this.options.log.warn("webhook deliveries could not be read", { error: String(cause) }))
      .finally(() => {
        this.polling = false;
        if (this.pollAgain) (this.pollAgain = false), this.deliverDue();
      });
  }

  private async claimAndSend() {
    const now = Date.now();
    // The lease outlasts one attempt (its timeout) with room to write down the outcome.
    const lease = now + (this.options.timeoutMs ?? 10_000) + 30_000;
    const due = (await this.options.store.claimDeliveries(now, 16, lease)).filter((d) => !this.sending.has(d.id));
    for (const delivery of due) {
      this.sending.add(delivery.id);
      void this.attempt(delivery)
        .catch((cause) => this.options.log.warn("webhook delivery could not be recorded", { id: delivery.messageId, error: String(cause) }))
        .finally(() => this.sending.delete(delivery.id));
    }
    this.options.metrics.webhookQueue.set(await this.options.store.pendingDeliveries());
  }

  private async attempt(delivery: Delivery) {
    const { key, log, metrics, store } = this.options;
    const timestamp = Math.floor(Date.now() / 1000);
    const attempts = delivery.attempts + 1;
    let status: number | undefined;
    let error: string | undefined;
    try {
      const response = await fetch(delivery.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "memobuild-webhooks",
          "webhook-id": delivery.messageId,
          "webhook-timestamp": String(timestamp),
          "webhook-signature": signWebhook(key, delivery.messageId, timestamp, delivery.body),
        },
        body: delivery.body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      status = response.status;
      await response.body?.cancel();
    } catch (cause) {
      error = (cause as Error).message;
    }
    if (status !== undefined && status >= 200 && status < 300) {
      await store.updateDelivery(delivery.id, { attempts, nextAttempt: 0, status: "delivered", lastStatus: status });
      metrics.webhookDeliveries.inc({ outcome: "delivered" });
      return;
    }
    const why = error ?? `HTTP ${status}`;
    if (attempts >= (this.options.maxAttempts ?? 10)) {
      await store.updateDelivery(delivery.id, { attempts, nextAttempt: 0, status: "failed", lastStatus: status, lastError: why });
      metrics.webhookDeliveries.inc({ outcome: "failed" });
      log.warn("webhook delivery failed for good", { url: urlOrigin(delivery.url), id: delivery.messageId, attempts, error: why });
      return;
    }
    const wait = Math.min(3_600_000, (this.options.retryBaseMs ?? 5_000) * 2 ** (attempts - 1));
    await store.updateDelivery(delivery.id, { attempts, nextAttempt: Date.now() + wait, status: "pending", lastStatus: status, lastError: why });
    metrics.webhookDeliveries.inc({ outcome: "retry" });
    log.info("webhook delivery will be retried", { url: urlOrigin(delivery.url), id: delivery.messageId, attempts, inMs: wait, error: why });
  }

  /** Waits for the attempts in flight (for a clean stop). */
  async settle(): Promise<void> {
    // Stryker disable next-line ConditionalExpression: a short poll of in-memory state
    while (this.sending.size > 0 || this.polling) await Bun.sleep(5);
  }

  stop() {
    clearInterval(this.timer);
  }
}
