import { describe, expect, test } from "bun:test";
import { Histogram, Registry } from "prom-client";
import { Metrics, RequestHistogram } from "./metrics.ts";

describe("metrics", () => {
  test("request durations render exactly as prom-client's Histogram renders the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1];
    const [ours, theirs] = [new Registry(), new Registry()];
    const histogram = new RequestHistogram({ name: "t_seconds", help: "Time", buckets, registry: ours });
    const reference = new Histogram({ name: "t_seconds", help: "Time", labelNames: ["method", "route"], buckets, registers: [theirs] });
    const getBlobs = histogram.series("GET", "blobs");
    // On a bound, between bounds, past the last one; two series, one taken up front.
    for (const seconds of [0.001, 0.0005, 0.05, 0.01, 3, 0.1000001]) {
      getBlobs.observe(seconds);
      histogram.observe({ method: "PUT", route: "actions" }, seconds / 2);
      reference.observe({ method: "GET", route: "blobs" }, seconds);
      reference.observe({ method: "PUT", route: "actions" }, seconds / 2);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    histogram.reset();
    reference.reset();
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  test("a counter's fixed series is in every rendering, added to what the counter counts itself", async () => {
    const metrics = new Metrics();
    metrics.series(metrics.misses, { kind: "blob" }); // never added to: the series after it still count
    const hits = metrics.series(metrics.hits, { kind: "blob" });
    const bytes = metrics.series(metrics.bytesOut);
    hits.add();
    hits.add();
    metrics.hits.inc({ kind: "blob" });
    bytes.add(4096);
    expect(await metrics.render()).toContain('memobuild_cache_hits_total{kind="blob"} 3');
    hits.add();
    const text = await metrics.render();
    expect(text).toContain('memobuild_cache_hits_total{kind="blob"} 4');
    expect(text).toContain("memobuild_bytes_out_total 4096");
  });
});
