/** Counters and gauges for GET /metrics, in the Prometheus text format. */

type Labels = Record<string, string>;

interface Metric {
  help: string;
  type: "counter" | "gauge";
  values: Map<string, number>;
}

const labelText = (labels: Labels) => {
  const entries = Object.entries(labels);
  return entries.length ? `{${entries.map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`).join(",")}}` : "";
};

export class Metrics {
  private readonly metrics = new Map<string, Metric>();
  /** Formatted label sets by their values: formatting on every request showed up in profiles. */
  private readonly labelCache = new Map<string, string>();

  private labels(labels: Labels): string {
    let key = "";
    for (const name in labels) key += `${name}\u0000${labels[name]}\u0001`;
    let text = this.labelCache.get(key);
    if (text === undefined) {
      text = labelText(labels);
      if (this.labelCache.size < 10_000) this.labelCache.set(key, text);
    }
    return text;
  }

  private metric(name: string, help: string, type: Metric["type"]): Metric {
    let metric = this.metrics.get(name);
    if (!metric) this.metrics.set(name, (metric = { help, type, values: new Map() }));
    return metric;
  }

  inc(name: string, help: string, labels: Labels = {}, by = 1) {
    const metric = this.metric(name, help, "counter");
    const key = this.labels(labels);
    metric.values.set(key, (metric.values.get(key) ?? 0) + by);
  }

  set(name: string, help: string, value: number, labels: Labels = {}) {
    this.metric(name, help, "gauge").values.set(labelText(labels), value);
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, metric] of [...this.metrics].sort(([a], [b]) => a.localeCompare(b))) {
      lines.push(`# HELP ${name} ${metric.help}`, `# TYPE ${name} ${metric.type}`);
      for (const [labels, value] of metric.values) lines.push(`${name}${labels} ${value}`);
    }
    return lines.join("\n") + "\n";
  }
}
